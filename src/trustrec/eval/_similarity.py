"""Similarity of two ranked lists per user: extrapolated rank-biased overlap (Jaccard@K is
:func:`trustrec.eval.jaccard_at_k`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["rank_biased_overlap"]


def rank_biased_overlap(a: npt.ArrayLike, b: npt.ArrayLike, p: float = 0.9) -> np.ndarray:
    """Per row, the extrapolated rank-biased overlap RBO_ext of two ranked lists (Webber, Moffat
    and Zobel 2010, eq. 32, which also covers lists of different lengths).

    Parameters
    ----------
    a, b : array_like of int, shape (n, k_a) and (n, k_b)
        Item indices per row, best first, ``-1`` as padding after the valid items.
    p : float, default 0.9
        Persistence, in (0, 1): the weight of depth ``d`` decays as ``p ** d``.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        With ``s`` and ``l`` the shorter and longer valid length and ``X_d`` the overlap at depth
        ``d`` (for ``d > s`` the whole shorter list against the longer list's prefix)::

            RBO_ext = (1-p)/p * (sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d)
                      + ((X_l - X_s)/l + X_s/s) p^l

        Two identical lists give 1, disjoint lists 0; two empty lists give 1 and one empty list
        0 (as :func:`trustrec.eval.jaccard_at_k`).
    """
    from trustrec.errors import ConfigError
    from trustrec.eval._fairness import _ranks_in

    if not 0 < p < 1:
        raise ConfigError(f"rank_biased_overlap: p must be in (0, 1), got {p}")
    a, b = np.atleast_2d(np.asarray(a)), np.atleast_2d(np.asarray(b))
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"rank_biased_overlap: a has {a.shape[0]} rows, b has {b.shape[0]}")
    n = a.shape[0]
    k = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=-1)
    b = np.pad(b, ((0, 0), (0, k - b.shape[1])), constant_values=-1)
    if k == 0:
        return np.ones(n)
    la, lb = (a >= 0).sum(1), (b >= 0).sum(1)
    rank_in_b = _ranks_in(b, a).astype(np.float64)  # 1-based rank of a's items in b, 0 = absent
    pos_a = np.arange(1, k + 1, dtype=np.float64)[None, :]
    depth = np.where((rank_in_b > 0) & (a >= 0), np.maximum(pos_a, rank_in_b), np.inf)
    d = np.arange(1, k + 1, dtype=np.float64)
    x = (depth[:, :, None] <= d[None, None, :]).sum(1).astype(np.float64)  # X_d, (n, k)
    s, l = np.minimum(la, lb), np.maximum(la, lb)  # noqa: E741 - s and l as in the docstring's formula
    rows = np.arange(n)
    pd_ = p**d
    in_l = d[None, :] <= l[:, None]
    term1 = np.where(in_l, x / d * pd_, 0.0).sum(1)
    x_s = np.where(s > 0, x[rows, np.maximum(s - 1, 0)], 0.0)
    x_l = np.where(l > 0, x[rows, np.maximum(l - 1, 0)], 0.0)
    s_safe = np.maximum(s, 1).astype(np.float64)
    tail = (d[None, :] > s[:, None]) & in_l
    term2 = np.where(tail, x_s[:, None] * (d[None, :] - s[:, None]) / (s_safe[:, None] * d[None, :]) * pd_, 0.0).sum(1)
    l_safe = np.maximum(l, 1).astype(np.float64)
    rbo = (1 - p) / p * (term1 + term2) + ((x_l - x_s) / l_safe + x_s / s_safe) * p**l_safe
    rbo = np.where(s == 0, 0.0, rbo)
    return np.where(l == 0, 1.0, np.clip(rbo, 0.0, 1.0))
