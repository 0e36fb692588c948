"""Fairness re-rankers: wrappers that re-order a fitted base recommender's top candidates.

Both re-rankers take the base's top ``n_candidates`` items with their scores and build the top-k
greedily, one list position at a time, vectorised over users (the only Python loop is over the k
positions). Relevance is the base score **min-max normalised per user over that user's
candidates** (best candidate 1, worst 0; all 1 when the scores are equal), so the strength
``λ`` (``strength``) trades quantities on comparable scales whatever the base's score range.
``λ = 0`` returns the base ranking unchanged; ``λ = 1`` ignores relevance (ties then fall back
to the base order).

- :class:`CalibratedReranker` (Steck, RecSys 2018): picks the item maximising
  ``(1 - λ) · rel(i) - λ · KL(p_u || q~(S ∪ {i}))``, i.e. the marginal gain of
  ``(1 - λ) Σ_{j∈S} rel(j) - λ KL(p_u || q~(S))``. ``p_u`` is the genre distribution of the
  query's history, ``q(S)`` that of the list, ``q~ = (1 - α) q + α p_u`` (``α = 0.01``); an item
  with several genres splits its weight equally (as :func:`trustrec.eval.group_distribution`).
  Users with an empty (or genre-less) history have no ``p_u``: their list is the base's.
- :class:`ExposureReranker` (xQuAD for popularity bias, Abdollahpouri et al., FLAIRS 2019):
  picks the item maximising
  ``(1 - λ) · rel(i) + λ · Σ_g P(g|u) · 1[i ∈ g] · Π_{j∈S} (1 - 1[j ∈ g])`` over item groups:
  ``{head, tail}`` by training popularity (tail = outside the top ``head_share`` = 20% of the
  catalog, as :func:`trustrec.eval.long_tail_mask`), or the values of an item column (provider,
  brand) for provider fairness. ``P(g|u)`` is the share of the user's history in ``g``
  ("personalised" variant; an empty history gets uniform weights) or uniform
  (``user_weights="uniform"``). ``variant="binary"`` is the formula above (a group stops earning
  a bonus once the list covers it); ``variant="smooth"`` replaces the product by
  ``1 - |S ∩ g| / |S|``, so a group keeps earning in proportion to how under-represented it is in
  the list so far (a graded reading of the paper's smooth variant; stronger effect).

Reported scores are each item's greedy objective when it was picked, made non-increasing along
the list by a running minimum; items after the candidates (``k > n_candidates``) keep the base's
order below them. :func:`calibrated_rerank` and :func:`xquad_rerank` are the same algorithms as
pure functions over candidate matrices; :func:`tradeoff_curve` sweeps ``λ`` over one set of
base candidates.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field, PositiveInt, field_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.eval import group_distribution, miscalibration, normalised_membership
from trustrec.mitigate._wrap import WrapperRecommender
from trustrec.models import ModelSpec, TopK, register_model

__all__ = [
    "CalibratedReranker",
    "CalibratedRerankerConfig",
    "ExposureReranker",
    "ExposureRerankerConfig",
    "Reranker",
    "RerankerConfig",
    "calibrated_rerank",
    "minmax_relevance",
    "xquad_rerank",
]

# Cells of one (users, candidates, groups) block; larger batches are re-ranked in user chunks.
BLOCK_CELLS = 20_000_000  # score-matrix cells per batch (shared with the trade-off curves)


# -- pure algorithms ------------------------------------------------------------------------------
def minmax_relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, ``(s - min) / (max - min)`` over the valid entries (1 where all are equal), 0
    elsewhere.

    Parameters
    ----------
    scores : numpy.ndarray
        (n, m) scores.
    valid : numpy.ndarray
        (n, m) boolean: which entries count (the others are ignored and get 0).

    Returns
    -------
    numpy.ndarray
        (n, m) relevance in [0, 1].
    """
    s = np.where(valid, scores, 0.0)
    lo = np.where(valid, s, np.inf).min(1, keepdims=True, initial=np.inf)
    hi = np.where(valid, s, -np.inf).max(1, keepdims=True, initial=-np.inf)
    span = np.where(valid.any(1, keepdims=True), hi - lo, 0.0)
    rel = np.divide(s - np.where(np.isfinite(lo), lo, 0.0), span, out=np.ones_like(s), where=span > 0)
    return np.where(valid, rel, 0.0)


def _check_strength(strength: float, owner: str) -> float:
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"{owner}: strength (λ) must be in [0, 1]; got {strength}")
    return strength


def _candidates(items, scores, owner: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    items = np.asarray(items, np.int64)
    scores = np.asarray(scores, np.float64)
    if items.ndim != 2 or items.shape != scores.shape:
        raise ValueError(f"{owner}: items {items.shape} and scores {scores.shape} must be matching (n, m) matrices")
    valid = (items >= 0) & np.isfinite(scores)
    return items, scores, valid


def _gather_groups(membership: sp.csr_matrix, items: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n, m, G) dense membership rows of the candidates (zero rows for padding)."""
    n, m = items.shape
    rows = membership[np.where(valid, items, 0).ravel()].toarray().reshape(n, m, membership.shape[1])
    return rows * valid[..., None]


class _CalibrationObjective:
    """Marginal gain ``(1 - λ) rel - λ KL(p || q~(S ∪ {i}))`` with running genre mass of ``S``."""

    def __init__(self, rel, cand_groups, profile, strength, alpha):
        self.rel, self.cand, self.p, self.strength, self.alpha = rel, cand_groups, profile, strength, alpha
        self.mass = np.zeros_like(profile)  # genre mass of the list so far (n, G)
        self.has_profile = profile.sum(1) > 0

    def __call__(self) -> np.ndarray:
        n, m, g = self.cand.shape
        q = self.mass[:, None, :] + self.cand
        total = q.sum(-1, keepdims=True)
        q = np.divide(q, total, out=np.zeros_like(q), where=total > 0)
        p = np.broadcast_to(self.p[:, None, :], q.shape)
        kl = miscalibration(p.reshape(-1, g), q.reshape(-1, g), self.alpha).reshape(n, m)
        kl = np.where(self.has_profile[:, None], kl, 0.0)
        return (1 - self.strength) * self.rel - self.strength * kl

    def update(self, rows, positions) -> None:
        self.mass[rows] += self.cand[rows, positions]


class _XQuADObjective:
    """Marginal gain ``(1 - λ) rel + λ Σ_g P(g|u) 1[i∈g] coverage_g(S)``."""

    def __init__(self, rel, cand_groups, weights, strength, variant):
        self.rel, self.cand, self.w, self.strength, self.variant = rel, cand_groups, weights, strength, variant
        self.in_list = np.zeros_like(weights)  # items of S in each group (n, G)
        self.size = np.zeros(len(weights))  # |S|

    def __call__(self) -> np.ndarray:
        if self.variant == "binary":
            uncovered = (self.in_list == 0).astype(np.float64)
        else:
            share = np.divide(
                self.in_list, self.size[:, None], out=np.zeros_like(self.in_list), where=self.size[:, None] > 0
            )
            uncovered = 1.0 - share
        bonus = np.einsum("nmg,ng->nm", self.cand, self.w * uncovered)
        return (1 - self.strength) * self.rel + self.strength * bonus

    def update(self, rows, positions) -> None:
        self.in_list[rows] += self.cand[rows, positions]
        self.size[rows] += 1


def _greedy_run(objective, valid, n_pick):
    n, m = valid.shape
    rows = np.arange(n)
    available = valid.copy()
    picked = np.full((n, n_pick), -1, np.int64)
    gains = np.full((n, n_pick), -np.inf)
    for t in range(n_pick):
        if m == 0:
            break
        gain = np.where(available, objective(), -np.inf)
        best = gain.argmax(1)  # ties: the lowest position = base order
        ok = available[rows, best]
        if not ok.any():
            break
        r, b = rows[ok], best[ok]
        picked[r, t] = b
        gains[r, t] = gain[r, b]
        available[r, b] = False
        objective.update(r, b)
    return picked, gains


def _finish(items: np.ndarray, picked: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate positions -> item ids; gains -> non-increasing scores (running minimum)."""
    ok = picked >= 0
    out = np.where(ok, np.take_along_axis(items, np.where(ok, picked, 0), 1), -1)
    scores = np.minimum.accumulate(np.where(ok, gains, -np.inf), axis=1) if gains.shape[1] else gains
    return out, scores


def _chunks(n: int, m: int, g: int):
    step = max(1, BLOCK_CELLS // max(1, m * max(g, 1)))
    return [slice(s, min(n, s + step)) for s in range(0, n, step)] or [slice(0, 0)]


def calibrated_rerank(
    histories: Ragged,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    membership: npt.ArrayLike | sp.spmatrix,
    k: int,
    *,
    strength: float,
    alpha: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Steck's calibrated greedy re-ranking of candidate lists (module docstring).

    Parameters
    ----------
    histories : Ragged
        The users' histories (item indices), rows aligned with ``items``; they give each
        user's genre distribution ``p_u``.
    items : array_like
        (n, m) candidate item indices in base order, -1 = none.
    scores : array_like
        (n, m) their base scores (non-finite = none).
    membership : array_like or scipy.sparse matrix
        (n_items, n_groups) 0/1 genre matrix.
    k : int
        Length of the re-ranked lists (at most ``m``).
    strength : float
        λ in [0, 1]: 0 keeps the base ranking, 1 ignores relevance.
    alpha : float
        Smoothing of the list's distribution in the KL, in (0, 1).

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        The (n, min(k, m)) re-ranked items (-1 padding) and their scores (the greedy gains,
        non-increasing).

    Raises
    ------
    ConfigError
        When ``strength`` is outside [0, 1] or ``alpha`` outside (0, 1).
    """
    strength = _check_strength(strength, "calibrated_rerank")
    if not 0 < alpha < 1:
        raise ConfigError(f"calibrated_rerank: alpha must be in (0, 1); got {alpha}")
    items, scores, valid = _candidates(items, scores, "calibrated_rerank")
    if len(histories) != len(items):
        raise ValueError(f"calibrated_rerank: {len(histories)} histories for {len(items)} candidate rows")
    membership = sp.csr_matrix(membership, dtype=np.float64)
    n, m = items.shape
    n_pick = max(0, min(int(k), m))
    normalised = normalised_membership(membership)
    profile = group_distribution(histories, membership)
    out_items = np.full((n, n_pick), -1, np.int64)
    out_scores = np.full((n, n_pick), -np.inf)
    for rows in _chunks(n, m, membership.shape[1]):
        rel = minmax_relevance(scores[rows], valid[rows])
        cand = _gather_groups(normalised, items[rows], valid[rows])
        objective = _CalibrationObjective(rel, cand, profile[rows], strength, alpha)
        picked, gains = _greedy_run(objective, valid[rows], n_pick)
        out_items[rows], out_scores[rows] = _finish(items[rows], picked, gains)
    return out_items, out_scores


def xquad_rerank(
    histories: Ragged,
    items: npt.ArrayLike,
    scores: npt.ArrayLike,
    membership: npt.ArrayLike | sp.spmatrix,
    k: int,
    *,
    strength: float,
    user_weights: str = "history",
    variant: str = "binary",
) -> tuple[np.ndarray, np.ndarray]:
    """Popularity-aware (or provider-aware) xQuAD re-ranking of candidate lists (module
    docstring). Arguments as :func:`calibrated_rerank`; ``membership`` is the 0/1 item-group
    matrix ({head, tail} or providers).

    Parameters
    ----------
    histories : Ragged
        The users' histories (item indices), rows aligned with ``items``; they give ``P(g|u)``
        with ``user_weights="history"``.
    items : array_like
        (n, m) candidate item indices in base order, -1 = none.
    scores : array_like
        (n, m) their base scores (non-finite = none).
    membership : array_like or scipy.sparse matrix
        (n_items, n_groups) 0/1 item-group matrix ({head, tail} or providers); any non-zero
        entry counts as 1.
    k : int
        Length of the re-ranked lists (at most ``m``).
    strength : float
        λ in [0, 1]: 0 keeps the base ranking, 1 ignores relevance.
    user_weights : {"history", "uniform"}
        ``P(g|u)``: the share of the user's history in each group (uniform for an empty
        history), or uniform for everyone.
    variant : {"binary", "smooth"}
        Coverage of a group by the list so far: binary (covered once one item is in it) or
        smooth (``1 - |S ∩ g| / |S|``).

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray)
        The (n, min(k, m)) re-ranked items (-1 padding) and their scores (the greedy gains,
        non-increasing).

    Raises
    ------
    ConfigError
        When ``strength`` is outside [0, 1] or ``user_weights`` / ``variant`` is not one of
        the values above.
    """
    strength = _check_strength(strength, "xquad_rerank")
    if user_weights not in ("history", "uniform"):
        raise ConfigError(f"xquad_rerank: user_weights must be 'history' or 'uniform'; got {user_weights!r}")
    if variant not in ("binary", "smooth"):
        raise ConfigError(f"xquad_rerank: variant must be 'binary' or 'smooth'; got {variant!r}")
    items, scores, valid = _candidates(items, scores, "xquad_rerank")
    if len(histories) != len(items):
        raise ValueError(f"xquad_rerank: {len(histories)} histories for {len(items)} candidate rows")
    membership = sp.csr_matrix(membership, dtype=np.float64, copy=True)
    membership.data[:] = 1.0
    n, m = items.shape
    n_groups = membership.shape[1]
    n_pick = max(0, min(int(k), m))
    uniform = np.full((n, n_groups), 1.0 / max(n_groups, 1))
    if user_weights == "history":
        weights = group_distribution(histories, membership)
        weights = np.where(weights.sum(1, keepdims=True) > 0, weights, uniform)
    else:
        weights = uniform
    out_items = np.full((n, n_pick), -1, np.int64)
    out_scores = np.full((n, n_pick), -np.inf)
    for rows in _chunks(n, m, n_groups):
        rel = minmax_relevance(scores[rows], valid[rows])
        cand = _gather_groups(membership, items[rows], valid[rows])
        objective = _XQuADObjective(rel, cand, weights[rows], strength, variant)
        picked, gains = _greedy_run(objective, valid[rows], n_pick)
        out_items[rows], out_scores[rows] = _finish(items[rows], picked, gains)
    return out_items, out_scores


# -- item groups from data --------------------------------------------------------------------------
def _genre_membership(dataset: Dataset, column: str | None, owner: str) -> tuple[sp.csr_matrix, list[str], str]:
    """(membership, group names, column) of an item group column; ``None``: guessed (genre,
    class, category ...). Raises DataError naming the columns when there is none."""
    from trustrec.data import ITEM_GROUP_COLUMNS, guess_item_group_column, item_group_matrix

    items = dataset.items
    if column is None:
        column = guess_item_group_column(items)
        if column is None:
            raise DataError(
                f"{owner}: dataset '{dataset.name}' has no item group column (looked for "
                f"{', '.join(ITEM_GROUP_COLUMNS)}; item columns: {list(items.columns)}); "
                "set item_group_column"
            )
    elif column not in items.columns:
        raise DataError(
            f"{owner}: item group column {column!r} not found in dataset '{dataset.name}'; "
            f"item columns: {list(items.columns)}"
        )
    membership, names, _ = item_group_matrix(items, column)
    return membership, names, column


def _exposure_membership(
    dataset: Dataset, groups: str, head_share: float, owner: str
) -> tuple[sp.csr_matrix, list[str], str]:
    """``groups="popularity"``: {head, tail} by the dataset's interaction counts (tail = outside
    the top ``head_share`` of items, ties by index); otherwise the values of item column
    ``groups``."""
    from trustrec.eval import long_tail_mask

    if groups != "popularity":
        return _genre_membership(dataset, groups, owner)
    popularity = np.bincount(dataset.interactions.item, minlength=dataset.n_items)
    tail = long_tail_mask(popularity, head_share)
    membership = sp.csr_matrix(
        (np.ones(dataset.n_items), (np.arange(dataset.n_items), tail.astype(np.int64))), shape=(dataset.n_items, 2)
    )
    return membership, ["head", "tail"], "popularity"


def _assemble(histories: Ragged, retrieved: TopK, k: int, n_candidates: int, strength: float, select) -> TopK:
    """Top-``k`` lists from the base's lists: the first ``n_candidates`` columns re-ranked by
    ``select(histories, items, scores, k, strength)``, later ones in base order below them;
    ``strength == 0`` returns the base lists unchanged."""
    if len(retrieved) != len(histories):
        raise ValueError(f"re-ranking: {len(retrieved)} lists for {len(histories)} queries")
    width = max(0, min(k, retrieved.k))
    if strength == 0.0:
        return retrieved.truncate(width)
    n_head = min(n_candidates, retrieved.k)
    head_items, head_scores = select(
        histories, retrieved.items[:, :n_head], retrieved.scores[:, :n_head], min(width, n_head), strength
    )
    tail = retrieved.items[:, n_head:width]
    filled = head_items >= 0
    last = np.where(filled.any(1), np.where(filled, head_scores, np.inf).min(1, initial=np.inf), 0.0)
    steps = np.arange(1, tail.shape[1] + 1, dtype=np.float64)
    tail_scores = np.where(tail >= 0, last[:, None] - steps[None, :], -np.inf)
    return TopK(np.concatenate([head_items, tail], 1), np.concatenate([head_scores, tail_scores], 1))


# -- the wrappers -------------------------------------------------------------------------------------
class RerankerConfig(Config):
    """Settings shared by the re-rankers.

    Parameters
    ----------
    base : ModelSpec
        The recommender to re-rank (registered name + params; built and fitted by ``fit``, or
        taken as is by ``from_fitted``); default ``item_knn``. An unknown model name is
        rejected.
    strength : float
        λ in [0, 1]: 0 returns the base ranking, 1 ignores relevance (default 0.5).
    n_candidates : int
        How many of the base's top items are re-ranked (positive; default 100); items after
        them keep the base order.
    """

    base: ModelSpec = Field(default_factory=lambda: ModelSpec(name="item_knn"))
    strength: float = Field(0.5, ge=0, le=1)
    n_candidates: PositiveInt = 100

    @field_validator("base")
    @classmethod
    def _known_base(cls, spec: ModelSpec) -> ModelSpec:
        from trustrec.models import available_models

        if spec.name not in available_models():
            raise ValueError(f"unknown base model {spec.name!r}; known: {', '.join(available_models())}")
        return spec


class Reranker(WrapperRecommender):
    """Base class of the re-rankers: holds a fitted ``base_`` and an item-group membership
    (``group_indptr_``/``group_indices_``, names ``group_names_``, source ``group_source_``);
    subclasses implement ``_groups(train)`` and ``_select(...)``.

    Parameters
    ----------
    config : RerankerConfig, mapping or None
        The re-ranker's settings, validated against ``config_class``; None: build them from the
        keyword arguments instead.
    **kwargs
        The settings as keyword arguments (not together with ``config``).

    Raises
    ------
    ConfigError
        When both ``config`` and keyword arguments are given, or the settings are invalid.
    """

    config: RerankerConfig
    config_class: ClassVar[type[Config]] = RerankerConfig

    # -- fitting ---------------------------------------------------------------------------------
    def _setup(self, train: Dataset) -> None:
        membership, names, source = self._groups(train)
        membership = sp.csr_matrix(membership)
        self.group_indptr_ = membership.indptr.astype(np.int64)
        self.group_indices_ = membership.indices.astype(np.int64)
        self.group_names_ = [str(x) for x in names]
        self.group_source_ = str(source)

    def _groups(self, train: Dataset) -> tuple[sp.csr_matrix, list[str], str]:
        raise NotImplementedError

    def membership(self) -> sp.csr_matrix:
        """The fitted (n_items, n_groups) 0/1 item-group matrix.

        Returns
        -------
        scipy.sparse.csr_matrix
            Row ``i``: the groups of item ``i`` (columns named by ``group_names_``).
        """
        self._check_fitted()
        return sp.csr_matrix(
            (np.ones(len(self.group_indices_)), self.group_indices_, self.group_indptr_),
            shape=(self.n_items_, len(self.group_names_)),
        )

    # -- recommending ----------------------------------------------------------------------------
    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The base's top ``max(k, n_candidates)`` lists, re-ranked at the config's strength
        (:meth:`rerank`).

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Length of the lists (at least 0).
        exclude_seen : bool
            Whether items in a query's history are left out.

        Returns
        -------
        TopK
            The re-ranked top-``k`` lists.

        Raises
        ------
        ConfigError
            When ``k`` is negative.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        retrieved = self.base_.recommend(queries, max(k, self.config.n_candidates), exclude_seen=exclude_seen)
        return self.rerank(queries, retrieved, k)

    def rerank(self, queries: QueryBatch, retrieved: TopK, k: int = 10, *, strength: float | None = None) -> TopK:
        """Re-rank the base's lists ``retrieved`` (rows aligned with ``queries``) into top-``k``
        lists, with ``strength`` (default: the config's). The first ``n_candidates`` columns are
        re-ranked; later ones keep the base order below them. Computing ``retrieved`` once and
        calling this per strength sweeps λ without re-scoring the base.

        Parameters
        ----------
        queries : QueryBatch
            The queries (their histories drive the re-ranking).
        retrieved : TopK
            The base's lists for ``queries``, one row per query.
        k : int
            Length of the lists returned (at most ``retrieved.k``).
        strength : float or None
            λ in [0, 1]; None: the config's ``strength``.

        Returns
        -------
        TopK
            The re-ranked top-``k`` lists.

        Raises
        ------
        ConfigError
            When ``strength`` is outside [0, 1].
        """
        strength = _check_strength(
            self.config.strength if strength is None else strength, f"{type(self).__name__}.rerank"
        )
        queries = self._prepare(queries)
        return _assemble(queries.histories, retrieved, k, self.config.n_candidates, strength, self._select)

    def _select(
        self, histories: Ragged, items: np.ndarray, scores: np.ndarray, k: int, strength: float
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class CalibratedRerankerConfig(RerankerConfig):
    """Settings of :class:`CalibratedReranker` (and ``base``, ``strength``, ``n_candidates`` of
    :class:`RerankerConfig`).

    Parameters
    ----------
    base : ModelSpec
        The recommender to re-rank (see :class:`RerankerConfig`).
    strength : float
        λ in [0, 1] (see :class:`RerankerConfig`).
    n_candidates : int
        How many of the base's top items are re-ranked (see :class:`RerankerConfig`).
    item_group_column : str or None
        The item column of genres (``None``: guessed: genre, class, category ...).
    alpha : float
        The smoothing ``α`` of Steck's KL, ``q~ = (1 - α) q + α p_u``, in (0, 1) (default
        0.01).
    """

    item_group_column: str | None = None
    alpha: float = Field(0.01, gt=0, lt=1)


@register_model
class CalibratedReranker(Reranker):
    """Calibrated re-ranking (Steck, RecSys 2018) of a base recommender (module docstring).

    Parameters
    ----------
    config : CalibratedRerankerConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`CalibratedRerankerConfig` fields) as keyword arguments.
    """

    name = "calibrated_reranker"
    config: CalibratedRerankerConfig
    config_class = CalibratedRerankerConfig

    def _groups(self, train: Dataset):
        return _genre_membership(train, self.config.item_group_column, type(self).__name__)

    def _select(self, histories, items, scores, k, strength):
        return calibrated_rerank(
            histories, items, scores, self.membership(), k, strength=strength, alpha=self.config.alpha
        )


class ExposureRerankerConfig(RerankerConfig):
    """Settings of :class:`ExposureReranker` (and ``base``, ``strength``, ``n_candidates`` of
    :class:`RerankerConfig`).

    Parameters
    ----------
    base : ModelSpec
        The recommender to re-rank (see :class:`RerankerConfig`).
    strength : float
        λ in [0, 1] (see :class:`RerankerConfig`).
    n_candidates : int
        How many of the base's top items are re-ranked (see :class:`RerankerConfig`).
    groups : str
        ``"popularity"`` ({head, tail} by training popularity) or an item column (provider,
        brand) whose values are the groups.
    head_share : float
        The head's share of the catalog with ``groups="popularity"``, in (0, 1) (default 0.2).
    user_weights : {"history", "uniform"}
        ``"history"``: personalised ``P(g|u)``, the share of the user's history in each group;
        ``"uniform"``: the same weight for every group.
    variant : {"binary", "smooth"}
        ``"binary"`` or ``"smooth"`` coverage of a group by the list so far (module docstring).
    """

    groups: str = "popularity"
    head_share: float = Field(0.2, gt=0, lt=1)
    user_weights: Literal["history", "uniform"] = "history"
    variant: Literal["binary", "smooth"] = "binary"


@register_model
class ExposureReranker(Reranker):
    """Popularity-aware xQuAD re-ranking (Abdollahpouri et al., FLAIRS 2019) of a base
    recommender, for long-tail or provider exposure (module docstring).

    Parameters
    ----------
    config : ExposureRerankerConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`ExposureRerankerConfig` fields) as keyword arguments.
    """

    name = "exposure_reranker"
    config: ExposureRerankerConfig
    config_class = ExposureRerankerConfig

    def _groups(self, train: Dataset):
        c = self.config
        return _exposure_membership(train, c.groups, c.head_share, type(self).__name__)

    def _select(self, histories, items, scores, k, strength):
        c = self.config
        return xquad_rerank(
            histories,
            items,
            scores,
            self.membership(),
            k,
            strength=strength,
            user_weights=c.user_weights,
            variant=c.variant,
        )


# -- accuracy vs fairness ---------------------------------------------------------------------------
