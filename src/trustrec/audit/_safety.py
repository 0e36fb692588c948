"""Safety audits: feedback loops (filter bubbles, homogenisation, popularity concentration).

``feedback_loop`` simulates ``rounds`` rounds of *recommend -> simulated users accept some
items -> the accepted items join the training data -> retrain* for the audit's evaluation users,
and tracks, round by round, what the model shows them.

User model (fixed for the whole simulation)
    A preference model (``user_model``, default EASE) is fitted once on **all** interactions of
    the dataset (train, valid and test: preferences the recommender never saw). For each simulated
    user its scores over the catalog are turned into percentile ranks ``q`` (1 = the user's most
    preferred item, 0 = the least), and a recommended item is accepted with probability
    ``p = accept_max * q ** sharpness`` (default ``0.5 * q ** 20``: an item in the user's top 1%
    is accepted about 41% of the time, one at the median practically never). This calibration is
    scale-free (it reads only the order of the user model's scores). Draws are seeded. A user's
    own held-out targets (the audited part) are never accepted, so accuracy on them stays a fair
    held-out measure.

Each round
    Accepted items are appended to the user's training interactions as the newest events (after
    every training timestamp, in list order; the top rating when the data have ratings) and a
    fresh copy of the model is retrained from its spec (``model_spec`` or the audited model's own
    name and config) with the audit's seed. Round 0 is the clean retrain.

Tracked per round, on the simulated users' top-K lists
    catalog coverage, exposure Gini, mean popularity of the recommended items (in the original
    training counts), tail share (APLT; tail = outside the top 20% of items by original
    popularity), head/tail exposure shares, homogenisation (mean Jaccard@K between the lists of
    seeded random pairs of users), the acceptance rate, the Gini of the training interactions
    over items, and NDCG@K / HR@K on the held-out targets.

Held-out accuracy (``ndcg@K`` / ``hr@K`` in the table and the ``ndcg@K change`` estimate)
    Every round ranks the **same** held-out targets with the **same** mask: only the user's
    original history (round 0) is excluded; the accepted items stay rankable. The query is the
    user's current history, so the retrained model reads what it would read in deployment. (The
    lists users are *shown*, above, exclude every item they already have, accepted ones
    included: a system does not re-recommend what was just taken.) Masking accepted items in the
    accuracy lists too would raise accuracy round after round by itself, since the held-out item
    is never accepted and each accepted item leaves a slot above it; with the fixed mask a model
    whose scores do not change shows flat accuracy.

Mitigation
    Re-ranker arms are named, never imported (:mod:`trustrec._arms`): with
    ``mitigation="exposure"`` (or ``rerankers=["exposure"]``) a second arm runs the same loop with
    the retrained model wrapped by the ``exposure`` re-ranker arm (popularity-aware xQuAD,
    :class:`trustrec.mitigate.ExposureReranker`, at ``mitigation_strength``) and the curves are
    compared; any registered re-ranker arm (``reranker`` kind) runs the same way. Estimates: last round minus round 0 for
    each tracked figure and arm (CIs over users for the per-user figures).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator

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
from trustrec.data import Interactions, QueryBatch
from trustrec.errors import ConfigError
from trustrec.models.agents import PreferenceSimulator

__all__ = ["FeedbackLoopAudit", "FeedbackLoopConfig"]


class FeedbackLoopConfig(AuditConfig):
    """Settings of the ``feedback_loop`` audit.

    Parameters
    ----------
    rounds : int
        Retraining rounds after round 0.
    user_model : dict
        The preference model (``{"name", "params"}``) fitted on all interactions.
    accept_max, sharpness : float
        The calibration ``p = accept_max * q ** sharpness`` (module docstring).
    model_spec : dict or None
        What to retrain; None: the audited model's name and config.
    mitigation : {"exposure"} or None
        Kept as an alias: the same as naming that arm first in ``rerankers``; None: none.
    rerankers : tuple of ArmSpec
        Re-ranker arms by name (or ``{"name", "params"}``), each a mitigated arm of the loop.
    mitigation_strength : float
        The re-rankers' λ.
    n_pairs : int
        User pairs for homogenisation.
    max_users : int or None
        Simulated users (a seeded sample of the evaluation users; default 500).
    batch_size : int
        Queries answered per batch.
    """

    rounds: PositiveInt = 5
    user_model: ModelSpecField = Field(default_factory=lambda: {"name": "ease", "params": {}})
    accept_max: float = Field(0.5, gt=0, le=1)
    sharpness: float = Field(20.0, gt=0)
    model_spec: ModelSpecField = None
    mitigation: Literal["exposure"] | None = None
    rerankers: tuple[ArmSpec, ...] = ()
    mitigation_strength: float = Field(0.5, ge=0, le=1)
    n_pairs: PositiveInt = 2000
    max_users: PositiveInt | None = 500
    batch_size: PositiveInt = 512

    @field_validator("rerankers", mode="before")
    @classmethod
    def _check_rerankers(cls, values):
        return check_arm_specs(values, "reranker")

    def reranker_arms(self) -> tuple[ArmSpec, ...]:
        """The re-ranker arms: ``mitigation`` (the alias) first, then ``rerankers``."""
        alias = () if self.mitigation is None else (ArmSpec(name=self.mitigation),)
        out = alias + self.rerankers
        names = [a.name for a in out]
        if len(set(names)) < len(names):
            raise ConfigError(
                f"{self.__class__.__name__}: a re-ranker arm is named twice ({names}); give it in "
                "mitigation or rerankers, not both"
            )
        return out


def _lists(model, queries: QueryBatch, k: int, batch_size: int, *, exclude_seen: bool = True) -> np.ndarray:
    parts = [model.recommend(b, k, exclude_seen=exclude_seen).items for b in queries.batches(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, k), np.int64)


def _allowed_items(histories, n_items: int):
    """Per user, every catalog item outside ``histories`` (a Ragged), as candidate lists."""
    from trustrec.data import Ragged

    allowed = ~histories.to_dense_mask(n_items)
    _rows, cols = np.nonzero(allowed)
    return Ragged(np.concatenate([[0], np.cumsum(allowed.sum(1))]), cols)


@register_audit
class FeedbackLoopAudit(RetrainingAudit):
    """Repeated recommend -> accept -> retrain rounds with a simulated user model (module docstring)."""

    name: ClassVar[str] = "feedback_loop"
    dimension: ClassVar[str] = "safety"
    description: ClassVar[str] = (
        "feedback-loop simulation: coverage, exposure Gini, popularity, homogenisation, "
        "head/tail exposure and held-out accuracy over rounds of retraining"
    )
    config: FeedbackLoopConfig
    config_class = FeedbackLoopConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if len(inputs.eval_set) < 2:
            return f"fewer than 2 users with a target in the '{inputs.part}' part"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import (
            aplt,
            average_popularity,
            catalog_coverage,
            distinct_counts,
            exposure_gini,
            gini,
            hit_rate,
            hits_matrix,
            jaccard_at_k,
            long_tail_mask,
            ndcg,
        )
        from trustrec.models import FitOptions, ModelSpec

        c = self.config
        k = c.k
        split, ds = inputs.split, inputs.dataset
        users = inputs.queries.users
        targets = inputs.eval_set.targets
        n_items, n_users = ds.n_items, len(users)
        spec = self._spec(inputs.model)
        # the user model: preferences from every interaction, fitted once
        prefs = ModelSpec.model_validate(c.user_model).build().fit(ds, FitOptions(seed=c.seed, progress=False))
        full = QueryBatch(users, ds.histories().take(users))
        # held-out accuracy: the same targets and the same mask (the original history) every round
        fixed_mask = _allowed_items(inputs.queries.histories, n_items)
        accept = PreferenceSimulator(prefs, c.accept_max, c.sharpness).acceptance_matrix(full, c.batch_size)
        accept[targets.row_ids(), targets.values] = 0.0  # held-out targets stay held out
        pop0 = inputs.item_popularity.astype(np.float64)
        tail = long_tail_mask(pop0)
        n_rel = distinct_counts(targets)
        rng_pairs = np.random.default_rng(c.seed + 1)
        n_pairs = min(c.n_pairs, n_users * (n_users - 1) // 2)
        a = rng_pairs.integers(0, n_users, n_pairs)
        b = (a + rng_pairs.integers(1, n_users, n_pairs)) % n_users  # never the same user
        rerankers = {
            f"model + {arm.label}": (arm, reranker)
            for arm, reranker in (build_arm(a, "reranker") for a in c.reranker_arms())
        }
        arms = ["model", *rerankers]
        rows, per_user_first, per_user_last, fit_seconds = [], {}, {}, {}
        t_max = int(
            max(
                split.train.timestamp.max(initial=0),
                split.valid.timestamp.max(initial=0),
                split.test.timestamp.max(initial=0),
            )
        )
        top_rating = None if split.train.rating is None else float(split.train.rating.max())
        for arm in arms:
            rng = np.random.default_rng(c.seed)
            current = split
            for rnd in range(c.rounds + 1):
                model, fit_seconds[f"{arm} round {rnd}"] = fit_spec(
                    spec, current, seed=c.seed, progress=inputs.progress
                )
                if arm != "model":
                    model = rerankers[arm][1].wrap(model, current, strength=c.mitigation_strength)
                eval_set = current.eval_set(inputs.part)
                rows_of = np.searchsorted(eval_set.queries.users, users)
                queries = eval_set.queries[rows_of]
                top = _lists(model, queries, k, c.batch_size)
                valid = top >= 0
                p = np.where(valid, accept[np.arange(n_users)[:, None], np.where(valid, top, 0)], 0.0)
                took = (rng.random(top.shape) < p) & valid
                held = _lists(model, queries.with_candidates(fixed_mask), k, c.batch_size, exclude_seen=False)
                hits = hits_matrix(held, targets, n_items)
                per_user = {
                    "ndcg": ndcg(hits, n_rel),
                    "hr": hit_rate(hits, n_rel),
                    "avg_popularity": average_popularity(top, pop0),
                    "aplt": aplt(top, tail),
                    "accepted": took.sum(1).astype(np.float64),
                }
                train_pop = np.bincount(current.train.item, minlength=n_items)
                exposure = np.bincount(top[valid], minlength=n_items)
                rows.append(
                    {
                        "arm": arm,
                        "round": rnd,
                        "coverage": catalog_coverage(top, n_items),
                        "exposure_gini": exposure_gini(top, n_items),
                        "avg_popularity": float(per_user["avg_popularity"].mean()),
                        "tail_share": float(per_user["aplt"].mean()),
                        "head_exposure_share": float(exposure[~tail].sum() / max(exposure.sum(), 1)),
                        "tail_exposure_share": float(exposure[tail].sum() / max(exposure.sum(), 1)),
                        "homogenisation": float(jaccard_at_k(top[a], top[b]).mean()) if n_pairs else np.nan,
                        "acceptance_rate": float(took.sum() / max(valid.sum(), 1)),
                        "training_gini": gini(train_pop),
                        f"ndcg@{k}": float(per_user["ndcg"].mean()),
                        f"hr@{k}": float(per_user["hr"].mean()),
                        "n_accepted": int(took.sum()),
                        "n_train": len(current.train),
                    }
                )
                if rnd == 0:
                    per_user_first[arm] = per_user
                per_user_last[arm] = per_user
                if rnd == c.rounds:
                    break
                r_idx, pos = np.nonzero(took)
                acc = Interactions(
                    users[r_idx],
                    top[r_idx, pos],
                    t_max + 1 + rnd * (k + 1) + pos,
                    None if top_rating is None else np.full(len(r_idx), top_rating),
                )
                current = current.with_added_train(acc)
        table = pd.DataFrame(rows)
        estimates = self._estimates(table, per_user_first, per_user_last, arms)
        figures = ["coverage", "exposure_gini", "avg_popularity", "homogenisation", "tail_exposure_share", f"ndcg@{k}"]
        plots = tuple(
            Plot(
                "line",
                "rounds",
                "round",
                f,
                f"{f} over feedback rounds",
                series="arm",
                x_label="round (0 = clean)",
                y_label=f,
            )
            for f in figures
        )
        first, last = (
            table[(table.arm == "model") & (table["round"] == 0)].iloc[0],
            table[table.arm == "model"].iloc[-1],
        )
        summary = (
            f"{spec.name}, {n_users} simulated users, {c.rounds} rounds: coverage {first.coverage:.3f} -> "
            f"{last.coverage:.3f}, exposure Gini {first.exposure_gini:.3f} -> {last.exposure_gini:.3f}, "
            f"homogenisation {first.homogenisation:.3f} -> {last.homogenisation:.3f}, NDCG@{k} "
            f"{first[f'ndcg@{k}']:.4f} -> {last[f'ndcg@{k}']:.4f}"
        )
        for name in arms[1:]:
            mit = table[table.arm == name].iloc[-1]
            summary += (
                f"; with {rerankers[name][0].title}: coverage {mit.coverage:.3f}, Gini "
                f"{mit.exposure_gini:.3f} at the last round"
            )
        return self._result(
            estimates,
            evidence={"rounds": table},
            plots=plots,
            summary=summary,
            settings={
                "model_spec": spec.model_dump(mode="json"),
                "arms": arms,
                "calibration": f"p = {c.accept_max:g} * q ** {c.sharpness:g}, q = percentile "
                "rank of the user model's score",
                "held_out_accuracy": "same held-out targets every round; only the original "
                "training history masked (accepted items stay rankable); "
                "query = the user's current history",
                "fit_seconds": fit_seconds,
            },
        )

    def _estimates(self, table, first, last, arms) -> dict[str, Estimate]:
        from trustrec.eval import paired_estimate

        c = self.config
        k = c.k
        out = {}
        for j, arm in enumerate(arms):
            part = table[table.arm == arm]
            r0, rl = part.iloc[0], part.iloc[-1]
            tag = f"[{arm}]"
            for fig, desc in (
                ("coverage", "catalog coverage of the simulated users' top-K"),
                ("exposure_gini", "Gini of item exposure in the top-K lists"),
                ("homogenisation", "mean Jaccard@K between random pairs of users' lists"),
                ("tail_exposure_share", "share of exposure given to long-tail items"),
                ("training_gini", "Gini of the training interactions over items"),
            ):
                out[f"{fig} change {tag}"] = Estimate(
                    float(rl[fig] - r0[fig]),
                    n=len(first[arm]["ndcg"]),
                    description=f"{desc}: round {c.rounds} minus round 0 (catalog-level, no CI)",
                )
            for i, (fig, name, desc) in enumerate(
                (
                    ("ndcg", f"ndcg@{k} change", f"held-out NDCG@{k} (same targets, only the original history masked)"),
                    (
                        "avg_popularity",
                        "avg_popularity change",
                        "mean original-training popularity of recommended items",
                    ),
                )
            ):
                out[f"{name} {tag}"] = paired_estimate(
                    last[arm][fig],
                    first[arm][fig],
                    n_boot=c.n_boot,
                    seed=c.seed + 10 * j + i,
                    description=f"{desc}: round {c.rounds} minus round 0, per user",
                )
        return out
