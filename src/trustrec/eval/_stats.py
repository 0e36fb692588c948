"""Statistics over users: seeded bootstrap confidence intervals and paired significance tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_N_BOOT", "bootstrap_ci", "check_n_boot", "paired_test", "PairedTest"]

MAX_N_BOOT = 1_000_000
"""Most bootstrap resamples any estimate may ask for (a million: far beyond what a stable 95% CI
needs; more only burns memory and time)."""


def check_n_boot(n_boot, owner: str = "bootstrap") -> int:
    """``n_boot`` as an int in 0 .. MAX_N_BOOT, else a ConfigError naming ``owner``."""
    from trustrec.errors import ConfigError

    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or not 0 <= n_boot <= MAX_N_BOOT:
        raise ConfigError(f"{owner}: n_boot must be a whole number from 0 to {MAX_N_BOOT:,} (resamples of "
                          f"the users); got {n_boot!r}")
    return int(n_boot)


def bootstrap_ci(values, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                 chunk: int = 64) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (NaN ignored), resampling users.

    Chunked so memory stays at ``chunk * n`` whatever the number of users.
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
        means[start:start + size] = x[idx].mean(axis=1)
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_a: float
    mean_b: float
    diff: float              # mean(b - a)
    t_stat: float
    t_pvalue: float
    wilcoxon_stat: float
    wilcoxon_pvalue: float


def paired_test(a, b) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test on per-user values (pairs with NaN dropped)."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_test: a has {a.shape} values, b has {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    d = b - a
    if len(d) < 2 or np.all(d == 0):
        t = w = (np.nan, 1.0 if len(d) and np.all(d == 0) else np.nan)
    else:
        t = stats.ttest_rel(b, a)
        w = stats.wilcoxon(d, zero_method="wilcox") if np.any(d != 0) else (np.nan, 1.0)
    return PairedTest(len(d), float(a.mean()) if len(a) else np.nan, float(b.mean()) if len(b) else np.nan,
                      float(d.mean()) if len(d) else np.nan, float(t[0]), float(t[1]), float(w[0]), float(w[1]))
