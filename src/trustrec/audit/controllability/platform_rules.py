"""``platform_rules``
A rule set (blocked items: the configured raw ids, else the ``n_blocked`` most popular
training items as a stress test; an exposure cap: no item in more than
``max_exposure_share`` of the sampled users' lists) checked on the model's lists, then
enforced by the ``rules`` arm (a ``rule_enforcer`` arm by name, :mod:`trustrec._arms`; default
``rule_enforced``, :class:`~trustrec.mitigate.RuleEnforcedRecommender`) over all sampled users in
one call: violations before and after (slots showing a blocked item, slots above a cap),
accuracy cost (paired NDCG@K / HR@K change with CIs), fill rate and exposure Gini.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from trustrec._arms import ArmSpec, build_arm, check_arm_specs
from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.audit.controllability._common import (
    _accuracy,
)
from trustrec.eval import (
    cluster_mean_estimate,
    cluster_ratio_estimate,
    paired_estimate,  # re-exported: it lived here
)

__all__ = ["PlatformRulesAudit", "PlatformRulesConfig"]


# -- system-initiated control -------------------------------------------------------------------------------------
class PlatformRulesConfig(AuditConfig):
    """Settings of the ``platform_rules`` audit.

    Parameters
    ----------
    blocked_items : tuple of str or None
        Raw ids of the blocked items; None: the ``n_blocked`` most popular training items.
    n_blocked : int
        Items blocked when ``blocked_items`` is None.
    max_exposure_share : float or None
        The exposure cap, a share in (0, 1]; None: none.
    n_candidates : int
        Enforcement depth.
    max_violation_share : float or None
        Threshold on the enforced lists' share of violating slots; None: no such threshold.
    rules : ArmSpec
        The enforcement, a ``rule_enforcer`` arm by name (or ``{"name", "params"}``).
    """

    blocked_items: tuple[str, ...] | None = None
    n_blocked: NonNegativeInt = 10
    max_exposure_share: float | None = Field(0.05, gt=0, le=1)
    n_candidates: PositiveInt = 100
    max_violation_share: float | None = Field(0.0, ge=0, le=1)
    rules: ArmSpec = ArmSpec(name="rule_enforced")

    @field_validator("rules", mode="before")
    @classmethod
    def _check_rules(cls, value):
        return check_arm_specs([value], "rule_enforcer")[0]


@register_audit
class PlatformRulesAudit(Audit):
    """Platform rules (blocked items, exposure caps): violations of the model's lists, and after
    enforcement by a wrapper, with the accuracy it costs (module docstring)."""

    name: ClassVar[str] = "platform_rules"
    dimension: ClassVar[str] = "controllability"
    description: ClassVar[str] = (
        "platform rules (blocked items, per-item exposure caps): violations before and after enforcement, accuracy cost"
    )
    needs: ClassVar[str] = "any model"
    config: PlatformRulesConfig
    config_class = PlatformRulesConfig

    def _blocked_ids(self, inputs: AuditInputs) -> list[str]:
        c = self.config
        if c.blocked_items is not None:
            return list(c.blocked_items)
        pop = inputs.item_popularity
        order = np.lexsort((np.arange(len(pop)), -pop))[: c.n_blocked]
        return [str(x) for x in inputs.dataset.item_ids[order]]

    def _why_not(self, inputs: AuditInputs) -> str | None:
        c = self.config
        if c.max_exposure_share is None and not self._blocked_ids(inputs):
            return "no rule to check: no blocked items and no exposure cap"
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from trustrec.eval import gini

        c = self.config
        k, n_items = c.k, inputs.dataset.n_items
        ids = self._blocked_ids(inputs)
        enforcer = build_arm(c.rules, "rule_enforcer")[1]
        wrapper = enforcer.enforce(
            inputs.model,
            inputs.split,
            blocked_items=tuple(ids),
            max_exposure_share=c.max_exposure_share,
            n_candidates=c.n_candidates,
        )
        rules = wrapper.rules
        before = inputs.topk[:, :k]
        t0 = time.perf_counter()
        after = wrapper.recommend(inputs.queries, k).items  # one call: the caps cover every user
        seconds = time.perf_counter() - t0
        vb, va = rules.violations(before, n_items), rules.violations(after, n_items)
        users = inputs.queries.users
        targets = inputs.eval_set.targets
        nd_b, hr_b = _accuracy(before, targets, n_items)
        nd_a, hr_a = _accuracy(after, targets, n_items)
        estimates: dict[str, Estimate] = {}
        for label, v, top in (("base", vb, before), ("enforced", va, after)):
            per_list = v["blocked_per_list"].astype(float)
            estimates[f"violation_share [{label}]"] = Estimate(
                v["violating_slots"] / max(v["slots"], 1),
                n=v["slots"],
                description="slots showing a blocked item or above an item's exposure cap, over all slots",
            )
            estimates[f"lists_with_blocked [{label}]"] = cluster_mean_estimate(
                (per_list > 0).astype(float),
                users,
                n_boot=c.n_boot,
                seed=c.seed,
                description=f"share of lists showing at least one of the {len(rules.blocked)} blocked items",
            )
            estimates[f"items_over_cap [{label}]"] = Estimate(
                v["items_over_cap"],
                n=n_items,
                description=f"items in more than {v['cap']} lists (the cap)" if v["cap"] is not None else "no cap set",
            )
            estimates[f"exposure_gini [{label}]"] = Estimate(
                gini(np.bincount(top[top >= 0], minlength=n_items)),
                n=len(top),
                description="Gini of recommendation counts over the catalog",
            )
        for metric, b, a, seed in (("ndcg", nd_b, nd_a, 1), ("hr", hr_b, hr_a, 2)):
            estimates[f"{metric}@{k} change"] = paired_estimate(
                a,
                b,
                n_boot=c.n_boot,
                seed=c.seed + seed,
                test=True,
                description=f"enforced minus base {metric.upper()}@{k} per user (Wilcoxon p)",
            )
            estimates[f"{metric}@{k} retained"] = cluster_ratio_estimate(
                a,
                b,
                users,
                n_boot=c.n_boot,
                seed=c.seed + seed,
                description=f"mean {metric.upper()}@{k} enforced / base",
            )
        estimates[f"fill@{k} [enforced]"] = cluster_mean_estimate(
            (after >= 0).sum(1) / k,
            users,
            n_boot=c.n_boot,
            seed=c.seed + 3,
            description=f"returned items / {k} after enforcement",
        )
        kinds = ("blocked_slots", "excess_slots", "items_over_cap", "lists_with_blocked")
        violations = pd.DataFrame(
            [
                {"violation": kind, "condition": label, "count": v[kind]}
                for label, v in (("base", vb), ("enforced", va))
                for kind in kinds
            ]
        )
        exposure = np.bincount(before[before >= 0], minlength=n_items)
        top_items = np.argsort(-exposure, kind="stable")[:20]
        exposure_table = pd.DataFrame(
            {
                "item": top_items,
                "item_id": inputs.dataset.item_ids[top_items].astype(str),
                "base": exposure[top_items],
                "enforced": np.bincount(after[after >= 0], minlength=n_items)[top_items],
                "blocked": np.isin(top_items, rules.blocked),
                "cap": -1 if vb["cap"] is None else vb["cap"],
            }
        )
        cost = pd.DataFrame(
            [
                {
                    "condition": "enforced",
                    "seconds": seconds,
                    "n_users": len(after),
                    "ms_per_user": 1000 * seconds / max(len(after), 1),
                }
            ]
        )
        evidence = {
            "violations": violations,
            "exposure": exposure_table,
            "cost": cost,
            "per_user": pd.DataFrame(
                {
                    "user": users,
                    "blocked_base": vb["blocked_per_list"],
                    "blocked_enforced": va["blocked_per_list"],
                    f"ndcg@{k}_base": nd_b,
                    f"ndcg@{k}_enforced": nd_a,
                }
            ),
        }
        plots = (
            Plot(
                "bar",
                "violations",
                "violation",
                "count",
                "platform rule violations before and after enforcement",
                series="condition",
                y_label="count",
            ),
        )
        warnings = []
        unknown = list(wrapper.unknown_blocked_)
        if unknown:
            warnings.append(f"{len(unknown)} blocked ids are not in the catalog and were skipped: {unknown[:5]}")
        short = int(((after >= 0).sum(1) < min(k, n_items)).sum())
        if short:
            warnings.append(
                f"{short} of {len(after)} enforced lists are shorter than {k}: the rules left too few "
                f"items in the base's top {wrapper.depth(k)}"
            )
        e = estimates
        summary = (
            f"violating slots {e['violation_share [base]'].value:.3f} -> "
            f"{e['violation_share [enforced]'].value:.3f} ({len(rules.blocked)} blocked, cap {vb['cap']}); "
            f"NDCG@{k} retained x{e[f'ndcg@{k} retained'].value:.3f}"
            if e[f"ndcg@{k} retained"].value is not None
            else f"violating slots {e['violation_share [base]'].value:.3f} -> "
            f"{e['violation_share [enforced]'].value:.3f}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=plots,
            warnings=tuple(warnings),
            summary=summary,
            settings={"blocked_items": ids, "cap": vb["cap"], "n_blocked_in_catalog": len(rules.blocked)},
        )

    def _thresholds(self, estimates):
        extra = (
            [Threshold(estimate="violation_share [enforced]", op="<=", limit=self.config.max_violation_share)]
            if self.config.max_violation_share is not None
            else []
        )
        return [*self.config.thresholds, *extra]
