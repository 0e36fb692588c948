"""Per-user metrics sliced by user group, fairlearn ``MetricFrame`` style.

Everything is computed once, in the constructor: per-group means with seeded bootstrap CIs
(resampling users within each group), between-group difference and ratio with CIs (the same
stratified bootstrap), and a significance test of "all groups equal" (Mann-Whitney U for two
groups, Kruskal-Wallis for more). Users whose metric is NaN (no target) are excluded from that
metric and counted in ``n_users``-per-metric; users with a missing group label are kept in
``overall`` and reported as their own row, but never enter a comparison. Groups smaller than
``min_group_size`` are flagged (``too_small``), get no CI, and are left out of the comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.eval._stats import check_n_boot

__all__ = ["GroupMetricFrame"]

MISSING = "(missing)"


class GroupMetricFrame:
    """Per-user metrics sliced by user group, fairlearn ``MetricFrame`` style.

    Everything is computed in the constructor (module docstring): per-group means with bootstrap
    CIs, between-group difference and ratio with CIs, and a test of "all groups equal". The
    results are the attributes ``table`` (one row per metric and group), ``overall`` (each
    metric's mean over all users) and ``comparisons`` (one row per metric).

    Parameters
    ----------
    metrics : pandas.DataFrame or Mapping of str to numpy.ndarray
        Per-user values: one column per metric, or a name -> array dict.
    groups : array_like
        One group label per user; NaN, None or ``"(missing)"`` mark a missing label.
    n_boot : int, default 500
        Bootstrap resamples of the users within each group (0 gives no CIs).
    ci : float, default 0.95
        Confidence level, in (0, 1).
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.
    min_group_size : int, default 20
        Groups with fewer users with a value are flagged ``too_small``, get no CI and are left out
        of the comparisons.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    ValueError
        When ``metrics`` is empty or differs in length from ``groups``, or ``ci`` is outside
        (0, 1).
    """

    def __init__(
        self,
        *,
        metrics: pd.DataFrame | Mapping[str, np.ndarray],
        groups: npt.ArrayLike,
        n_boot: int = 500,
        ci: float = 0.95,
        seed: int = 0,
        min_group_size: int = 20,
    ):
        values = (
            pd.DataFrame({k: np.asarray(v, np.float64) for k, v in dict(metrics).items()})
            if not isinstance(metrics, pd.DataFrame)
            else metrics.astype(np.float64).reset_index(drop=True)
        )
        labels = pd.Series(np.asarray(groups, dtype=object))
        if len(labels) != len(values):
            raise ValueError(f"GroupMetricFrame: {len(values)} users with metric values but {len(labels)} group labels")
        if values.shape[1] == 0:
            raise ValueError("GroupMetricFrame: give at least one metric")
        if not 0 < ci < 1:
            raise ValueError(f"GroupMetricFrame: ci must be in (0, 1), got {ci}")
        n_boot = check_n_boot(n_boot, "GroupMetricFrame")
        labels = labels.where(labels.notna(), MISSING).astype(str)
        self.metrics = list(values.columns)
        self.n_boot, self.ci, self.seed, self.min_group_size = n_boot, ci, seed, min_group_size
        self.n_missing = int((labels == MISSING).sum())
        names = sorted(set(labels))
        codes = labels.map({g: i for i, g in enumerate(names)}).to_numpy()
        self._compute(values, labels, names, codes)

    # -- computation ---------------------------------------------------------------------------------
    def _compute(self, values: pd.DataFrame, labels: pd.Series, names: list[str], codes: np.ndarray) -> None:
        from scipy import stats

        rng = np.random.default_rng(self.seed)
        alpha = (1 - self.ci) / 2
        rows, comps = [], []
        overall = {}
        for m in self.metrics:
            x = values[m].to_numpy()
            ok = ~np.isnan(x)
            overall[m] = float(x[ok].mean()) if ok.any() else np.nan
            boot_means, eligible = {}, []
            for g_idx, g in enumerate(names):
                xg = x[(codes == g_idx) & ok]
                n = len(xg)
                small = n < self.min_group_size
                mean = float(xg.mean()) if n else np.nan
                lo = hi = np.nan
                if n and not small and self.n_boot > 0:
                    means = xg[rng.integers(0, n, size=(self.n_boot, n))].mean(1)
                    lo, hi = np.quantile(means, [alpha, 1 - alpha])
                    if g != MISSING:
                        boot_means[g] = means
                if n and not small and g != MISSING:
                    eligible.append((g, xg))
                rows.append(
                    {
                        "metric": m,
                        "group": g,
                        "mean": mean,
                        "ci_low": lo,
                        "ci_high": hi,
                        "n_users": int((codes == g_idx).sum()),
                        "n_valid": n,
                        "too_small": small,
                        "missing_label": g == MISSING,
                    }
                )
            comps.append(self._compare(m, overall[m], eligible, boot_means, alpha, stats))
        self.table = pd.DataFrame(rows)
        self.overall = pd.Series(overall, name="overall")
        self.comparisons = pd.DataFrame(comps).set_index("metric")

    def _compare(self, metric, overall, eligible, boot_means, alpha, stats) -> dict:
        out = {
            "metric": metric,
            "n_groups_compared": len(eligible),
            "best_group": None,
            "worst_group": None,
            "difference": np.nan,
            "difference_ci_low": np.nan,
            "difference_ci_high": np.nan,
            "ratio": np.nan,
            "ratio_ci_low": np.nan,
            "ratio_ci_high": np.nan,
            "difference_to_overall": np.nan,
            "test": None,
            "p_value": np.nan,
        }
        if len(eligible) < 2:
            return out
        means = {g: xg.mean() for g, xg in eligible}
        best, worst = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
        out.update(
            best_group=best,
            worst_group=worst,
            difference=means[best] - means[worst],
            ratio=means[worst] / means[best] if means[best] > 0 else np.nan,
            difference_to_overall=max(abs(v - overall) for v in means.values()),
        )
        if len(boot_means) == len(eligible):
            stacked = np.stack([boot_means[g] for g, _ in eligible])  # (groups, n_boot)
            hi, lo = stacked.max(0), stacked.min(0)
            diff = hi - lo
            ratio = np.divide(lo, hi, out=np.full_like(lo, np.nan), where=hi > 0)
            out["difference_ci_low"], out["difference_ci_high"] = np.quantile(diff, [alpha, 1 - alpha])
            if not np.isnan(ratio).all():
                out["ratio_ci_low"], out["ratio_ci_high"] = np.nanquantile(ratio, [alpha, 1 - alpha])
        samples = [xg for _, xg in eligible]
        if all(np.all(s == samples[0][0]) for s in samples):
            out.update(test="constant", p_value=1.0)  # every value equal: no evidence of a gap
        elif len(samples) == 2:
            out.update(test="mann-whitney-u", p_value=float(stats.mannwhitneyu(*samples).pvalue))
        else:
            out.update(test="kruskal-wallis", p_value=float(stats.kruskal(*samples).pvalue))
        return out

    # -- fairlearn-style views -----------------------------------------------------------------------
    @property
    def by_group(self) -> pd.DataFrame:
        """Rows: groups; columns: each metric's mean, then ``n_users`` and ``too_small``."""
        wide = self.table.pivot(index="group", columns="metric", values="mean")[self.metrics]
        first = self.table.drop_duplicates("group").set_index("group")
        return wide.assign(n_users=first["n_users"], too_small=first["too_small"])

    def group_min(self) -> pd.Series:
        return self._eligible_means().min()

    def group_max(self) -> pd.Series:
        return self._eligible_means().max()

    def _eligible_means(self) -> pd.DataFrame:
        t = self.table[~self.table.too_small & ~self.table.missing_label]
        return t.pivot(index="group", columns="metric", values="mean").reindex(columns=self.metrics)

    def difference(self, method: str = "between_groups") -> pd.Series:
        """fairlearn's ``MetricFrame.difference``: the largest gap between two compared groups
        (``between_groups``: best minus worst mean), or (``to_overall``) the largest absolute gap
        between a compared group's mean and everyone's (``max |g - overall|``)."""
        if method not in ("between_groups", "to_overall"):
            raise ValueError(f"difference: method must be 'between_groups' or 'to_overall', got {method!r}")
        col = "difference" if method == "between_groups" else "difference_to_overall"
        return self.comparisons[col].rename(method)

    def ratio(self, method: str = "between_groups") -> pd.Series:
        """fairlearn's ``MetricFrame.ratio``: ``between_groups`` is the worst compared group's mean
        over the best one's; ``to_overall`` is the smallest of ``min(g / overall, overall / g)``
        over the compared groups, so a group far *above* everyone lowers it as much as one far
        below (a group at twice the overall mean gives 0.5). NaN when the overall mean is 0."""
        if method == "between_groups":
            return self.comparisons["ratio"].rename(method)
        if method == "to_overall":
            means = self._eligible_means()
            with np.errstate(divide="ignore", invalid="ignore"):
                r = means / self.overall.reindex(means.columns).replace(0, np.nan)
                folded = r.where(r <= 1, 1 / r)  # expressed as a number <= 1
            return folded.min().reindex(self.metrics).rename(method)
        raise ValueError(f"ratio: method must be 'between_groups' or 'to_overall', got {method!r}")
