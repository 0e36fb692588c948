"""Item exposure (``item_exposure``, provider side): exposure Gini and Lorenz curve, average
recommendation popularity, APLT, popularity lift over the users' profiles, and exposure share vs
catalog share by item group."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import (
    aplt,
    average_popularity,
    catalog_coverage,
    exposure_by_group,
    gini,
    long_tail_mask,
    lorenz_curve,
    mean_estimate,
    percentile_ci,
    popularity_lift,
)

__all__ = ["ItemExposureAudit", "ItemExposureConfig"]


class ItemExposureConfig(AuditConfig):
    """Settings of the ``item_exposure`` audit.

    Parameters
    ----------
    head_share : float
        Share of items, by training popularity, that form the head; the rest is the long tail
        (APLT, between 0 and 1).
    item_group_column : str or None
        Item column whose groups' exposure share is compared with their catalog share; None:
        guessed (genre, category, provider, ...).
    max_popularity_lift : float or None
        Threshold on the mean popularity lift over the users' profiles (1.0: lists at most twice
        as popular as the profiles); None: no such threshold.
    """

    head_share: float = Field(0.2, gt=0, lt=1)
    item_group_column: str | None = None  # None: guessed (genre, category, provider, ...)
    max_popularity_lift: float | None = 1.0  # lists at most twice as popular as the profiles


@register_audit
class ItemExposureAudit(Audit):
    """Who gets exposed: exposure Gini and Lorenz curve, average recommendation popularity, APLT,
    popularity lift over the users' profiles, and exposure share vs catalog share by item group
    (popularity head/tail, and genre/provider when the items have such a column)."""

    name: ClassVar[str] = "item_exposure"
    dimension: ClassVar[str] = "fairness"
    requires: ClassVar[str] = "lists"  # reads only the top-K lists of the evaluation queries
    description: ClassVar[str] = (
        "exposure Gini, Lorenz curve, APLT, popularity lift, exposure vs catalog share by group"
    )
    needs: ClassVar[str] = "any model; an item group column (genre/provider) for the per-group shares"
    config: ItemExposureConfig
    config_class = ItemExposureConfig

    def _why_not(self, inputs: AuditInputs) -> str | None:
        top = inputs.topk[:, : self.config.k]
        if not (top >= 0).any():  # exposure of nothing has no distribution to measure
            return (
                f"the model recommended no item to any of the {len(top)} evaluation users (every "
                f"top-{self.config.k} list is empty), so there is no exposure to measure"
            )
        return None

    def _run(self, inputs: AuditInputs) -> AuditResult:
        c = self.config
        top = inputs.topk[:, : c.k]
        n_items = inputs.dataset.n_items
        pop = inputs.item_popularity.astype(np.float64)
        tail = long_tail_mask(pop, c.head_share)
        histories = inputs.queries.histories
        rec_pop = average_popularity(top, pop)
        hist_pop = np.divide(
            np.bincount(histories.row_ids(), pop[histories.values], minlength=len(histories)),
            histories.lengths,
            out=np.full(len(histories), np.nan),
            where=histories.lengths > 0,
        )
        exposure = np.bincount(top[top >= 0], minlength=n_items)
        rng = np.random.default_rng(c.seed)
        boot_gini = []
        for _ in range(c.n_boot):
            rows = top[rng.integers(0, len(top), len(top))]
            boot_gini.append(gini(np.bincount(rows[rows >= 0], minlength=n_items)))
        gini_ci = percentile_ci(boot_gini)
        n_users = len(top)
        lift = popularity_lift(np.nanmean(rec_pop)[None], np.nanmean(hist_pop)[None])[0]
        per_user_lift = popularity_lift(rec_pop, hist_pop)
        lift_boot = []
        for _ in range(c.n_boot):
            r = rng.integers(0, n_users, n_users)
            lift_boot.append(popularity_lift(np.nanmean(rec_pop[r])[None], np.nanmean(hist_pop[r])[None])[0])
        lift_ci = percentile_ci(lift_boot)
        estimates = {
            "exposure_gini": Estimate(
                gini(exposure), *gini_ci, n_users, description="Gini of recommendation counts over the whole catalog"
            ),
            "coverage": Estimate(
                catalog_coverage(top, n_items), n=n_users, description="share of the catalog recommended to anyone"
            ),
            "aplt": mean_estimate(
                aplt(top, tail),
                n_boot=c.n_boot,
                seed=c.seed,
                description=f"share of each list from the long tail (outside the top "
                f"{c.head_share:.0%} items by training popularity)",
            ),
            "avg_rec_popularity": mean_estimate(
                rec_pop, n_boot=c.n_boot, seed=c.seed + 1, description="mean training interactions of recommended items"
            ),
            "avg_profile_popularity": mean_estimate(
                hist_pop, n_boot=c.n_boot, seed=c.seed + 2, description="mean training interactions of history items"
            ),
            "popularity_lift": Estimate(
                lift,
                *lift_ci,
                n_users,
                description="(mean rec popularity - mean profile popularity) / mean profile popularity",
            ),
            "tail_exposure_share": Estimate(
                float(exposure[tail].sum() / max(exposure.sum(), 1)),
                n=n_users,
                description="share of all recommendation slots given to long-tail "
                f"items, which are {tail.mean():.0%} of the catalog",
            ),
        }
        x, y = lorenz_curve(exposure)
        keep = np.unique(np.linspace(0, len(x) - 1, min(len(x), 201)).astype(int))
        evidence = {
            "lorenz": pd.DataFrame({"item_share": x[keep], "exposure_share": y[keep]}),
            "per_user": pd.DataFrame(
                {
                    "user": inputs.queries.users,
                    "avg_rec_popularity": rec_pop,
                    "avg_profile_popularity": hist_pop,
                    "popularity_lift": per_user_lift,
                    "aplt": aplt(top, tail),
                }
            ),
        }
        pop_groups = np.where(tail, "tail", "head")[:, None] == np.array(["head", "tail"])[None]
        shares = exposure_by_group(top, pop_groups, pop)
        frames = [self._share_frame("popularity", ["head", "tail"], shares)]
        plots = [
            Plot(
                "lorenz",
                "lorenz",
                "item_share",
                "exposure_share",
                f"exposure Lorenz curve (Gini {estimates['exposure_gini'].value:.3f})",
                x_label="cumulative share of items",
                y_label="cumulative share of exposure",
            )
        ]
        warnings = []
        groups = inputs.item_groups(c.item_group_column)
        if groups is not None:
            column, membership, names, counts = groups
            shares = exposure_by_group(top, membership, pop)
            frames.append(self._share_frame(column, names, shares))
            if counts["n_items_without_group"]:
                warnings.append(
                    f"{counts['n_items_without_group']} items have no value in {column!r}; "
                    "they count in no group's share"
                )
            ratio = shares["ratio"]
            estimates["group_exposure_ratio_min"] = Estimate(
                float(np.nanmin(ratio)),
                n=len(names),
                description=f"lowest exposure share / catalog share over {column!r} groups "
                f"({names[int(np.nanargmin(ratio))]})",
            )
        elif c.item_group_column is None:
            warnings.append("no item group column (genre, category, provider) found: only popularity groups")
        share_table = pd.concat(frames, ignore_index=True)
        evidence["group_exposure"] = share_table
        long = share_table.melt(
            id_vars=["grouping", "group"],
            value_vars=["exposure_share", "catalog_share"],
            var_name="share",
            value_name="value",
        )
        for grouping in share_table.grouping.unique():
            name = f"shares_{grouping}"
            evidence[name] = long[long.grouping == grouping].reset_index(drop=True)
            plots.append(
                Plot(
                    "bar",
                    name,
                    "group",
                    "value",
                    f"exposure vs catalog share by {grouping}",
                    series="share",
                    y_label="share",
                )
            )
        e = estimates
        summary = (
            f"Gini {e['exposure_gini'].value:.3f}, APLT {e['aplt'].value:.3f}, "
            f"popularity lift {e['popularity_lift'].value:+.2f}, coverage {e['coverage'].value:.3f}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            warnings=tuple(warnings),
            summary=summary,
            settings={"n_long_tail_items": int(tail.sum())},
        )

    @staticmethod
    def _share_frame(grouping, names, shares) -> pd.DataFrame:
        return pd.DataFrame({"grouping": grouping, "group": names, **dict(shares.items())})

    def _thresholds(self, estimates):
        extra = []
        if self.config.max_popularity_lift is not None:
            extra = [Threshold(estimate="popularity_lift", op="<=", limit=self.config.max_popularity_lift)]
        return [*self.config.thresholds, *extra]
