"""Calibration (``calibration``): Steck's miscalibration, the KL divergence between the genre mix
of each user's history and of their list, by genre and by user group."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import GroupMetricFrame, group_distribution, mean_estimate, miscalibration

__all__ = ["CalibrationAudit", "CalibrationConfig"]


class CalibrationConfig(AuditConfig):
    """Settings of the ``calibration`` audit.

    Parameters
    ----------
    item_group_column : str or None
        Item column (genres) whose mix is compared between history and list; None: guessed.
    alpha : float
        Smoothing of the list's distribution, ``q~ = (1 - alpha) q + alpha p`` (between 0 and 1).
    max_miscalibration : float or None
        Threshold on the mean miscalibration (KL); None: no such threshold.
    """

    item_group_column: str | None = None
    alpha: float = Field(0.01, gt=0, lt=1)
    max_miscalibration: float | None = None


@register_audit
class CalibrationAudit(Audit):
    """Steck's miscalibration: KL between the genre mix of each user's history and of their list."""

    name: ClassVar[str] = "calibration"
    dimension: ClassVar[str] = "fairness"
    requires: ClassVar[str] = "lists"  # reads only the top-K lists of the evaluation queries
    description: ClassVar[str] = "Steck's KL(history genres || list genres) per user, by genre and by user group"
    needs: ClassVar[str] = "an item group column (genre, category)"
    config: CalibrationConfig
    config_class = CalibrationConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if inputs.item_groups(self.config.item_group_column) is None:
            return (
                f"dataset {inputs.dataset.name!r} has no item group column (genre, category, ...) to "
                "calibrate on; set item_group_column"
            )
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        groups = inputs.item_groups(c.item_group_column)
        assert groups is not None, "_why_not returned None: the item group column exists"
        column, membership, names, _ = groups
        top = inputs.topk[:, : c.k]
        p = group_distribution(inputs.queries.histories, membership)
        q = group_distribution(top, membership)
        kl = miscalibration(p, q, c.alpha)
        n_empty = int(np.isnan(kl).sum())
        estimates = {
            "miscalibration": mean_estimate(
                kl, n_boot=c.n_boot, seed=c.seed, description=f"mean KL(p_u || q~_u) over {column!r}, alpha={c.alpha}"
            )
        }
        by_genre = pd.DataFrame({"group": names, "profile_share": p.mean(0), "list_share": q.mean(0)})
        long = by_genre.melt(id_vars="group", var_name="share", value_name="value")
        groups = inputs.user_groups
        frames = []
        for grouping in groups.columns:
            gmf = GroupMetricFrame(
                metrics={"miscalibration": kl},
                groups=groups[grouping],
                n_boot=c.n_boot,
                seed=c.seed,
                min_group_size=c.min_group_size,
            )
            frames.append(gmf.table.assign(grouping=grouping))
            row = gmf.comparisons.loc["miscalibration"]
            if row.n_groups_compared >= 2:
                estimates[f"miscalibration gap [{grouping}]"] = Estimate(
                    row.difference,
                    row.difference_ci_low,
                    row.difference_ci_high,
                    int(row.n_groups_compared),
                    row.p_value,
                    f"most minus least miscalibrated group ({row.best_group} vs {row.worst_group})",
                )
        evidence = {
            "per_user": pd.DataFrame({"user": inputs.queries.users, "miscalibration": kl}),
            "by_genre": by_genre,
            "genre_shares": long,
        }
        if frames:
            evidence["by_user_group"] = pd.concat(frames, ignore_index=True)
        warnings = [f"{n_empty} users with no grouped history item have no calibration value"] if n_empty else []
        return self._result(
            estimates,
            evidence=evidence,
            warnings=tuple(warnings),
            plots=(
                Plot(
                    "bar",
                    "genre_shares",
                    "group",
                    "value",
                    f"{column}: history vs list share",
                    series="share",
                    y_label="mean share",
                ),
            ),
            summary=f"mean miscalibration {estimates['miscalibration'].value:.3f} over {column!r}",
            settings={"item_group_column": column},
        )

    def _thresholds(self, estimates):
        extra = (
            [Threshold(estimate="miscalibration", op="<=", limit=self.config.max_miscalibration)]
            if self.config.max_miscalibration is not None
            else []
        )
        return [*self.config.thresholds, *extra]
