"""``fairness_mitigations``: what fairness re-ranking would buy, and what it would cost.

For the audited model, two accuracy-vs-fairness trade-off curves on the audit's evaluation users
(see :mod:`trustrec.mitigate`): calibrated re-ranking (Steck 2018; fairness = mean
miscalibration KL of the genre distribution) and popularity-aware xQuAD re-ranking
(Abdollahpouri et al. 2019; fairness = APLT, the share of long-tail items, and the Gini of item
exposure). The model ranks each user's top ``n_candidates`` once (``recommend``, so any model
works, full-ranking or not); every strength re-ranks those. Each curve is the ``calibrated`` /
``exposure`` re-ranker arm, resolved by name (:mod:`trustrec._arms`); the trade-off comparison
itself lives on the mitigation side (:mod:`trustrec.mitigate.defences.tradeoff`), and this audit
never imports the mitigation layer.

Applicability: the calibration curve needs an item group column (genre, class, category ...:
``item_group_column`` or guessed); the exposure curve needs only training popularity (or, with
``exposure_groups`` set to an item column, that column). A curve whose data are missing is
skipped with a warning; the audit is not applicable only when none of the requested ``curves``
can run (or there are no evaluation users).

Estimates are read at ``default_strength`` against strength 0 (the model's own lists), as
per-user paired differences with a seeded bootstrap CI over users: ``<curve>_ndcg_drop``
(NDCG@k at 0 minus at the strength; > 0 = accuracy lost), ``calibrated_miscalibration_reduction``
(KL at 0 minus at the strength; > 0 = better calibrated), ``exposure_aplt_gain`` (APLT at the
strength minus at 0) and ``exposure_gini_reduction`` (exposure Gini at 0 minus at the strength; a
catalog-level figure, no CI).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from trustrec._arms import build_arm
from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot
from trustrec.eval import paired_estimate

__all__ = ["FairnessMitigationsAudit", "FairnessMitigationsConfig"]

Curve = Literal["calibrated", "exposure"]
_TABLES = {"calibrated": "calibration_tradeoff", "exposure": "exposure_tradeoff"}


class FairnessMitigationsConfig(AuditConfig):
    """Settings of the ``fairness_mitigations`` audit.

    Parameters
    ----------
    strengths : tuple of float
        The λ values swept, each in [0, 1] (0 is always added: the model's own lists).
    default_strength : float
        Where the estimates are read (added to the sweep if absent).
    n_candidates : int
        The model's top items each user's list is re-ranked from.
    item_group_column : str or None
        The genre column of the calibration curve; None: guessed.
    exposure_groups : str
        ``"popularity"`` (head/tail) or an item column (provider).
    exposure_variant : {"binary", "smooth"}
        xQuAD's coverage.
    curves : tuple of {"calibrated", "exposure"}
        Which curves to compute.
    """

    strengths: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95)
    default_strength: float = Field(0.4, ge=0, le=1)
    n_candidates: PositiveInt = 100
    item_group_column: str | None = None
    exposure_groups: str = "popularity"
    exposure_variant: Literal["binary", "smooth"] = "binary"
    curves: tuple[Curve, ...] = ("calibrated", "exposure")

    @field_validator("strengths")
    @classmethod
    def _check_strengths(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values:
            raise ValueError("give at least one strength")
        bad = [v for v in values if not 0 <= v <= 1]
        if bad:
            raise ValueError(f"strengths must be in [0, 1]; got {bad}")
        return tuple(sorted({float(v) for v in values}))

    @field_validator("curves")
    @classmethod
    def _check_curves(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if not values:
            raise ValueError("give at least one curve: 'calibrated', 'exposure'")
        return tuple(dict.fromkeys(values))


@register_audit
class FairnessMitigationsAudit(Audit):
    name = "fairness_mitigations"
    dimension = "fairness"
    description = (
        "Accuracy vs fairness trade-off of re-ranking the model's lists: calibrated "
        "re-ranking (genre miscalibration KL) and popularity-aware xQuAD (long-tail share, "
        "exposure Gini), with the NDCG cost at a default strength"
    )
    needs = "a fitted model and a split; an item group column (genre) for the calibration curve"
    config: FairnessMitigationsConfig
    config_class = FairnessMitigationsConfig

    # -- applicability ----------------------------------------------------------------------
    def _missing(self, inputs: AuditInputs) -> dict[str, str]:
        """Curve -> why its data are missing (curves that can run are absent)."""
        from trustrec.data import ITEM_GROUP_COLUMNS, guess_item_group_column

        c = self.config
        items = inputs.dataset.items
        columns = list(items.columns)
        out = {}
        if "calibrated" in c.curves:
            if c.item_group_column is None and guess_item_group_column(items) is None:
                out["calibrated"] = (
                    f"dataset '{inputs.dataset.name}' has no item group column for the calibration "
                    f"curve (looked for {', '.join(ITEM_GROUP_COLUMNS)}; item columns: {columns}); "
                    "set item_group_column"
                )
            elif c.item_group_column is not None and c.item_group_column not in columns:
                out["calibrated"] = (
                    f"item group column {c.item_group_column!r} not found in dataset "
                    f"'{inputs.dataset.name}' (item columns: {columns})"
                )
        if "exposure" in c.curves and c.exposure_groups != "popularity" and c.exposure_groups not in columns:
            out["exposure"] = (
                f"exposure group column {c.exposure_groups!r} not found in dataset "
                f"'{inputs.dataset.name}' (item columns: {columns})"
            )
        return out

    def _why_not(self, inputs: AuditInputs) -> str | None:
        missing = self._missing(inputs)
        if len(missing) == len(self.config.curves):
            return "; ".join(missing.values())
        return None

    # -- running ------------------------------------------------------------------------------
    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        k = c.k
        strengths = sorted(set(c.strengths) | {0.0, c.default_strength})
        missing = self._missing(inputs)
        warnings = [f"{curve} curve skipped: {why}" for curve, why in missing.items()]
        params = {
            "calibrated": {"item_group_column": c.item_group_column},
            "exposure": {"groups": c.exposure_groups, "variant": c.exposure_variant},
        }
        estimates: dict[str, Estimate] = {}
        evidence, plots, groups_used, lines = {}, [], {}, []
        for curve in c.curves:
            if curve in missing:
                continue
            _, reranker = build_arm({"name": curve, "params": params[curve]}, "reranker")
            points, table = reranker.tradeoff(
                inputs.model,
                inputs.eval_set,
                strengths,
                train=inputs.split,
                k=k,
                batch_size=inputs.batch_size,
                n_candidates=c.n_candidates,
                n_boot=c.n_boot,
                seed=c.seed,
            )
            table.insert(0, "method", curve)
            evidence[_TABLES[curve]] = table
            groups_used[curve] = points[0].groups
            base = points[strengths.index(0.0)]
            at = points[strengths.index(c.default_strength)]
            ndcg = f"ndcg@{k}"
            lam = f"λ = {c.default_strength:g}"
            estimates[f"{curve}_ndcg_drop"] = paired_estimate(
                base.per_user[ndcg],
                at.per_user[ndcg],
                n_boot=c.n_boot,
                seed=c.seed,
                description=f"{curve} re-ranking at {lam}: mean per-user {ndcg} lost (strength 0 minus {lam}; "
                "> 0 = cost)",
            )
            if curve == "calibrated":
                estimates["calibrated_miscalibration_reduction"] = paired_estimate(
                    base.per_user["miscalibration"],
                    at.per_user["miscalibration"],
                    n_boot=c.n_boot,
                    seed=c.seed,
                    description=f"calibrated re-ranking at {lam}: mean genre miscalibration KL removed (Steck 2018; "
                    f"strength 0 minus {lam}; > 0 = better calibrated; users without genres left out)",
                )
                plots.append(
                    Plot(
                        "line",
                        _TABLES[curve],
                        x="miscalibration",
                        y=ndcg,
                        title=f"Calibrated re-ranking: {ndcg} vs miscalibration (KL) over λ",
                        x_label="mean miscalibration KL (lower = fairer)",
                        y_label=ndcg,
                    )
                )
                lines.append(
                    f"calibrated re-ranking at {lam} moves mean miscalibration "
                    f"{_fmt(base.per_user['miscalibration'])} -> {_fmt(at.per_user['miscalibration'])} "
                    f"for {ndcg} {_fmt(base.per_user[ndcg])} -> {_fmt(at.per_user[ndcg])}"
                )
            else:
                estimates["exposure_aplt_gain"] = paired_estimate(
                    at.per_user["aplt"],
                    base.per_user["aplt"],
                    n_boot=c.n_boot,
                    seed=c.seed,
                    description=f"xQuAD re-ranking at {lam}: mean share of long-tail items gained (APLT at {lam} minus "
                    "at strength 0; tail = outside the top 20% by training popularity)",
                )
                estimates["exposure_gini_reduction"] = Estimate(
                    base.aggregates["exposure_gini"] - at.aggregates["exposure_gini"],
                    n=len(at.per_user),
                    description=f"xQuAD re-ranking at {lam}: Gini of item exposure at strength 0 minus at {lam} "
                    "(> 0 = exposure spread more evenly; catalog-level, no CI)",
                )
                plots.append(
                    Plot(
                        "line",
                        _TABLES[curve],
                        x="aplt",
                        y=ndcg,
                        title=f"Exposure (xQuAD) re-ranking: {ndcg} vs long-tail share over λ",
                        x_label="APLT (share of long-tail items, higher = fairer)",
                        y_label=ndcg,
                    )
                )
                lines.append(
                    f"xQuAD re-ranking at {lam} moves APLT {_fmt(base.per_user['aplt'])} -> "
                    f"{_fmt(at.per_user['aplt'])} for {ndcg} {_fmt(base.per_user[ndcg])} -> "
                    f"{_fmt(at.per_user[ndcg])}"
                )
        settings = {
            "strengths": strengths,
            "default_strength": c.default_strength,
            "n_candidates": c.n_candidates,
            "groups": groups_used,
            "curves": [x for x in c.curves if x not in missing],
        }
        return self._result(
            estimates,
            evidence=evidence,
            settings=settings,
            warnings=tuple(warnings),
            plots=tuple(plots),
            summary="; ".join(lines),
        )


def _fmt(values) -> str:
    x = np.asarray(values, np.float64)
    return f"{np.nanmean(x):.4f}" if np.isfinite(x).any() else "n/a"
