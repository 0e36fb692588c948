"""TriRec's stage-2 platform re-ranker (arXiv 2603.10673; code: Marfekey/TriRec,
``src/TriRec_stage2_rerank.py``, function ``re_rank_candidates_greedy`` and its driver).

Each user's candidate list is built top-down, one position at a time, and the **platform state**
(position-weighted exposure of each popularity group, ``counts``, and its total ``N``) carries
from one user to the next, in the order the users are given (rows; the paper's code reads its
stage-1 log in file order). At position ``pos`` (0-based), with weight ``w = 1 / log2(pos + 2)``
(:func:`trustrec.eval.position_weights`), every remaining candidate ``i`` of group ``g`` gets:

- ``acc = rel_i · w`` with ``rel = sigmoid(s - mean(s))``, the user's relevance scores ``s``
  centred on their mean over the user's candidates (computed once per user);
- ``dgu = max(0, |p_g - p_train(g)| - |p_g' - p_train(g)|)``, the drop of **the candidate's own
  group's** gap, with ``p_g = counts[g] / max(N, 1e-12)`` and ``p_g' = (counts[g] + w) / (N + w)``;
- ``mgu = dgu`` when that group's gap is the largest one now (within 1e-12), else 0;
- ``eiu = CTR_i · w``.

Each of the four is **min-max normalised over the remaining candidates at that step** (all 0
when they are equal within 1e-12). With ``α_pos = α_min + (α_max - α_min) · w^p`` (``w / w_0``,
and ``w_0 = 1``), the pick is the first maximiser (ties: the earlier column) of
``[α_pos · acc + (1 - α_pos)(λ_DGU · dgu + λ_MGU · mgu)] · eiu^λ_item``; then
``counts[g] += w`` and ``N += w``. The state starts at ``counts = 0``, ``N = 1e-6``.
Defaults are the code's: ``α_min = 0.1``, ``p = 0.1``, ``λ_DGU = λ_MGU = 0.5``, ``λ_item = 10``,
8 groups (:func:`trustrec.eval.trirec_groups`, ``p_train`` from
:func:`trustrec.eval.train_group_distribution`); the code sweeps ``α_max`` over 0.1 .. 1.0 and
has no single default (here 0.5).

Differences from a plain reading of the method, all taken from the code:

- ``w`` cancels in the normalised ``acc`` and ``eiu`` (they only rank by ``rel`` and CTR); it
  matters for the fairness gains and the state.
- The greedy places **every** candidate, not only the top K, and all placements update the
  state (``rank_all=True``, the code's loop ``for pos in range(len(candidates))``; its K only
  sizes the weight table). ``rank_all=False`` stops after K positions.
- Because ``eiu`` is min-max normalised, the candidate with the lowest CTR scores 0 and, when
  the remaining CTRs are equal, every score is 0 and the earliest column wins. Without a CTR
  (``ctr`` and ``cosine`` both None) the code has nothing to normalise; here the factor
  ``eiu^λ_item`` is then the constant 1 (else the re-ranker would return the input order).
- The code's CTR is ``φ(cos) = sigmoid(cos)`` of user and item text embeddings (a missing
  embedding counts as cosine 0); pass ``cosine`` for that, or any ``ctr``. Its evaluation uses a
  tempered CTR instead (:func:`trustrec.eval.ctr_from_cosine`).
- The code silently gives an item without a group no fairness gain; here an unknown group is an
  error (the code's items all have one: unseen candidates join with exposure 0).

Speed: the loops over users and positions are sequential by construction (the state after one
user's list is the input of the next one); each step is vectorised over the candidates.
:class:`TriRecReranker` applies it to any trustrec recommender's lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, PositiveInt

from trustrec.data import Dataset, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.eval import position_weights, train_group_distribution, trirec_groups
from trustrec.mitigate._rerank import Reranker, RerankerConfig
from trustrec.models import register_model

__all__ = ["TriRecReranker", "TriRecRerankerConfig", "TriRecResult", "trirec_rerank"]

_EPS = 1e-12  # the code's eps (division guard) and its min-max / max-gap tolerance
INITIAL_TOTAL = 1e-6  # the code's starting N ("prevent division by zero")


@dataclass(frozen=True)
class TriRecResult:
    """What :func:`trirec_rerank` returns (arrays read-only).

    Parameters
    ----------
    items : numpy.ndarray
        (n_users, k) re-ranked item indices, -1 padding.
    scores : numpy.ndarray
        (n_users, k) the combined score of each item when it was picked (not monotone), -inf at
        padding.
    group_counts : numpy.ndarray
        (n_groups,) position-weighted exposure of each group after the last user.
    total_weight : float
        ``N`` after the last user (its start, 1e-6 by default, included).
    counts_after : numpy.ndarray
        (n_users, n_groups) the group counts after each user's list (running state).
    totals_after : numpy.ndarray
        (n_users,) ``N`` after each user's list.
    """

    items: np.ndarray
    scores: np.ndarray
    group_counts: np.ndarray
    total_weight: float
    counts_after: np.ndarray
    totals_after: np.ndarray

    def __post_init__(self):
        for name in ("items", "scores", "group_counts", "counts_after", "totals_after"):
            value = np.array(getattr(self, name))
            value.setflags(write=False)
            object.__setattr__(self, name, value)


def _minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = values.min(), values.max()
    if hi - lo < _EPS:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def _check_params(alpha_max, alpha_min, alpha_p, lambda_dgu, lambda_mgu, lambda_item) -> None:
    for name, value, lo, hi in (
        ("alpha_max", alpha_max, 0.0, 1.0),
        ("alpha_min", alpha_min, 0.0, 1.0),
        ("alpha_p", alpha_p, 0.0, np.inf),
        ("lambda_dgu", lambda_dgu, 0.0, np.inf),
        ("lambda_mgu", lambda_mgu, 0.0, np.inf),
        ("lambda_item", lambda_item, 0.0, np.inf),
    ):
        if not (np.isfinite(float(value)) and lo <= float(value) <= hi):
            raise ConfigError(f"trirec_rerank: {name} must be a finite number in [{lo}, {hi}]; got {value!r}")


def _first_bad_row(mask: np.ndarray) -> tuple[int, int]:
    row, col = np.argwhere(mask)[0]
    return int(row), int(col)


def _check_inputs(
    items, scores, item_groups, p_train, ctr, cosine, k, short_rows
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated (items, scores, present, groups, p_train, ctr-or-None); errors name argument and row."""
    items = np.asarray(items)
    if items.ndim != 2 or not (np.issubdtype(items.dtype, np.integer) or items.size == 0):
        raise DataError(
            f"trirec_rerank: items must be an (n_users, n_candidates) integer matrix, got {items.dtype} {items.shape}"
        )
    items = items.astype(np.int64, copy=False)
    scores = np.asarray(scores, np.float64)
    if scores.shape != items.shape:
        raise DataError(f"trirec_rerank: scores has shape {scores.shape} but items has {items.shape}")
    if items.size and items.min() < -1:
        r, c = _first_bad_row(items < -1)
        raise DataError(f"trirec_rerank: items row {r}, column {c} is {items[r, c]}; use -1 for an absent candidate")
    groups = np.asarray(item_groups)
    if groups.ndim != 1 or not (np.issubdtype(groups.dtype, np.integer) or groups.size == 0):
        raise DataError(f"trirec_rerank: item_groups must be a 1-d integer array, got {groups.dtype} {groups.shape}")
    groups = groups.astype(np.int64, copy=False)
    p_train = np.asarray(p_train, np.float64)
    if p_train.ndim != 1 or p_train.size == 0:
        raise DataError(f"trirec_rerank: p_train must be a non-empty 1-d array, got shape {p_train.shape}")
    if not np.all(np.isfinite(p_train) & (p_train >= 0)) or not (abs(p_train.sum() - 1.0) < 1e-6 or p_train.sum() == 0):
        raise DataError(f"trirec_rerank: p_train must be non-negative and sum to 1 (or be all 0); got {p_train}")
    if items.size and items.max() >= len(groups):
        r, c = _first_bad_row(items >= len(groups))
        raise DataError(
            f"trirec_rerank: items row {r} names item {items[r, c]}, but item_groups covers items 0 .. {len(groups) - 1}"
        )
    n_groups = len(p_train)
    listed = items >= 0
    cand_groups = groups[np.where(listed, items, 0)] if len(groups) else np.zeros_like(items)
    bad = listed & ((cand_groups < 0) | (cand_groups >= n_groups))
    if bad.any():
        r, c = _first_bad_row(bad)
        raise DataError(
            f"trirec_rerank: items row {r} holds item {items[r, c]} of unknown group {groups[items[r, c]]} "
            f"(item_groups must be in 0 .. {n_groups - 1}, one per entry of p_train)"
        )
    if (listed & np.isnan(scores)).any():
        r, c = _first_bad_row(listed & np.isnan(scores))
        raise DataError(
            f"trirec_rerank: scores row {r}, column {c} is NaN for item {items[r, c]}; "
            "mark an absent candidate with item -1 or score -inf"
        )
    if (listed & (scores == np.inf)).any():
        r, c = _first_bad_row(listed & (scores == np.inf))
        raise DataError(f"trirec_rerank: scores row {r}, column {c} is +inf")
    present = listed & np.isfinite(scores)
    sorted_items = np.sort(np.where(present, items, -1), axis=1)
    dup = (sorted_items[:, 1:] == sorted_items[:, :-1]) & (sorted_items[:, 1:] >= 0)
    if dup.any():
        r, c = _first_bad_row(dup)
        raise DataError(f"trirec_rerank: items row {r} lists item {sorted_items[r, c + 1]} twice")
    if ctr is not None and cosine is not None:
        raise ConfigError("trirec_rerank: pass ctr or cosine, not both")
    utility = None
    for name, value in (("ctr", ctr), ("cosine", cosine)):
        if value is None:
            continue
        value = np.asarray(value, np.float64)
        if value.shape != items.shape:
            raise DataError(f"trirec_rerank: {name} has shape {value.shape} but items has {items.shape}")
        bad = present & ~np.isfinite(value)
        if name == "ctr":
            bad |= present & (value < 0)
        if bad.any():
            r, c = _first_bad_row(bad)
            what = "finite and >= 0" if name == "ctr" else "finite (a missing embedding: the code uses 0)"
            raise DataError(f"trirec_rerank: {name} row {r}, column {c} is {value[r, c]}; it must be {what}")
        utility = value if name == "ctr" else 1.0 / (1.0 + np.exp(-value))  # the code's φ = sigmoid
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"trirec_rerank: k must be a positive integer; got {k!r}")
    if k > items.shape[1]:
        raise ConfigError(f"trirec_rerank: k = {k} is larger than the {items.shape[1]} candidate columns of items")
    if short_rows not in ("error", "pad"):
        raise ConfigError(f"trirec_rerank: short_rows must be 'error' or 'pad'; got {short_rows!r}")
    if short_rows == "error":
        n_present = present.sum(1)
        if (n_present == 0).any():
            raise DataError(
                f"trirec_rerank: items row {int(np.argmax(n_present == 0))} has no candidate "
                "(short_rows='pad' leaves such rows empty)"
            )
        if (n_present < k).any():
            r = int(np.argmax(n_present < k))
            raise DataError(
                f"trirec_rerank: items row {r} has {n_present[r]} candidates, fewer than k = {k} "
                "(short_rows='pad' pads such rows with -1)"
            )
    return items, scores, present, groups, p_train, utility


def trirec_rerank(
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    item_groups: npt.ArrayLike,
    p_train: npt.ArrayLike,
    k: int,
    *,
    ctr: npt.ArrayLike | None = None,
    cosine: npt.ArrayLike | None = None,
    alpha_max: float = 0.5,
    alpha_min: float = 0.1,
    alpha_p: float = 0.1,
    lambda_dgu: float = 0.5,
    lambda_mgu: float = 0.5,
    lambda_item: float = 10.0,
    rank_all: bool = True,
    short_rows: Literal["error", "pad"] = "error",
    initial_counts: npt.ArrayLike | None = None,
    initial_total: float = INITIAL_TOTAL,
) -> TriRecResult:
    """TriRec's greedy platform re-ranking of candidate lists (module docstring).

    Parameters
    ----------
    items : array_like of int
        (n_users, n_candidates) candidate item indices in input order (ties go to the earlier
        column); -1 = absent.
    scores : array_like of float
        (n_users, n_candidates) relevance scores; -inf (or item -1) = absent. NaN on a listed
        item is an error.
    item_groups : array_like of int
        (n_items,) popularity group of each item (:func:`trustrec.eval.trirec_groups`).
    p_train : array_like of float
        (n_groups,) target distribution (:func:`trustrec.eval.train_group_distribution`).
    k : int
        Length of the returned lists (1 .. n_candidates).
    ctr : array_like of float, optional
        (n_users, n_candidates) CTR of each candidate (non-negative).
    cosine : array_like of float, optional
        (n_users, n_candidates) user-item embedding cosines; CTR = ``sigmoid(cosine)`` (the code).
        Neither given: the EIU factor is the constant 1 (module docstring).
    alpha_max, alpha_min : float
        ``α_pos`` at the top and its floor, in [0, 1] (``α_max = α_min = 1``: relevance only).
    alpha_p : float
        Exponent ``p`` of the position weight in ``α_pos`` (>= 0).
    lambda_dgu, lambda_mgu : float
        Weights of the DGU and MGU gains (>= 0).
    lambda_item : float
        Exponent of the normalised EIU factor (>= 0).
    rank_all : bool
        Place every candidate, updating the state at each position (the code), or stop after k.
    short_rows : {"error", "pad"}
        A row with no candidate or fewer than k: an error naming the row, or padding with -1
        (an empty row leaves the state unchanged).
    initial_counts : array_like of float, optional
        (n_groups,) starting group counts (default zeros), e.g. a previous result's
        ``group_counts`` to continue one platform run over batches.
    initial_total : float
        Starting ``N`` (> 0; the code's 1e-6), e.g. a previous result's ``total_weight``.

    Returns
    -------
    TriRecResult
        The top-k lists, the picked items' combined scores and the running platform state.

    Raises
    ------
    DataError
        On malformed inputs (shapes, NaN or +inf scores, an unknown item or group, duplicates,
        empty or short rows with ``short_rows="error"``); the message names the argument and row.
    ConfigError
        When ``k`` is not in 1 .. n_candidates, a hyper-parameter is out of range, or both
        ``ctr`` and ``cosine`` are given.
    """
    _check_params(alpha_max, alpha_min, alpha_p, lambda_dgu, lambda_mgu, lambda_item)
    cand, rel_scores, present, groups, target, utility = _check_inputs(
        items, scores, item_groups, p_train, ctr, cosine, k, short_rows
    )
    n, m = cand.shape
    n_groups = len(target)
    counts = np.zeros(n_groups) if initial_counts is None else np.array(initial_counts, np.float64)
    if counts.shape != (n_groups,) or not np.all(np.isfinite(counts) & (counts >= 0)):
        raise DataError(f"trirec_rerank: initial_counts must be {n_groups} non-negative numbers; got {counts}")
    total = float(initial_total)
    if not (np.isfinite(total) and total > 0):
        raise ConfigError(f"trirec_rerank: initial_total must be a positive number; got {initial_total!r}")
    weights = position_weights(m)  # the code's rank_weights; w_0 = 1, so w / w_0 = w
    alphas = alpha_min + (alpha_max - alpha_min) * weights**alpha_p
    out_items = np.full((n, k), -1, np.int64)
    out_scores = np.full((n, k), -np.inf)
    counts_after = np.zeros((n, n_groups))
    totals_after = np.zeros(n)
    # Sequential over users, then positions: each pick moves the platform state that the next
    # pick (and the next user) reads. Every step is vectorised over the remaining candidates.
    for u in range(n):
        cols = np.flatnonzero(present[u])
        if len(cols):
            s = rel_scores[u, cols]
            rel = 1.0 / (1.0 + np.exp(-(s - s.mean())))  # the code's soft_normalize_rel, beta = 1
            util = None if utility is None else utility[u, cols]
            cand_groups = groups[cand[u, cols]]
            cand_target = target[cand_groups]
            left = np.ones(len(cols), bool)
            depth = len(cols) if rank_all else min(k, len(cols))
            for pos in range(depth):
                w, alpha = weights[pos], alphas[pos]
                idx = np.flatnonzero(left)
                gaps = np.abs(counts / max(total, _EPS) - target)
                g = cand_groups[idx]
                gap = gaps[g]
                drop = np.maximum(0.0, gap - np.abs((counts[g] + w) / (total + w) - cand_target[idx]))
                mgu_gain = np.where(gap >= gaps.max() - _EPS, drop, 0.0)
                gain = alpha * _minmax(rel[idx] * w) + (1.0 - alpha) * (
                    lambda_dgu * _minmax(drop) + lambda_mgu * _minmax(mgu_gain)
                )
                if util is not None:
                    gain = gain * _minmax(util[idx] * w) ** lambda_item
                best = int(np.argmax(gain))  # first maximiser: the earlier column, as the code's strict '>'
                pick = idx[best]
                left[pick] = False
                if pos < k:
                    out_items[u, pos] = cand[u, cols[pick]]
                    out_scores[u, pos] = gain[best]
                counts[cand_groups[pick]] += w
                total += w
        counts_after[u], totals_after[u] = counts, total
    return TriRecResult(out_items, out_scores, counts.copy(), total, counts_after, totals_after)


# -- the wrapper ------------------------------------------------------------------------------------
class TriRecRerankerConfig(RerankerConfig):
    """Settings of :class:`TriRecReranker` (and ``base``, ``strength``, ``n_candidates`` of
    :class:`~trustrec.mitigate.RerankerConfig`).

    Parameters
    ----------
    base : ModelSpec
        The recommender to re-rank (see :class:`~trustrec.mitigate.RerankerConfig`).
    strength : float
        λ in [0, 1], read as ``α_max = 1 - λ`` (the code's sweep α_max = 0.1 .. 1.0 is
        λ = 0.9 .. 0). λ = 0 returns the base lists unchanged (every re-ranker's contract; the
        code at α_max = 1 would still re-rank below the top, as ``α_pos`` decays to ``α_min``).
    n_candidates : int
        How many of the base's top items are re-ranked (default 10, the code's CAND_NUM).
    n_groups : int
        Popularity groups (:func:`trustrec.eval.trirec_groups`; default 8).
    alpha_min : float
        Floor of ``α_pos``, in [0, 1] (default 0.1).
    alpha_p : float
        Exponent of the position weight in ``α_pos`` (default 0.1).
    lambda_dgu : float
        Weight of the DGU gain (default 0.5).
    lambda_mgu : float
        Weight of the MGU gain (default 0.5).
    lambda_item : float
        Exponent of the EIU factor (default 10; without a CTR the factor is 1).
    rank_all : bool
        Place all ``n_candidates`` candidates (the code) or stop at ``k``.
    """

    n_candidates: PositiveInt = 10
    n_groups: PositiveInt = 8
    alpha_min: float = Field(0.1, ge=0, le=1)
    alpha_p: float = Field(0.1, ge=0)
    lambda_dgu: float = Field(0.5, ge=0)
    lambda_mgu: float = Field(0.5, ge=0)
    lambda_item: float = Field(10.0, ge=0)
    rank_all: bool = True


@register_model
class TriRecReranker(Reranker):
    """TriRec's platform re-ranking (module docstring) of a base recommender's lists.

    Groups and ``p_train`` come from the training interactions at fit (``item_groups_``,
    ``p_train_``). There is no CTR input here, so the EIU factor is 1. Each ``recommend`` /
    ``rerank`` call is one platform run over its queries in row order, starting from an empty
    state: row ``i`` depends on rows before it, so results depend on batching (a batch of one
    query is the code's first user).

    Parameters
    ----------
    config : TriRecRerankerConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`TriRecRerankerConfig` fields) as keyword arguments.
    """

    name = "trirec_reranker"
    config: TriRecRerankerConfig
    config_class: ClassVar = TriRecRerankerConfig

    def _setup(self, train: Dataset) -> None:
        exposure = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)
        self.item_groups_ = trirec_groups(exposure, self.config.n_groups)
        self.p_train_ = train_group_distribution(exposure, self.item_groups_, self.config.n_groups)
        super()._setup(train)  # the membership matrix of the same groups (via _groups)

    def _groups(self, train: Dataset) -> tuple[sp.csr_matrix, list[str], str]:
        n_items, n_groups = train.n_items, self.config.n_groups
        membership = sp.csr_matrix(
            (np.ones(n_items), (np.arange(n_items), self.item_groups_)), shape=(n_items, n_groups)
        )
        return membership, [f"exposure group {g}" for g in range(n_groups)], "popularity"

    def _select(
        self, histories: Ragged, items: np.ndarray, scores: np.ndarray, k: int, strength: float
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(items)
        if k <= 0:
            return np.full((n, 0), -1, np.int64), np.full((n, 0), -np.inf)
        c = self.config
        result = trirec_rerank(
            items,
            scores,
            self.item_groups_,
            self.p_train_,
            k,
            alpha_max=1.0 - strength,
            alpha_min=c.alpha_min,
            alpha_p=c.alpha_p,
            lambda_dgu=c.lambda_dgu,
            lambda_mgu=c.lambda_mgu,
            lambda_item=c.lambda_item,
            rank_all=c.rank_all,
            short_rows="pad",
        )
        ok = result.items >= 0
        # a TopK's scores never increase: the running minimum of the combined scores
        ranked = np.minimum.accumulate(np.where(ok, result.scores, -np.inf), axis=1)
        return np.array(result.items), ranked
