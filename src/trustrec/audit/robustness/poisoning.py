"""Poisoning (``poisoning``, shilling; retrains): how far a target item is pushed when fake users
are injected into the training data and the model is retrained.

Fake users (new user ids, ``budget`` x the number of genuine users in training) are added to
the *training* interactions (valid and test are untouched), a fresh copy of the model is
retrained from its :class:`~trustrec.models.ModelSpec`, and genuine evaluation users are
measured against a clean retrain: target HR@K, mean full-ranking rank of the target and the
success rate (share of users with at least one target in their top-K). Attacks
(:func:`fake_profiles`) put the target in every fake profile plus ``filler_size`` items:
``random`` (uniform filler), ``average`` (implicit version: filler drawn with probability
proportional to item popularity, so profiles look like an average user's), ``bandwagon``
(filler from the head: the most popular ``max(2 x filler, 10%)`` items), ``segment`` (items
sharing a group with the target in the item group column, else the items most co-consumed
with it, topped up at random) and ``sequential`` (popular items in increasing popularity,
then the target as the newest item: the target comes right after popular items in time).
With ratings, the target and the selected (popular / segment) items get the top rating and
filler gets ratings drawn around the item mean (``average``) or the global mean (others).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import PositiveInt, field_validator, model_validator

from trustrec._arms import ArmSpec, build_arm, check_arm_specs
from trustrec.audit._base import (
    AuditConfig,
    AuditInputs,
    ModelSpecField,
    RetrainingAudit,
    fit_spec,
    register_audit,
)
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.audit.robustness._common import _recommend, target_item_indices, target_ranks
from trustrec.data import Dataset, Interactions, Split
from trustrec.errors import ConfigError, DataError
from trustrec.eval import mean_estimate, paired_estimate
from trustrec.parallel import SerialExecutor, resolve_executor

__all__ = [
    "ATTACKS",
    "PoisoningAudit",
    "PoisoningConfig",
    "fake_profiles",
    "inject_fake_users",
    "target_ranks",
]

Attack = Literal["random", "average", "bandwagon", "segment", "sequential"]
ATTACKS: tuple[Attack, ...] = ("random", "average", "bandwagon", "segment", "sequential")


def _segment_items(dataset: Dataset, train: Interactions, target: int, column: str | None) -> tuple[np.ndarray, str]:
    """Items of the target's segment: sharing an item-group value with it, else co-consumed."""
    from trustrec.data import guess_item_group_column, item_group_matrix

    items = dataset.items
    column = column or guess_item_group_column(items)
    if column is not None and column in items.columns:
        membership, _, _ = item_group_matrix(items, column)
        groups = membership[target].indices
        if len(groups):
            same = np.flatnonzero(np.asarray(membership[:, groups].sum(1)).ravel() > 0)
            same = same[same != target]
            if len(same):
                return same, f"items sharing a {column!r} value with the target"
    users = np.unique(train.user[train.item == target])
    co = np.bincount(train.item[np.isin(train.user, users)], minlength=dataset.n_items)
    co[target] = 0
    return np.flatnonzero(co > 0)[np.argsort(-co[co > 0], kind="stable")], "items co-consumed with the target"


def fake_profiles(
    split: Split,
    attack: str,
    n_fake: int,
    targets: npt.ArrayLike,
    *,
    filler_size: int,
    seed: int = 0,
    item_group_column: str | None = None,
) -> Interactions:
    """Training interactions of ``n_fake`` fake users (indices ``n_users .. n_users + n_fake - 1``
    of ``split.dataset``), each holding every item of ``targets`` plus ``filler_size`` other
    items chosen by ``attack`` (module docstring). Timestamps lie within the training period;
    ratings are set when the training data has them. Seeded.

    Parameters
    ----------
    split : Split
        The genuine data; fake profiles follow its training part.
    attack : str
        How filler items are chosen, one of :data:`ATTACKS`.
    n_fake : int
        Number of fake users (at least 1).
    targets : array_like of int
        Item indices every fake profile holds (the items promoted).
    filler_size : int
        Items per profile besides the targets (capped at the items available).
    seed : int
        Seed of the profiles.
    item_group_column : str or None
        Item column of the ``segment`` attack; None: guessed.

    Returns
    -------
    Interactions
        The fake users' training interactions.

    Raises
    ------
    ConfigError
        If ``attack`` is unknown or ``n_fake`` is below 1.
    """
    if attack not in ATTACKS:
        raise ConfigError(f"fake_profiles: attack must be one of {ATTACKS}, got {attack!r}")
    if n_fake < 1:
        raise ConfigError(f"fake_profiles: n_fake must be >= 1, got {n_fake}")
    rng = np.random.default_rng(seed)
    ds, train = split.dataset, split.train
    n_items = ds.n_items
    targets = np.atleast_1d(np.asarray(targets, np.int64))
    pop = np.bincount(train.item, minlength=n_items).astype(np.float64)
    allowed = np.ones(n_items, bool)
    allowed[targets] = False
    m = int(min(filler_size, allowed.sum()))
    by_pop = np.lexsort((np.arange(n_items), -pop))
    by_pop = by_pop[allowed[by_pop]]
    selected_mask = np.zeros((n_fake, m), bool)  # items given the top rating
    if attack in ("random", "average"):
        weights = allowed.astype(np.float64) if attack == "random" else np.where(allowed, pop + 1e-12, 0)
        filler = _weighted_rows(rng, weights, n_fake, m)
    elif attack == "bandwagon":
        head = by_pop[: max(2 * m, int(np.ceil(0.1 * n_items)), 1)]
        filler = _weighted_rows(rng, np.isin(np.arange(n_items), head).astype(np.float64), n_fake, m)
        selected_mask[:] = True
    elif attack == "segment":
        seg, _ = _segment_items(ds, train, int(targets[0]), item_group_column)
        seg = seg[allowed[seg]]
        n_seg = min(len(seg), m)
        w = np.isin(np.arange(n_items), seg).astype(np.float64)
        part = _weighted_rows(rng, w, n_fake, n_seg) if n_seg else np.empty((n_fake, 0), np.int64)
        rest_w = allowed & ~np.isin(np.arange(n_items), seg)
        rest = _weighted_rows(rng, rest_w.astype(np.float64), n_fake, min(m - n_seg, int(rest_w.sum())))
        filler = np.concatenate([part, rest], 1)
        selected_mask = np.zeros(filler.shape, bool)
        selected_mask[:, :n_seg] = True
        m = filler.shape[1]
    else:  # sequential: popular items, then the target
        head = by_pop[: max(2 * m, int(np.ceil(0.1 * n_items)), 1)]
        w = np.where(np.isin(np.arange(n_items), head), pop + 1e-12, 0.0)
        filler = _weighted_rows(rng, w, n_fake, m)
        filler = np.take_along_axis(filler, np.argsort(pop[filler], axis=1, kind="stable"), 1)
        selected_mask[:] = True
    n_t = len(targets)
    users = np.repeat(np.arange(n_fake), m + n_t) + ds.n_users
    items = np.concatenate([filler, np.broadcast_to(targets, (n_fake, n_t))], 1)
    t_lo, t_hi = (int(train.timestamp.min()), int(train.timestamp.max())) if len(train) else (0, 1)
    start = rng.integers(t_lo, max(t_hi - (m + n_t), t_lo) + 1, n_fake)
    if attack == "sequential":  # filler in popularity order, target last
        order = np.broadcast_to(np.arange(m + n_t), (n_fake, m + n_t))
    else:  # a random order
        order = np.argsort(rng.random((n_fake, m + n_t)), 1)
    ts = start[:, None] + order
    rating = None
    if train.rating is not None:
        rating = _fake_ratings(
            train, items, np.concatenate([selected_mask, np.ones((n_fake, n_t), bool)], 1), attack, rng
        )
    return Interactions(users, items.ravel(), ts.ravel(), None if rating is None else rating.ravel())


def _weighted_rows(rng, weights: np.ndarray, n_rows: int, m: int) -> np.ndarray:
    """(n_rows, m) items drawn without replacement within a row, with probability ~ weights
    (Gumbel top-m)."""
    w = np.asarray(weights, np.float64)
    m = int(min(m, (w > 0).sum()))
    if m == 0:
        return np.empty((n_rows, 0), np.int64)
    keys = np.log(np.where(w > 0, w, 1.0))[None, :] - np.log(-np.log(rng.random((n_rows, len(w)))))
    keys[:, w <= 0] = -np.inf
    top = np.argpartition(-keys, m - 1, axis=1)[:, :m]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), 1), 1).astype(np.int64)


def _fake_ratings(train: Interactions, items: np.ndarray, top_rated: np.ndarray, attack: str, rng) -> np.ndarray:
    assert train.rating is not None  # called only for data with ratings
    r = train.rating.astype(np.float64)
    lo, hi = float(r.min()), float(r.max())
    integer = bool(np.all(r == np.round(r)))
    if attack == "average":
        sums = np.bincount(train.item, weights=r, minlength=int(items.max()) + 1)
        counts = np.bincount(train.item, minlength=len(sums))
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), r.mean())
        filler = mean[items] + rng.normal(0, r.std() / 2, items.shape)
    else:
        filler = rng.normal(r.mean(), r.std(), items.shape)
    filler = np.clip(np.round(filler) if integer else filler, lo, hi)
    return np.where(top_rated, hi, filler)


def inject_fake_users(split: Split, fake: Interactions) -> Split:
    """``split`` with ``fake`` added to the training part; fake users get new user rows
    (``user_id`` ``"__fake_<n>"``) after the genuine ones, valid and test are unchanged.

    Parameters
    ----------
    split : Split
        The genuine data.
    fake : Interactions
        Fake users' interactions, as from :func:`fake_profiles` (user indices from
        ``split.dataset.n_users`` on).

    Returns
    -------
    Split
        The poisoned split (``split`` itself when ``fake`` is empty).

    Raises
    ------
    DataError
        If the fake users reuse genuine user indices or names, an item is outside the catalog,
        or ratings are present in one of the training data and the fake interactions only.
    """
    ds = split.dataset
    if len(fake) == 0:
        return split
    if fake.user.min() < ds.n_users:
        raise DataError(
            f"inject_fake_users: fake users must have new indices >= {ds.n_users}; got {int(fake.user.min())}"
        )
    if fake.item.max() >= ds.n_items:
        raise DataError(f"inject_fake_users: item index {int(fake.item.max())} is outside the catalog")
    n_new = int(fake.user.max()) + 1 - ds.n_users
    new_ids = [f"__fake_{i}" for i in range(n_new)]
    if set(ds.user_ids.tolist()) & set(new_ids):
        raise DataError("inject_fake_users: the dataset already has users named '__fake_<n>'")
    if (split.train.rating is None) != (fake.rating is None):
        raise DataError("inject_fake_users: fake interactions must have ratings exactly when the training data has")
    return split.with_added_train(
        fake, new_user_ids=new_ids, params={"n_fake_users": n_new}, dataset_note=f"{n_new} injected fake users"
    )


class PoisoningConfig(AuditConfig):
    """Settings of the ``poisoning`` audit.

    Parameters
    ----------
    target_items : tuple of str or None
        Raw item ids to promote; None: ``n_targets`` items drawn with ``seed`` from the less
        popular half of the items seen in training.
    n_targets : int
        Number of targets drawn when ``target_items`` is None.
    attacks : tuple of str
        The attacks, see :data:`ATTACKS`.
    budgets : tuple of float
        Fake users as a share of the genuine training users, each in (0, 1).
    filler_size : int or None
        Items per fake profile besides the targets; None: the median training profile length.
    model_spec : dict or None
        What to retrain (``{"name", "params"}``); None: the audited model's own name and config.
    detector : dict or None
        The ``fake_user_detector`` arm's params (kept as an alias: a dict is the same as naming
        that arm first in ``defences``); None: not that arm.
    defences : tuple of ArmSpec
        Data-defence arms by name (or ``{"name", "params"}``; see :mod:`trustrec._arms`), e.g.
        ``["fake_user_detector"]``: each poisoned training set is screened, flagged users are
        dropped and the model is retrained, and detection precision/recall/F1 and the defended
        promotion are reported too.
    item_group_column : str or None
        The segment attack's column; None: guessed.
    max_users : int or None
        A seeded sample of genuine evaluation users.
    batch_size : int
        Queries answered per batch.
    """

    target_items: tuple[str, ...] | None = None
    n_targets: PositiveInt = 1
    attacks: tuple[Attack, ...] = ATTACKS
    budgets: tuple[float, ...] = (0.01, 0.03, 0.05)
    filler_size: PositiveInt | None = None
    model_spec: ModelSpecField = None
    detector: dict | None = None
    defences: tuple[ArmSpec, ...] = ()
    item_group_column: str | None = None
    batch_size: PositiveInt = 512

    @field_validator("budgets")
    @classmethod
    def _check_budgets(cls, values):
        if not values:
            raise ValueError("give at least one budget")
        bad = [v for v in values if not 0 < v < 1]
        if bad:
            raise ValueError(f"budgets are shares of the genuine users and must be in (0, 1); got {bad}")
        return tuple(sorted({float(v) for v in values}))

    @field_validator("attacks")
    @classmethod
    def _check_attacks(cls, values):
        if not values:
            raise ValueError(f"give at least one attack of {ATTACKS}")
        return tuple(dict.fromkeys(values))

    @field_validator("target_items")
    @classmethod
    def _check_targets(cls, values):
        if values is not None and not values:
            raise ValueError("target_items is empty; give raw item ids or leave it unset (n_targets)")
        return None if values is None else tuple(str(v) for v in dict.fromkeys(values))

    @field_validator("detector")
    @classmethod
    def _check_detector(cls, value):
        if value is None:
            return None
        return check_arm_specs([{"name": "fake_user_detector", "params": value}], "data_defence")[0].params

    @field_validator("defences", mode="before")
    @classmethod
    def _check_defences(cls, values):
        return check_arm_specs(values, "data_defence")

    @model_validator(mode="after")
    def _one_detector(self):
        if self.detector is not None and any(a.name == "fake_user_detector" for a in self.defences):
            raise ValueError("give the fake_user_detector once: detector (its params) or defences, not both")
        return self

    def defence_arms(self) -> tuple[ArmSpec, ...]:
        """The data-defence arms to measure: ``detector`` (the alias) first, then ``defences``."""
        alias = () if self.detector is None else (ArmSpec(name="fake_user_detector", params=self.detector),)
        return alias + self.defences


@register_audit
class PoisoningAudit(RetrainingAudit):
    """Data poisoning by fake-user injection, retraining, and target promotion on genuine users
    (module docstring)."""

    name: ClassVar[str] = "poisoning"
    dimension: ClassVar[str] = "robustness"
    description: ClassVar[str] = (
        "fake-user injection (random, average, bandwagon, segment, sequential) at several "
        "budgets, retraining, and target HR@K / rank / success rate on genuine users"
    )
    config: PoisoningConfig
    config_class = PoisoningConfig

    # -- pieces ---------------------------------------------------------------------------------

    def choose_targets(self, split: Split) -> np.ndarray:
        """Target item indices: the configured raw ids, or ``n_targets`` seeded draws from the
        less popular half of the items with training interactions."""
        c = self.config
        ds = split.dataset
        if c.target_items is not None:
            return target_item_indices(ds, c.target_items, self.name)
        pop = np.bincount(split.train.item, minlength=ds.n_items)
        seen = np.flatnonzero(pop > 0)
        if len(seen) < 2 * c.n_targets:
            raise ConfigError(
                f"{self.name}: dataset '{ds.name}' has {len(seen)} items with training data, "
                f"too few to draw {c.n_targets} unpopular targets; give target_items"
            )
        order = seen[np.lexsort((seen, pop[seen]))]
        pool = order[: len(order) // 2]
        return np.sort(np.random.default_rng(c.seed).choice(pool, c.n_targets, replace=False))

    def _measure(self, model, queries, targets, eval_targets, k: int):
        from trustrec.eval import distinct_counts, hits_matrix, ndcg

        c = self.config
        ranks = target_ranks(model, queries, targets, batch_size=c.batch_size)
        top = _recommend(model, queries, k, c.batch_size)
        in_top = (top[:, :, None] == targets[None, None, :]).any(1)  # (n, t)
        known = ~np.isnan(ranks)
        n_known = known.sum(1)
        some = n_known > 0
        hr_user = np.where(some, (in_top & known).sum(1) / np.maximum(n_known, 1), np.nan)
        rank_user = np.where(some, np.where(known, ranks, 0.0).sum(1) / np.maximum(n_known, 1), np.nan)
        success = np.where(known.any(1), (in_top & known).any(1), np.nan).astype(np.float64)
        acc = ndcg(hits_matrix(top, eval_targets, model.n_items_), distinct_counts(eval_targets))
        return {"hr": hr_user, "rank": rank_user, "success": success, "ndcg": acc}

    # -- run -------------------------------------------------------------------------------------
    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        k = c.k
        split, queries = inputs.split, inputs.queries
        eval_targets = inputs.eval_set.targets
        spec = self._spec(inputs.model)
        targets = self.choose_targets(split)
        genuine = len(np.unique(split.train.user))
        lengths = np.bincount(split.train.user, minlength=split.dataset.n_users)
        filler = c.filler_size or max(1, int(np.median(lengths[lengths > 0])))
        filler = min(filler, split.dataset.n_items - len(targets))
        clean, t_clean = fit_spec(spec, split, seed=c.seed, progress=inputs.progress)
        base = self._measure(clean, queries, targets, eval_targets, k)
        defences = [build_arm(spec, "data_defence") for spec in c.defence_arms()]
        estimates: dict[str, Estimate] = {}
        est = self._estimate_set(base, None, f"clean retrain of {spec.name}", 0)
        estimates[f"target_hr@{k} [clean]"] = est["hr"]
        estimates["target_mean_rank [clean]"] = est["rank"]
        rows = [self._row("clean", 0.0, 0, base, base, t_clean)]
        warnings: list[str] = []
        fit_times = {"clean": t_clean}
        executor = resolve_executor(inputs.executor)
        cell = _PoisoningCell(
            self,
            split,
            spec,
            targets,
            filler,
            genuine,
            queries,
            eval_targets,
            base,
            defences,
            progress=inputs.progress and isinstance(executor, SerialExecutor),
        )
        grid = [
            (setting, attack, budget)
            for setting, (attack, budget) in enumerate(((a, b) for a in c.attacks for b in c.budgets), start=1)
        ]
        for label, row, cell_estimates, t_fit in executor.map(cell, grid):
            fit_times[label] = t_fit
            estimates.update(cell_estimates)
            rows.append(row)
        table = pd.DataFrame(rows)
        evidence = {
            "by_attack": table,
            "targets": pd.DataFrame(
                {
                    "item": targets,
                    "item_id": split.dataset.item_ids[targets],
                    "train_popularity": inputs.item_popularity[targets],
                }
            ),
        }
        curve = table[table.attack != "clean"]
        plots = [
            Plot(
                "line",
                "by_attack_curve",
                "budget",
                "target_hr",
                f"target HR@{k} vs attack budget",
                series="attack",
                x_label="fake users / genuine users",
                y_label=f"target HR@{k}",
            ),
            Plot(
                "line",
                "by_attack_curve",
                "budget",
                "success_rate",
                "attack success rate vs budget",
                series="attack",
                x_label="fake users / genuine users",
                y_label="success rate",
            ),
            Plot(
                "line",
                "by_attack_curve",
                "budget",
                "mean_rank_change",
                "mean target rank change vs budget",
                series="attack",
                x_label="fake users / genuine users",
                y_label="rank gained",
            ),
        ]
        evidence["by_attack_curve"] = curve.reset_index(drop=True)
        best = curve.sort_values(["target_hr", "mean_rank_change"], ascending=False).iloc[0] if len(curve) else None
        summary = (
            f"{spec.name}, {len(targets)} target(s), {len(c.attacks)} attacks x {len(c.budgets)} budgets; "
            f"clean target HR@{k} {np.nanmean(base['hr']):.4f}"
        )
        if best is not None:
            summary += (
                f"; strongest: {best.attack} @{best.budget:g} -> HR@{k} {best.target_hr:.4f}, "
                f"success rate {best.success_rate:.3f}, mean rank {best.mean_rank:.1f}"
            )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "model_spec": spec.model_dump(mode="json"),
                "target_items": targets.tolist(),
                "filler_size": filler,
                "n_genuine_users": genuine,
                "fit_seconds": fit_times,
            },
        )

    _est_names: ClassVar[dict] = {
        "hr": "target_hr@{k}",
        "hr_lift": "target_hr@{k} lift",
        "rank": "target_mean_rank",
        "rank_change": "target_rank_change",
        "success": "success_rate",
        "ndcg_drop": "ndcg@{k}_drop",
    }

    def _estimate_set(self, after, before, what: str, seed: int) -> dict[str, Estimate]:
        k = self.config.k
        out = {}
        for j, (key, desc) in enumerate(
            (
                ("hr", f"share of (genuine user, target) pairs with the target in the top-{k}"),
                ("rank", "mean 1-based full-ranking rank of the target (history masked)"),
                ("success", f"share of genuine users with a target in their top-{k}"),
            )
        ):
            out[key] = mean_estimate(
                after[key], n_boot=self.config.n_boot, seed=self.config.seed + seed + j, description=f"{desc}; {what}"
            )
        if before is not None:
            n_boot, s0 = self.config.n_boot, self.config.seed + seed
            out["hr_lift"] = paired_estimate(
                after["hr"],
                before["hr"],
                n_boot=n_boot,
                seed=s0 + 4,
                description=f"target HR@{k} poisoned minus clean, per user; {what}",
            )
            out["rank_change"] = paired_estimate(
                before["rank"],
                after["rank"],
                n_boot=n_boot,
                seed=s0 + 5,
                description=f"clean minus poisoned mean target rank (> 0 = promoted); {what}",
            )
            out["ndcg_drop"] = paired_estimate(
                before["ndcg"],
                after["ndcg"],
                n_boot=n_boot,
                seed=s0 + 6,
                description=f"NDCG@{k} on genuine users' own targets, clean minus poisoned; {what}",
            )
        return out

    @staticmethod
    def _row(attack, budget, n_fake, after, base, t_fit) -> dict:
        return {
            "attack": attack,
            "budget": budget,
            "n_fake_users": n_fake,
            "target_hr": float(np.nanmean(after["hr"])),
            "success_rate": float(np.nanmean(after["success"])),
            "mean_rank": float(np.nanmean(after["rank"])),
            "mean_rank_change": float(np.nanmean(base["rank"]) - np.nanmean(after["rank"])),
            "ndcg": float(np.nanmean(after["ndcg"])),
            "fit_seconds": float(t_fit),
        }


class _PoisoningCell:
    """One (attack, budget) cell of the poisoning grid, as an executor call: inject fake users,
    retrain, measure (and each data-defence arm); returns the cell's label, its ``by_attack`` row,
    its estimates in order and the fit seconds. Everything it holds pickles (for Ray)."""

    def __init__(
        self, audit, split, spec, targets, filler, genuine, queries, eval_targets, base, defences, *, progress: bool
    ):
        self.audit, self.split, self.spec, self.targets = audit, split, spec, targets
        self.filler, self.genuine, self.queries, self.eval_targets = filler, genuine, queries, eval_targets
        self.base, self.defences, self.progress = base, [(arm.label, d) for arm, d in defences], progress

    def __call__(self, cell) -> tuple:
        import copy

        setting, attack, budget = cell
        audit, split, spec, targets, base, genuine = (
            self.audit,
            self.split,
            self.spec,
            self.targets,
            self.base,
            self.genuine,
        )
        c = audit.config
        k = c.k
        n_fake = max(1, int(round(budget * genuine)))  # noqa: RUF046  # round() of a numpy float is a float under numpy < 2
        fake = fake_profiles(
            split,
            attack,
            n_fake,
            targets,
            filler_size=self.filler,
            seed=c.seed + setting,
            item_group_column=c.item_group_column,
        )
        poisoned = inject_fake_users(split, fake)
        model, t_fit = fit_spec(spec, poisoned, seed=c.seed, progress=self.progress)
        after = audit._measure(model, self.queries, targets, self.eval_targets, k)
        label = f"{attack} @{budget:g}"
        estimates: dict[str, Estimate] = {}
        row = audit._row(attack, budget, n_fake, after, base, t_fit)
        for name, e in audit._estimate_set(
            after, base, f"{attack} attack, {n_fake} fake users ({budget:.0%} of {genuine})", setting * 10
        ).items():
            estimates[f"{audit._est_names[name].format(k=k)} [{label}]"] = e
        single = len(self.defences) == 1
        for j, (arm_label, defence) in enumerate(self.defences):
            is_fake = np.zeros(poisoned.dataset.n_users, bool)
            is_fake[split.dataset.n_users :] = True
            fitted = copy.deepcopy(defence).fit(poisoned)  # a fresh, unfitted copy per cell
            report = fitted.report(is_fake)
            defended_split = fitted.drop_flagged(poisoned)
            defended, t_def = fit_spec(spec, defended_split, seed=c.seed, progress=self.progress)
            d = audit._measure(defended, self.queries, targets, self.eval_targets, k)
            tag = "defended" if single else f"defended_{arm_label}"
            row.update({f"{arm_label}_{m}": report[m] for m in ("precision", "recall", "f1", "n_flagged")})
            row.update(
                {
                    f"{tag}_target_hr": np.nanmean(d["hr"]),
                    f"{tag}_success_rate": np.nanmean(d["success"]),
                    f"{tag}_ndcg": np.nanmean(d["ndcg"]),
                    f"{tag}_fit_seconds": t_def,
                }
            )
            what = getattr(fitted, "description", arm_label)
            for m in ("precision", "recall", "f1"):
                estimates[f"{arm_label}_{m} [{label}]"] = Estimate(
                    report[m],
                    n=int(is_fake.sum()),
                    description=f"{what}: {m} of the flags against the {int(is_fake.sum())} injected users",
                )
            lift = f"target_hr@{k} lift defended" + ("" if single else f" by {arm_label}")
            estimates[f"{lift} [{label}]"] = paired_estimate(
                d["hr"],
                base["hr"],
                n_boot=c.n_boot,
                seed=c.seed + setting * 10 + 7 + 1000 * j,
                description=f"target HR@{k} after dropping flagged users and retraining, minus clean",
            )
        return label, row, estimates, t_fit
