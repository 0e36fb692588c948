"""Fairness audits: user groups (consumer side), item exposure and popularity (provider side),
calibration, counterfactual sensitive-attribute probing of models that read attributes, and cold
items (``cold_start``: accuracy on items with few or no training interactions, where LLM and
text-encoder recommenders are expected to help, next to reference models on the same users)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator

from trustrec.audit._base import Audit, AuditConfig, AuditInputs, fit_spec, register_audit
from trustrec.audit._result import AuditResult, Estimate, Plot, Threshold
from trustrec.eval import (
    ACCURACY_METRICS,
    aplt,
    average_popularity,
    bootstrap_ci,
    bootstrap_rows,
    catalog_coverage,
    exposure_by_group,
    gini,
    group_distribution,
    GroupMetricFrame,
    jaccard_at_k,
    long_tail_mask,
    lorenz_curve,
    mean_estimate,
    miscalibration,
    paired_estimate,
    percentile_ci,
    popularity_lift,
    prag_star_at_k,
    serp_star_at_k,
    snsr,
    snsv,
    two_sample_estimate,
)
from trustrec.models import has_capability

__all__ = [
    "UserFairnessAudit",
    "ItemExposureAudit",
    "CalibrationAudit",
    "CounterfactualAttributeAudit",
    "ColdStartConfig",
    "ColdStartAudit",
    "reads_query_attributes",
]


# -- user side -------------------------------------------------------------------------------------
class UserFairnessConfig(AuditConfig):
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
    description: ClassVar[str] = "accuracy by user group (gender, age band, occupation, activity): gaps, ratios, tests"
    needs: ClassVar[str] = "any model; user attributes for attribute groups (activity needs none)"
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


# -- item side: exposure and popularity --------------------------------------------------------------
class ItemExposureConfig(AuditConfig):
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
    description: ClassVar[str] = (
        "exposure Gini, Lorenz curve, APLT, popularity lift, exposure vs catalog share by group"
    )
    needs: ClassVar[str] = "any model; an item group column (genre/provider) for the per-group shares"
    config_class = ItemExposureConfig

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
        return pd.DataFrame({"grouping": grouping, "group": names, **{k: v for k, v in shares.items()}})

    def _thresholds(self, estimates):
        extra = []
        if self.config.max_popularity_lift is not None:
            extra = [Threshold(estimate="popularity_lift", op="<=", limit=self.config.max_popularity_lift)]
        return [*self.config.thresholds, *extra]


# -- calibration -------------------------------------------------------------------------------------
class CalibrationConfig(AuditConfig):
    item_group_column: str | None = None
    alpha: float = Field(0.01, gt=0, lt=1)
    max_miscalibration: float | None = None


@register_audit
class CalibrationAudit(Audit):
    """Steck's miscalibration: KL between the genre mix of each user's history and of their list."""

    name: ClassVar[str] = "calibration"
    dimension: ClassVar[str] = "fairness"
    description: ClassVar[str] = "Steck's KL(history genres || list genres) per user, by genre and by user group"
    needs: ClassVar[str] = "an item group column (genre, category)"
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
        column, membership, names, _ = inputs.item_groups(c.item_group_column)
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


# -- counterfactual sensitive attributes (FaiRLLM) ---------------------------------------------------
class CounterfactualConfig(AuditConfig):
    attributes: tuple[str, ...] | None = None  # None: user attribute columns with few values
    values: dict[str, list[str]] = Field(default_factory=dict)  # override the values probed per attribute
    max_values: PositiveInt = 30
    max_users: PositiveInt | None = 200
    batch_size: PositiveInt = 256
    max_snsr: float | None = 0.05  # on Jaccard@K


def reads_query_attributes(model) -> bool:
    """True when ``model`` declares the ``"attributes"`` capability (its answers read the query's
    user attributes, e.g. an LLM prompt's profile line) and does not switch them off (a prompt
    template with ``attribute_keys=()``), or wraps a base model that does."""
    if has_capability(model, "attributes"):
        try:
            keys = model.prompt_template().attribute_keys if has_capability(model, "prompt") else None
        except Exception:  # noqa: BLE001 - a template that cannot be built says nothing about attributes
            keys = None
        return keys is None or len(keys) > 0
    base = getattr(model, "base_", None)
    return base is not None and reads_query_attributes(base)


@register_audit
class CounterfactualAttributeAudit(Audit):
    """FaiRLLM-style probing: the same histories asked neutrally and once per value of a sensitive
    attribute (through Query attributes); top-K similarity to the neutral list by Jaccard@K,
    SERP*@K and PRAG*@K, and the attribute's unfairness as SNSR (range) and SNSV (std) over values.
    A model that does not read attributes (no ``"attributes"`` capability) would score 0 by
    construction, so the audit answers ``not_applicable`` for it, with that reason; see
    ``trustrec.eval._fairness`` for the SERP*/PRAG* normalisation."""

    name: ClassVar[str] = "counterfactual_attributes"
    dimension: ClassVar[str] = "fairness"
    description: ClassVar[str] = "FaiRLLM probe: top-K change when the query states gender/age/occupation"
    needs: ClassVar[str] = (
        "a model that reads the query's user attributes (the 'attributes' capability: LLM "
        "recommenders with a profile line) and user attributes (or configured values)"
    )
    config_class = CounterfactualConfig
    SIMILARITIES: ClassVar[dict] = {"jaccard": jaccard_at_k, "serp_star": serp_star_at_k, "prag_star": prag_star_at_k}

    def _probe_values(self, inputs: AuditInputs) -> dict[str, list[str]]:
        from trustrec.data import MISSING_GROUP

        c = self.config
        values = {a: [str(v) for v in vs] for a, vs in c.values.items()}
        groups = inputs.user_groups.drop(columns=["activity"], errors="ignore")
        attrs = c.attributes if c.attributes is not None else [a for a in groups.columns if a not in values]
        for a in attrs:
            if a in values:
                continue
            if a not in groups.columns:
                from trustrec.errors import ConfigError

                raise ConfigError(
                    f"{self.name}: attribute {a!r} is not a user column; give its values in "
                    f"'values' or use one of {list(groups.columns)}"
                )
            found = sorted(set(groups[a]) - {MISSING_GROUP})
            if 1 < len(found) <= c.max_values:
                values[a] = found
        return values

    def _why_not(self, inputs: AuditInputs) -> str | None:
        if not reads_query_attributes(inputs.model):
            name = getattr(inputs.model, "name", "") or type(inputs.model).__name__
            return (
                f"{name} does not read the query's user attributes (no 'attributes' capability), so stating "
                "an attribute cannot change its lists: a probe would show no change by construction"
            )
        if not self._probe_values(inputs):
            return (
                "no sensitive attribute to probe: the dataset has no user attribute with 2 to "
                f"{self.config.max_values} values; give attributes and values in the config"
            )
        return None

    def _recommend(self, model, queries, k: int) -> np.ndarray:
        parts = [model.recommend(b, k).items for b in queries.batches(self.config.batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, k), np.int64)

    def _run(self, inputs: AuditInputs) -> AuditResult:
        from tqdm.auto import tqdm

        c = self.config
        model, queries = inputs.model, inputs.queries.with_attributes(None)
        probe = self._probe_values(inputs)
        neutral = self._recommend(model, queries, c.k)
        rows, estimates = [], {}
        n = len(queries)
        boot_rows = bootstrap_rows(n, c.n_boot, c.seed) if c.n_boot and n else None
        total = sum(len(v) for v in probe.values())
        bar = tqdm(total=total, desc=f"{self.name}", disable=not inputs.progress, leave=False)
        for attr, vals in probe.items():
            sims = {s: np.empty((n, len(vals))) for s in self.SIMILARITIES}
            for j, v in enumerate(vals):
                asked = queries.with_attributes(pd.DataFrame({attr: [v] * n}))
                top = self._recommend(model, asked, c.k)
                for s, fn in self.SIMILARITIES.items():
                    sims[s][:, j] = fn(neutral, top)
                bar.update(1)
            for s, mat in sims.items():
                means = mat.mean(0)
                for j, v in enumerate(vals):
                    lo, hi = bootstrap_ci(mat[:, j], n_boot=c.n_boot, seed=c.seed + j)
                    rows.append(
                        {
                            "attribute": attr,
                            "value": v,
                            "similarity": s,
                            "mean": means[j],
                            "ci_low": lo,
                            "ci_high": hi,
                            "n_users": n,
                        }
                    )
                ci_r = ci_v = (None, None)
                if boot_rows is not None:
                    boot = mat[boot_rows].mean(1)  # (n_boot, n_values)
                    ci_r = percentile_ci(boot.max(1) - boot.min(1))
                    ci_v = percentile_ci(boot.std(1))
                estimates[f"snsr {s}@{c.k} [{attr}]"] = Estimate(
                    snsr(means),
                    *ci_r,
                    n,
                    description=f"range of mean {s}@{c.k} to the neutral list over {len(vals)} values of {attr}",
                )
                estimates[f"snsv {s}@{c.k} [{attr}]"] = Estimate(
                    snsv(means), *ci_v, n, description=f"population std of mean {s}@{c.k} over values of {attr}"
                )
                estimates[f"mean {s}@{c.k} [{attr}]"] = Estimate(
                    float(mat.mean()), n=n, description=f"mean {s}@{c.k} to the neutral list over values"
                )
        bar.close()
        table = pd.DataFrame(rows)
        evidence = {"similarity": table}
        plots = []
        for attr in probe:
            name = f"jaccard_{attr}"
            evidence[name] = table[(table.attribute == attr) & (table.similarity == "jaccard")].reset_index(drop=True)
            plots.append(
                Plot(
                    "bar",
                    name,
                    "value",
                    "mean",
                    f"Jaccard@{c.k} to the neutral list when the query states {attr}",
                    ci_low="ci_low",
                    ci_high="ci_high",
                    y_label="Jaccard",
                )
            )
        worst = max(((a, estimates[f"snsr jaccard@{c.k} [{a}]"].value) for a in probe), key=lambda t: t[1])
        summary = (
            f"{len(probe)} attributes, {total} values, {n} users; largest SNSR (Jaccard@{c.k}) "
            f"{worst[1]:.3f} for {worst[0]}"
        )
        return self._result(
            estimates,
            evidence=evidence,
            plots=tuple(plots),
            summary=summary,
            settings={"probed_values": probe, "n_model_calls": (total + 1) * n},
        )

    def _thresholds(self, estimates):
        extra = []
        if self.config.max_snsr is not None:
            extra = [
                Threshold(estimate=k, op="<=", limit=self.config.max_snsr)
                for k in estimates
                if k.startswith("snsr jaccard@")
            ]
        return [*self.config.thresholds, *extra]


# -- cold start (item side) ------------------------------------------------------------------------------
class ColdStartConfig(AuditConfig):
    """``max_train_interactions``: items with at most this many training interactions are cold (0 =
    never seen in training; :func:`trustrec.eval.cold_item_mask`); ``metrics``: per-user accuracy
    metrics at ``k``; ``compare_with``: reference models (``{"name", "params"}``) trained on the same
    split and measured on the same users, so one report compares e.g. classic, text-encoder and LLM
    recommenders on cold items (a reference that cannot be built or trained here is reported in the
    warnings, not a crash)."""

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
    from trustrec.eval import hits_matrix, restrict_targets
    from trustrec.eval import distinct_counts

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
    description: ClassVar[str] = (
        "accuracy on cold items (<= N training interactions) vs warm items, cold-item "
        "exposure, and reference models (classic, text encoder, LLM) on the same users"
    )
    needs: ClassVar[str] = "any model; held-out targets that include cold items (raise max_train_interactions if none)"
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

        out, seen = [], {}
        for spec in self.config.compare_with:
            spec = ModelSpec.model_validate(spec)
            label = spec.name if spec.name not in seen else f"{spec.name} #{seen[spec.name] + 1}"
            seen[spec.name] = seen.get(spec.name, 0) + 1
            try:
                model, _ = fit_spec(spec, inputs.split, seed=self.config.seed, progress=inputs.progress)
            except Exception as exc:  # a missing extra or offline encoder: report, do not crash the audit
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
            top = evaluate(
                ref, eval_set, metrics=metrics, n_boot=0, keep_topk=True, progress=False, seed=c.seed
            ).topk.items
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
