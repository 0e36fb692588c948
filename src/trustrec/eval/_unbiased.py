"""Evaluation on randomly-exposed test data: the traditional scheme and URE.

A random-exposure test set (Coat, Yahoo! R3, a random sample of KuaiRec's fully-exposed matrix)
holds, for each user, the ratings of a few items shown at random. Three schemes use it:

``full``
    the ordinary evaluator (:func:`trustrec.eval.evaluate_split`): rank the whole catalog, the
    exposed positives are the targets, every unexposed item counts as irrelevant.
``traditional-random``
    rank only the user's randomly-exposed items and measure Recall@K / Precision@K among them.
    This does not estimate the Recall@K a model would have on fully-exposed data: with 16 exposed
    items, K = 5 already holds a third of the list.
``ure``
    Unbiased Recall Evaluation (Wang et al., "Debias Can be Unreliable", arXiv 2409.04810): rank
    the whole catalog, take the user's top-K score threshold, and estimate Recall@K as the share of
    the user's randomly-exposed positives that score above it. Because the exposed items are a
    uniform sample of the catalog, this is a consistent estimate of the fully-exposed Recall@K
    (the ratio of two unbiased sums). Precision@K is estimated without bias as
    ``(n_candidates / n_exposed) * (exposed positives in the top K) / K``.

Ties at the threshold count by their expected value under a uniformly random order of the tied
items, never by index: when ``a`` candidates score above the K-th score and ``t`` share it, each
of the ``t`` is in the top K with probability ``(K - a) / t``. Scores that are NaN (the model
cannot score the item) rank below every real score and tie with each other.

Candidates are the catalog minus the user's history (``exclude_seen=True``, as in the ordinary
evaluator), so exposed items the user already rated in train are dropped from the exposed set
and counted. Users without an exposed positive are excluded from Recall (it is undefined for
them) and counted; Precision keeps them (their estimate is 0, which keeps it unbiased).
Everything is vectorised over the users of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import QueryBatch, Ragged, Split
from trustrec.errors import ConfigError, DataError
from trustrec.eval import _metrics as M
from trustrec.eval._stats import bootstrap_ci

if TYPE_CHECKING:
    from trustrec.eval._evaluator import EvalResult
    from trustrec.models import Recommender

__all__ = [
    "SCHEMES",
    "UNBIASED_METRICS",
    "RandomExposureSet",
    "evaluate_random_exposure",
    "evaluate_schemes",
    "random_exposure_set",
    "scheme_label",
    "score_candidates",
    "topk_membership",
]

SCHEMES = ("full", "traditional-random", "ure")
UNBIASED_METRICS = ("recall", "precision")  # the threshold-based metrics both schemes support


def scheme_label(metric: str, scheme: str) -> str:
    """The column name of a metric under an evaluation scheme.

    ``'recall@10 (ure)'``; the full scheme keeps the plain name (``'recall@10'``) so existing
    outputs do not change.

    Parameters
    ----------
    metric : str
        Metric label, e.g. ``'recall@10'``.
    scheme : str
        One of :data:`SCHEMES`.

    Returns
    -------
    str
        The label.

    Raises
    ------
    ConfigError
        When ``scheme`` is not one of :data:`SCHEMES`.
    """
    _check_scheme(scheme)
    return metric if scheme == "full" else f"{metric} ({scheme})"


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ConfigError(f"evaluation scheme must be one of {SCHEMES}, got {scheme!r}")


@dataclass(frozen=True, eq=False)
class RandomExposureSet:
    """Users with at least one randomly-exposed candidate item, ready for the schemes.

    Built by :func:`random_exposure_set`. Indexing (``rset[rows]``) selects users.

    Parameters
    ----------
    queries : QueryBatch
        The users and their histories (which mask the catalog).
    exposed : Ragged
        Each user's exposed items.
    relevant : numpy.ndarray of bool
        Whether each exposed item is a positive, aligned with ``exposed.values``; stored read-only.
    part : str, default "test"
        The split part the exposures come from.
    positive_threshold : float or None, optional
        Rating threshold of a positive; None when the exposed items carry no ratings.
    exclude_seen : bool, default True
        Whether exposed items already in the history were dropped (and are masked when ranking).
    counts : dict of str to int, optional
        What was removed on the way.

    Raises
    ------
    DataError
        When ``relevant`` is not aligned with ``exposed.values`` or ``exposed`` and ``queries``
        differ in length.
    """

    queries: QueryBatch
    exposed: Ragged
    relevant: np.ndarray
    part: str = "test"
    positive_threshold: float | None = None
    exclude_seen: bool = True
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        relevant = np.asarray(self.relevant, dtype=bool)
        if relevant.shape != self.exposed.values.shape:
            raise DataError(
                f"RandomExposureSet: relevant has shape {relevant.shape}, but there are "
                f"{len(self.exposed.values)} exposed items"
            )
        if len(self.exposed) != len(self.queries):
            raise DataError(f"RandomExposureSet: {len(self.queries)} queries but {len(self.exposed)} exposed rows")
        relevant = relevant.copy()
        relevant.flags.writeable = False
        object.__setattr__(self, "relevant", relevant)

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index) -> RandomExposureSet:
        rows = np.atleast_1d(np.arange(len(self))[index])
        starts, lengths = self.exposed.indptr[rows], self.exposed.lengths[rows]
        flat = np.repeat(starts, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        return RandomExposureSet(
            self.queries[rows],
            self.exposed.take(rows),
            self.relevant[flat],
            self.part,
            self.positive_threshold,
            self.exclude_seen,
            dict(self.counts),
        )

    def n_positives(self) -> np.ndarray:
        """Exposed positives per user."""
        return np.bincount(self.exposed.row_ids()[self.relevant], minlength=len(self))


def random_exposure_set(split: Split, part: str = "test", *, exclude_seen: bool = True) -> RandomExposureSet:
    """The random-exposure view of a split's held-out part.

    Every exposed (user, item) pair, the positives marked by the split's ``positive_threshold``
    (all exposed items are positives when the threshold is None and the part has no ratings).
    Repeated (user, item) pairs count once (the last rating wins); with ``exclude_seen`` the pairs
    already in the user's history are dropped. Both are counted in ``counts``.

    Parameters
    ----------
    split : Split
        A random-exposure split.
    part : {"test", "valid"}, default "test"
        Which held-out part.
    exclude_seen : bool, default True
        Drop exposed items already in the user's history.

    Returns
    -------
    RandomExposureSet
        The users with at least one exposed candidate.

    Raises
    ------
    ConfigError
        For an unknown ``part``, or a rated part without a ``positive_threshold``.
    DataError
        When the part is empty.
    """
    held = split.valid if part == "valid" else split.test
    if part not in ("valid", "test"):
        raise ConfigError(f"part must be 'valid' or 'test', got {part!r}")
    if len(held) == 0:
        raise DataError(
            f"split '{split.dataset.name}' ({split.method}) has an empty {part} part: "
            "no random-exposure data to evaluate on"
        )
    threshold = split.params.get("positive_threshold")
    if threshold is None and held.rating is not None:
        raise ConfigError(
            f"random_exposure_set: the {part} ratings of '{split.dataset.name}' need a positive_threshold "
            "to tell positives from exposed negatives; use split_random_exposure (default 4) or pass "
            "positive_threshold to the split"
        )
    n_users, n_items = split.dataset.n_users, split.dataset.n_items
    key = held.user * n_items + held.item
    # last occurrence of each (user, item) pair
    rev_unique, rev_first = np.unique(key[::-1], return_index=True)
    rows = len(key) - 1 - rev_first
    counts = {"n_exposed_pairs": len(key), "n_duplicate_exposures": int(len(key) - len(rows))}
    user, item = held.user[rows], held.item[rows]
    # threshold is set whenever there are ratings (checked above)
    if held.rating is None or threshold is None:
        relevant = np.ones(len(rows), bool)
    else:
        relevant = held.rating[rows] >= float(threshold)
    history = split.history_for(part)
    if exclude_seen:
        seen = np.isin(rev_unique, history.user * n_items + history.item)
        counts["n_exposed_in_history"] = int(seen.sum())
        counts["n_positives_in_history"] = int((seen & relevant).sum())
        user, item, relevant = user[~seen], item[~seen], relevant[~seen]
    else:
        counts["n_exposed_in_history"] = 0
        counts["n_positives_in_history"] = 0
    users = np.unique(user)
    counts["n_users_with_exposure"] = len(np.unique(held.user))
    counts["n_users_no_exposed_candidate"] = counts["n_users_with_exposure"] - len(users)
    order = np.lexsort((item, user))
    user, item, relevant = user[order], item[order], relevant[order]
    per_user = Ragged.from_groups(np.searchsorted(users, user), item, len(users))
    histories = history.by_user(n_users).take(users)
    return RandomExposureSet(
        QueryBatch(users, histories),
        per_user,
        relevant,
        part,
        None if threshold is None else float(threshold),
        exclude_seen,
        counts,
    )


def topk_membership(scores: npt.ArrayLike, candidates: npt.ArrayLike, k: int) -> np.ndarray:
    """Probability that each item is in the top ``k`` of its row, among its candidates.

    Items strictly above the k-th candidate score get 1, items tied with it
    ``(k - above) / tied`` (expected value under a random order of the tied items), the rest and
    non-candidates 0. Rows with fewer than ``k`` candidates hold all of them.

    Parameters
    ----------
    scores : array_like of float, shape (n, m)
        Scores; NaN = cannot score (ranks last, ties with other NaN).
    candidates : array_like of bool, shape (n, m)
        The items each row may rank.
    k : int
        Cutoff, at least 1.

    Returns
    -------
    numpy.ndarray of float, shape (n, m)
        Membership probabilities; each row sums to ``min(k, n_candidates)``.

    Raises
    ------
    ConfigError
        When ``k`` is below 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    cand = np.asarray(candidates, dtype=bool)
    if s.shape != cand.shape or s.ndim != 2:
        raise ValueError(f"topk_membership: scores {s.shape} and candidates {cand.shape} must be equal 2-d shapes")
    if k < 1:
        raise ConfigError(f"topk_membership: k must be >= 1, got {k}")
    n, m = s.shape
    out = np.zeros((n, m))
    if n == 0 or m == 0:
        return out
    s = np.where(np.isnan(s), -np.inf, s)
    masked = np.where(cand, s, -np.inf)
    n_cand = cand.sum(1)
    k_eff = np.minimum(k, n_cand)
    kk = min(k, m)
    # the kk largest per row, sorted descending; the k_eff-th is the threshold
    part = -np.partition(-masked, kk - 1, axis=1)[:, :kk] if kk < m else masked
    top_sorted = -np.sort(-part, axis=1)
    tau = top_sorted[np.arange(n), np.maximum(k_eff - 1, 0)][:, None]
    above = cand & (s > tau)
    tied = cand & (s == tau)
    n_above = above.sum(1)
    n_tied = tied.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_tied > 0, (k_eff - n_above) / np.maximum(n_tied, 1), 0.0)
    out[above] = 1.0
    out += tied * share[:, None]
    out[k_eff == 0] = 0.0
    return out


def score_candidates(
    model: Recommender, queries: QueryBatch, *, exclude_seen: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Scores over the full catalog and the items each query may rank.

    Models without full-catalog scores rank the whole catalog through ``recommend``; their scores
    are then minus the rank (unranked items are NaN).

    Parameters
    ----------
    model : Recommender
        A fitted model.
    queries : QueryBatch
        Users and histories.
    exclude_seen : bool, default True
        Exclude each user's history items from the candidates.

    Returns
    -------
    scores : numpy.ndarray of float, shape (n, n_items)
        The model's scores; NaN where it cannot score.
    candidates : numpy.ndarray of bool, shape (n, n_items)
        The items the model may rank: the catalog, minus the history with ``exclude_seen``.
    """
    from trustrec.models import exclusion_mask

    n_items = model.n_items_
    if "score" in model.capabilities and queries.candidates is None:
        prepared = model._prepare(queries)
        scores = np.array(model.score(prepared), dtype=np.float64)
        mask = exclusion_mask(prepared, n_items, exclude_seen)
    else:
        top = model.recommend(queries, n_items, exclude_seen=exclude_seen)
        scores = np.full((len(queries), n_items), np.nan)
        rows = np.repeat(np.arange(len(queries))[:, None], top.k, axis=1)
        ok = top.items >= 0
        scores[rows[ok], top.items[ok]] = -np.broadcast_to(np.arange(top.k), top.items.shape)[ok].astype(float)
        prepared, _ = queries.restrict(model.n_users_, n_items)
        mask = exclusion_mask(prepared, n_items, exclude_seen)
    candidates = np.ones((len(queries), n_items), bool) if mask is None else ~mask
    return scores, candidates


def _parse(metrics: Sequence[str], scheme: str) -> list:
    specs = [M.parse_metric(m) for m in metrics]
    if not specs:
        raise ConfigError("evaluate_random_exposure: give at least one metric (e.g. 'recall@10')")
    bad = [s.label for s in specs if s.name not in UNBIASED_METRICS]
    if bad:
        raise ConfigError(
            f"scheme {scheme!r} supports the threshold-based metrics {list(UNBIASED_METRICS)} (e.g. "
            f"'recall@10'), not {bad}; NDCG, MRR and HR are not estimable from random exposure this way"
        )
    return specs


def evaluate_random_exposure(
    model: Recommender,
    data: Split | RandomExposureSet,
    *,
    scheme: str = "ure",
    metrics: Sequence[str] = ("recall@10",),
    part: str = "test",
    exclude_seen: bool = True,
    batch_size: int | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Evaluate a model on random-exposure data under a random-exposure scheme.

    Per-user values and their means with percentile bootstrap CIs over users (module docstring for
    the schemes). Metric columns are labelled with the scheme (``'recall@10 (ure)'``); only
    ``recall@K`` and ``precision@K`` are supported, and K must be smaller than the catalog.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    data : Split or RandomExposureSet
        The random-exposure data; a split is turned into a set by :func:`random_exposure_set`.
    scheme : {"ure", "traditional-random"}, default "ure"
        The scheme; ``traditional-random`` needs the exposed negatives (ratings in the test set).
    metrics : sequence of str, default ("recall@10",)
        ``recall@K`` and/or ``precision@K``.
    part : str, default "test"
        Held-out part, when ``data`` is a split.
    exclude_seen : bool, default True
        Drop exposed items already in the history, when ``data`` is a split.
    batch_size : int, optional
        Users per batch; None picks one automatically.
    n_boot : int, default 1000
        Bootstrap resamples of the users for the CIs (0 gives none).
    ci : float, default 0.95
        Confidence level.
    seed : int, default 0
        Seed of the bootstrap (``seed + i`` for the i-th metric).
    progress : bool, default False
        Show a progress bar over the batches.

    Returns
    -------
    EvalResult
        Per-user values (with ``n_candidates``, ``n_exposed``, ``n_exposed_positives``), summary
        with CIs, counts and settings; no aggregates.

    Raises
    ------
    ConfigError
        For the ``full`` or an unknown scheme, no metric or an unsupported one, or a K not below
        the catalog size (and as :func:`random_exposure_set`).
    DataError
        For the traditional scheme on a set without ratings.
    NotFittedError
        When ``model`` is not fitted.
    """
    from tqdm.auto import tqdm

    from trustrec.eval._evaluator import EvalResult, auto_batch_size

    _check_scheme(scheme)
    if scheme == "full":
        raise ConfigError(
            "evaluate_random_exposure handles 'ure' and 'traditional-random'; the full scheme "
            "is trustrec.eval.evaluate_split"
        )
    specs = _parse(metrics, scheme)
    model._check_fitted()
    n_items = model.n_items_
    too_big = [s.label for s in specs if s.k >= n_items]
    if too_big:
        raise ConfigError(
            f"{too_big}: K must be smaller than the catalog ({n_items} items); at K >= "
            "the catalog size every item is in the top K and Recall is 1 by construction"
        )
    rset = data if isinstance(data, RandomExposureSet) else random_exposure_set(data, part, exclude_seen=exclude_seen)
    if scheme == "traditional-random" and rset.relevant.all() and rset.positive_threshold is None:
        raise DataError(
            "the traditional scheme ranks the exposed items, positives and negatives, but this "
            "random-exposure set has no ratings (every exposed item is a positive)"
        )
    ks = sorted({s.k for s in specs})
    # about eight dense (users x items) arrays live per batch: a smaller budget than the evaluator's
    batch_size = batch_size or auto_batch_size(n_items, budget=4_000_000)
    found: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    extra_cols: dict[str, list[np.ndarray]] = {"n_candidates": [], "n_exposed": [], "n_exposed_positives": []}
    for start in tqdm(
        range(0, len(rset), batch_size), desc=f"{scheme} {model.name}", disable=not progress, leave=False
    ):
        batch = rset[start : start + batch_size]
        scores, cand = score_candidates(model, batch.queries, exclude_seen=rset.exclude_seen)
        exposed = np.zeros_like(cand)
        exposed[batch.exposed.row_ids(), batch.exposed.values] = True
        exposed &= cand
        positive = np.zeros_like(cand)
        rows = batch.exposed.row_ids()[batch.relevant]
        positive[rows, batch.exposed.values[batch.relevant]] = True
        positive &= cand
        pool = cand if scheme == "ure" else exposed
        for k in ks:
            found[k].append((topk_membership(scores, pool, k) * positive).sum(1))
        extra_cols["n_candidates"].append(cand.sum(1))
        extra_cols["n_exposed"].append(exposed.sum(1))
        extra_cols["n_exposed_positives"].append(positive.sum(1))
    cols = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in extra_cols.items()}
    n_pos = cols["n_exposed_positives"].astype(np.float64)
    n_exp = cols["n_exposed"].astype(np.float64)
    per_user = pd.DataFrame({"user": rset.queries.users, **cols})
    for s in specs:
        hits = np.concatenate(found[s.k]) if found[s.k] else np.zeros(0)
        if s.name == "recall":
            value = np.where(n_pos > 0, hits / np.maximum(n_pos, 1), np.nan)
        else:  # precision@K
            scale = cols["n_candidates"] / np.maximum(n_exp, 1) if scheme == "ure" else 1.0
            value = np.where(n_exp > 0, scale * hits / s.k, np.nan)
        per_user[scheme_label(s.label, scheme)] = value
    rows = []
    labels = [scheme_label(s.label, scheme) for s in specs]
    for i, col in enumerate(labels):
        v = per_user[col].to_numpy()
        lo, hi = bootstrap_ci(v, n_boot=n_boot, ci=ci, seed=seed + i)
        rows.append(
            {
                "metric": col,
                "mean": float(np.nanmean(v)) if np.isfinite(v).any() else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_users": int(np.isfinite(v).sum()),
            }
        )
    summary = pd.DataFrame(rows, columns=["metric", "mean", "ci_low", "ci_high", "n_users"]).set_index("metric")
    counts = {
        "n_users_evaluated": len(per_user),
        "n_users_no_exposed_positive": int((n_pos == 0).sum()),
        **{k: int(v) for k, v in rset.counts.items()},
    }
    if scheme == "traditional-random":
        counts["n_users_k_ge_exposed"] = int((n_exp <= max(ks)).sum())
    settings = {
        "scheme": scheme,
        "part": rset.part,
        "exclude_seen": rset.exclude_seen,
        "positive_threshold": rset.positive_threshold,
        "k": ks,
        "metrics": labels,
        "ties": "expected value over a random order of the items tied at the top-K threshold",
        "recall_users": "users with at least one exposed positive (the others are counted, not scored)",
        "n_boot": n_boot,
        "ci": ci,
        "seed": seed,
    }
    return EvalResult(per_user, summary, {}, counts, settings)


def evaluate_schemes(
    model: Recommender,
    split: Split,
    schemes: Sequence[str] = SCHEMES,
    *,
    metrics: Sequence[str] = ("recall@10",),
    part: str = "test",
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a model under several schemes on the same split.

    The full scheme (:func:`trustrec.eval.evaluate_split`) gets every metric, the random-exposure
    schemes (:func:`evaluate_random_exposure`) the threshold-based ones among ``metrics``.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    split : Split
        A random-exposure split.
    schemes : sequence of str, default SCHEMES
        Schemes to run, each one of :data:`SCHEMES`.
    metrics : sequence of str, default ("recall@10",)
        Metric names ``name@K``.
    part : str, default "test"
        Which held-out part.
    **kwargs
        Passed on to every scheme's evaluator.

    Returns
    -------
    dict of str to EvalResult
        ``{scheme: EvalResult}``.

    Raises
    ------
    ConfigError
        For an unknown scheme, or a random-exposure scheme when ``metrics`` has no ``recall@K`` or
        ``precision@K`` (and as the evaluators).
    """
    from trustrec.eval._evaluator import evaluate_split

    out: dict[str, Any] = {}
    unbiased = [m for m in metrics if M.parse_metric(m).name in UNBIASED_METRICS]
    for scheme in schemes:
        _check_scheme(scheme)
        if scheme == "full":
            full_kw = {k: v for k, v in kwargs.items() if k != "exclude_seen"}
            out[scheme] = evaluate_split(
                model, split, part, metrics=list(metrics), exclude_seen=kwargs.get("exclude_seen", True), **full_kw
            )
        else:
            if not unbiased:
                raise ConfigError(
                    f"scheme {scheme!r} needs recall@K or precision@K among the metrics, got {list(metrics)}"
                )
            out[scheme] = evaluate_random_exposure(model, split, scheme=scheme, metrics=unbiased, part=part, **kwargs)
    return out
