"""Membership inference (``membership_inference``, retrains)
The users with at least 2 training interactions are split by seed into *members* (a fresh
copy of the model is trained on their training sequences only), *non-members* (held out, same
distribution) and, for a retrained reference, *reference users*. Two attacks score each
member and non-member (higher = "member"): the **loss attack** ``-loss_target`` and the
**reference-calibrated attack** ``loss_reference - loss_target`` (Carlini et al., S&P 2022:
subtract the loss of a model that never saw the user), where the reference is a copy of the
model trained on the disjoint reference users, or for the generative LLM the untuned base LLM
(its LoRA adapters disabled, or the base checkpoint for a fully fine-tuned model). Reported:
ROC-AUC with a stratified bootstrap CI, TPR at 1% and 0.1% FPR (the largest TPR at an FPR at
most that; not reported, with a warning, when there are fewer than ``1/FPR`` non-members, since
the threshold would rest on less than one non-member), the ROC curves, and the accuracy
(NDCG@K) of the member-trained model on its members' held-out targets.
**Canary exposure** (Carlini et al., USENIX Security 2019): ``n_canaries`` random item
sequences (distinct items, ``canary_length``) are added to the member training data as new
users (``canary_repeats`` copies each) and ``n_canaries`` more are drawn and never inserted
(controls). Each canary is ranked by its loss among ``n_candidates`` random sequences of the
same length (rank 1 = lowest loss, ties count half); exposure = ``log2(n_candidates + 1) -
log2(rank)``, at most ``log2(n_candidates + 1)``, about 1.44 bits on average for a sequence
the model never saw. **Training defences** are arms by name (``training_defences``; see
:mod:`trustrec._arms`), never imported: for each, the member (and canary) training data go
through the arm, the model is retrained, and the attacks are run again on the *true*
sequences: the AUC drop, the canary exposure and the NDCG cost. **Randomised response**
(``noise_epsilons``, an alias of the ``randomised_response`` arm at each epsilon): the
training items go through :func:`trustrec.mitigate.randomised_response`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field, PositiveInt, field_validator, model_validator

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
from trustrec.audit.privacy._common import (
    _can_score,
    _default_positions,
    _has_own_loss,
    _ndcg,
    _sample,
    difference,
    next_item_losses,
)
from trustrec.data import Interactions, Ragged, Split
from trustrec.errors import ConfigError, DataError
from trustrec.eval import (  # roc_auc, roc_points, tpr_at_fpr: re-exported, they lived here
    auc_rows,
    mean_estimate,
    paired_estimate,
    percentile_ci,
    roc_auc,
    roc_points,
    stratified_bootstrap_rows,
    tpr_at_fpr,
)

__all__ = ["FPRS", "MembershipInferenceAudit", "MembershipInferenceConfig", "canary_exposure", "random_sequences"]


FPRS = (0.01, 0.001)


def canary_exposure(canary_losses: npt.ArrayLike, candidate_losses: npt.ArrayLike) -> np.ndarray:
    """Exposure (Carlini et al. 2019) of each canary among ``candidate_losses`` of random
    sequences: ``log2(n_candidates + 1) - log2(rank)``, rank 1 = lower loss than every candidate,
    a candidate with an equal loss counting half.

    Parameters
    ----------
    canary_losses : array_like of float
        (n_canaries,) the model's loss of each canary.
    candidate_losses : array_like of float
        Losses of random sequences of the same length (NaN ones are ignored).

    Returns
    -------
    ndarray
        (n_canaries,) exposures in bits; NaN where the canary's loss is NaN.
    """
    c = np.asarray(canary_losses, np.float64)[:, None]
    cand = np.asarray(candidate_losses, np.float64)
    cand = cand[~np.isnan(cand)][None, :]
    rank = 1.0 + (cand < c).sum(1) + 0.5 * (cand == c).sum(1)
    out = np.log2(cand.shape[1] + 1) - np.log2(rank)
    return np.where(np.isnan(c[:, 0]), np.nan, out)


def random_sequences(n: int, length: int, n_items: int, rng: np.random.Generator) -> Ragged:
    """``n`` sequences of ``length`` distinct items drawn uniformly from the catalog.

    Parameters
    ----------
    n : int
        Number of sequences.
    length : int
        Items per sequence, all distinct.
    n_items : int
        Number of items in the catalog.
    rng : numpy.random.Generator
        The random generator.

    Returns
    -------
    Ragged
        ``n`` rows of ``length`` item indices.

    Raises
    ------
    ConfigError
        If ``length`` exceeds ``n_items``.
    """
    if length > n_items:
        raise ConfigError(
            f"random sequences of {length} distinct items need at least that many items; the catalog has {n_items}"
        )
    if n_items <= 50 * length:  # small catalog: random top-length keys
        keys = rng.random((n, n_items))
        items = np.argpartition(keys, length - 1, axis=1)[:, :length] if length < n_items else np.argsort(keys, axis=1)
        order = np.argsort(np.take_along_axis(keys, items, 1), axis=1)  # a random order within the row
        items = np.take_along_axis(items, order, 1)
    else:  # large catalog: redraw rows with repeats
        items = rng.integers(0, n_items, (n, length))
        while True:
            s = np.sort(items, axis=1)
            bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(1))
            if not len(bad):
                break
            items[bad] = rng.integers(0, n_items, (len(bad), length))
    return Ragged(np.arange(n + 1, dtype=np.int64) * length, items.ravel().astype(np.int64))


# -- shared pieces ---------------------------------------------------------------------------------
def _train_only(split: Split, users: np.ndarray, note: str) -> Split:
    return split.with_train(split.train.select(np.isin(split.train.user, users)), note=note)


def _with_canaries(split: Split, canaries: Ragged, repeats: int) -> tuple[Split, np.ndarray]:
    """``split`` with each canary sequence added ``repeats`` times to the training part as new
    users ``__canary_<i>_<r>`` (after the dataset's users; timestamps in the training period).
    Returns the split and the canary users' indices."""
    ds = split.dataset
    n = len(canaries) * repeats
    if n == 0:
        return split, np.empty(0, np.int64)
    new_ids = [f"__canary_{i}_{r}" for i in range(len(canaries)) for r in range(repeats)]
    if set(ds.user_ids.tolist()) & set(new_ids):
        raise DataError("membership inference: the dataset already has users named '__canary_<i>_<r>'")
    seqs = canaries.take(np.repeat(np.arange(len(canaries)), repeats))
    new_users = ds.n_users + np.arange(n)
    rows = seqs.row_ids()
    t0 = int(split.train.timestamp.min()) if len(split.train) else 0
    ts = t0 + np.arange(len(seqs.values)) - seqs.indptr[:-1][rows]
    rating = None
    if split.train.rating is not None:
        rating = np.full(len(seqs.values), float(split.train.rating.max()), np.float32)
    inter = Interactions(new_users[rows], seqs.values, ts, rating)
    return split.with_added_train(inter, new_user_ids=new_ids, dataset_note=f"{n} canary users"), new_users


# -- membership inference --------------------------------------------------------------------------
class MembershipInferenceConfig(AuditConfig):
    """Settings of the ``membership_inference`` audit.

    Parameters
    ----------
    model_spec : dict or None
        What to train (``{"name": ..., "params": {...}}``); None: the audited model's own name
        and config.
    reference : {"auto", "retrain", "base_llm", "none"}
        The reference model of the attack: ``auto`` (the untuned base LLM for the generative
        recommender, else a retrained copy), ``retrain`` (``reference_spec`` trained on the
        ``reference_share`` of users), ``base_llm`` or ``none`` (loss attack only).
    reference_spec : dict or None
        What the ``retrain`` reference is; None: the target's spec.
    reference_share : float
        Share of users the retrained reference is trained on (between 0 and 1).
    positions : int or None
        Next-item predictions per user in its loss; None: the generative recommender's
        ``targets_per_user``, else 10.
    n_canaries : int
        Canaries inserted (0: none), plus as many controls.
    canary_length : int
        Items per canary (at least 2).
    canary_repeats : int
        Copies of each canary inserted.
    n_candidates : int
        Random sequences each canary is ranked among (its exposure).
    noise_epsilons : tuple of float
        Randomised-response settings to retrain with (each the ``randomised_response`` arm at
        that epsilon, run first; inf: no noise).
    training_defences : tuple of ArmSpec
        Training-defence arms by name or ``{"name", "params"}``.
    max_users : int or None
        Attacked users (a seeded half from members, half from non-members; all members are
        trained on).
    batch_size : int
        Queries scored per batch.
    """

    model_spec: ModelSpecField = None
    reference: Literal["auto", "retrain", "base_llm", "none"] = "auto"
    reference_spec: ModelSpecField = None
    reference_share: float = Field(1 / 3, gt=0, lt=1)
    positions: PositiveInt | None = None
    n_canaries: int = Field(10, ge=0)
    canary_length: int = Field(10, ge=2)
    canary_repeats: PositiveInt = 1
    n_candidates: PositiveInt = 500
    noise_epsilons: tuple[float, ...] = ()
    training_defences: tuple[ArmSpec, ...] = ()
    batch_size: PositiveInt = 256

    @field_validator("training_defences", mode="before")
    @classmethod
    def _check_defences(cls, values):
        return check_arm_specs(values, "training_defence")

    @model_validator(mode="after")
    def _distinct_defences(self):
        self.defence_arms()
        return self

    def defence_arms(self) -> tuple[ArmSpec, ...]:
        """The training-defence arms: randomised response at each of ``noise_epsilons`` (the
        alias), then ``training_defences``."""
        arms = (
            tuple(ArmSpec(name="randomised_response", params={"epsilon": eps}) for eps in self.noise_epsilons)
            + self.training_defences
        )
        if any(a == b for i, a in enumerate(arms) for b in arms[:i]):
            raise ConfigError(
                "membership_inference: a training defence is given twice (noise_epsilons and "
                "training_defences name the same randomised_response setting)"
            )
        return arms

    @field_validator("noise_epsilons")
    @classmethod
    def _check_eps(cls, values):
        bad = [v for v in values if not v >= 0]
        if bad:
            raise ValueError(f"epsilons must be >= 0 (inf: no noise); got {bad}")
        return tuple(sorted({float(v) for v in values}))


def _attack_estimates(
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    n_boot: int,
    seed: int,
    what: str,
    warnings: list,
    suffix: str = "",
) -> tuple[dict[str, Estimate], dict[str, np.ndarray]]:
    """AUC (CI), TPR at each FPR for each attack; returns estimates and the bootstrap AUCs."""
    rows = stratified_bootstrap_rows(labels, n_boot, seed) if n_boot > 0 else None
    n_neg, n_pos = int((~labels).sum()), int(labels.sum())
    out, boots = {}, {}
    for name, s in scores.items():
        auc = roc_auc(s, labels)
        boots[name] = auc_rows(s[rows], labels[rows]) if rows is not None else np.empty(0)
        lo, hi = percentile_ci(boots[name])
        out[f"auc [{name}{suffix}]"] = Estimate(
            auc,
            lo,
            hi,
            n_pos + n_neg,
            description=f"ROC-AUC of the {name} attack, {n_pos} members vs {n_neg} non-members "
            f"(0.5 = no leak, stratified bootstrap CI); {what}",
        )
        for fpr in FPRS:
            label = f"tpr@{fpr:.1%}fpr".replace(".0%", "%")
            if n_neg * fpr < 1:
                out[f"{label} [{name}{suffix}]"] = Estimate(
                    None,
                    n=n_neg,
                    description=f"not measured: {n_neg} non-members are too few for an FPR of "
                    f"{fpr:g} (needs at least {round(1 / fpr)})",
                )
                msg = (
                    f"TPR at {fpr:g} FPR not reported: {n_neg} non-members are too few (at least "
                    f"{round(1 / fpr)} needed for the threshold to rest on one non-member)"
                )
                if msg not in warnings:
                    warnings.append(msg)
                continue
            out[f"{label} [{name}{suffix}]"] = Estimate(
                tpr_at_fpr(s, labels, fpr),
                n=n_pos,
                description=f"share of members flagged at a threshold passing at most {fpr:g} of the {n_neg} "
                f"non-members ({name} attack); {what}",
            )
    return out, boots


def _roc_rows(scores: dict[str, np.ndarray], labels: np.ndarray, setting: str) -> pd.DataFrame:
    frames = []
    for name, s in scores.items():
        f, t = roc_points(s, labels)
        frames.append(pd.DataFrame({"attack": f"{name}{setting}", "fpr": f, "tpr": t}))
    return pd.concat(frames, ignore_index=True)


@register_audit
class MembershipInferenceAudit(RetrainingAudit):
    """Loss and reference-calibrated membership inference, canary exposure and randomised
    response (module docstring)."""

    name: ClassVar[str] = "membership_inference"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = (
        "membership inference on a copy trained on half the users: loss and "
        "reference-calibrated attacks (AUC, TPR at 1% / 0.1% FPR), canary exposure, "
        "randomised-response training as a defence"
    )
    needs: ClassVar[str] = (
        "a model that can be retrained from its spec, with full-catalog scores or the generative LLM's likelihood"
    )
    config: MembershipInferenceConfig
    config_class = MembershipInferenceConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not _can_score(inputs.model):
            return (
                f"{type(inputs.model).__name__} exposes neither full-catalog scores nor a generative likelihood, "
                "so a sequence's loss is not defined"
            )
        if (inputs.train_counts >= 2).sum() < 4:
            return "fewer than 4 users with at least 2 training interactions"
        return None

    def _reference_kind(self, model) -> str:
        ref = self.config.reference
        if ref == "auto":
            return "base_llm" if _has_own_loss(model) else "retrain"
        if ref == "base_llm" and not _has_own_loss(model):
            raise ConfigError(
                f"{self.name}: reference='base_llm' needs the generative LLM recommender; "
                f"{type(model).__name__} has no base LLM, use 'retrain'"
            )
        return ref

    def _losses(self, model, hist: Ragged, positions: int, base: bool = False) -> np.ndarray:
        return next_item_losses(model, hist, positions=positions, batch_size=self.config.batch_size, base=base)[0]

    def _reference_losses(self, kind: str, target, ref_model, hist: Ragged, positions: int):
        if kind == "none":
            return None
        if kind == "base_llm":
            return self._losses(target, hist, positions, base=True)
        return self._losses(ref_model, hist, positions)

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        k = c.k
        split, ds = inputs.split, inputs.dataset
        spec = self._spec(inputs.model)
        kind = self._reference_kind(inputs.model)
        rng = np.random.default_rng(c.seed)
        eligible = np.flatnonzero(inputs.train_counts >= 2)
        perm = rng.permutation(eligible)
        n_ref = round(c.reference_share * len(perm)) if kind == "retrain" else 0
        n_ref = min(max(n_ref, 1), len(perm) - 2) if kind == "retrain" else 0
        ref_users, rest = np.sort(perm[:n_ref]), perm[n_ref:]
        half = (len(rest) + 1) // 2
        members, nonmembers = np.sort(rest[:half]), np.sort(rest[half:])
        each = None if c.max_users is None else max(1, c.max_users // 2)
        att_m, att_n = _sample(members, each, rng), _sample(nonmembers, each, rng)
        attacked = np.concatenate([att_m, att_n])
        labels = np.r_[np.ones(len(att_m), bool), np.zeros(len(att_n), bool)]
        seqs = split.train.by_user(ds.n_users)
        hist = seqs.take(attacked)
        # canaries: inserted ones and never-inserted controls, and the random candidates
        n_can = c.n_canaries
        canaries = controls = candidates = None
        if n_can:
            length = min(c.canary_length, ds.n_items)
            crng = np.random.default_rng(c.seed + 7)
            canaries = random_sequences(n_can, length, ds.n_items, crng)
            controls = random_sequences(n_can, length, ds.n_items, crng)
            candidates = random_sequences(c.n_candidates, length, ds.n_items, crng)
        member_split = _train_only(split, members, f"membership inference: trained on {len(members)} member users")
        if canaries is not None:  # n_can > 0
            target_split, canary_users = _with_canaries(member_split, canaries, c.canary_repeats)
        else:
            target_split, canary_users = member_split, np.empty(0, np.int64)
        target, t_target = fit_spec(spec, target_split, seed=c.seed, progress=inputs.progress)
        positions = _default_positions(target, c.positions)
        fit_seconds = {"target": t_target}
        ref_model = None
        if kind == "retrain":
            from trustrec.models import ModelSpec

            ref_spec = ModelSpec.model_validate(c.reference_spec) if c.reference_spec is not None else spec
            ref_model, fit_seconds["reference"] = fit_spec(
                ref_spec,
                _train_only(split, ref_users, f"reference model trained on {len(ref_users)} users"),
                seed=c.seed,
                progress=inputs.progress,
            )
        loss_t = self._losses(target, hist, positions)
        loss_r = self._reference_losses(kind, target, ref_model, hist, positions)
        scored = ~np.isnan(loss_t) & (np.ones(len(loss_t), bool) if loss_r is None else ~np.isnan(loss_r))
        warnings: list[str] = []
        if (~scored).any():
            warnings.append(
                f"{int((~scored).sum())} attacked users could not be scored (no scorable position) "
                "and are left out of the attack"
            )

        def attack_scores(lt, lr):
            s = {"loss": -lt[scored]}
            if lr is not None:
                s["calibrated"] = lr[scored] - lt[scored]
            return s

        y = labels[scored]
        scores = attack_scores(loss_t, loss_r)
        what = f"{spec.name} trained on {len(members)} members, {positions} next-item predictions per user"
        estimates, boots = _attack_estimates(scores, y, c.n_boot, c.seed, what, warnings)
        if "calibrated" in boots and len(boots["calibrated"]):
            lo, hi = percentile_ci(boots["calibrated"] - boots["loss"])
            estimates["auc_gain [calibrated - loss]"] = Estimate(
                difference(estimates["auc [calibrated]"].value, estimates["auc [loss]"].value),
                lo,
                hi,
                len(y),
                description="AUC of the reference-calibrated attack minus the loss attack's (paired bootstrap CI); "
                f"reference: {'the untuned base LLM' if kind == 'base_llm' else 'a copy trained on '}"
                + ("" if kind == "base_llm" else f"{len(ref_users)} disjoint users"),
            )
        # accuracy of the member-trained model on its members' held-out targets
        ev = inputs.eval_set
        member_rows = np.flatnonzero(np.isin(ev.queries.users, members))
        ndcg_clean = _ndcg(target, ev[member_rows], k, c.batch_size) if len(member_rows) else np.empty(0)
        estimates[f"ndcg@{k} [members]"] = mean_estimate(
            ndcg_clean,
            n_boot=c.n_boot,
            seed=c.seed + 3,
            description=f"NDCG@{k} of the member-trained model on its members' '{inputs.part}' targets",
        )
        per_user = pd.DataFrame(
            {
                "user": attacked,
                "user_id": ds.user_ids[attacked],
                "group": np.where(labels, "member", "non-member"),
                "loss_target": loss_t,
                "loss_reference": np.full(len(attacked), np.nan) if loss_r is None else loss_r,
            }
        )
        roc = _roc_rows(scores, y, "")
        noise_rows = [
            {
                "epsilon": np.inf,
                "keep_probability": 1.0,
                **{f"auc_{n}": estimates[f"auc [{n}]"].value for n in scores},
                f"ndcg@{k}": float(np.nanmean(ndcg_clean)) if len(ndcg_clean) else np.nan,
            }
        ]
        evidence = {"per_user": per_user}
        if n_can:
            assert canaries is not None and controls is not None and candidates is not None  # set when n_can
            cand_loss = self._losses(target, candidates, positions)
            exp_in = canary_exposure(self._losses(target, canaries, positions), cand_loss)
            exp_ctl = canary_exposure(self._losses(target, controls, positions), cand_loss)
            max_exp = float(np.log2(c.n_candidates + 1))
            for label_, values, desc in (
                ("canary_exposure", exp_in, f"canaries inserted {c.canary_repeats}x"),
                ("canary_exposure [control]", exp_ctl, "canaries never inserted"),
            ):
                estimates[label_] = mean_estimate(
                    values,
                    n_boot=c.n_boot,
                    seed=c.seed + 11,
                    description=f"mean exposure (bits) of {n_can} {desc}, ranked by loss among {c.n_candidates} "
                    f"random sequences "
                    f"of {canaries.lengths[0]} items (max {max_exp:.2f}; about 1.44 for an unseen sequence)",
                )
            estimates["canary_exposure_max"] = Estimate(
                float(np.nanmax(exp_in)), n=n_can, description="largest exposure of an inserted canary (bits)"
            )
            evidence["canaries"] = pd.DataFrame(
                {
                    "canary": np.r_[np.arange(n_can), np.arange(n_can)],
                    "inserted": np.r_[np.ones(n_can, bool), np.zeros(n_can, bool)],
                    "exposure": np.r_[exp_in, exp_ctl],
                }
            )
            noise_rows[0]["canary_exposure"] = float(np.nanmean(exp_in))
        # training defences (arms) on the member (and canary) training data
        defences = [build_arm(a, "training_defence")[1] for a in c.defence_arms()]
        for j, defence in enumerate(defences):
            label = defence.label
            absent = getattr(defence, "absent", f"the defence ({defence.label})")
            applied = getattr(defence, "applied", "defended")
            noised = defence.apply(target_split, seed=c.seed + 101 + j, users=np.concatenate([members, canary_users]))
            model, fit_seconds[label] = fit_spec(spec, noised, seed=c.seed, progress=inputs.progress)
            lt = self._losses(model, hist, positions)
            s_eps = attack_scores(lt, loss_r)
            ok = ~np.isnan(s_eps["loss"])
            est, b_eps = _attack_estimates(
                {n: v[ok] for n, v in s_eps.items()},
                y[ok],
                c.n_boot,
                c.seed,
                what + f"; {defence.what}",
                warnings,
                suffix=f", {label}",
            )
            estimates.update(est)
            for n in s_eps:
                if ok.all() and len(boots.get(n, ())) and len(b_eps[n]):
                    lo, hi = percentile_ci(boots[n] - b_eps[n])
                    estimates[f"auc_drop [{n}, {label}]"] = Estimate(
                        difference(estimates[f"auc [{n}]"].value, est[f"auc [{n}, {label}]"].value),
                        lo,
                        hi,
                        int(ok.sum()),
                        description=f"AUC without {absent} minus AUC with {defence.title}; > 0 = the defence helps",
                    )
            nd = _ndcg(model, ev[member_rows], k, c.batch_size) if len(member_rows) else np.empty(0)
            estimates[f"ndcg@{k}_cost [{label}]"] = paired_estimate(
                ndcg_clean,
                nd,
                n_boot=c.n_boot,
                seed=c.seed + 13 + j,
                description=f"NDCG@{k} on members' targets without {absent} minus with it (accuracy cost)",
            )
            row = {
                **defence.settings,
                **{f"auc_{n}": est[f"auc [{n}, {label}]"].value for n in s_eps},
                f"ndcg@{k}": float(np.nanmean(nd)) if len(nd) else np.nan,
            }
            if n_can:
                assert canaries is not None and candidates is not None  # set when n_can
                cl = self._losses(model, candidates, positions)
                exp_eps = canary_exposure(self._losses(model, canaries, positions), cl)
                row["canary_exposure"] = float(np.nanmean(exp_eps))
                estimates[f"canary_exposure [{label}]"] = mean_estimate(
                    exp_eps,
                    n_boot=c.n_boot,
                    seed=c.seed + 17 + j,
                    description=f"mean exposure of the inserted canaries ({applied} like every member) with "
                    f"{getattr(defence, 'short', defence.title)}",
                )
            roc = pd.concat(
                [roc, _roc_rows({n: v[ok] for n, v in s_eps.items()}, y[ok], f", {label}")], ignore_index=True
            )
            noise_rows.append(row)
        evidence["roc"] = roc
        plots = [
            Plot(
                "line",
                "roc",
                "fpr",
                "tpr",
                "membership inference ROC curves",
                series="attack",
                x_label="false-positive rate (non-members flagged)",
                y_label="true-positive rate (members flagged)",
            )
        ]
        if defences:
            noise = pd.DataFrame(noise_rows)
            evidence["noise"] = noise
            curve = noise[np.isfinite(noise.epsilon)].melt(
                id_vars=["epsilon"], value_vars=[f"auc_{n}" for n in scores], var_name="attack", value_name="auc"
            )
            evidence["noise_curve"] = curve.reset_index(drop=True)
            plots.append(
                Plot(
                    "line",
                    "noise_curve",
                    "epsilon",
                    "auc",
                    "membership AUC vs randomised-response epsilon",
                    series="attack",
                    x_label="epsilon (keep probability e^eps/(e^eps+1))",
                    y_label="ROC-AUC",
                )
            )
        auc_l = estimates["auc [loss]"]
        summary = (
            f"{spec.name} trained on {len(members)} members; {len(att_m)} members vs {len(att_n)} non-members: "
            f"loss attack AUC {auc_l.value:.3f}"
        )
        if "auc [calibrated]" in estimates:
            summary += f", reference-calibrated {estimates['auc [calibrated]'].value:.3f}"
        if n_can:
            summary += (
                f"; canary exposure {estimates['canary_exposure'].value:.2f} bits (controls "
                f"{estimates['canary_exposure [control]'].value:.2f})"
            )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "model_spec": spec.model_dump(mode="json"),
                "reference": kind,
                "n_members": len(members),
                "n_non_members": len(nonmembers),
                "n_reference_users": len(ref_users),
                "n_excluded_users": int(ds.n_users - len(eligible)),
                "n_attacked": len(attacked),
                "positions": positions,
                "fit_seconds": fit_seconds,
            },
        )
