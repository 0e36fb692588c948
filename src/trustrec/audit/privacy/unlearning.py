"""Unlearning (``unlearning``, retrains)
Users with at least 2 training interactions give a held-out set (``heldout_share``, never
trained on: the non-members) and a forget set (``forget_users``, else ``forget_share``); the
rest are retained. The *original* model is trained on retained + forgotten users; the
*exact* unlearning retrains it without the forgotten users (same seed,
:func:`trustrec.mitigate.forget`); the *approximate* one runs gradient ascent on the forgotten
sequences with a retain term, bounded by the held-out users' mean training loss under the
original model (torch models with a per-sequence loss: SASRec, BPR-MF). For each: NDCG@K on
retained users, the loss-attack membership AUC of the forgotten users against the held-out
users (an exact unlearning is at 0.5 in expectation), and, against the exact model, the
Jensen-Shannon divergence (base 2) and the L2 distance of the per-user output distributions
(softmax of the scores over the items not in the history) for forgotten and retained users;
the time of each, and the approximate method's speed-up over retraining (evidence and
settings: timings are not estimates, so two runs with the same seed give equal estimates).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

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
    _ndcg,
    _sample,
    difference,
    next_item_losses,
)
from trustrec.data import resolve_users
from trustrec.errors import ConfigError
from trustrec.eval import (
    auc_rows,
    mean_estimate,
    paired_estimate,
    percentile_ci,
    roc_auc,
    stratified_bootstrap_rows,
)

__all__ = ["UnlearningAudit", "UnlearningConfig", "js_divergence"]


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence (base 2, in [0, 1]) of distributions ``p`` and ``q``.

    Parameters
    ----------
    p, q : array_like of float
        (n, n_outcomes) distributions, one per row.

    Returns
    -------
    ndarray
        (n,) divergences.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = (p + q) / 2

    def kl(a):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * (np.log2(a) - np.log2(np.where(m > 0, m, 1.0))), 0.0).sum(1)

    return np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0)


def _softmax_rows(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    if mask is not None:
        s = np.where(mask, -np.inf, s)
    top = s.max(1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(top), top, 0.0))
    z = e.sum(1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(z > 0, e / np.where(z > 0, z, 1.0), np.nan)


# -- unlearning ------------------------------------------------------------------------------------
class UnlearningConfig(AuditConfig):
    """Settings of the ``unlearning`` audit.

    Parameters
    ----------
    model_spec : dict or None
        What to train (``{"name": ..., "params": {...}}``); None: the audited model's own name
        and config.
    forget_users : tuple of str or None
        Raw user ids to forget; None: a seeded ``forget_share`` of the users with at least 2
        training interactions.
    forget_share : float
        Share of users forgotten when ``forget_users`` is None (between 0 and 1).
    heldout_share : float
        Share of users never trained on (the non-members of the attack on the forgotten users).
    steps, learning_rate, retain_weight, unlearn_batch_size : int, float or None
        The approximate method's steps, learning rate (None: a tenth of the model's), weight of
        the retain term and batch size (gradient ascent with a retain term, bounded by the
        held-out users' mean training loss).
    positions : int
        Next-item predictions per user in the attack's loss.
    max_users : int or None
        Retained users evaluated (seeded sample).
    batch_size : int
        Queries scored per batch.
    exact, approximate : ArmSpec
        The reference and the verified forget methods, ``unlearning`` arms by name or
        ``{"name", "params"}`` (default ``exact_retrain`` and ``gradient_ascent``).
    """

    model_spec: ModelSpecField = None
    forget_users: tuple[str, ...] | None = None
    forget_share: float = Field(0.05, gt=0, lt=1)
    heldout_share: float = Field(0.2, gt=0, lt=1)
    steps: PositiveInt = 10
    learning_rate: PositiveFloat | None = None
    retain_weight: NonNegativeFloat = 1.0
    unlearn_batch_size: PositiveInt = 32
    positions: PositiveInt = 10
    batch_size: PositiveInt = 256
    exact: ArmSpec = ArmSpec(name="exact_retrain")
    approximate: ArmSpec = ArmSpec(name="gradient_ascent")

    @field_validator("exact", "approximate", mode="before")
    @classmethod
    def _check_method(cls, value):
        return check_arm_specs([value], "unlearning")[0]

    @field_validator("forget_users")
    @classmethod
    def _check_users(cls, values):
        if values is not None and not values:
            raise ValueError("forget_users is empty; give raw user ids or leave it unset (forget_share)")
        return None if values is None else tuple(str(v) for v in dict.fromkeys(values))


@register_audit
class UnlearningAudit(RetrainingAudit):
    """Exact vs approximate unlearning of a forget set, verified (module docstring)."""

    name: ClassVar[str] = "unlearning"
    dimension: ClassVar[str] = "privacy"
    description: ClassVar[str] = (
        "forget requests: exact retraining vs approximate gradient-ascent unlearning; "
        "membership AUC on the forgotten users, accuracy on retained users, JS / L2 "
        "distance of outputs to the retrained model, time saved"
    )
    needs: ClassVar[str] = (
        "a model that can be retrained from its spec and has full-catalog scores; approximate "
        "unlearning needs a torch model with a per-sequence loss (sasrec, bpr_mf)"
    )
    config: UnlearningConfig
    config_class = UnlearningConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if "score" not in getattr(inputs.model, "capabilities", ()):
            return f"{type(inputs.model).__name__} has no full-catalog scores to compare output distributions"
        if (inputs.train_counts >= 2).sum() < 6:
            return "fewer than 6 users with at least 2 training interactions"
        return None

    def _partition(self, inputs: AuditInputs, rng):
        c = self.config
        ds = inputs.dataset
        counts = inputs.train_counts
        eligible = np.flatnonzero(counts >= 2)
        if c.forget_users is not None:
            forget = resolve_users(ds, list(c.forget_users), owner=f"{self.name}: forget_users")
            no_data = forget[counts[forget] == 0]
            if len(no_data) == len(forget):
                raise ConfigError(
                    f"{self.name}: none of the forget_users has training interactions "
                    f"(e.g. {ds.user_ids[no_data[:5]].tolist()}); nothing to forget"
                )
            pool = np.setdiff1d(eligible, forget)
            if len(pool) < 3:
                raise ConfigError(
                    f"{self.name}: forgetting {len(forget)} users leaves {len(pool)} users with at "
                    "least 2 training interactions; at least 3 are needed (held out and retained)"
                )
            n_held = min(max(2, round(c.heldout_share * len(eligible))), len(pool) - 1)
            heldout = np.sort(rng.choice(pool, n_held, replace=False))
        else:
            n_held = max(2, round(c.heldout_share * len(eligible)))
            perm = rng.permutation(eligible)
            heldout = np.sort(perm[:n_held])
            n_forget = min(max(2, round(c.forget_share * len(eligible))), len(perm) - n_held - 1)
            forget = np.sort(perm[n_held : n_held + n_forget])
        retained = np.setdiff1d(np.flatnonzero(counts > 0), np.concatenate([forget, heldout]))
        return forget, heldout, retained

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        k = c.k
        split, ds = inputs.split, inputs.dataset
        spec = self._spec(inputs.model)
        rng = np.random.default_rng(c.seed)
        forget, heldout, retained = self._partition(inputs, rng)
        base = split.without_users(
            heldout, parts=("train",), note=f"training interactions of {len(heldout)} users removed"
        )
        original, t_orig = fit_spec(spec, base, seed=c.seed, progress=inputs.progress)
        _, exact_method = build_arm(c.exact, "unlearning")
        _, approximate_method = build_arm(c.approximate, "unlearning")
        exact = exact_method.forget(original, base, forget, seed=c.seed)
        models = {"original": original, "exact": exact}
        seconds = {"original_fit": t_orig, "exact": exact.unlearning_["seconds"]}
        warnings: list[str] = []
        seqs = split.train.by_user(ds.n_users)
        trace = None
        bound = None
        if approximate_method.supports(original):
            import torch

            with torch.no_grad():
                held = heldout[:512]
                bound = float(
                    np.nanmean(original._sequence_losses(seqs.take(held), held, np.random.default_rng(c.seed)).numpy())
                )
            approx = approximate_method.forget(
                original,
                base,
                forget,
                seed=c.seed,
                steps=c.steps,
                learning_rate=c.learning_rate,
                retain_weight=c.retain_weight,
                batch_size=c.unlearn_batch_size,
                max_forget_loss=bound,
            )
            models["approximate"] = approx
            seconds["approximate"] = approx.unlearning_["seconds"]
            trace = pd.DataFrame(
                {
                    "step": np.arange(1, len(approx.unlearning_["forget_loss"]) + 1),
                    "forget_loss": approx.unlearning_["forget_loss"],
                    "retain_loss": approx.unlearning_["retain_loss"],
                }
            )
        else:
            warnings.append(
                f"{type(original).__name__} has no approximate unlearning; only exact retraining is measured"
            )
        estimates: dict[str, Estimate] = {}
        # membership inference on the forgotten users against the held-out users
        att_f, att_h = forget, _sample(heldout, max(len(forget) * 4, 200), np.random.default_rng(c.seed + 1))
        hist = seqs.take(np.concatenate([att_f, att_h]))
        labels = np.r_[np.ones(len(att_f), bool), np.zeros(len(att_h), bool)]
        losses = {
            name: next_item_losses(m, hist, positions=c.positions, batch_size=c.batch_size)[0]
            for name, m in models.items()
        }
        ok = np.all([~np.isnan(v) for v in losses.values()], axis=0)
        y = labels[ok]
        rows = stratified_bootstrap_rows(y, c.n_boot, c.seed) if c.n_boot > 0 and y.any() and (~y).any() else None
        boots: dict[str, np.ndarray] = {}
        table: list[dict[str, Any]] = []
        for name, loss in losses.items():
            s = -loss[ok]
            auc = roc_auc(s, y)
            boots[name] = auc_rows(s[rows], y[rows]) if rows is not None else np.empty(0)
            lo, hi = percentile_ci(boots[name])
            estimates[f"forget_mia_auc [{name}]"] = Estimate(
                auc,
                lo,
                hi,
                len(y),
                description=f"loss-attack ROC-AUC of the {int(y.sum())} forgotten users vs {int((~y).sum())} never-seen "
                f"users under the {name} model (0.5: indistinguishable from never seen)",
            )
            table.append({"model": name, "forget_mia_auc": auc, "auc_ci_low": lo, "auc_ci_high": hi})
        if "approximate" in boots and len(boots["approximate"]):
            lo, hi = percentile_ci(boots["approximate"] - boots["exact"])
            estimates["forget_mia_auc_gap [approximate - exact]"] = Estimate(
                difference(estimates["forget_mia_auc [approximate]"].value, estimates["forget_mia_auc [exact]"].value),
                lo,
                hi,
                len(y),
                description="forgotten users' membership AUC, approximate minus exact (paired bootstrap)",
            )
        # accuracy on retained users
        ev = inputs.eval_set
        kept_rows = np.flatnonzero(np.isin(ev.queries.users, retained))
        ndcgs = {name: _ndcg(m, ev[kept_rows], k, c.batch_size) for name, m in models.items()}
        for name, values in ndcgs.items():
            estimates[f"ndcg@{k} [retained, {name}]"] = mean_estimate(
                values,
                n_boot=c.n_boot,
                seed=c.seed + 5,
                description=f"NDCG@{k} of the {name} model on retained users' '{inputs.part}' targets",
            )
        if "approximate" in ndcgs:
            estimates[f"ndcg@{k}_gap [approximate - exact]"] = paired_estimate(
                ndcgs["approximate"],
                ndcgs["exact"],
                n_boot=c.n_boot,
                seed=c.seed + 6,
                description=f"NDCG@{k} on retained users, approximate minus exact (per user)",
            )
        # distances of the output distributions to the exact retrain
        dist_rows = []
        groups = {"forgotten": np.flatnonzero(np.isin(ev.queries.users, forget)), "retained": kept_rows}
        for group, grows in groups.items():
            if not len(grows):
                continue
            q = ev.queries[grows]
            mask = q.seen_mask(ds.n_items)
            ref = _softmax_rows(exact.score(q), mask)
            for name in [n for n in models if n != "exact"]:
                p = _softmax_rows(models[name].score(q), mask)
                js = js_divergence(p, ref)
                l2 = np.sqrt(np.nansum((p - ref) ** 2, axis=1))
                for metric, values in (("js_divergence", js), ("l2_distance", l2)):
                    estimates[f"{metric} [{name} vs exact, {group}]"] = mean_estimate(
                        values,
                        n_boot=c.n_boot,
                        seed=c.seed + 9,
                        description="mean per-user "
                        f"{'Jensen-Shannon divergence (base 2)' if metric == 'js_divergence' else 'L2 distance'}"
                        f" between the {name} and the exact model's output distributions (softmax of the scores "
                        f"over unseen items), {group} users",
                    )
                dist_rows.append(
                    {
                        "model": name,
                        "group": group,
                        "n_users": len(grows),
                        "js_divergence": float(np.nanmean(js)),
                        "l2_distance": float(np.nanmean(l2)),
                    }
                )
        for row in table:
            row[f"ndcg@{k}"] = float(np.nanmean(ndcgs[row["model"]])) if len(ndcgs[row["model"]]) else np.nan
            row["seconds"] = seconds.get("original_fit" if row["model"] == "original" else row["model"])
        evidence = {
            "models": pd.DataFrame(table),
            "distances": pd.DataFrame(dist_rows),
            "per_user": pd.DataFrame(
                {
                    "user": np.concatenate([att_f, att_h]),
                    "group": np.where(labels, "forgotten", "never seen"),
                    **{f"loss_{n}": v for n, v in losses.items()},
                }
            ),
        }
        plots = [
            Plot(
                "bar",
                "models",
                "model",
                "forget_mia_auc",
                "membership AUC of the forgotten users",
                ci_low="auc_ci_low",
                ci_high="auc_ci_high",
                y_label="ROC-AUC (0.5 = forgotten)",
            )
        ]
        if trace is not None:
            evidence["unlearning_trace"] = trace
            plots.append(
                Plot(
                    "line",
                    "unlearning_trace",
                    "step",
                    "forget_loss",
                    "forget-set loss during gradient ascent",
                    x_label="step",
                    y_label="mean training loss of the forgotten users",
                )
            )
        speedup = seconds["exact"] / seconds["approximate"] if "approximate" in seconds else None
        summary = (
            f"{spec.name}: forgot {len(forget)} users ({len(retained)} retained, {len(heldout)} held out); "
            f"forget-set membership AUC original {estimates['forget_mia_auc [original]'].value:.3f}, "
            f"exact {estimates['forget_mia_auc [exact]'].value:.3f}"
        )
        if "approximate" in models:
            summary += (
                f", approximate {estimates['forget_mia_auc [approximate]'].value:.3f}; approximate is "
                f"{speedup:.1f}x faster than retraining"
            )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "model_spec": spec.model_dump(mode="json"),
                "n_forget": len(forget),
                "n_heldout": len(heldout),
                "n_retained": len(retained),
                "forget_loss_bound": bound,
                "seconds": seconds,
                "speedup": speedup,
                "approximate": None
                if "approximate" not in models
                else {
                    k_: v
                    for k_, v in models["approximate"].unlearning_.items()
                    if k_ not in ("forget_loss", "retain_loss", "seconds")
                },
            },
        )
