"""Statistics over users: the one place that builds estimates, intervals and significance tests.

Every audit and every evaluator builds its numbers here, so each convention is chosen once:

Bootstrap
    Percentile bootstrap (the 2.5% and 97.5% quantiles of the replicates for a 95% interval,
    ``numpy.quantile``'s default linear interpolation). The resampling unit is the **user** (one
    value per user, or one pair of values per user for paired estimates, the pair kept
    together); :func:`two_sample_estimate` resamples each independent group on its own,
    :func:`stratified_bootstrap_rows` resamples positives and negatives on their own (AUC),
    :func:`cluster_ratio_estimate` resamples clusters (users) carrying several rows. Seeded with
    ``numpy.random.default_rng(seed)``: the same seed gives the same interval. The default level
    is 95% (``DEFAULT_CI``). NaN values are left out (pairs with a NaN on either side).
Paired test
    Wilcoxon signed-rank test, two-sided, on the per-user differences, with
    ``zero_method="wilcox"`` (``WILCOXON_ZERO_METHOD``): users whose two values are equal are
    dropped before ranking. Top-K metrics are 0 under both arms for most users; those zeros say
    nothing about the direction of a change, and ``"zsplit"`` (which ranks them and gives half to
    each side) inflates the null variance without adding signal, so its p-value grows with the
    share of unchanged users (on ml-100k, ItemKNN vs EASE NDCG@10: 135 of 943 users differ,
    p = 0.025 with ``"wilcox"``, 0.30 with ``"zsplit"``, 0.12 with ``"pratt"``). ``"wilcox"`` is
    also scipy's and R's default. Tied absolute differences get average ranks; scipy's
    ``method="auto"`` (exact null distribution for small samples without ties, else the normal
    approximation with the tie-corrected variance, no continuity correction). With fewer than 2
    pairs there is no p-value (None); when every difference is 0 the p-value is 1.
Independent groups
    Mann-Whitney U, two-sided, scipy's defaults (``method="auto"``: exact for small samples
    without ties, else the normal approximation with tie correction and continuity correction);
    None with fewer than 2 values in a group, 1 when every value of both groups is the same.
Binomial proportions
    Wilson score interval (:func:`wilson_interval`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_CI",
    "MAX_N_BOOT",
    "WILCOXON_ZERO_METHOD",
    "Estimate",
    "PairedTest",
    "bootstrap_ci",
    "bootstrap_rows",
    "check_n_boot",
    "cluster_mean_estimate",
    "cluster_ratio_estimate",
    "mannwhitney_pvalue",
    "mean_estimate",
    "paired_estimate",
    "paired_test",
    "percentile_ci",
    "stratified_bootstrap_rows",
    "two_sample_estimate",
    "wilcoxon_pvalue",
    "wilson_interval",
]

MAX_N_BOOT = 1_000_000
"""Most bootstrap resamples any estimate may ask for (a million: far beyond what a stable 95% CI
needs; more only burns memory and time)."""

DEFAULT_CI = 0.95
"""Confidence level of every interval unless a caller asks for another."""

WILCOXON_ZERO_METHOD = "wilcox"
"""How the paired test treats equal pairs: dropped (module docstring says why)."""


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class Estimate:
    """One measured number with its CI, sample size, optional p-value and meaning.

    ``trustrec.audit.Estimate`` is this class. NaN is stored as None.

    Parameters
    ----------
    value : float or None
        The estimate; None when it is not defined.
    ci_low, ci_high : float or None, optional
        Ends of the confidence interval; None when there is none (e.g. a group too small to
        bootstrap).
    n : int or None, optional
        Size of the sample the estimate rests on (users, pairs or rows, as its builder says).
    p_value : float or None, optional
        p-value of a test attached to the estimate.
    description : str, optional
        What the number means.
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    p_value: float | None = None
    description: str = ""

    def __post_init__(self):
        for name in ("value", "ci_low", "ci_high", "p_value"):
            object.__setattr__(self, name, _num(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_n_boot(n_boot, owner: str = "bootstrap") -> int:
    """``n_boot`` as an int in 0 .. MAX_N_BOOT, else a ConfigError naming ``owner``."""
    from trustrec.errors import ConfigError

    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or not 0 <= n_boot <= MAX_N_BOOT:
        raise ConfigError(
            f"{owner}: n_boot must be a whole number from 0 to {MAX_N_BOOT:,} (resamples of the users); got {n_boot!r}"
        )
    return int(n_boot)


# -- intervals ------------------------------------------------------------------------------------------
def bootstrap_ci(
    values: npt.ArrayLike, *, n_boot: int = 1000, ci: float = DEFAULT_CI, seed: int = 0, chunk: int = 64
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``, resampling users.

    Parameters
    ----------
    values : array_like of float
        One value per user; NaN left out.
    n_boot : int
        Resamples (0 gives no interval).
    ci : float
        Confidence level.
    seed : int
        Seed of ``numpy.random.default_rng``.
    chunk : int
        Resamples drawn at once, so memory stays at ``chunk * n`` whatever the number of users.

    Returns
    -------
    (low, high) : tuple of float
        NaN when there is no value or ``n_boot`` is 0; ``(x, x)`` for a single value.
    """
    n_boot = check_n_boot(n_boot, "bootstrap_ci")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (np.nan, np.nan)
    if len(x) == 1 or n_boot <= 0:
        return (float(x[0]), float(x[0])) if len(x) == 1 else (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, len(x), size=(size, len(x)))
        means[start : start + size] = x[idx].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def percentile_ci(replicates: npt.ArrayLike, ci: float = DEFAULT_CI) -> tuple[float | None, float | None]:
    """Percentile interval of bootstrap replicates of any statistic.

    The ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles (``numpy.quantile``'s linear
    interpolation); NaN replicates are left out.

    Parameters
    ----------
    replicates : array_like of float
        Bootstrap replicates of the statistic (any shape, flattened).
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    (low, high) : tuple of float or None
        ``(None, None)`` with fewer than 2 replicates.
    """
    r = np.asarray(replicates, np.float64).ravel()
    r = r[~np.isnan(r)]
    if len(r) < 2:
        return None, None
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(r, [alpha, 1 - alpha])
    return float(lo), float(hi)


def bootstrap_rows(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Row indices of bootstrap resamples of users.

    For statistics that are not a plain mean; pair with :func:`percentile_ci`.

    Parameters
    ----------
    n : int
        Number of users.
    n_boot : int
        Number of resamples, 0 .. ``MAX_N_BOOT``.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray of int, shape (n_boot, n)
        Each row draws ``n`` users with replacement.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    n_boot = check_n_boot(n_boot, "bootstrap_rows")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def stratified_bootstrap_rows(labels: npt.ArrayLike, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap row indices resampling positives and negatives separately.

    Every resample keeps both classes in their original numbers, as an AUC needs.

    Parameters
    ----------
    labels : array_like of bool, shape (n,)
        True for positives.
    n_boot : int
        Number of resamples, 0 .. ``MAX_N_BOOT``.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    numpy.ndarray of int, shape (n_boot, n)
        Indices into ``labels``; per row the resampled positives first, then the negatives.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    n_boot = check_n_boot(n_boot, "stratified_bootstrap_rows")
    labels = np.asarray(labels, bool)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    return np.concatenate(
        [pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]], 1
    )


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float = 1.959964
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (vectorised).

    With ``p = successes / trials`` and ``t = trials``, the interval is
    ``(p + z^2/(2t) -+ z sqrt(p(1-p)/t + z^2/(4t^2))) / (1 + z^2/t)``.

    Parameters
    ----------
    successes : array_like of float
        Number of successes.
    trials : array_like of float
        Number of trials, broadcastable with ``successes``.
    z : float, default 1.959964
        Normal quantile of the level; 1.96 gives 95%.

    Returns
    -------
    low, high : numpy.ndarray of float
        Ends of the interval; NaN where ``trials`` is 0.
    """
    s, t = np.asarray(successes, np.float64), np.asarray(trials, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / t
        centre = (p + z * z / (2 * t)) / (1 + z * z / t)
        half = z * np.sqrt(p * (1 - p) / t + z * z / (4 * t * t)) / (1 + z * z / t)
    return np.where(t > 0, centre - half, np.nan), np.where(t > 0, centre + half, np.nan)


def t_interval(values: npt.ArrayLike, ci: float = DEFAULT_CI) -> tuple[float, float]:
    """Student-t interval of a mean over few independent runs (seeds): ``mean -+ t_{n-1} s / sqrt(n)``.

    The convention for figures over seeds, where a bootstrap over 3 values says little.

    Parameters
    ----------
    values : array_like of float
        One value per run; NaNs are refused.
    ci : float, default 0.95
        Level of the interval.

    Returns
    -------
    low, high : float
        Ends of the interval; NaN, NaN for fewer than two values.
    """
    from scipy import stats

    v = np.asarray(values, np.float64).ravel()
    if np.isnan(v).any():
        raise ValueError("t_interval: values contain NaN")
    if len(v) < 2:
        return (float("nan"), float("nan"))
    half = stats.t.ppf(0.5 + ci / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return (float(v.mean() - half), float(v.mean() + half))


# -- tests ----------------------------------------------------------------------------------------------
def wilcoxon_pvalue(differences: npt.ArrayLike) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value of per-user differences.

    Under the module's one convention: equal pairs (zero differences) dropped, average ranks for
    tied absolute differences, scipy's ``method="auto"``. NaN differences are left out.

    Parameters
    ----------
    differences : array_like of float
        One difference per user.

    Returns
    -------
    float or None
        The p-value; None with fewer than 2 differences, 1.0 when every difference is 0.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(differences, np.float64)
    d = d[~np.isnan(d)]
    if len(d) < 2:
        return None
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method=WILCOXON_ZERO_METHOD).pvalue)


def mannwhitney_pvalue(a: npt.ArrayLike, b: npt.ArrayLike) -> float | None:
    """Two-sided Mann-Whitney U p-value of two independent samples.

    scipy's defaults (module docstring); NaN values are left out.

    Parameters
    ----------
    a, b : array_like of float
        The two samples.

    Returns
    -------
    float or None
        The p-value; None with fewer than 2 values in either sample, 1.0 when every value of both
        is the same.
    """
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) < 2 or len(y) < 2:
        return None
    if np.all(x == x[0]) and np.all(y == x[0]):
        return 1.0
    return float(mannwhitneyu(x, y).pvalue)


@dataclass(frozen=True)
class PairedTest:
    """Result of :func:`paired_test`: a paired t-test and a Wilcoxon signed-rank test.

    Parameters
    ----------
    n : int
        Number of complete pairs.
    mean_a, mean_b : float
        Means of ``a`` and ``b`` over the complete pairs.
    diff : float
        ``mean(b - a)``.
    t_stat, t_pvalue : float
        Statistic and two-sided p-value of the paired t-test.
    wilcoxon_stat, wilcoxon_pvalue : float
        Statistic and two-sided p-value of the Wilcoxon signed-rank test (the module's convention).
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float  # mean(b - a)
    t_stat: float
    t_pvalue: float
    wilcoxon_stat: float
    wilcoxon_pvalue: float


def paired_test(a: npt.ArrayLike, b: npt.ArrayLike) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test on per-user values.

    Pairs with a NaN on either side are dropped; the Wilcoxon test follows the module's
    convention (equal pairs dropped). When every difference is 0 (and there is a pair) the
    statistics are NaN and the p-values 1; otherwise, with fewer than 2 pairs, all are NaN.

    Parameters
    ----------
    a, b : array_like of float, same shape
        Two values per user; ``b`` is compared against ``a``.

    Returns
    -------
    PairedTest
        Sizes, means, ``diff = mean(b - a)`` and both tests.
    """
    from scipy import stats

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired_test: a has {x.shape} values, b has {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    d = y - x
    if len(d) < 2 or np.all(d == 0):
        t = w = (np.nan, 1.0 if len(d) and np.all(d == 0) else np.nan)
    else:
        t = stats.ttest_rel(y, x)
        w = stats.wilcoxon(d, zero_method=WILCOXON_ZERO_METHOD)
    return PairedTest(
        len(d),
        float(x.mean()) if len(x) else np.nan,
        float(y.mean()) if len(y) else np.nan,
        float(d.mean()) if len(d) else np.nan,
        float(t[0]),
        float(t[1]),
        float(w[0]),
        float(w[1]),
    )


# -- estimates ------------------------------------------------------------------------------------------
def mean_estimate(
    values: npt.ArrayLike, *, n_boot: int, seed: int, description: str = "", ci: float = DEFAULT_CI
) -> Estimate:
    """Mean of per-user values with a percentile bootstrap CI over users.

    NaN values are left out.

    Parameters
    ----------
    values : array_like of float
        One value per user.
    n_boot : int
        Bootstrap resamples (0 gives no interval).
    seed : int
        Seed of ``numpy.random.default_rng``.
    description : str, optional
        Stored on the estimate.
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    Estimate
        ``value`` None when no value is defined; ``n`` = the users with a value.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    x = np.asarray(values, np.float64)
    x = x[~np.isnan(x)]
    if not len(x):
        return Estimate(None, n=0, description=description)
    lo, hi = bootstrap_ci(x, n_boot=n_boot, ci=ci, seed=seed)
    return Estimate(float(x.mean()), lo, hi, len(x), description=description)


def paired_estimate(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_boot: int,
    seed: int,
    description: str = "",
    test: bool = False,
    ci: float = DEFAULT_CI,
) -> Estimate:
    """Mean of the per-user difference ``a - b`` with a percentile bootstrap CI over users.

    Parameters
    ----------
    a, b : array_like of float, same shape
        Two values per user (e.g. after and before); pairs with a NaN on either side left out.
    n_boot : int
        Bootstrap resamples (0 gives no interval).
    seed : int
        Seed of ``numpy.random.default_rng``.
    description : str, optional
        Stored on the estimate.
    test : bool, default False
        Attach the Wilcoxon signed-rank p-value of the differences (:func:`wilcoxon_pvalue`).
        A p-value turns a threshold breach that is not significant into a warning.
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    Estimate
        ``value`` None when no pair is defined; ``n`` = the complete pairs.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_estimate: a has {a.shape} values, b has {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    if not len(d):
        return Estimate(None, n=0, description=description)
    lo, hi = bootstrap_ci(d, n_boot=n_boot, ci=ci, seed=seed)
    p = wilcoxon_pvalue(d) if test else None
    return Estimate(float(d.mean()), lo, hi, len(d), p_value=p, description=description)


def two_sample_estimate(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    n_boot: int,
    seed: int,
    description: str = "",
    test: bool = True,
    ci: float = DEFAULT_CI,
) -> Estimate:
    """Difference of means ``mean(a) - mean(b)`` of two independent groups of users.

    NaN values are left out. The percentile bootstrap resamples each group on its own (``a``
    first, from one seeded generator).

    Parameters
    ----------
    a, b : array_like of float
        One value per user of each group.
    n_boot : int
        Bootstrap resamples (0 gives no interval).
    seed : int
        Seed of ``numpy.random.default_rng``.
    description : str, optional
        Stored on the estimate.
    test : bool, default True
        Attach the Mann-Whitney U p-value (:func:`mannwhitney_pvalue`).
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    Estimate
        ``value`` None when either group is empty; ``n`` = both group sizes together.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    n_boot = check_n_boot(n_boot, "two_sample_estimate")
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if not len(x) or not len(y):
        return Estimate(None, n=int(len(x) + len(y)), description=description)
    lo = hi = None
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        means_a = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(1)
        means_b = y[rng.integers(0, len(y), (n_boot, len(y)))].mean(1)
        lo, hi = percentile_ci(means_a - means_b, ci)
    p = mannwhitney_pvalue(x, y) if test else None
    return Estimate(float(x.mean() - y.mean()), lo, hi, int(len(x) + len(y)), p_value=p, description=description)


def cluster_ratio_estimate(
    num: npt.ArrayLike,
    den: npt.ArrayLike,
    clusters: npt.ArrayLike,
    *,
    n_boot: int,
    seed: int,
    description: str = "",
    ci: float = DEFAULT_CI,
) -> Estimate:
    """Ratio ``sum(num) / sum(den)`` with a CI resampling clusters.

    Rows where ``num`` or ``den`` is NaN are left out; a mean when ``den`` is 1. The percentile
    CI resamples whole clusters (users holding several rows) with replacement; with a single
    cluster the value is both ends.

    Parameters
    ----------
    num, den : array_like of float, shape (n,)
        Numerator and denominator of each row.
    clusters : array_like, shape (n,)
        Cluster (e.g. user) of each row.
    n_boot : int
        Bootstrap resamples (0 gives no interval).
    seed : int
        Seed of ``numpy.random.default_rng``.
    description : str, optional
        Stored on the estimate.
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    Estimate
        ``value`` None when no row is defined; ``n`` = the rows used.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    n_boot = check_n_boot(n_boot, "cluster_ratio_estimate")
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    ok = ~(np.isnan(num) | np.isnan(den))
    if not ok.any():
        return Estimate(None, n=0, description=description)
    uniq, inv = np.unique(np.asarray(clusters)[ok], return_inverse=True)
    s_num = np.bincount(inv, num[ok], len(uniq))
    s_den = np.bincount(inv, den[ok], len(uniq))
    total = s_den.sum()
    value = s_num.sum() / total if total else np.nan
    lo = hi = None
    if n_boot > 0 and len(uniq) > 1:
        idx = np.random.default_rng(seed).integers(0, len(uniq), (n_boot, len(uniq)))
        d = s_den[idx].sum(1)
        lo, hi = percentile_ci(np.divide(s_num[idx].sum(1), d, out=np.full(n_boot, np.nan), where=d > 0), ci)
    elif len(uniq) == 1:
        lo = hi = value
    return Estimate(value, lo, hi, int(ok.sum()), description=description)


def cluster_mean_estimate(
    values: npt.ArrayLike,
    clusters: npt.ArrayLike,
    *,
    n_boot: int,
    seed: int,
    description: str = "",
    ci: float = DEFAULT_CI,
) -> Estimate:
    """Mean of row values with a CI resampling clusters.

    :func:`cluster_ratio_estimate` with a denominator of 1; NaN values are left out.

    Parameters
    ----------
    values : array_like of float, shape (n,)
        One value per row.
    clusters : array_like, shape (n,)
        Cluster (e.g. user) of each row.
    n_boot : int
        Bootstrap resamples (0 gives no interval).
    seed : int
        Seed of ``numpy.random.default_rng``.
    description : str, optional
        Stored on the estimate.
    ci : float, default DEFAULT_CI
        Confidence level.

    Returns
    -------
    Estimate
        ``value`` None when no row is defined; ``n`` = the rows used.

    Raises
    ------
    ConfigError
        When ``n_boot`` is not a whole number from 0 to ``MAX_N_BOOT``.
    """
    values = np.asarray(values, np.float64)
    return cluster_ratio_estimate(
        values,
        np.where(np.isnan(values), np.nan, 1.0),
        clusters,
        n_boot=n_boot,
        seed=seed,
        description=description,
        ci=ci,
    )
