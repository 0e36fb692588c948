"""Full-ranking evaluation over all items, batched so memory stays bounded, with per-user results
and bootstrap confidence intervals. Sampled evaluation exists only on request and is labelled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import EvalSet, Ragged, Split
from trustrec.errors import ConfigError
from trustrec.eval import _metrics as M
from trustrec.eval._stats import bootstrap_ci
from trustrec.models import Recommender, TopK, exclusion_mask, topk_from_scores

__all__ = [
    "DEFAULT_METRICS",
    "TARGET_SEGMENTS",
    "EvalResult",
    "Validator",
    "cold_item_mask",
    "evaluate",
    "evaluate_split",
    "hits_matrix",
    "item_vectors_from_groups",
    "restrict_targets",
]

DEFAULT_METRICS = ("ndcg@10", "hr@10", "recall@10", "mrr@10")
#: Which held-out targets count: all, only cold items, or only warm items (see :func:`cold_item_mask`).
TARGET_SEGMENTS = ("all", "cold", "warm")


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Result of :func:`evaluate`: per-user values, means with CIs, aggregates and counts.

    Parameters
    ----------
    per_user : pandas.DataFrame
        One row per evaluated user: ``user``, ``n_targets``, ``history_length``, ``list_length``
        and one column per per-user metric (labelled ``name@K`` plus any suffix).
    summary : pandas.DataFrame
        Indexed by metric label: ``mean``, ``ci_low``, ``ci_high`` (percentile bootstrap over
        users) and ``n_users`` (users with a defined value).
    aggregates : dict of str to float
        List-level metrics that have no per-user value (``coverage``, ``gini``).
    counts : dict of str to int
        What was counted: users evaluated, empty histories, short lists, users with no
        recommendation, and more depending on the options.
    settings : dict of str to Any
        The protocol and options the numbers were computed under.
    topk : TopK or None, optional
        The ranked lists, when ``evaluate`` was asked to keep them.
    """

    per_user: pd.DataFrame
    summary: pd.DataFrame
    aggregates: dict[str, float]
    counts: dict[str, int]
    settings: dict[str, Any]
    topk: TopK | None = field(default=None, repr=False)

    def mean(self, metric: str) -> float:
        return float(self.summary.loc[metric, "mean"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {
                m: {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
                for m, row in self.summary.to_dict(orient="index").items()
            },
            "aggregates": self.aggregates,
            "counts": self.counts,
            "settings": self.settings,
        }


def hits_matrix(top_items: np.ndarray, targets: Ragged, n_items: int) -> np.ndarray:
    """Boolean hit matrix of ranked lists against each user's targets.

    ``hits[u, r]`` is True when the item at rank ``r + 1`` of user ``u``'s list is one of ``u``'s
    targets; padding (``-1``) never hits.

    Parameters
    ----------
    top_items : numpy.ndarray of int, shape (n_users, K)
        Ranked items per user, ``-1`` for no item.
    targets : Ragged
        Target items of each user.
    n_items : int
        Number of items in the catalog.

    Returns
    -------
    numpy.ndarray of bool, shape (n_users, K)
        The hits, as the accuracy metrics read them.
    """
    target_mask = targets.to_dense_mask(n_items)
    rows = np.arange(len(top_items))[:, None]
    return target_mask[rows, np.where(top_items >= 0, top_items, 0)] & (top_items >= 0)


def _sampled_candidates(eval_set: EvalSet, n_items: int, n_negatives: int, rng) -> Ragged:
    """Targets plus ``n_negatives`` uniformly sampled items per user that are neither targets nor
    history items (fewer when the catalog runs out). Called per batch, so memory stays bounded."""
    q, t = eval_set.queries, eval_set.targets
    forbidden = q.histories.to_dense_mask(n_items) | t.to_dense_mask(n_items)
    keys = rng.random((len(q), n_items))
    keys[forbidden] = np.inf
    take = min(n_negatives, n_items)
    neg = np.argpartition(keys, take - 1, axis=1)[:, :take] if take else np.empty((len(q), 0), int)
    ok = np.take_along_axis(keys, neg, axis=1) < np.inf
    cand = t.to_dense_mask(n_items)
    cand[np.repeat(np.arange(len(q)), ok.sum(1)), neg[ok]] = True
    lengths = cand.sum(1)
    return Ragged(np.concatenate([[0], np.cumsum(lengths)]), np.nonzero(cand)[1])


def auto_batch_size(n_items: int, budget: int = 20_000_000) -> int:
    """Users per batch so one batch's score matrix stays near ``budget`` cells (160 MB float64)."""
    return int(max(1, min(4096, budget // max(n_items, 1))))


def _rank_batch(model: Recommender, queries, k: int, exclude_seen: bool, *, full: bool = False):
    """The batch's top-``k``; with ``full``, also the (n, n_items) float64 scores the list was cut
    from (-inf where the list may not go: history, cannot score), or None for a model that only
    returns lists (or is given candidates)."""
    if "score" in model.capabilities and queries.candidates is None:
        prepared = model._prepare(queries)
        scores = model.score(prepared)
        mask = exclusion_mask(prepared, model.n_items_, exclude_seen)
        top = topk_from_scores(scores, k, mask)
        if not full:
            return top
        s = np.array(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
        s[np.isnan(s)] = -np.inf
        if mask is not None:
            s[np.asarray(mask, bool)] = -np.inf
        return top, s
    top = model.recommend(queries, k, exclude_seen=exclude_seen)
    return (top, None) if full else top


def item_vectors_from_groups(items: pd.DataFrame | None, column: str | None = None) -> tuple[np.ndarray, str]:
    """Multi-hot item vectors from an item group column (for ILD when no vectors are given).

    The column is ``column`` or, when None, the one :func:`trustrec.data.guess_item_group_column`
    finds (genres, categories, ...).

    Parameters
    ----------
    items : pandas.DataFrame or None
        The dataset's items table.
    column : str, optional
        Group column to use; None guesses it.

    Returns
    -------
    vectors : numpy.ndarray of float, shape (n_items, n_groups)
        One multi-hot row per item.
    source : str
        A description of where the vectors came from.

    Raises
    ------
    ConfigError
        When ``column`` is None and no group column can be guessed (or there is no items table).
    """
    from trustrec.data import guess_item_group_column, item_group_matrix

    column = column or (guess_item_group_column(items) if items is not None else None)
    if column is None:
        raise ConfigError(
            "metric 'ild' needs item_vectors (item features or embeddings), and the items table "
            "has no group column (genre, category, ...) to derive them from; pass item_vectors"
        )
    matrix, names, info = item_group_matrix(items, column)
    source = (
        f"multi-hot of the items' {column!r} column ({len(names)} values, "
        f"{info['n_items_without_group']} items without one)"
    )
    return np.asarray(matrix.todense(), np.float64), source


def evaluate(
    model: Recommender,
    eval_set: EvalSet,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int | None = None,
    exclude_seen: bool = True,
    sampled_negatives: int | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    item_popularity: np.ndarray | None = None,
    n_train_users: int | None = None,
    item_vectors: np.ndarray | None = None,
    item_user_counts: np.ndarray | None = None,
    ties: str = "index",
    keep_topk: bool = False,
    progress: bool = True,
    item_classes: npt.ArrayLike | None = None,
) -> EvalResult:
    """Rank the whole catalog for every query (seen items masked) and compare with the targets.

    Users in ``eval_set`` all have at least one target; users with empty histories are ranked as
    the model can and counted. Per-user metrics get a percentile bootstrap CI over users
    (:func:`trustrec.eval.bootstrap_ci`, seed ``seed + i`` for the i-th metric). ``map`` divides
    by ``min(n_relevant, K)``, ``map_trec`` by ``n_relevant`` (both stated in
    ``settings["map_denominator"]``).

    Parameters
    ----------
    model : Recommender
        A fitted model.
    eval_set : EvalSet
        Queries (user histories) and their held-out targets.
    metrics : sequence of str, default DEFAULT_METRICS
        Metric names ``name@K`` (:func:`parse_metric`).
    batch_size : int, optional
        Users per batch; None picks a batch that keeps one score matrix near 20M cells.
    exclude_seen : bool, default True
        Mask each user's history items out of the ranking.
    sampled_negatives : int, optional
        Rank each user's targets among this many uniformly sampled negatives instead of the whole
        catalog; every metric name then gets the suffix ``(sampled-N)``.
    n_boot : int, default 1000
        Bootstrap resamples for the CIs (0 gives none).
    ci : float, default 0.95
        Confidence level.
    seed : int, default 0
        Seed of the bootstrap and of the negative sampling.
    item_popularity : numpy.ndarray, optional
        Training interactions per item, needed by ``avg_popularity``, ``aplt`` and ``novelty``.
    n_train_users : int, optional
        Novelty's denominator; None uses the number of evaluated users.
    item_vectors : numpy.ndarray, optional
        Item vectors, shape (n_items, d), needed by ``ild``.
    item_user_counts : numpy.ndarray, optional
        Distinct training users per item (novelty's share of users); defaults to
        ``item_popularity``, which is the same when no user repeats an item.
    ties : {"index", "expected"}, default "index"
        ``"index"`` cuts the top K with ties going to the lower item index; ``"expected"`` reports
        every metric's expected value over a uniformly random order of tied items, and every metric
        name gets the suffix ``(ties-expected)``. For models without full-catalog scores (or given
        candidates) the tie at the list's end is seen only within the returned list
        (``settings["ties_scope"]``).
    keep_topk : bool, default False
        Keep the ranked lists on the result (``EvalResult.topk``).
    progress : bool, default True
        Show a progress bar over the batches.
    item_classes : array_like of int, optional
        ``item_classes[i]`` names the class of item ``i``; items of one class count as the same
        item: ranked lists and targets are mapped to their class, and a class repeated further
        down a list is dropped (the generative papers' exact title match: items sharing a title
        are one answer; see :func:`title_classes`). A model that reports decoding counts
        (``recommend_with_stats``) adds them to ``counts`` (out-of-catalog outputs among them).
        None: items are compared by index.

    Returns
    -------
    EvalResult
        Per-user values, summary with CIs, aggregates, counts and settings.

    Raises
    ------
    ConfigError
        For an unknown tie rule or metric, no metric, a metric whose item statistics are missing
        (``item_popularity``, ``item_vectors``) or ``sampled_negatives`` below 1.
    NotFittedError
        When ``model`` is not fitted.
    """
    from tqdm.auto import tqdm

    from trustrec.eval import _ties as T

    model._check_fitted()
    if ties not in T.TIE_RULES:
        raise ConfigError(f"evaluate: ties must be one of {sorted(T.TIE_RULES)}, got {ties!r}")
    expected = ties == "expected"
    specs = [M.parse_metric(m) for m in metrics]
    if not specs:
        raise ConfigError("evaluate: give at least one metric")
    beyond = {s.name for s in specs if s.name in M.BEYOND_METRICS}
    if beyond & {"avg_popularity", "aplt", "novelty"} and item_popularity is None:
        raise ConfigError(f"metrics {sorted(beyond)} need item_popularity (use evaluate_split)")
    if "ild" in beyond and item_vectors is None:
        raise ConfigError(
            "metric 'ild' needs item_vectors (item features or embeddings; evaluate_split derives "
            "them from the items' genre column)"
        )
    user_counts = item_popularity if item_user_counts is None else item_user_counts
    n_items = model.n_items_
    k_max = max(s.k for s in specs)
    queries = eval_set.queries
    tags = []
    if sampled_negatives is not None:
        if sampled_negatives < 1:
            raise ConfigError(f"sampled_negatives must be >= 1, got {sampled_negatives}")
        tags.append(f"sampled-{sampled_negatives}")
    if expected:
        tags.append("ties-expected")
    suffix = f" ({', '.join(tags)})" if tags else ""
    tail = M.long_tail_mask(item_popularity) if item_popularity is not None else None
    # expected-tie mode: item statistics averaged over tie blocks, and exposure per cutoff, per batch
    stats: dict[str, np.ndarray] = {}
    if expected:
        if "avg_popularity" in beyond:
            stats["avg_popularity"] = np.asarray(item_popularity, np.float64)
        if "aplt" in beyond:
            stats["aplt"] = np.asarray(tail, np.float64)
        if "novelty" in beyond:
            stats["novelty"] = M.novelty(np.arange(n_items)[:, None], user_counts, n_train_users or len(queries))
        if "ild" in beyond:
            vec = np.asarray(item_vectors, np.float64)
            norms = np.linalg.norm(vec, axis=1, keepdims=True)
            stats["ild_unit"] = np.divide(vec, norms, out=np.zeros_like(vec), where=norms > 0)
            stats["ild_sq"] = (norms[:, 0] > 0).astype(np.float64)
    exposure = {s.k: T.ExposureAccumulator(n_items, s.k) for s in specs if expected and s.name in ("coverage", "gini")}
    batch_size = batch_size or auto_batch_size(n_items)
    rng = np.random.default_rng(seed)
    classes = None
    if item_classes is not None:
        if expected or sampled_negatives is not None:
            raise ConfigError("evaluate: item_classes works with ties='index' and full ranking only")
        classes = np.asarray(item_classes, np.int64)
        if classes.shape != (n_items,) or (n_items and (classes.min() < 0 or classes.max() >= n_items)):
            raise ConfigError(f"evaluate: item_classes must hold {n_items} class indices in [0, {n_items})")
        eval_set = EvalSet(
            eval_set.queries, Ragged(eval_set.targets.indptr, classes[eval_set.targets.values]), eval_set.part
        )
    decoding_counts: dict[str, int] = {}
    parts, hits_parts, block_parts = [], [], []
    stat_parts: dict[str, list] = {name: [] for name in stats}
    scopes = set()
    batches = range(0, len(queries), batch_size)
    for start in tqdm(batches, desc=f"evaluate {model.name}", disable=not progress, leave=False):
        batch = eval_set[start : start + batch_size]
        batch_queries = batch.queries
        if sampled_negatives is not None:
            batch_queries = batch_queries.with_candidates(_sampled_candidates(batch, n_items, sampled_negatives, rng))
        if classes is not None:
            top = _rank_classes(model, batch_queries, k_max, exclude_seen, classes, decoding_counts)
        elif not expected:
            top = _rank_batch(model, batch_queries, k_max, exclude_seen)
        else:
            top, full = _rank_batch(model, batch_queries, k_max, exclude_seen, full=True)
            scopes.add("catalog" if full is not None else "list")
            tb = T.tie_blocks(top.items, top.scores, target_mask=batch.targets.to_dense_mask(n_items), full_scores=full)
            for name, values in stats.items():
                stat_parts[name].append(T.block_means(tb, top.items, values))
            for acc in exposure.values():
                acc.add(tb, top.items)
            block_parts.append(tb.without_mask())
        parts.append(top)
        hits_parts.append(hits_matrix(top.items, batch.targets, n_items))
    top = TopK.concat(parts) if parts else TopK(np.empty((0, k_max)), np.empty((0, k_max)))
    hits = np.concatenate(hits_parts) if hits_parts else np.zeros((0, k_max), bool)
    n_rel = distinct_counts(eval_set.targets)
    if expected:
        tb = T.TieBlocks.concat(block_parts, top.k)
        means = {
            name: (np.concatenate(v) if v else np.zeros((0, top.k, *stats[name].shape[1:])))
            for name, v in stat_parts.items()
        }

    per_user = pd.DataFrame(
        {
            "user": queries.users,
            "n_targets": n_rel,
            "history_length": queries.histories.lengths,
            "list_length": top.valid.sum(1),
        }
    )
    aggregates: dict[str, float] = {}
    for s in specs:
        label = s.label + suffix
        items = top.items[:, : s.k]
        if s.name in M.ACCURACY_METRICS:
            per_user[label] = (
                T.expected_accuracy(s.name, tb, n_rel, s.k)
                if expected
                else M.ACCURACY_METRICS[s.name](hits[:, : s.k], n_rel)
            )
        elif s.name == "coverage":
            aggregates[label] = exposure[s.k].coverage() if expected else M.catalog_coverage(items, n_items)
        elif s.name == "gini":
            aggregates[label] = M.gini(exposure[s.k].exposure) if expected else M.exposure_gini(items, n_items)
        elif s.name in ("avg_popularity", "aplt", "novelty") and expected:
            per_user[label] = T.expected_item_mean(tb, means[s.name], s.k)
        elif s.name == "avg_popularity":
            per_user[label] = M.average_popularity(items, item_popularity)
        elif s.name == "aplt":
            per_user[label] = M.aplt(items, tail)
        elif s.name == "novelty":
            per_user[label] = M.novelty(items, user_counts, n_train_users or len(queries))
        elif s.name == "ild":
            per_user[label] = (
                T.expected_ild(tb, means["ild_unit"], means["ild_sq"], s.k)
                if expected
                else M.intra_list_diversity(items, item_vectors)
            )
    rows = []
    for i, col in enumerate(c for c in per_user.columns if "@" in c):
        lo, hi = bootstrap_ci(per_user[col].to_numpy(), n_boot=n_boot, ci=ci, seed=seed + i)
        rows.append(
            {
                "metric": col,
                "mean": float(np.nanmean(per_user[col])) if len(per_user) else np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "n_users": int(per_user[col].notna().sum()),
            }
        )
    summary = pd.DataFrame(rows, columns=["metric", "mean", "ci_low", "ci_high", "n_users"]).set_index("metric")
    counts = {
        "n_users_evaluated": len(queries),
        "n_empty_history": int((queries.histories.lengths == 0).sum()),
        "n_short_lists": int((top.valid.sum(1) < k_max).sum()),
        "n_no_recommendation": int((top.valid.sum(1) == 0).sum()),
    }
    if exclude_seen and classes is None:  # their every target is masked as seen: no model can hit them
        counts["n_users_targets_all_seen"] = int(targets_all_seen(eval_set).sum())
    counts.update(decoding_counts)
    settings: dict[str, Any] = {
        "protocol": "sampled" if sampled_negatives is not None else "full",
        "sampled_negatives": sampled_negatives,
        "exclude_seen": exclude_seen,
        "k_max": k_max,
        "n_boot": n_boot,
        "ci": ci,
        "seed": seed,
        "part": eval_set.part,
        "metrics": [s.label + suffix for s in specs],
        "ties": ties,
        "ties_rule": T.TIE_RULES[ties],
        "item_match": "by item class (exact title match)" if classes is not None else "by item index",
    }
    if expected:
        settings["ties_scope"] = (
            "list: the model returns lists only (or was given candidates), so the tie at "
            "the list's end is seen within the returned list"
            if "list" in scopes
            else "catalog: tie blocks sized from the full score matrix"
        )
    names = {s.name for s in specs}
    if names & set(M.MAP_DENOMINATORS):
        settings["map_denominator"] = {n: M.MAP_DENOMINATORS[n] for n in sorted(names & set(M.MAP_DENOMINATORS))}
    if "novelty" in names:
        settings["novelty"] = "mean -log2(share of the training users who interacted with the item), " + (
            "distinct users per item" if item_user_counts is not None else "item_popularity taken as the users per item"
        )
    return EvalResult(per_user, summary, aggregates, counts, settings, top if keep_topk else None)


def _rank_classes(model, queries, k, exclude_seen, classes, decoding_counts) -> TopK:
    """Top-``k`` lists mapped to item classes, a class kept at its best rank only. Rows that lose
    items to repeated classes are asked again for more items (as many more as the catalog has
    items sharing a class), so a list holds ``k`` classes when the model can give them."""
    top = _class_lists(_ranked(model, queries, k, exclude_seen, decoding_counts), classes, k)
    extra = min(len(classes) - len(np.unique(classes)), len(classes) - k)
    short = np.flatnonzero((top.items < 0).any(axis=1))
    if extra > 0 and len(short):
        again = _ranked(model, queries[short], k + extra, exclude_seen, decoding_counts)
        if again.k > k:
            refill = _class_lists(again, classes, k)
            items, scores = top.items.copy(), top.scores.copy()
            items[short], scores[short] = refill.items, refill.scores
            top = TopK(items, scores)
    return top


def _ranked(model, queries, k, exclude_seen, decoding_counts) -> TopK:
    report = getattr(model, "recommend_with_stats", None)
    if callable(report):
        top, stats = report(queries, k, exclude_seen=exclude_seen)
        for key, value in stats.items():
            decoding_counts[key] = decoding_counts.get(key, 0) + int(value)
        return top
    return model.recommend(queries, k, exclude_seen=exclude_seen)


def _class_lists(top: TopK, classes: np.ndarray, k: int) -> TopK:
    items = np.where(top.items >= 0, classes[np.maximum(top.items, 0)], -1)
    # A class already named higher in the list is dropped and the rest move up.
    order = np.argsort(items, axis=1, kind="stable")
    sorted_items = np.take_along_axis(items, order, 1)
    repeat_sorted = np.zeros_like(sorted_items, dtype=bool)
    repeat_sorted[:, 1:] = (sorted_items[:, 1:] == sorted_items[:, :-1]) & (sorted_items[:, 1:] >= 0)
    repeat = np.zeros_like(repeat_sorted)
    np.put_along_axis(repeat, order, repeat_sorted, 1)
    keep = (items >= 0) & ~repeat
    width = max(k, items.shape[1])
    position = np.where(keep, np.cumsum(keep, axis=1) - 1, width)
    out_items = np.full((len(items), width + 1), -1, np.int64)
    out_scores = np.full(out_items.shape, -np.inf)
    rows = np.broadcast_to(np.arange(len(items))[:, None], items.shape)
    out_items[rows, position] = np.where(keep, items, -1)
    out_scores[rows, position] = np.where(keep, top.scores, -np.inf)
    return TopK(out_items[:, :k], out_scores[:, :k])


def title_classes(titles: Sequence[str | None]) -> np.ndarray:
    """Item classes of exact title match: each item maps to the lowest index with the same title.

    Titles are compared after stripping surrounding whitespace; an item without a title (None,
    NaN or empty) is its own class.

    Parameters
    ----------
    titles : sequence of str or None
        Item ``i``'s title at position ``i``.

    Returns
    -------
    numpy.ndarray of int64
        ``classes[i]``: the lowest item index whose title equals item ``i``'s (``i`` itself when
        untitled), as ``evaluate(item_classes=...)`` reads it.
    """
    text = pd.Series(list(titles), dtype=object)
    missing = text.isna().to_numpy().copy()
    text = text.where(~missing, "").astype(str).str.strip()
    missing |= (text == "").to_numpy()
    codes, _ = pd.factorize(text)
    _, first = np.unique(codes, return_index=True)  # codes number titles by first appearance
    classes = first[codes].astype(np.int64) if len(text) else np.zeros(0, np.int64)
    classes[missing] = np.flatnonzero(missing)
    return classes


def distinct_counts(targets: Ragged) -> np.ndarray:
    """Distinct targets per user; a repeated target counts once.

    Parameters
    ----------
    targets : Ragged
        Target items of each user.

    Returns
    -------
    numpy.ndarray of int, shape (n_users,)
        Number of distinct targets of each user (the metrics' ``n_relevant``).
    """
    rows = targets.row_ids()
    if len(rows) == 0:
        return np.zeros(len(targets), dtype=np.int64)
    key = np.unique(rows * (int(targets.values.max()) + 1) + targets.values)
    return np.bincount(key // (int(targets.values.max()) + 1), minlength=len(targets))


def targets_all_seen(eval_set: EvalSet) -> np.ndarray:
    """Which users have every target already in their history.

    With seen items masked (the default) no model can hit such a user's targets. Vectorised over
    all users.

    Parameters
    ----------
    eval_set : EvalSet
        Queries and targets.

    Returns
    -------
    numpy.ndarray of bool, shape (len(eval_set),)
        True for a user with at least one target, all of them in the history.
    """
    hist, targets = eval_set.queries.histories, eval_set.targets
    if len(targets.values) == 0:
        return np.zeros(len(eval_set), dtype=bool)
    width = int(max(hist.values.max(initial=0), targets.values.max())) + 1
    # sort + binary search: np.isin's hash path was 10x slower on an ml-1m-sized history
    history_keys = np.sort(hist.row_ids() * width + hist.values)
    target_keys = targets.row_ids() * width + targets.values
    at = np.minimum(np.searchsorted(history_keys, target_keys), max(len(history_keys) - 1, 0))
    seen = history_keys[at] == target_keys if len(history_keys) else np.zeros(len(target_keys), dtype=bool)
    unseen_per_row = np.bincount(targets.row_ids()[~seen], minlength=len(eval_set))
    return (unseen_per_row == 0) & (targets.lengths > 0)


def cold_item_mask(split: Split, max_train_interactions: int) -> np.ndarray:
    """Mask of the *cold* items of a split.

    Cold items have at most ``max_train_interactions`` interactions in the split's training part
    (what a model fitted on the split learned from); repeated interactions count each time. The
    complement is the *warm* items.

    Parameters
    ----------
    split : Split
        The split whose training part is counted.
    max_train_interactions : int
        Largest number of training interactions of a cold item, at least 0; 0 selects items never
        seen in training.

    Returns
    -------
    numpy.ndarray of bool, shape (n_items,)
        True for cold items.

    Raises
    ------
    ConfigError
        When ``max_train_interactions`` is not an integer of at least 0.
    """
    if (
        isinstance(max_train_interactions, bool)
        or not isinstance(max_train_interactions, (int, np.integer))
        or max_train_interactions < 0
    ):
        raise ConfigError(
            f"cold_item_mask: max_train_interactions must be an integer >= 0 (0 = items never seen "
            f"in training); got {max_train_interactions!r}"
        )
    counts = np.bincount(split.train.item, minlength=split.dataset.n_items)
    return counts <= max_train_interactions


def restrict_targets(eval_set: EvalSet, keep_items: np.ndarray) -> EvalSet:
    """Keep only the targets whose item is selected by a mask.

    Users left without a target are dropped (their number is ``len(eval_set) - len(result)``).
    Histories are unchanged, so every model still ranks the whole catalog; only which held-out
    items count as hits changes.

    Parameters
    ----------
    eval_set : EvalSet
        Queries and targets.
    keep_items : numpy.ndarray of bool, shape (n_items,)
        True for items whose targets are kept (e.g. :func:`cold_item_mask`).

    Returns
    -------
    EvalSet
        The users who keep at least one target, with only those targets.
    """
    keep_items = np.asarray(keep_items)
    if keep_items.dtype != bool or keep_items.ndim != 1:
        raise ValueError(
            f"restrict_targets: keep_items must be a 1-d boolean mask over the catalog; got "
            f"dtype {keep_items.dtype}, shape {keep_items.shape}"
        )
    t = eval_set.targets
    if len(t.values) and int(t.values.max()) >= len(keep_items):
        raise ValueError(
            f"restrict_targets: keep_items has {len(keep_items)} entries but a target is item "
            f"{int(t.values.max())}; give one entry per catalog item"
        )
    ok = keep_items[t.values]
    lengths = np.bincount(t.row_ids()[ok], minlength=len(t))
    kept = Ragged(np.concatenate([[0], np.cumsum(lengths)]), t.values[ok])
    rows = np.flatnonzero(lengths > 0)
    return EvalSet(eval_set.queries[rows], kept.take(rows), eval_set.part)


def evaluate_split(
    model: Recommender,
    split: Split,
    part: str = "test",
    *,
    targets: str = "all",
    cold_max_interactions: int = 0,
    **kwargs: Any,
) -> EvalResult:
    """:func:`evaluate` on a split's valid or test part, with item statistics taken from train.

    The training part supplies ``item_popularity``, ``item_user_counts`` and ``n_train_users``
    (unless given), and ``ild``'s item vectors come from the items' group column
    (:func:`item_vectors_from_groups`) when none are given. ``counts`` also holds
    ``n_users_without_target`` (users of the dataset not in the part).

    Parameters
    ----------
    model : Recommender
        A fitted model.
    split : Split
        The split to evaluate on.
    part : {"test", "valid"}, default "test"
        Which held-out part.
    targets : {"all", "cold", "warm"}, default "all"
        ``"cold"`` counts only held-out targets that are cold items (see :func:`cold_item_mask`)
        and evaluates only the users who have one; ``"warm"`` counts the other targets. The catalog
        is ranked in full either way. ``counts`` then also holds ``n_cold_items`` (in the catalog),
        ``n_targets_kept`` and ``n_users_without_<segment>_target`` (users of the part left out
        because none of their targets is in the segment).
    cold_max_interactions : int, default 0
        Most training interactions of a cold item; 0 = never seen in training.
    **kwargs
        Passed on to :func:`evaluate` (metrics, n_boot, ties, ...).

    Returns
    -------
    EvalResult
        As :func:`evaluate`, with ``settings["targets"]`` and the counts above.

    Raises
    ------
    ConfigError
        For an unknown ``targets`` segment, a bad ``cold_max_interactions``, and as
        :func:`evaluate`.
    """
    if targets not in TARGET_SEGMENTS:
        raise ConfigError(f"evaluate_split: targets must be one of {TARGET_SEGMENTS}; got {targets!r}")
    eval_set = split.eval_set(part)
    n_part = len(eval_set)
    cold = None
    if targets != "all":
        cold = cold_item_mask(split, cold_max_interactions)
        eval_set = restrict_targets(eval_set, cold if targets == "cold" else ~cold)
    kwargs.setdefault("item_popularity", np.bincount(split.train.item, minlength=split.dataset.n_items))
    kwargs.setdefault("item_user_counts", M.item_user_counts(split.train.user, split.train.item, split.dataset.n_items))
    kwargs.setdefault("n_train_users", len(np.unique(split.train.user)))
    vectors_from = None
    wants_ild = any(M.parse_metric(m).name == "ild" for m in kwargs.get("metrics", DEFAULT_METRICS))
    if wants_ild and kwargs.get("item_vectors") is None:
        kwargs["item_vectors"], vectors_from = item_vectors_from_groups(split.dataset.items)
    result = evaluate(model, eval_set, **kwargs)
    if wants_ild:
        result.settings["ild_item_vectors"] = vectors_from or "given by the caller"
    result.counts["n_users_without_target"] = split.dataset.n_users - n_part
    result.settings["targets"] = targets
    if cold is not None:
        result.settings["cold_max_interactions"] = int(cold_max_interactions)
        result.counts["n_cold_items"] = int(cold.sum())
        result.counts["n_targets_kept"] = len(eval_set.targets.values)
        result.counts[f"n_users_without_{targets}_target"] = n_part - len(eval_set)
    return result


class Validator:
    """Early-stopping signal: the mean of one metric on a split's validation part.

    Calling it with a model evaluates the model (no bootstrap, no progress bar) and returns the
    metric's mean.

    Parameters
    ----------
    split : Split
        The split whose held-out part is evaluated.
    metric : str, default "ndcg@10"
        The metric, ``name@K``.
    batch_size : int, optional
        Users per batch; None picks one automatically.
    part : str, default "valid"
        Which held-out part.

    Raises
    ------
    ConfigError
        When ``metric`` is not a valid metric name.
    """

    def __init__(self, split: Split, metric: str = "ndcg@10", batch_size: int | None = None, part: str = "valid"):
        self.eval_set = split.eval_set(part)
        self.metric = M.parse_metric(metric).label
        self.batch_size = batch_size

    def __call__(self, model: Recommender) -> float:
        res = evaluate(
            model, self.eval_set, metrics=[self.metric], batch_size=self.batch_size, n_boot=0, progress=False
        )
        return res.mean(self.metric)
