"""User fairness (``user_fairness``, consumer side): accuracy sliced by user group (attributes, age
bands, activity level), per-group means with CIs, worst/best ratio and gap with
stratified-bootstrap CIs, and a test of equal groups."""

from __future__ import annotations

from typing import ClassVar

import pandas as pd
from pydantic import Field

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import GroupMetricFrame

__all__ = ["UserFairnessAudit", "UserFairnessConfig"]


class UserFairnessConfig(AuditConfig):
    """Settings of the ``user_fairness`` audit.

    Parameters
    ----------
    metrics : tuple of str
        Per-user accuracy metrics at ``k`` compared across groups (some of ndcg, hr, recall, mrr);
        the first one is plotted and judged by ``min_ratio``.
    groupings : tuple of str or None
        User group columns to slice by; None: every user attribute column plus ``"activity"``.
    active_share : float
        Share of users with the most training interactions labelled ``"active"`` in the
        ``activity`` grouping (between 0 and 1).
    min_ratio : float or None
        Four-fifths rule: each grouping's worst/best ratio of the first metric must be at least
        this (in (0, 1]); None: no such threshold.
    """

    metrics: tuple[str, ...] = ("ndcg", "hr")
    groupings: tuple[str, ...] | None = None  # None: every user attribute column plus "activity"
    active_share: float = Field(0.2, gt=0, lt=1)
    min_ratio: float | None = Field(0.8, gt=0, le=1)  # four-fifths rule on each grouping's first metric


@register_audit
class UserFairnessAudit(Audit):
    """Accuracy sliced by user group (attributes, age bands, activity level): per-group means with
    CIs, worst/best ratio and gap with stratified-bootstrap CIs, and a test of equal groups."""

    name: ClassVar[str] = "user_fairness"
    dimension: ClassVar[str] = "fairness"
    requires: ClassVar[str] = "lists"  # reads only the top-K lists of the evaluation queries
    description: ClassVar[str] = "accuracy by user group (gender, age band, occupation, activity): gaps, ratios, tests"
    needs: ClassVar[str] = "any model; user attributes for attribute groups (activity needs none)"
    config: UserFairnessConfig
    config_class = UserFairnessConfig

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        from trustrec.data import activity_levels

        per_user = inputs.evaluation.per_user
        metrics = [f"{m}@{c.k}" for m in c.metrics]
        unknown = [m for m in metrics if m not in per_user.columns]
        if unknown:
            from trustrec.errors import ConfigError

            raise ConfigError(
                f"{self.name}: metrics {unknown} are not per-user accuracy metrics; use some of ndcg, hr, recall, mrr"
            )
        groups = inputs.user_groups.copy()
        groups["activity"] = activity_levels(inputs.train_counts, c.active_share)[inputs.queries.users]
        chosen = list(groups.columns) if c.groupings is None else list(c.groupings)
        missing_cols = [g for g in chosen if g not in groups.columns]
        if missing_cols:
            from trustrec.errors import ConfigError

            raise ConfigError(f"{self.name}: groupings {missing_cols} not found; available: {list(groups.columns)}")
        estimates, tables, comps, plots, warnings = {}, [], [], [], []
        evidence: dict[str, pd.DataFrame] = {}
        for gi, grouping in enumerate(chosen):
            gmf = GroupMetricFrame(
                metrics=per_user[metrics],
                groups=groups[grouping],
                n_boot=c.n_boot,
                seed=c.seed + gi,
                min_group_size=c.min_group_size,
            )
            table = gmf.table.assign(grouping=grouping)
            tables.append(table)
            comps.append(gmf.comparisons.reset_index().assign(grouping=grouping))
            small = table[(table.metric == metrics[0]) & table.too_small & ~table.missing_label]
            if len(small):
                warnings.append(
                    f"{grouping}: {len(small)} group(s) under {c.min_group_size} users "
                    f"({', '.join(f'{g} n={n}' for g, n in zip(small.group, small.n_users))}); "
                    "shown without CI and left out of the gap and ratio"
                )
            if gmf.n_missing:
                warnings.append(
                    f"{grouping}: {gmf.n_missing} of {len(groups)} users have no value; "
                    "reported as '(missing)', not compared"
                )
            for m in metrics:
                row = gmf.comparisons.loc[m]
                if row.n_groups_compared < 2:
                    continue
                estimates[f"{m} gap [{grouping}]"] = Estimate(
                    row.difference,
                    row.difference_ci_low,
                    row.difference_ci_high,
                    int(row.n_groups_compared),
                    row.p_value,
                    f"best minus worst group mean ({row.best_group} vs {row.worst_group}); p from {row.test}",
                )
                estimates[f"{m} ratio [{grouping}]"] = Estimate(
                    row.ratio,
                    row.ratio_ci_low,
                    row.ratio_ci_high,
                    int(row.n_groups_compared),
                    row.p_value,
                    f"worst group mean / best group mean ({row.worst_group} / {row.best_group})",
                )
            name = f"groups_{grouping}"
            evidence[name] = table[table.metric == metrics[0]].reset_index(drop=True)
            plots.append(
                Plot(
                    "bar",
                    name,
                    "group",
                    "mean",
                    f"{metrics[0]} by {grouping} (95% CI)",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    y_label=metrics[0],
                )
            )
        evidence = {
            "by_group": pd.concat(tables, ignore_index=True),
            "comparisons": pd.concat(comps, ignore_index=True),
            **evidence,
        }
        worst = min(
            ((k, e.value) for k, e in estimates.items() if "ratio" in k and e.value is not None),
            key=lambda kv: kv[1],
            default=None,
        )
        summary = f"{len(chosen)} groupings over {len(per_user)} users" + (
            f"; lowest ratio {worst[1]:.3f} ({worst[0]})" if worst else ""
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={"groupings": chosen, "metrics": metrics},
        )

    def _thresholds(self, estimates):
        extra = []
        if self.config.min_ratio is not None:
            first = f"{self.config.metrics[0]}@{self.config.k}"
            extra = [
                Threshold(estimate=k, op=">=", limit=self.config.min_ratio)
                for k in estimates
                if k.startswith(f"{first} ratio [")
            ]
        return [*self.config.thresholds, *extra]
