"""Platform-side metrics of TriRec (arXiv 2603.10673, stage 2): popularity groups, the
position-weighted group distribution of all served lists, DGU, MGU and EIU@K.

These follow the evaluation script of the paper's code (``evaluate/data_statistics_platform_second.py``
of Marfekey/TriRec); where its definitions differ from the re-ranker's own (the CTR), both are
given and the difference is stated.

- **Groups** (:func:`trirec_groups`): items sorted by training exposure (interaction count),
  **least exposed first** (ties by lower index), cut into ``n_groups`` (8) consecutive chunks of
  ``max(1, n // n_groups)`` items; the last chunk takes the remainder. Group 0 is the least
  exposed. (:func:`~trustrec.eval.popularity_groups` is another rule: head first, balanced cuts.)
- **Target distribution** (:func:`train_group_distribution`): ``p_train(g)`` = the group's share
  of all training exposure (all zeros when there is none).
- **Served distribution** (:func:`platform_distribution`): every listed item adds the position
  weight ``1 / log2(rank + 1)`` (rank 1-based) to its group, summed over **all users' lists**
  (one platform-level distribution, not one per user), divided by the total weight.
- **DGU** = ``1/2 Σ_g |p_rec(g) - p_train(g)|``; **MGU** = ``max_g |p_rec(g) - p_train(g)|``
  (:func:`dgu`, :func:`mgu`); both 0 when the lists match the training distribution.
- **EIU@K** (:func:`eiu_at_k`) per user: ``Σ_{r ≤ K} CTR(u, i_r) / log2(r + 1)`` over the list's
  items (the script's ``EIU@K_sum``, averaged over users by the caller). The script's CTR
  (:func:`ctr_from_cosine` with ``temperature="std"``) is ``sigmoid(cos / τ)`` with ``τ`` the
  standard deviation of the list's cosines (0.5 when that is below 1e-3), ``z = cos / τ`` clipped
  to [-20, 20] and 0.001 for an item without an embedding; the **re-ranker** uses a plain
  ``sigmoid(cos)`` instead (``temperature=1.0``).

NDCG, MRR and Gini are the existing :func:`~trustrec.eval.ndcg`, :func:`~trustrec.eval.mrr` and
:func:`~trustrec.eval.gini` / :func:`~trustrec.eval.exposure_gini` (the script computes NDCG and
MRR over the candidate list with one target; it logs a Gini but never computes one).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from trustrec.errors import DataError

__all__ = [
    "ctr_from_cosine",
    "dgu",
    "eiu_at_k",
    "mgu",
    "platform_distribution",
    "position_weights",
    "train_group_distribution",
    "trirec_groups",
]


def position_weights(k: int) -> np.ndarray:
    """TriRec's position weights ``1 / log2(pos + 2)`` for 0-based positions ``0 .. k - 1``
    (``1 / log2(rank + 1)`` for 1-based ranks; the NDCG discount).

    Parameters
    ----------
    k : int
        Number of positions (at least 0).

    Returns
    -------
    numpy.ndarray of float, shape (k,)
        The weights, 1 at the top.
    """
    return 1.0 / np.log2(np.arange(max(int(k), 0)) + 2.0)


def trirec_groups(item_exposure: npt.ArrayLike, n_groups: int = 8) -> np.ndarray:
    """TriRec's popularity group of each item (module docstring): least exposed first, chunks of
    ``max(1, n // n_groups)`` items, the last group takes the remainder.

    Parameters
    ----------
    item_exposure : array_like of float, shape (n_items,)
        Non-negative training exposure of each item (interactions; unseen items 0).
    n_groups : int, default 8
        Number of groups (at least 1). With fewer items than groups the last groups are empty.

    Returns
    -------
    numpy.ndarray of int, shape (n_items,)
        Group per item, 0 (least exposed) to ``n_groups - 1`` (most exposed).

    Raises
    ------
    DataError
        When ``item_exposure`` is not 1-d, or holds a negative or non-finite value.
    ValueError
        When ``n_groups`` is below 1.
    """
    exposure = _exposure(item_exposure, "trirec_groups")
    if n_groups < 1:
        raise ValueError(f"trirec_groups: n_groups must be at least 1, got {n_groups}")
    n = len(exposure)
    order = np.argsort(exposure, kind="stable")  # ascending; ties keep index order
    chunk = max(1, n // n_groups)
    groups = np.empty(n, np.int64)
    groups[order] = np.minimum(np.arange(n) // chunk, n_groups - 1)
    return groups


def train_group_distribution(item_exposure: npt.ArrayLike, item_groups: npt.ArrayLike, n_groups: int) -> np.ndarray:
    """``p_train(g)``: each group's share of the total training exposure.

    Parameters
    ----------
    item_exposure : array_like of float, shape (n_items,)
        Non-negative training exposure of each item.
    item_groups : array_like of int, shape (n_items,)
        Group of each item, in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups.

    Returns
    -------
    numpy.ndarray of float, shape (n_groups,)
        The distribution (sums to 1), or all zeros when there is no exposure (as the paper's code).

    Raises
    ------
    DataError
        When the arrays differ in length, an exposure is negative or non-finite, or a group is
        outside ``0 .. n_groups - 1``.
    """
    exposure = _exposure(item_exposure, "train_group_distribution")
    groups = _item_groups(item_groups, n_groups, "train_group_distribution")
    if len(groups) != len(exposure):
        raise DataError(
            f"train_group_distribution: item_exposure has {len(exposure)} items but item_groups has {len(groups)}"
        )
    mass = np.bincount(groups, weights=exposure, minlength=n_groups)
    total = mass.sum()
    return mass / total if total > 0 else np.zeros(n_groups)


def platform_distribution(top: npt.ArrayLike, item_groups: npt.ArrayLike, n_groups: int) -> np.ndarray:
    """``p_rec``: the position-weighted group distribution of all lists together (module
    docstring). Truncate ``top`` to its first K columns for the @K version.

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Served lists, ``-1`` for no item.
    item_groups : array_like of int, shape (n_items,)
        Group of each item, in ``0 .. n_groups - 1``.
    n_groups : int
        Number of groups.

    Returns
    -------
    numpy.ndarray of float, shape (n_groups,)
        The distribution; all zeros when no list holds an item.

    Raises
    ------
    DataError
        When ``top`` is not 2-d, names an item outside ``item_groups`` or a group is out of range.
    """
    lists = np.asarray(top)
    if lists.ndim != 2:
        raise DataError(f"platform_distribution: top must be an (n_users, K) matrix, got shape {lists.shape}")
    lists = lists.astype(np.int64, copy=False)
    groups = _item_groups(item_groups, n_groups, "platform_distribution")
    valid = lists >= 0
    if valid.any() and lists[valid].max() >= len(groups):
        row = int(np.nonzero((lists >= len(groups)).any(1))[0][0])
        raise DataError(f"platform_distribution: top row {row} names an item >= {len(groups)}, the size of item_groups")
    weights = np.broadcast_to(position_weights(lists.shape[1]), lists.shape)[valid]
    mass = np.bincount(groups[lists[valid]], weights=weights, minlength=n_groups)
    total = mass.sum()
    return mass / total if total > 0 else np.zeros(n_groups)


def _gaps(top, item_groups, p_train) -> np.ndarray:
    target = np.asarray(p_train, np.float64)
    if target.ndim != 1:
        raise DataError(f"p_train must be 1-d (one share per group), got shape {target.shape}")
    return np.abs(platform_distribution(top, item_groups, len(target)) - target)


def dgu(top: npt.ArrayLike, item_groups: npt.ArrayLike, p_train: npt.ArrayLike) -> float:
    """Distribution gap of utility: ``1/2 Σ_g |p_rec(g) - p_train(g)|`` (total variation between
    the served and the training group distributions; module docstring).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Served lists, ``-1`` for no item.
    item_groups : array_like of int, shape (n_items,)
        Group of each item, in ``0 .. len(p_train) - 1``.
    p_train : array_like of float, shape (n_groups,)
        The target (training) distribution.

    Returns
    -------
    float
        DGU in [0, 1]; 0 = the lists match ``p_train``.
    """
    return float(_gaps(top, item_groups, p_train).sum() / 2.0)


def mgu(top: npt.ArrayLike, item_groups: npt.ArrayLike, p_train: npt.ArrayLike) -> float:
    """Maximum gap of utility: ``max_g |p_rec(g) - p_train(g)|`` (module docstring).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Served lists, ``-1`` for no item.
    item_groups : array_like of int, shape (n_items,)
        Group of each item, in ``0 .. len(p_train) - 1``.
    p_train : array_like of float, shape (n_groups,)
        The target (training) distribution.

    Returns
    -------
    float
        MGU in [0, 1]; 0 when there is no group.
    """
    gaps = _gaps(top, item_groups, p_train)
    return float(gaps.max()) if gaps.size else 0.0


def ctr_from_cosine(
    cosine: npt.ArrayLike, temperature: Literal["std"] | float = "std", missing: float = 0.001
) -> np.ndarray:
    """CTR proxy from user-item cosine similarities, per row (one user's list).

    ``temperature="std"`` is the evaluation script's CTR: ``sigmoid(clip(cos / τ, -20, 20))`` with
    ``τ`` the (population) standard deviation of the row's finite cosines, 0.5 when that is
    below 1e-3; cosines are first clipped to [-1, 1]. A number is a fixed ``τ``;
    ``temperature=1.0`` is the re-ranker's ``φ(cos) = sigmoid(cos)``.

    Parameters
    ----------
    cosine : array_like of float, shape (n_users, L)
        Cosine of each listed item with its user; NaN where the item has no embedding.
    temperature : "std" or float, default "std"
        ``τ`` per row from the cosines, or a fixed positive ``τ``.
    missing : float, default 0.001
        CTR of an item without an embedding (the script's value; it gives 0.01 to every item of
        a user without an embedding: pass such rows as NaN with ``missing=0.01``).

    Returns
    -------
    numpy.ndarray of float, shape (n_users, L)
        The CTR, in (0, 1).

    Raises
    ------
    DataError
        When ``cosine`` is not 2-d.
    ValueError
        When ``temperature`` is neither "std" nor a positive number.
    """
    cos = np.asarray(cosine, np.float64)
    if cos.ndim != 2:
        raise DataError(f"ctr_from_cosine: cosine must be an (n_users, L) matrix, got shape {cos.shape}")
    finite = np.isfinite(cos)
    cos = np.clip(np.where(finite, cos, 0.0), -1.0, 1.0)
    if isinstance(temperature, str):
        if temperature != "std":
            raise ValueError(f"ctr_from_cosine: temperature must be 'std' or a positive number, got {temperature!r}")
        count = finite.sum(1, keepdims=True)
        mean = np.divide(cos.sum(1, keepdims=True), count, out=np.zeros((len(cos), 1)), where=count > 0)
        var = np.divide(
            np.where(finite, (cos - mean) ** 2, 0.0).sum(1, keepdims=True),
            count,
            out=np.zeros((len(cos), 1)),
            where=count > 0,
        )
        tau = np.sqrt(var)
        tau = np.where(np.isfinite(tau) & (tau >= 1e-3), tau, 0.5)
    else:
        if not float(temperature) > 0:
            raise ValueError(f"ctr_from_cosine: temperature must be 'std' or a positive number, got {temperature!r}")
        tau = np.full((len(cos), 1), float(temperature))
    z = np.clip(cos / tau, -20.0, 20.0)
    return np.where(finite, 1.0 / (1.0 + np.exp(-z)), float(missing))


def eiu_at_k(list_ctr: npt.ArrayLike, k: int) -> np.ndarray:
    """Expected item utility of each user's top ``k``: ``Σ_{r ≤ k} CTR_r / log2(r + 1)``.

    Parameters
    ----------
    list_ctr : array_like of float, shape (n_users, L)
        CTR of the item at each list position (rank order); NaN where there is no item (adds 0).
    k : int
        Cut-off (at least 0; a list shorter than ``k`` adds what it has).

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        EIU@k of each user (average over users for the script's ``EIU@K_sum`` mean).

    Raises
    ------
    DataError
        When ``list_ctr`` is not 2-d.
    ValueError
        When ``k`` is negative.
    """
    ctr = np.asarray(list_ctr, np.float64)
    if ctr.ndim != 2:
        raise DataError(f"eiu_at_k: list_ctr must be an (n_users, L) matrix, got shape {ctr.shape}")
    if k < 0:
        raise ValueError(f"eiu_at_k: k must be >= 0, got {k}")
    head = ctr[:, : int(k)]
    return np.where(np.isfinite(head), head, 0.0) @ position_weights(head.shape[1])


# -- validation ---------------------------------------------------------------------------------
def _exposure(item_exposure: npt.ArrayLike, owner: str) -> np.ndarray:
    exposure = np.asarray(item_exposure, np.float64)
    if exposure.ndim != 1:
        raise DataError(f"{owner}: item_exposure must be 1-d (one value per item), got shape {exposure.shape}")
    bad = ~np.isfinite(exposure) | (exposure < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{owner}: item_exposure must be finite and >= 0; item {i} has {exposure[i]}")
    return exposure


def _item_groups(item_groups: npt.ArrayLike, n_groups: int, owner: str) -> np.ndarray:
    groups = np.asarray(item_groups)
    if groups.ndim != 1 or not (np.issubdtype(groups.dtype, np.integer) or groups.size == 0):
        raise DataError(f"{owner}: item_groups must be a 1-d integer array (one group per item), got {groups.dtype}")
    groups = groups.astype(np.int64, copy=False)
    bad = (groups < 0) | (groups >= n_groups)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{owner}: item {i} has group {groups[i]}, outside 0 .. {n_groups - 1} ({n_groups} groups in p_train)"
        )
    return groups
