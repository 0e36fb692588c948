"""What the attribution functions and the faithfulness audit share: which attribution a model
gets, scoring edited histories (catalog scores or an LLM's likelihood) in one session per batch of
queries, and the result objects (:class:`Attribution`, :class:`Deletion`). The methods are described
in :mod:`trustrec.audit.explainability.attribution`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data import QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.models import has_capability

__all__ = ["ATTRIBUTION_METHODS", "DELETION_VARIANTS", "REQUEST_STATUSES", "Attribution", "Deletion"]


ATTRIBUTION_METHODS = ("leave_one_out", "gradient", "likelihood")
REQUEST_STATUSES = ("ok", "not_recommended", "empty_history", "unknown_item")
DELETION_VARIANTS = ("remove_cited", "remove_random", "keep_cited", "keep_random")
Method = Literal["auto", "leave_one_out", "gradient", "likelihood"]


# -- models ------------------------------------------------------------------------------------------
def _answers(model) -> bool:
    """Whether ``model`` picks items by the likelihood of their text as an LLM's answer
    (the ``answer_likelihood`` capability)."""
    return has_capability(model, "answer_likelihood")


def _model_name(model) -> str:
    return getattr(model, "name", "") or type(model).__name__


def _resolve_method(model, method: str) -> str:
    if method not in ("auto", *ATTRIBUTION_METHODS):
        raise ConfigError(f"attribute: method must be 'auto' or one of {ATTRIBUTION_METHODS}; got {method!r}")
    answers = _answers(model)
    if method == "auto":
        if answers:
            return "likelihood"
        if has_capability(model, "score"):
            return "leave_one_out"
        raise ConfigError(
            f"attribute: {_model_name(model)} has no full-ranking score and is not an LLM "
            "recommender; no attribution method applies"
        )
    if method == "gradient" and not callable(getattr(model, "history_gradients", None)):
        raise ConfigError(
            f"attribute: method 'gradient' needs a model with history_gradients (sasrec, "
            f"sasrec_text); {_model_name(model)} has none. Use 'leave_one_out'"
        )
    if method == "likelihood" and not answers:
        raise ConfigError(
            f"attribute: method 'likelihood' needs an LLM recommender (llm_ranker, llm_generative); "
            f"{_model_name(model)} is not one. Use 'leave_one_out'"
        )
    if method == "leave_one_out" and not has_capability(model, "score"):
        raise ConfigError(
            f"attribute: method 'leave_one_out' needs full-ranking scores; {_model_name(model)} has "
            "none" + (". Use 'likelihood'" if answers else "")
        )
    return method


# -- scoring edited histories ---------------------------------------------------------------------------
def _rank_in(scores: np.ndarray, target_cols: np.ndarray, rankable: np.ndarray) -> np.ndarray:
    """1-based rank of column ``target_cols[v, j]`` in row ``v`` of ``scores`` among the ``rankable``
    columns (higher first, ties: lower column first); unscorable targets (NaN/-inf) take the last
    rank; NaN where the target column is -1 or not rankable."""
    s = np.where(rankable & ~np.isnan(scores), scores, -np.inf)
    cols = np.maximum(target_cols, 0)
    t = np.take_along_axis(s, cols, 1)  # (V, m)
    higher = (s[:, None, :] > t[:, :, None]).sum(2)
    index = np.arange(s.shape[1])
    ties = ((s[:, None, :] == t[:, :, None]) & (index[None, None, :] < cols[:, :, None])).sum(2)
    rank = (1 + higher + ties).astype(np.float64)
    last = rankable.sum(1).astype(np.float64)[:, None]
    rank = np.where(np.isfinite(t), rank, np.broadcast_to(last, rank.shape))
    ok = (target_cols >= 0) & np.take_along_axis(rankable, cols, 1)
    return np.where(ok, rank, np.nan)


class _CatalogScorer:
    """Scores and full-catalog ranks of items under edited histories (models with ``score``)."""

    universe = None

    def __init__(self, model, queries: QueryBatch, batch_size: int = 512, cell_budget: int = 20_000_000):
        self.model, self.queries = model, queries
        self.n_items = model.n_items_
        self.batch_size, self.cell_budget = batch_size, cell_budget

    def measure(self, rows: np.ndarray, histories: Ragged, items: np.ndarray, *, ranks: bool = True):
        """``(scores, ranks)`` of ``items[v]`` (V, m) for query ``rows[v]`` with history
        ``histories[v]``; ranks among the catalog with the query's original history masked."""
        items = np.asarray(items, np.int64)
        n_var, m = items.shape
        scores = np.full((n_var, m), np.nan)
        rank = np.full((n_var, m), np.nan)
        step = max(1, min(self.batch_size, self.cell_budget // max(1, self.n_items * max(m, 1))))
        for start in range(0, n_var, step):
            sl = slice(start, start + step)
            r = rows[sl]
            batch = self.queries[r].with_histories(histories.take(np.arange(start, min(start + step, n_var))))
            s = np.asarray(self.model.score(batch), np.float64)
            cols = np.maximum(items[sl], 0)
            scores[sl] = np.where(items[sl] >= 0, np.take_along_axis(s, cols, 1), np.nan)
            if ranks:
                rankable = ~self.queries.histories.take(r).to_dense_mask(self.n_items)
                rank[sl] = _rank_in(s, items[sl], rankable)
        return scores, rank


class _LikelihoodScorer:
    """Log-likelihoods of item texts as the LLM's answer under edited histories, and ranks among a
    fixed candidate set per query (``universe``)."""

    def __init__(
        self,
        model,
        queries: QueryBatch,
        universe: np.ndarray | None = None,
        n_candidates: int = 20,
        chunk: int = 32,
        progress: bool = False,
    ):
        self.model, self.queries = model, queries
        self.chunk, self.progress = chunk, progress
        if universe is None:  # a ranker: exactly the candidates it ranks itself
            universe = model.answer_candidates(queries, n_candidates)
        self.universe = np.asarray(universe, np.int64)
        self.backend = model.answer_backend
        self._texts: dict[int, str] = {}

    def _item_texts(self, items) -> list[str]:
        missing = sorted({int(i) for i in items if int(i) not in self._texts})
        if missing:
            self._texts.update(zip(missing, self.model.answer_texts(np.asarray(missing, np.int64))))
        return [self._texts[int(i)] for i in items]

    def _prompt_results(self, queries: QueryBatch, candidates: np.ndarray) -> list:
        return self.model.answer_prompts(queries, candidates)

    def _prompts(self, queries: QueryBatch, candidates: np.ndarray) -> list[str]:
        return [p.text for p in self._prompt_results(queries, candidates)]

    def read(self) -> np.ndarray:
        """How many of each query's most recent history items the LLM's prompt shows (the rest
        were cut by the prompt's history budget: the LLM never reads them)."""
        return np.array([p.n_history for p in self._prompt_results(self.queries, self.universe)], np.int64)

    def _reduction(self) -> str:
        return self.model.answer_reduction

    def measure(self, rows: np.ndarray, histories: Ragged, items: np.ndarray, *, ranks: bool = True):
        items = np.asarray(items, np.int64)
        n_var, m = items.shape
        scores = np.full((n_var, m), np.nan)
        rank = np.full((n_var, m), np.nan)
        cands = self.universe[rows]
        from tqdm.auto import tqdm

        for start in tqdm(
            range(0, n_var, self.chunk), desc="LLM likelihoods", unit="chunk", leave=False, disable=not self.progress
        ):
            stop = min(start + self.chunk, n_var)
            q = self.queries[rows[start:stop]].with_histories(histories.take(np.arange(start, stop)))
            scored_items = cands[start:stop] if ranks else items[start:stop]
            prompts = self._prompts(q, cands[start:stop])
            conts = [self._item_texts(row[row >= 0]) for row in scored_items]
            values = self.backend.score_continuations(prompts, conts, reduction=self._reduction())
            width = scored_items.shape[1]
            s = np.full((stop - start, width), np.nan)
            for v, (row, vals) in enumerate(zip(scored_items, values)):
                s[v, np.flatnonzero(row >= 0)] = vals
            if ranks:
                hit = scored_items[:, None, :] == items[start:stop, :, None]  # (b, m, c)
                found = hit.any(2) & (items[start:stop] >= 0)
                col = np.where(found, hit.argmax(2), -1)
                scores[start:stop] = np.where(found, np.take_along_axis(s, np.maximum(col, 0), 1), np.nan)
                rank[start:stop] = _rank_in(s, col, scored_items >= 0)
            else:
                scores[start:stop] = np.where(items[start:stop] >= 0, s, np.nan)
        return scores, rank


class _Session:
    """One model and one batch of queries, with the scorer that edited histories go through."""

    def __init__(
        self,
        model,
        queries: QueryBatch,
        method: str = "auto",
        *,
        max_history: int | None = 50,
        batch_size: int = 512,
        n_candidates: int = 20,
        universe: np.ndarray | None = None,
        progress: bool = False,
    ):
        model._check_fitted()
        if not isinstance(queries, QueryBatch):
            raise DataError(f"attribute: expected a QueryBatch, got {type(queries).__name__}")
        if max_history is not None and max_history < 1:
            raise ConfigError(f"attribute: max_history must be >= 1 or None; got {max_history}")
        self.model, self.method = model, _resolve_method(model, method)
        self.queries = model._prepare(queries)  # unknown users/items restricted, as the model reads them
        self.max_history, self.batch_size, self.n_candidates = max_history, batch_size, n_candidates
        self._universe, self.progress = universe, progress
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            if _answers(self.model) and (self.method == "likelihood" or not has_capability(self.model, "score")):
                self._scorer = _LikelihoodScorer(
                    self.model, self.queries, self._universe, self.n_candidates, progress=self.progress
                )
            else:
                self._scorer = _CatalogScorer(self.model, self.queries, self.batch_size)
        return self._scorer

    def window(self) -> np.ndarray:
        """How many of each query's most recent history items are attributed: at most
        ``max_history``, and for LLM recommenders only those their prompt shows."""
        lengths = self.queries.histories.lengths
        keep = lengths if self.max_history is None else np.minimum(lengths, self.max_history)
        if self.method != "gradient" and isinstance(self.scorer, _LikelihoodScorer):
            keep = np.minimum(keep, self.scorer.read())
        return keep

    # -- attribution ---------------------------------------------------------------------------------
    def attribute(self, items: npt.ArrayLike) -> Attribution:
        items = _check_items(items, len(self.queries), self.model.n_items_, "attribute")
        h = self.queries.histories
        n, m = items.shape
        width = int(h.lengths.max()) if len(h.values) else 0
        values = np.full((n, m, width), np.nan)
        if self.method == "gradient":
            grads = self.model.history_gradients(self.queries, items)  # (n, m, max_len), right-aligned
            max_len = grads.shape[2]
            lengths = h.lengths
            keep = self.window()
            col = np.arange(max_len)
            pos = lengths[:, None] - max_len + col[None, :]  # absolute position, (n, max_len)
            ok = (pos >= 0) & (pos >= (lengths - keep)[:, None])
            r, c = np.nonzero(ok)
            values[r, :, pos[r, c]] = grads[r, :, c]
        else:
            a = self.window()
            rows = np.repeat(np.arange(n), a)
            starts = np.concatenate([[0], np.cumsum(a)[:-1]])
            pos = h.lengths[rows] - a[rows] + (np.arange(len(rows)) - starts[rows])  # removed position
            variants = _edit(h, rows, pos)
            full, _ = self.scorer.measure(np.arange(n), h, items, ranks=False)
            without, _ = self.scorer.measure(rows, variants, items[rows], ranks=False)
            values[rows, :, pos] = full[rows] - without
        values[items < 0] = np.nan
        return Attribution(items, values, h, self.method)

    # -- deletion -----------------------------------------------------------------------------------------
    def deletion(self, attribution: Attribution, steps: Sequence[int], n_random: int, seed: int) -> Deletion:
        steps = tuple(sorted({int(s) for s in steps}))
        if not steps or steps[0] < 1:
            raise ConfigError(f"deletion_test: steps must be positive integers; got {steps}")
        if n_random < 1:
            raise ConfigError(f"deletion_test: n_random must be >= 1; got {n_random}")
        if len(attribution.items) != len(self.queries):
            raise ValueError(
                f"deletion_test: the attribution has {len(attribution.items)} rows but there are "
                f"{len(self.queries)} queries"
            )
        row, slot = np.nonzero(attribution.items >= 0)
        item = attribution.items[row, slot]
        vals = attribution.values[row, slot]  # (P, L)
        n_attr = (~np.isnan(vals)).sum(1)
        h = self.queries.histories
        _, base = self.scorer.measure(row, h.take(row), item[:, None])
        base = base[:, 0]
        ranks = {v: np.full((len(row), len(steps)), np.nan) for v in DELETION_VARIANTS}
        rng = np.random.default_rng(seed)
        width = vals.shape[1]
        order = _cited_order(vals)
        for j, m in enumerate(steps):
            valid = n_attr > m
            if not valid.any() or m >= width:
                continue
            p = np.flatnonzero(valid)
            cited = np.zeros((len(p), width), bool)
            cited[np.arange(len(p))[:, None], order[p, :m]] = True
            draws = []
            for _ in range(n_random):
                keys = rng.random((len(p), width))
                keys[np.isnan(vals[p])] = np.inf
                chosen = np.zeros((len(p), width), bool)
                chosen[np.arange(len(p))[:, None], np.argpartition(keys, m - 1, axis=1)[:, :m]] = True
                draws.append(chosen)
            # every edit of step m in one call, pair-major: one pair's edited histories are scored
            # together (an LLM runs the prompt stem they share once); removing a set = keeping the rest
            sets = np.stack([cited, *draws])  # (S, P, width)
            kept = np.concatenate([~sets, sets]).transpose(1, 0, 2).reshape(-1, width)
            n_edits = 2 * len(sets)
            rows_all = np.repeat(row[p], n_edits)
            edited = _select(h, rows_all, kept, keep=True)
            measured = self.scorer.measure(rows_all, edited, np.repeat(item[p], n_edits)[:, None])[1][:, 0]
            measured = measured.reshape(len(p), 2, len(sets))  # (pair, remove/keep, set)
            for k, action in enumerate(("remove", "keep")):
                ranks[f"{action}_cited"][p, j] = measured[:, k, 0]
                ranks[f"{action}_random"][p, j] = measured[:, k, 1:].mean(1)
        return Deletion(row, slot, item, base, steps, ranks, n_attr)


def _check_items(items, n: int, n_items: int, owner: str) -> np.ndarray:
    items = np.asarray(items)
    if items.ndim == 1:
        items = items[:, None]
    if items.ndim != 2:
        raise ValueError(f"{owner}: items must be (n_queries,) or (n_queries, m) item indices; got shape {items.shape}")
    if len(items) != n:
        raise ValueError(f"{owner}: {n} queries but {len(items)} rows of items")
    if items.size and not np.issubdtype(items.dtype, np.integer):
        raise ValueError(f"{owner}: items must be integer item indices (-1 = none); got dtype {items.dtype}")
    items = items.astype(np.int64)
    bad = (items < -1) | (items >= n_items)
    if bad.any():
        raise ValueError(
            f"{owner}: item index {int(items[bad][0])} is outside the catalog of {n_items} items "
            "(-1 means no item); use explanation_requests to screen requests"
        )
    return items


def _edit(h: Ragged, rows: np.ndarray, removed_pos: np.ndarray) -> Ragged:
    """Histories ``h[rows[v]]`` without position ``removed_pos[v]`` (one variant per entry)."""
    expanded = h.take(rows)
    rid = expanded.row_ids()
    pos = np.arange(len(expanded.values)) - expanded.indptr[rid]
    keep = pos != removed_pos[rid]
    counts = np.bincount(rid[keep], minlength=len(rows))
    return Ragged(np.concatenate([[0], np.cumsum(counts)]), expanded.values[keep])


def _select(h: Ragged, rows: np.ndarray, selected: np.ndarray, keep: bool) -> Ragged:
    """Histories ``h[rows[v]]`` keeping (``keep``) or removing the positions ``selected[v]`` marks."""
    expanded = h.take(rows)
    rid = expanded.row_ids()
    pos = np.arange(len(expanded.values)) - expanded.indptr[rid]
    marked = selected[rid, pos]
    mask = marked if keep else ~marked
    counts = np.bincount(rid[mask], minlength=len(rows))
    return Ragged(np.concatenate([[0], np.cumsum(counts)]), expanded.values[mask])


def _cited_order(values: np.ndarray) -> np.ndarray:
    """Per row, history positions by attribution, highest first (ties: most recent first; NaN last)."""
    if values.shape[-1] == 0:
        return np.zeros(values.shape, np.int64)
    v = np.where(np.isnan(values), -np.inf, values)
    pos = np.broadcast_to(np.arange(values.shape[-1]), values.shape)
    return np.lexsort((-pos, -v), axis=-1)


# -- results -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Attribution:
    """Attributions of ``items`` (n_queries, m; -1 = none) to the queries' ``histories`` (as the model
    read them: unknown items removed): ``values[q, j, t]`` is the attribution of history position
    ``t`` (0 = oldest) to item ``items[q, j]``, NaN where not attributed. ``method`` says how.

    Parameters
    ----------
    items : ndarray
        (n_queries, m) explained item indices; -1 = none.
    values : ndarray
        (n_queries, m, max history length) attributions; NaN where not attributed.
    histories : Ragged
        The histories as the model read them (unknown items removed).
    method : str
        The attribution method used (``leave_one_out``, ``gradient``, ``likelihood``).
    """

    items: np.ndarray
    values: np.ndarray
    histories: Ragged
    method: str

    def cited_positions(self, m: int) -> np.ndarray:
        """(n, m_items, m) history positions of the ``m`` most attributed history items (ties: most
        recent first), -1 where fewer are attributed."""
        order = _cited_order(self.values)[..., :m]
        n_attr = (~np.isnan(self.values)).sum(-1)
        out = np.full((*self.items.shape, m), -1, np.int64)
        take = order.shape[-1]
        out[..., :take] = np.where(np.arange(take) < n_attr[..., None], order, -1)
        return out

    def cited_items(self, m: int) -> np.ndarray:
        """(n, m_items, m) item indices of :meth:`cited_positions` (-1 where none)."""
        pos = self.cited_positions(m)
        h = self.histories
        starts = h.indptr[:-1][:, None, None]
        values = (
            h.values[np.clip(starts + np.maximum(pos, 0), 0, max(len(h.values) - 1, 0))]
            if len(h.values)
            else np.zeros(pos.shape, np.int64)
        )
        return np.where(pos >= 0, values, -1)

    def to_frame(self, top: int | None = None) -> pd.DataFrame:
        """One row per (query row, slot, attributed history position), most attributed first:
        ``row``, ``slot``, ``item``, ``rank`` (1 = most attributed), ``position``, ``history_item``,
        ``attribution``; only the ``top`` most attributed per item when given."""
        n_attr = (~np.isnan(self.values)).sum(-1)
        limit = n_attr if top is None else np.minimum(n_attr, top)
        width = self.values.shape[-1]
        pos = (
            self.cited_positions(width if top is None else min(top, width))
            if width
            else np.full((*self.items.shape, 0), -1)
        )
        r, s, k = np.nonzero((pos >= 0) & (np.arange(pos.shape[-1]) < limit[..., None]) & (self.items[..., None] >= 0))
        p = pos[r, s, k]
        return pd.DataFrame(
            {
                "row": r,
                "slot": s,
                "item": self.items[r, s],
                "rank": k + 1,
                "position": p,
                "history_item": self.histories.values[self.histories.indptr[r] + p],
                "attribution": self.values[r, s, p],
            }
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Deletion:
    """The deletion test of explained pairs (query ``row``, ``slot``, ``item``): the item's rank
    under the full history (``base_rank``) and, per variant of :data:`DELETION_VARIANTS`, its rank
    after each edit (``ranks[variant]``, (n_pairs, n_steps), NaN where the pair has no more than
    ``m`` attributed history items); ``n_attributed`` per pair.

    Parameters
    ----------
    row, slot, item : ndarray
        (n_pairs,) each explained pair's query row, slot in ``Attribution.items`` and item index.
    base_rank : ndarray
        (n_pairs,) the item's 1-based rank under the full history.
    steps : tuple of int
        The numbers ``m`` of history items removed or kept.
    ranks : dict of str to ndarray
        Per variant of :data:`DELETION_VARIANTS`, (n_pairs, n_steps) ranks after the edit; NaN
        where the pair has no more than ``m`` attributed history items.
    n_attributed : ndarray
        (n_pairs,) attributed history items per pair.
    """

    row: np.ndarray
    slot: np.ndarray
    item: np.ndarray
    base_rank: np.ndarray
    steps: tuple[int, ...]
    ranks: dict[str, np.ndarray]
    n_attributed: np.ndarray

    def rank_drop(self, variant: str) -> np.ndarray:
        """(n_pairs, n_steps) rank after the edit minus rank before (> 0 = pushed down)."""
        return self.ranks[variant] - self.base_rank[:, None]

    def comprehensiveness(self) -> np.ndarray:
        return self.rank_drop("remove_cited") - self.rank_drop("remove_random")

    def sufficiency(self) -> np.ndarray:
        return self.rank_drop("keep_random") - self.rank_drop("keep_cited")
