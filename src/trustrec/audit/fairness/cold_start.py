"""Cold start (``cold_start``, item side): accuracy on items with few or no training interactions,
where LLM and text-encoder recommenders are expected to help, next to reference models on the
same users."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, fit_spec, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.eval import ACCURACY_METRICS, bootstrap_ci, mean_estimate, paired_estimate, two_sample_estimate

__all__ = ["ColdStartAudit", "ColdStartConfig"]


class ColdStartConfig(AuditConfig):
    """Settings of the ``cold_start`` audit.

    Parameters
    ----------
    max_train_interactions : int
        Items with at most this many training interactions are cold (0 = never seen in
        training; :func:`trustrec.eval.cold_item_mask`).
    metrics : tuple of str
        Per-user accuracy metrics at ``k`` (some of ndcg, hr, recall, mrr).
    compare_with : tuple of dict
        Reference models (``{"name", "params"}``) trained on the same split and measured on the
        same users, so one report compares e.g. classic, text-encoder and LLM recommenders on
        cold items (a reference that cannot be built or trained here is reported in the
        warnings, not a crash).
    """

    max_train_interactions: int = Field(10, ge=0)
    metrics: tuple[str, ...] = ("ndcg", "hr")
    compare_with: tuple[dict, ...] = ({"name": "most_popular"},)

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, values):
        bad = [m for m in values if m not in ACCURACY_METRICS]
        if not values or bad:
            raise ValueError(f"metrics must be some of {sorted(ACCURACY_METRICS)}; got {list(values)}")
        return tuple(dict.fromkeys(values))

    @field_validator("compare_with")
    @classmethod
    def _check_specs(cls, values):
        from trustrec.audit._base import _check_model_spec

        return tuple(_check_model_spec(v) for v in values)


def _segment_per_user(topk: np.ndarray, eval_set, keep: np.ndarray, metrics, k: int, n_items: int) -> pd.DataFrame:
    """Per-user accuracy of the users of ``eval_set`` that have a target in ``keep`` (rows in
    ``row``), counting only those targets, from their existing top-k lists."""
    from trustrec.eval import distinct_counts, hits_matrix, restrict_targets

    has = np.bincount(eval_set.targets.row_ids()[keep[eval_set.targets.values]], minlength=len(eval_set)) > 0
    rows = np.flatnonzero(has)
    segment = restrict_targets(eval_set, keep)
    hits = hits_matrix(topk[rows, :k], segment.targets, n_items)
    n_rel = distinct_counts(segment.targets)
    return pd.DataFrame({"row": rows, **{f"{m}@{k}": ACCURACY_METRICS[m](hits, n_rel) for m in metrics}})


@register_audit
class ColdStartAudit(Audit):
    """Accuracy on cold target items (few or no training interactions) next to warm ones, the share
    of recommendation slots cold items get, and the same for reference models on the same users."""

    name: ClassVar[str] = "cold_start"
    dimension: ClassVar[str] = "fairness"
    requires: ClassVar[str] = "lists"  # reads only the top-K lists of the evaluation queries
    description: ClassVar[str] = (
        "accuracy on cold items (<= N training interactions) vs warm items, cold-item "
        "exposure, and reference models (classic, text encoder, LLM) on the same users"
    )
    needs: ClassVar[str] = "any model; held-out targets that include cold items (raise max_train_interactions if none)"
    config: ColdStartConfig
    config_class = ColdStartConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        from trustrec.eval import cold_item_mask

        cold = cold_item_mask(inputs.split, self.config.max_train_interactions)
        if not cold[inputs.eval_set.targets.values].any():
            return (
                f"no held-out target in the '{inputs.part}' part is a cold item (at most "
                f"{self.config.max_train_interactions} training interactions; {int(cold.sum())} such items in "
                "the catalog); raise max_train_interactions"
            )
        return None

    def _references(self, inputs: AuditInputs, warnings: list[str]):
        from trustrec.models import ModelSpec

        out = []
        seen: dict[str, int] = {}
        for raw in self.config.compare_with:
            spec = ModelSpec.model_validate(raw)
            label = spec.name if spec.name not in seen else f"{spec.name} #{seen[spec.name] + 1}"
            seen[spec.name] = seen.get(spec.name, 0) + 1
            try:
                model, _ = fit_spec(spec, inputs.split, seed=self.config.seed, progress=inputs.progress)
            except Exception as exc:  # noqa: BLE001  # a missing extra or offline encoder: report, do not crash the audit
                warnings.append(
                    f"reference {label} not measured: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                )
                continue
            out.append((label, model))
        return out

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import cold_item_mask, evaluate

        c = self.config
        k, ds, eval_set = c.k, inputs.dataset, inputs.eval_set
        cold = cold_item_mask(inputs.split, c.max_train_interactions)
        metrics = [f"{m}@{k}" for m in c.metrics]
        warnings: list[str] = []
        audited = getattr(inputs.model, "name", "") or type(inputs.model).__name__
        models = [(audited, inputs.model, np.asarray(inputs.topk))]
        for label, ref in self._references(inputs, warnings):
            result = evaluate(ref, eval_set, metrics=metrics, n_boot=0, keep_topk=True, progress=False, seed=c.seed)
            assert result.topk is not None  # keep_topk=True
            top = result.topk.items
            models.append((label, ref, np.asarray(top)))
        rows, estimates, per = [], {}, {}
        cold_share = float(cold.mean())
        for i, (label, _, top) in enumerate(models):
            seg = {
                "cold": _segment_per_user(top, eval_set, cold, c.metrics, k, ds.n_items),
                "warm": _segment_per_user(top, eval_set, ~cold, c.metrics, k, ds.n_items),
            }
            per[label] = seg
            slots = top[:, :k]
            exposure = float(cold[slots[slots >= 0]].mean()) if (slots >= 0).any() else np.nan
            for segment, frame in seg.items():
                row = {"model": label, "segment": segment, "n_users": len(frame), "cold_item_exposure": exposure}
                for j, m in enumerate(metrics):
                    x = frame[m].to_numpy(np.float64)
                    lo, hi = bootstrap_ci(x, n_boot=c.n_boot, seed=c.seed + j)
                    row.update({m: float(x.mean()) if len(x) else np.nan, f"{m}_ci_low": lo, f"{m}_ci_high": hi})
                rows.append(row)
            suffix = "" if i == 0 else f", {label}"
            for j, m in enumerate(metrics):
                for segment in ("cold", "warm"):
                    estimates[f"{m} [{segment}{suffix}]"] = mean_estimate(
                        seg[segment][m].to_numpy(np.float64),
                        n_boot=c.n_boot,
                        seed=c.seed + j,
                        description=f"mean per-user {m} counting only {segment} targets (cold: <= "
                        f"{c.max_train_interactions} training interactions){'' if i == 0 else ' of ' + label}",
                    )
            if i == 0:
                for j, m in enumerate(metrics):
                    estimates[f"{m} cold-warm gap"] = two_sample_estimate(
                        seg["cold"][m].to_numpy(np.float64),
                        seg["warm"][m].to_numpy(np.float64),
                        n_boot=c.n_boot,
                        seed=c.seed + 10 + j,
                        description=f"{m} on cold targets minus on warm targets (independent users; bootstrap CI, "
                        "Mann-Whitney p)",
                    )
                estimates[f"cold_item_exposure@{k}"] = Estimate(
                    exposure,
                    n=int((slots >= 0).sum()),
                    description=f"share of top-{k} slots holding cold items; {cold_share:.1%} of the catalog is cold",
                )
            else:
                base = per[audited]["cold"]
                for j, m in enumerate(metrics):
                    estimates[f"{m} [cold] difference vs {label}"] = paired_estimate(
                        base[m].to_numpy(np.float64),
                        seg["cold"][m].to_numpy(np.float64),
                        n_boot=c.n_boot,
                        seed=c.seed + 20 + j,
                        test=True,
                        description=f"{audited} minus {label}, {m} on the same cold-target users (bootstrap CI, Wilcoxon p)",
                    )
        table = pd.DataFrame(rows)
        m0 = metrics[0]
        plots = (
            Plot(
                "bar",
                "by_model",
                "model",
                m0,
                f"{m0} on cold vs warm targets, by model",
                series="segment",
                ci_low=f"{m0}_ci_low",
                ci_high=f"{m0}_ci_high",
                x_label="model",
                y_label=m0,
            ),
        )
        n_cold_users = len(per[audited]["cold"])
        cold_row = table[(table.model == audited) & (table.segment == "cold")].iloc[0]
        warm_row = table[(table.model == audited) & (table.segment == "warm")].iloc[0]
        summary = (
            f"{n_cold_users} of {len(eval_set)} users have a cold target (<= {c.max_train_interactions} training "
            f"interactions; {int(cold.sum())} cold items); {audited}: {m0} cold {cold_row[m0]:.4f} vs warm "
            f"{warm_row[m0]:.4f}, cold items get {cold_row['cold_item_exposure']:.1%} of top-{k} slots"
        )
        for label, _, _ in models[1:]:
            ref_row = table[(table.model == label) & (table.segment == "cold")].iloc[0]
            summary += f"; {label}: cold {ref_row[m0]:.4f}"
        return self._result(
            estimates,
            evidence={"by_model": table},
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={
                "n_cold_items": int(cold.sum()),
                "n_cold_target_users": n_cold_users,
                "models": [label for label, _, _ in models],
            },
        )
