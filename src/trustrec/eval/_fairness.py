"""Fairness metrics over recommendation lists: pure, vectorised functions.

Lists are ``(n_users, k)`` item-index matrices with ``-1`` for "no item". Item groups (genres,
providers) are an ``(n_items, n_groups)`` membership matrix; a multi-group item splits its weight
equally over its groups (Steck 2018), so every item carries weight 1.

List similarity follows FaiRLLM (Zhang et al., RecSys 2023), normalised so identical lists score
1 and disjoint lists 0:

- ``jaccard``: |A ∩ B| / |A ∪ B|.
- ``serp_star``: sum over items v of B found in A of (K - rank_A(v) + 1), divided by K(K+1)/2,
  the value of two identical full lists (rank is 1-based, K = the list length).
- ``prag_star``: over ordered pairs (v1, v2) of B with rank_B(v1) < rank_B(v2), count pairs with
  v1 in A and rank_A(v1) < rank_A(v2) (an item missing from A ranks after all of A), divided by
  K(K-1)/2, the number of pairs two identical full lists agree on (the paper divides by K(K+1),
  which puts identical lists at (K-1)/(2(K+1)); we rescale so 1 means identical).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

if TYPE_CHECKING:
    from trustrec.data import Ragged

__all__ = [
    "exposure_by_group",
    "group_distribution",
    "jaccard_at_k",
    "lorenz_curve",
    "miscalibration",
    "normalised_membership",
    "popularity_groups",
    "popularity_lift",
    "prag_star_at_k",
    "serp_star_at_k",
    "snsr",
    "snsv",
]


def _lists(top, name: str = "top") -> np.ndarray:
    top = np.asarray(top)
    if top.ndim != 2:
        raise ValueError(f"{name} must be an (n_users, k) matrix of item indices, got shape {top.shape}")
    return top.astype(np.int64, copy=False)


def normalised_membership(membership: npt.ArrayLike | sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Item-group membership with each item's row scaled to sum 1.

    A multi-group item splits its weight equally over its groups (Steck 2018); items in no group
    keep a zero row.

    Parameters
    ----------
    membership : array_like or scipy.sparse matrix, shape (n_items, n_groups)
        Nonzero where an item belongs to a group.

    Returns
    -------
    scipy.sparse.csr_matrix of float, shape (n_items, n_groups)
        The row-normalised membership.
    """
    m = sp.csr_matrix(membership, dtype=np.float64)
    sums = np.asarray(m.sum(1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def group_distribution(
    rows: npt.ArrayLike | Ragged,
    membership: npt.ArrayLike | sp.spmatrix | sp.sparray,
    weights: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Per row, the distribution over item groups of the row's items.

    Each item's (optional) weight is split over its groups as in :func:`normalised_membership`
    and the group totals are divided by the row's total.

    Parameters
    ----------
    rows : array_like of int, shape (n, K), or Ragged
        An item matrix (``-1`` = no item) or a ``Ragged`` of item lists.
    membership : array_like or scipy.sparse matrix, shape (n_items, n_groups)
        Item-group membership.
    weights : array_like of float, optional
        One weight per item, same shape as the items (e.g. by recency); None weights each item 1.

    Returns
    -------
    numpy.ndarray of float, shape (n, n_groups)
        Rows summing to 1; rows with no grouped item are all zero.
    """
    m = normalised_membership(membership)
    n_items = m.shape[0]
    if hasattr(rows, "indptr"):
        ragged = cast("Ragged", rows)  # duck-typed: whatever has ``indptr`` is taken for a Ragged
        users, items = ragged.row_ids(), np.asarray(ragged.values, np.int64)
        n_rows = len(ragged)
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64).ravel()
    else:
        top = _lists(rows, "rows")
        valid = top >= 0
        users, items = np.nonzero(valid)[0], top[valid]
        n_rows = len(top)
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64)[valid]
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item index out of range for a membership matrix of {n_items} items")
    user_item = sp.csr_matrix((w, (users, items)), shape=(n_rows, n_items))
    counts = np.asarray((user_item @ m).todense())
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def miscalibration(p: npt.ArrayLike, q: npt.ArrayLike, alpha: float = 0.01) -> np.ndarray:
    """Steck's miscalibration per row: ``KL(p || q~)`` with ``q~ = (1 - alpha) q + alpha p``.

    ``p`` is the group distribution of the user's profile and ``q`` that of the list (e.g. from
    :func:`group_distribution`); 0 when the list mirrors the profile.

    Parameters
    ----------
    p : array_like of float, shape (n, n_groups)
        Profile group distributions.
    q : array_like of float, shape (n, n_groups)
        List group distributions.
    alpha : float, default 0.01
        Smoothing weight, in (0, 1), keeping the divergence finite.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        The divergence (natural log) per row; NaN for an empty profile.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"miscalibration: p has shape {p.shape}, q has {q.shape}")
    if not 0 < alpha < 1:
        raise ValueError(f"miscalibration: alpha must be in (0, 1), got {alpha}")
    q_tilde = (1 - alpha) * q + alpha * p
    ratio = np.divide(p, q_tilde, out=np.ones_like(p), where=(p > 0) & (q_tilde > 0))
    kl = (p * np.log(ratio)).sum(1)
    return np.where(p.sum(1) > 0, kl, np.nan)


def popularity_lift(recommended_popularity: npt.ArrayLike, profile_popularity: npt.ArrayLike) -> np.ndarray:
    """Popularity lift per user (Abdollahpouri et al. 2021).

    ``(GAP_rec - GAP_profile) / GAP_profile``: above 0 when the lists are more popular than what
    the user consumed.

    Parameters
    ----------
    recommended_popularity : array_like of float, shape (n_users,)
        Average popularity (GAP) of each user's recommendations.
    profile_popularity : array_like of float, shape (n_users,)
        Average popularity (GAP) of each user's profile.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        The lift; NaN where the profile's GAP is 0.
    """
    r = np.asarray(recommended_popularity, np.float64)
    p = np.asarray(profile_popularity, np.float64)
    if r.shape != p.shape:
        raise ValueError(f"popularity_lift: {r.shape} recommended values vs {p.shape} profile values")
    return np.divide(r - p, p, out=np.full_like(r, np.nan), where=p > 0)


def lorenz_curve(exposure: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve of item exposure.

    Cumulative share of items (x) against cumulative share of exposure (y), items sorted from least
    to most exposed; both start at 0 and end at 1. The Gini is ``1 - 2 * (area under y)``.

    Parameters
    ----------
    exposure : array_like of float, shape (n_items,)
        Non-negative exposure of each item.

    Returns
    -------
    x, y : numpy.ndarray of float, shape (n_items + 1,)
        The curve; with no exposure at all, y is the diagonal.
    """
    x = np.sort(np.asarray(exposure, np.float64))
    if np.any(x < 0):
        raise ValueError("lorenz_curve: exposure must be non-negative")
    total = x.sum()
    cum = np.concatenate([[0.0], np.cumsum(x) / total]) if total > 0 else np.linspace(0, 1, len(x) + 1)
    return np.linspace(0.0, 1.0, len(x) + 1), cum


def exposure_by_group(
    top: npt.ArrayLike,
    membership: npt.ArrayLike | sp.spmatrix | sp.sparray,
    item_popularity: npt.ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """Exposure of each item group next to its share of the catalog.

    The exposure share is the group's share of the filled list slots (multi-group items split
    over their groups), the catalog share its share of the items, and ``ratio`` = exposure share
    / catalog share (1 = exposed as often as its size).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    membership : array_like or scipy.sparse matrix, shape (n_items, n_groups)
        Item-group membership.
    item_popularity : array_like of float, shape (n_items,), optional
        Interactions per item; given, the group's interaction share is added.

    Returns
    -------
    dict of str to numpy.ndarray, each of shape (n_groups,)
        ``exposure_share``, ``catalog_share``, ``interaction_share`` (only with
        ``item_popularity``) and ``ratio`` (NaN for a group with no item).
    """
    top = _lists(top)
    m = normalised_membership(membership)
    valid = top >= 0
    slots = np.bincount(top[valid], minlength=m.shape[0]).astype(np.float64)
    exposure = np.asarray(m.T @ slots).ravel()
    catalog = np.asarray(m.sum(0)).ravel()
    out = {
        "exposure_share": exposure / max(exposure.sum(), 1e-300),
        "catalog_share": catalog / max(catalog.sum(), 1e-300),
    }
    if item_popularity is not None:
        inter = np.asarray(m.T @ np.asarray(item_popularity, np.float64)).ravel()
        out["interaction_share"] = inter / max(inter.sum(), 1e-300)
    out["ratio"] = np.divide(
        out["exposure_share"], out["catalog_share"], out=np.full_like(exposure, np.nan), where=out["catalog_share"] > 0
    )
    return out


def popularity_groups(item_popularity: npt.ArrayLike, n_groups: int = 5, by: str = "interactions") -> np.ndarray:
    """Popularity group of each item, 0 = the most popular group.

    Items are sorted by popularity, most popular first (ties by lower index, as in
    :func:`~trustrec.eval.long_tail_mask`), and cut into ``n_groups`` consecutive groups:

    - ``by="interactions"``: groups of (about) equal interaction mass. An item's group is
      ``min(floor(n_groups * M / total), n_groups - 1)`` with ``M`` the interactions of the items
      sorted before it, so the head group holds the first fifth (for 5 groups) of all
      interactions, and items never interacted with fall in the last group. A single item may
      hold more than a group's mass, so a group can be empty.
    - ``by="items"``: groups of (about) equal item counts: the item at sorted position ``i``
      (0-based) of ``n`` goes to group ``floor(n_groups * i / n)``.

    Parameters
    ----------
    item_popularity : array_like of float, shape (n_items,)
        Non-negative popularity (e.g. training interactions) of each item.
    n_groups : int, default 5
        Number of groups (at least 1).
    by : {"interactions", "items"}, default "interactions"
        Cut into groups of equal interaction mass or of equal item counts; with no interaction
        at all, ``"interactions"`` falls back to equal item counts.

    Returns
    -------
    numpy.ndarray of int, shape (n_items,)
        Group index per item, from 0 (head) to ``n_groups - 1`` (tail).

    Raises
    ------
    ValueError
        When ``n_groups`` is below 1, ``by`` is unknown or a popularity is negative.
    """
    pop = np.asarray(item_popularity, np.float64)
    if n_groups < 1:
        raise ValueError(f"popularity_groups: n_groups must be at least 1, got {n_groups}")
    if by not in ("interactions", "items"):
        raise ValueError(f"popularity_groups: by must be 'interactions' or 'items', got {by!r}")
    if np.any(pop < 0):
        raise ValueError("popularity_groups: popularity must be non-negative")
    n = len(pop)
    order = np.lexsort((np.arange(n), -pop))
    total = pop.sum()
    if by == "items" or total <= 0:
        sorted_groups = (n_groups * np.arange(n)) // max(n, 1)
    else:
        before = np.concatenate([[0.0], np.cumsum(pop[order])[:-1]])
        sorted_groups = np.minimum(np.floor(n_groups * before / total), n_groups - 1).astype(np.int64)
    groups = np.empty(n, np.int64)
    groups[order] = sorted_groups
    return groups


# -- list similarity (FaiRLLM) -------------------------------------------------------------------
def _ranks_in(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """rank[u, j] = 1-based position of other[u, j] in reference[u], 0 where absent or padding."""
    match = (other[:, :, None] == reference[:, None, :]) & (other[:, :, None] >= 0)
    pos = np.argmax(match, axis=2) + 1
    return np.where(match.any(2), pos, 0)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _lists(a, "a"), _lists(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"list similarity needs lists of one shape: a {a.shape}, b {b.shape}")
    return a, b


def jaccard_at_k(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """Per row, the Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of two top-K lists.

    Padding (``-1``) is ignored; two empty lists give 1.

    Parameters
    ----------
    a, b : array_like of int, shape (n, K)
        Item lists, same shape.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        The similarity per row, in [0, 1].
    """
    a, b = _pair(a, b)
    inter = (_ranks_in(a, b) > 0).sum(1)
    union = (a >= 0).sum(1) + (b >= 0).sum(1) - inter
    return np.divide(inter, union, out=np.ones(len(a)), where=union > 0)


def serp_star_at_k(reference: npt.ArrayLike, other: npt.ArrayLike) -> np.ndarray:
    """Per row, FaiRLLM SERP*@K of ``other`` against ``reference``.

    Sum over the items v of ``other`` found in ``reference`` of ``K - rank_ref(v) + 1``, divided by
    ``K(K+1)/2`` (module docstring): 1 for identical full lists, 0 for disjoint ones.

    Parameters
    ----------
    reference : array_like of int, shape (n, K)
        Reference lists (e.g. for the neutral prompt), ``-1`` for no item.
    other : array_like of int, shape (n, K)
        Lists compared against them, same shape.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        The similarity per row; all 1 when K is 0.
    """
    ref, oth = _pair(reference, other)
    k = ref.shape[1]
    if k == 0:
        return np.ones(len(ref))
    rank = _ranks_in(ref, oth)
    gain = np.where(rank > 0, k - rank + 1, 0).sum(1)
    return gain / (k * (k + 1) / 2)


def prag_star_at_k(reference: npt.ArrayLike, other: npt.ArrayLike) -> np.ndarray:
    """Per row, FaiRLLM PRAG*@K of ``other`` against ``reference``.

    Over ordered pairs (v1, v2) of ``other`` with v1 ranked above v2, the pairs with v1 in
    ``reference`` and ranked above v2 there (an item missing from ``reference`` ranks after all of
    it), divided by ``K(K-1)/2`` so identical full lists give 1 (module docstring).

    Parameters
    ----------
    reference : array_like of int, shape (n, K)
        Reference lists, ``-1`` for no item.
    other : array_like of int, shape (n, K)
        Lists compared against them, same shape.

    Returns
    -------
    numpy.ndarray of float, shape (n,)
        The similarity per row; for K below 2, :func:`jaccard_at_k`.
    """
    ref, oth = _pair(reference, other)
    k = ref.shape[1]
    if k < 2:
        return jaccard_at_k(ref, oth)
    rank = _ranks_in(ref, oth).astype(np.float64)
    rank_ref = np.where(rank > 0, rank, np.inf)  # absent from the reference: after all of it
    valid = oth >= 0
    upper = np.triu(np.ones((k, k), bool), 1)  # pairs j1 < j2 in the other list
    agree = (
        (rank[:, :, None] > 0)
        & (rank_ref[:, :, None] < rank_ref[:, None, :])
        & valid[:, :, None]
        & valid[:, None, :]
        & upper[None]
    )
    return agree.sum((1, 2)) / (k * (k - 1) / 2)


def snsr(similarities: npt.ArrayLike) -> float:
    """Sensitive-to-neutral similarity range (SNSR, FaiRLLM).

    Max minus min of the similarities over the values of a sensitive attribute; NaN values are
    left out.

    Parameters
    ----------
    similarities : array_like of float
        One similarity (to the neutral lists) per attribute value.

    Returns
    -------
    float
        The range; NaN when no value is defined.
    """
    s = np.asarray(similarities, np.float64)
    s = s[~np.isnan(s)]
    return float(s.max() - s.min()) if len(s) else np.nan


def snsv(similarities: npt.ArrayLike) -> float:
    """Sensitive-to-neutral similarity variance (SNSV, FaiRLLM).

    The population standard deviation (``ddof=0``) of the similarities over the values of a
    sensitive attribute; NaN values are left out.

    Parameters
    ----------
    similarities : array_like of float
        One similarity (to the neutral lists) per attribute value.

    Returns
    -------
    float
        The standard deviation; NaN when no value is defined.
    """
    s = np.asarray(similarities, np.float64)
    s = s[~np.isnan(s)]
    return float(s.std(ddof=0)) if len(s) else np.nan


def bootstrap_exposure_gini(weights: npt.ArrayLike, user_item: sp.spmatrix | sp.sparray, chunk: int = 64) -> np.ndarray:
    """Exposure Gini of each bootstrap resample of users.

    Parameters
    ----------
    weights : array_like, shape (n_boot, n_users)
        How many times each user is drawn in each resample (e.g. counts from
        :func:`trustrec.eval.bootstrap_rows`).
    user_item : scipy.sparse matrix, shape (n_users, n_items)
        How many times each user's list shows each item.
    chunk : int, default 64
        Resamples computed at once (memory ``chunk * n_items``).

    Returns
    -------
    numpy.ndarray, shape (n_boot,)
        The Gini coefficient of the items' exposure counts (:func:`gini`) in each resample.
    """
    from trustrec.eval._metrics import gini

    w = np.asarray(weights, np.float64)
    out = np.full(len(w), np.nan)
    item_user = sp.csr_matrix(user_item).T.tocsr()
    for start in range(0, len(w), chunk):
        counts = np.asarray(item_user @ w[start : start + chunk].T).T
        out[start : start + chunk] = [gini(c) for c in counts]
    return out
