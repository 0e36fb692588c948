"""Metrics as pure, vectorised functions.

Accuracy metrics read a boolean ``hits`` matrix (n_users, K): ``hits[u, r]`` is True when the
item at rank r+1 of user u's list is relevant; ``n_relevant`` (n_users,) is the number of
relevant items of each user. Each returns one value per user; the evaluator aggregates.
Beyond-accuracy metrics read the recommended item matrix (-1 = no item) and item statistics.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from trustrec._registry import NamedRegistry, check_callable
from trustrec.errors import ConfigError

__all__ = [
    "ACCURACY_METRICS",
    "METRICS",
    "MetricSpec",
    "aplt",
    "average_popularity",
    "average_precision",
    "average_precision_trec",
    "catalog_coverage",
    "exposure_gini",
    "gini",
    "hit_rate",
    "intra_list_diversity",
    "item_user_counts",
    "mrr",
    "ndcg",
    "novelty",
    "parse_metric",
    "precision",
    "recall",
    "register_metric",
]

#: Metrics by name (kind ``metrics`` of :mod:`trustrec.registry`). Accuracy metrics are
#: ``fn(hits, n_relevant) -> per-user values`` (the module documentation); the built-ins are the
#: functions below registered with :func:`register_metric`, and third-party accuracy metrics
#: come from the entry-point group ``trustrec.metrics``. The beyond-accuracy metrics
#: (:data:`BEYOND_METRICS`) read other inputs and are computed by the evaluator itself.
METRICS: NamedRegistry[Callable] = NamedRegistry(
    "metric", None, ConfigError, "", group="trustrec.metrics", check=check_callable
)
_BEYOND: list[str] = []


def register_metric(name: str, *, _beyond: bool = False):
    """Decorator: register an accuracy metric ``fn(hits, n_relevant)`` under ``name``, usable as
    ``name@K`` everywhere a metric is named."""

    def decorate(fn):
        METRICS.register(fn, name=name)
        if _beyond and name not in _BEYOND:
            _BEYOND.append(name)
        return fn

    return decorate


class _AccuracyMetrics(Mapping):
    """The accuracy metrics of :data:`METRICS` (a live view: third-party ones included)."""

    def __getitem__(self, name: str) -> Callable:
        if name not in self:
            raise KeyError(name)
        return METRICS.get(name)

    def __contains__(self, name: object) -> bool:
        return name not in _BEYOND and name in METRICS

    def __iter__(self) -> Iterator[str]:
        return (n for n in METRICS.names() if n not in _BEYOND)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"ACCURACY_METRICS({', '.join(self)})"


def _check(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    hits = np.asarray(hits, dtype=bool)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    if hits.ndim != 2 or len(n_relevant) != len(hits):
        raise ValueError(
            f"hits must be (n_users, k) and n_relevant (n_users,), got {hits.shape} and {n_relevant.shape}"
        )
    return hits, n_relevant


def _safe_div(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


@register_metric("recall")
def recall(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """Recall@K per user.

    Relevant items found in the top K over all relevant items of the user:
    ``hits.sum(1) / n_relevant``.

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Recall of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    return _safe_div(hits.sum(1), n_rel)


@register_metric("precision")
def precision(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """Precision@K per user.

    Relevant items in the top K over K, K being the list width (padding counts as a miss).

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Precision of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    return np.where(n_rel > 0, hits.sum(1) / max(hits.shape[1], 1), np.nan)


@register_metric("hr")
def hit_rate(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """Hit rate@K per user (metric name ``hr``).

    1 if any relevant item is in the top K, else 0.

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        1.0 or 0.0 per user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    return np.where(n_rel > 0, hits.any(1).astype(np.float64), np.nan)


@register_metric("ndcg")
def ndcg(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """Binary-relevance NDCG@K per user.

    DCG with ``1 / log2(rank + 1)`` discounts, divided by the ideal DCG of
    ``min(n_relevant, K)`` hits at the top.

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        NDCG of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(n_rel, k).astype(np.int64)]
    return _safe_div(dcg, idcg)


@register_metric("mrr")
def mrr(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top K, per user.

    ``1 / rank`` of the first hit, 0 when no relevant item is in the top K.

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Reciprocal rank of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    first = np.argmax(hits, axis=1)
    rr = np.where(hits.any(1), 1.0 / (first + 1), 0.0)
    return np.where(n_rel > 0, rr, np.nan)


@register_metric("map")
def average_precision(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """AP@K per user, metric name ``map``.

    The sum of precision@r at each relevant rank r within the top K, divided by
    ``min(n_relevant, K)`` (RecBole's and LensKit's convention: a user with more relevant items
    than K can still reach 1). For trec_eval's and ranx's convention (divided by ``n_relevant``)
    use :func:`average_precision_trec` (``map_trec``).

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        AP of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    k = hits.shape[1]
    return _safe_div(_precision_sum(hits), np.minimum(n_rel, k))


@register_metric("map_trec")
def average_precision_trec(hits: npt.ArrayLike, n_relevant: npt.ArrayLike) -> np.ndarray:
    """AP@K per user, metric name ``map_trec``.

    The same sum of precision@r at the relevant ranks within the top K as
    :func:`average_precision`, divided by ``n_relevant`` (trec_eval's ``map_cut_K`` and ranx's
    ``map@K``), so it can reach 1 only when every relevant item is in the top K.

    Parameters
    ----------
    hits : array_like of bool, shape (n_users, K)
        ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is relevant.
    n_relevant : array_like of int, shape (n_users,)
        Number of relevant items of each user.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        AP of each user; NaN for a user with no relevant item.
    """
    hits, n_rel = _check(hits, n_relevant)
    return _safe_div(_precision_sum(hits), n_rel)


def _precision_sum(hits: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    prec_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return (prec_at * hits).sum(1)


#: The accuracy metrics by name: a read-only view of :data:`METRICS` without the beyond-accuracy ones.
ACCURACY_METRICS: Mapping[str, Callable] = _AccuracyMetrics()
#: What each AP name divides by (stated in the evaluator's settings).
MAP_DENOMINATORS = {"map": "min(n_relevant, K) (RecBole, LensKit)", "map_trec": "n_relevant (trec_eval, ranx)"}

# -- beyond accuracy ---------------------------------------------------------------------------


def _items(top: npt.ArrayLike) -> np.ndarray:
    top = np.asarray(top)
    if top.ndim != 2:
        raise ValueError(f"recommended items must be (n_users, k), got {top.shape}")
    return top


@register_metric("coverage", _beyond=True)
def catalog_coverage(top: npt.ArrayLike, n_items: int) -> float:
    """Catalog coverage (metric name ``coverage``).

    Share of the catalog that appears in at least one list: distinct recommended items over
    ``n_items``.

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    n_items : int
        Number of items in the catalog.

    Returns
    -------
    float
        The share, in [0, 1]; NaN when ``n_items`` is 0.
    """
    top = _items(top)
    return len(np.unique(top[top >= 0])) / n_items if n_items else np.nan


def gini(values: npt.ArrayLike) -> float:
    """Gini coefficient of non-negative values.

    ``sum_i (2 i - n - 1) x_(i) / (n * sum(x))`` over the sorted values ``x_(1) <= ... <= x_(n)``:
    0 when all values are equal, approaching 1 when one value holds everything.

    Parameters
    ----------
    values : array_like of float
        Non-negative values (e.g. how often each item is recommended).

    Returns
    -------
    float
        The coefficient; NaN when there is no value or all values are 0.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return np.nan
    ranks = np.arange(1, n + 1)
    return float((2 * ranks - n - 1) @ x / (n * x.sum()))


@register_metric("gini", _beyond=True)
def exposure_gini(top: npt.ArrayLike, n_items: int) -> float:
    """Gini of item exposure (metric name ``gini``).

    :func:`gini` of how often each catalog item is recommended across all lists; items never
    shown count as 0.

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    n_items : int
        Number of items in the catalog.

    Returns
    -------
    float
        The coefficient (0 = equal exposure, towards 1 = concentrated); NaN when nothing is shown.
    """
    top = _items(top)
    return gini(np.bincount(top[top >= 0], minlength=n_items))


@register_metric("avg_popularity", _beyond=True)
def average_popularity(top: npt.ArrayLike, item_popularity: npt.ArrayLike) -> np.ndarray:
    """Average popularity of the recommended items per user (metric name ``avg_popularity``).

    Mean training popularity (interaction count) of the items in each user's list.

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    item_popularity : array_like of float, shape (n_items,)
        Training popularity of each item.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Mean popularity per user; NaN for an empty list.
    """
    top = _items(top)
    pop = np.asarray(item_popularity, dtype=np.float64)
    valid = top >= 0
    vals = np.where(valid, pop[np.where(valid, top, 0)], 0.0)
    return _safe_div(vals.sum(1), valid.sum(1))


def long_tail_mask(item_popularity: npt.ArrayLike, head_share: float = 0.2) -> np.ndarray:
    """Mask of the long-tail items.

    An item is in the long tail when it is outside the most popular ``head_share`` of the catalog:
    the ``ceil(head_share * n_items)`` most popular items (ties broken by lower index) form the head.

    Parameters
    ----------
    item_popularity : array_like of float, shape (n_items,)
        Popularity of each item.
    head_share : float, default 0.2
        Share of the catalog counted as the head.

    Returns
    -------
    numpy.ndarray of bool, shape (n_items,)
        True for long-tail items.
    """
    pop = np.asarray(item_popularity)
    n_head = int(np.ceil(head_share * len(pop)))
    order = np.lexsort((np.arange(len(pop)), -pop))
    tail = np.ones(len(pop), dtype=bool)
    tail[order[:n_head]] = False
    return tail


@register_metric("aplt", _beyond=True)
def aplt(top: npt.ArrayLike, tail_mask: npt.ArrayLike) -> np.ndarray:
    """Average percentage of long-tail items (APLT) per user (metric name ``aplt``).

    Per user, the share of the recommended items that lie in the long tail
    (see :func:`long_tail_mask`).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    tail_mask : array_like of bool, shape (n_items,)
        True for long-tail items.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Long-tail share per user; NaN for an empty list.
    """
    top = _items(top)
    tail = np.asarray(tail_mask, dtype=bool)
    valid = top >= 0
    in_tail = valid & tail[np.where(valid, top, 0)]
    return _safe_div(in_tail.sum(1), valid.sum(1))


@register_metric("novelty", _beyond=True)
def novelty(top: npt.ArrayLike, item_user_counts: npt.ArrayLike, n_users: int) -> np.ndarray:
    """Novelty of the recommended items per user (metric name ``novelty``).

    Per user, the mean self-information ``-log2(p_i)`` of the recommended items, where ``p_i`` is
    the share of the ``n_users`` training users who interacted with item ``i``. Items no training
    user has seen count as seen by one user, so their novelty is finite (log2 of the number of
    users).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    item_user_counts : array_like of int, shape (n_items,)
        Number of *distinct* training users per item (a user who rated an item twice counts once;
        see :func:`item_user_counts`), not interactions.
    n_users : int
        Number of training users.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Mean novelty in bits per user; NaN for an empty list.
    """
    top = _items(top)
    pop = np.asarray(item_user_counts, dtype=np.float64)
    p = np.maximum(pop, 1.0) / max(n_users, 1)
    info = -np.log2(np.clip(p, 1e-300, 1.0))
    valid = top >= 0
    vals = np.where(valid, info[np.where(valid, top, 0)], 0.0)
    return _safe_div(vals.sum(1), valid.sum(1))


def item_user_counts(users: npt.ArrayLike, items: npt.ArrayLike, n_items: int) -> np.ndarray:
    """Distinct users per item in an interaction list.

    Repeated interactions of a user with an item count once.

    Parameters
    ----------
    users, items : array_like of int, shape (n,)
        User and item index of each interaction.
    n_items : int
        Number of items in the catalog.

    Returns
    -------
    numpy.ndarray of int, shape (n_items,)
        Number of distinct users who interacted with each item.
    """
    users = np.asarray(users, np.int64)
    items = np.asarray(items, np.int64)
    if len(users) != len(items):
        raise ValueError(f"item_user_counts: {len(users)} users but {len(items)} items")
    if len(items) == 0:
        return np.zeros(n_items, np.int64)
    pairs = np.unique(users * np.int64(n_items) + items)
    return np.bincount(pairs % n_items, minlength=n_items)


@register_metric("ild", _beyond=True)
def intra_list_diversity(top: npt.ArrayLike, item_vectors: npt.ArrayLike) -> np.ndarray:
    """Intra-list diversity per user (metric name ``ild``).

    Mean pairwise cosine distance ``1 - cos`` between the item vectors of each user's list
    (features, one-hot genres, or embeddings).

    Parameters
    ----------
    top : array_like of int, shape (n_users, K)
        Recommended items per user, ``-1`` for no item.
    item_vectors : array_like of float, shape (n_items, d)
        One vector per item; a zero vector counts as orthogonal to every other.

    Returns
    -------
    numpy.ndarray of float, shape (n_users,)
        Diversity per user; NaN for lists with fewer than 2 items.
    """
    top = _items(top)
    vec = np.asarray(item_vectors, dtype=np.float64)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
    valid = top >= 0
    v = unit[np.where(valid, top, 0)] * valid[..., None]  # (n, k, d)
    sims = np.einsum("nkd,njd->nkj", v, v)
    n_valid = valid.sum(1)
    pair_mask = valid[:, :, None] & valid[:, None, :] & ~np.eye(top.shape[1], dtype=bool)[None]
    mean_sim = _safe_div((sims * pair_mask).sum((1, 2)), pair_mask.sum((1, 2)))
    return np.where(n_valid >= 2, 1.0 - mean_sim, np.nan)


# -- names -------------------------------------------------------------------------------------
BEYOND_METRICS = tuple(_BEYOND)
_NAME = re.compile(r"^([a-z_]+)@(\d+)$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    k: int

    @property
    def label(self) -> str:
        return f"{self.name}@{self.k}"

    @property
    def per_user(self) -> bool:
        return self.name not in ("coverage", "gini")


def parse_metric(text: str) -> MetricSpec:
    """Parse a metric name of the form ``name@K``.

    ``'ndcg@10'`` gives ``MetricSpec('ndcg', 10)``; case and surrounding spaces are ignored.

    Parameters
    ----------
    text : str
        The metric, e.g. ``'ndcg@10'``: an accuracy or beyond-accuracy metric name and a cutoff.

    Returns
    -------
    MetricSpec
        The metric's name and cutoff ``k``.

    Raises
    ------
    ConfigError
        When ``text`` is not ``name@K``, the name is unknown (the message lists the valid names) or
        K is below 1.
    """
    m = _NAME.match(text.strip().lower())
    valid = ", ".join(list(ACCURACY_METRICS) + list(BEYOND_METRICS))
    if not m:
        raise ConfigError(f"metric {text!r} must look like 'name@K' (e.g. 'ndcg@10'); names: {valid}")
    name, k = m.group(1), int(m.group(2))
    if name not in ACCURACY_METRICS and name not in BEYOND_METRICS:
        raise ConfigError(f"unknown metric {name!r} in {text!r}; valid names: {valid}")
    if k < 1:
        raise ConfigError(f"metric {text!r}: K must be >= 1")
    return MetricSpec(name, k)
