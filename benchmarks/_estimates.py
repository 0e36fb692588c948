"""Bootstrap figures as plain dicts for a benchmark's results file: a mean with its 95% CI over
rows (users), and a paired difference with its CI and Wilcoxon p-value (2000 resamples)."""

from __future__ import annotations

import numpy as np

__all__ = ["mean_ci", "paired_ci"]


def mean_ci(values, seed: int) -> dict:
    from trustrec.eval import mean_estimate

    e = mean_estimate(np.asarray(values, np.float64), n_boot=2000, seed=seed)
    return {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}


def paired_ci(a, b, seed: int) -> dict:
    from trustrec.eval import paired_estimate

    e = paired_estimate(np.asarray(a, np.float64), np.asarray(b, np.float64), n_boot=2000, seed=seed, test=True)
    return {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n, "p_value": e.p_value}
