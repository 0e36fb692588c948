"""Tie-neutral metrics: the expected value of each metric over a uniformly random order of tied items.

The evaluator's default (``ties="index"``) breaks ties by the lower item index, as
:func:`trustrec.models.topk_from_scores` does; a model that gives many items the same score
(popularity counts, a coarse LLM score) then gains or loses by the catalog's id order.
``ties="expected"`` reports, for every metric, its expected value when the items sharing a score
are put in a uniformly random order (the convention URE already uses at its top-K threshold,
:func:`trustrec.eval.topk_membership`).

A *tie block* is the set of items with one score. In a ranked list it occupies consecutive
positions ``start .. start + size - 1`` and holds ``relevant`` targets. Blocks that end inside the
list are seen whole in it; the block at the list's last position (the *cut block*) may go on past
it, and its catalog-wide size and targets are read from the full score matrix when the model has
one (``scope="catalog"``); for models that only return lists, from the list alone (``"list"``).

Under a random order within each block (blocks are independent), position ``r`` at offset
``j = r - start`` in a block of ``t`` items with ``h`` targets holds a target with probability
``h / t``; given that the ``j`` earlier slots of its block hold none, with probability
``h / (t - j)``; two slots of one block both hold targets with probability
``h (h - 1) / (t (t - 1))``. Every metric below is exact under these facts (no sampling):
recall, precision and NDCG are linear in the per-slot hit probabilities; HR and MRR read the
probability that no earlier slot hit; AP reads the pairwise terms. Item-statistic metrics
(popularity, APLT, novelty) average each slot's block mean; ILD uses block-mean item vectors
(and the within-block pair mean); coverage and exposure Gini use each item's expected membership
``min(1, (K - start) / size)`` (Gini of the expected exposure counts). Vectorised over users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "TIE_RULES",
    "ExposureAccumulator",
    "TieBlocks",
    "block_means",
    "expected_accuracy",
    "expected_ild",
    "expected_item_mean",
    "tie_blocks",
]

TIE_RULES = {
    "index": "ties at equal scores go to the lower item index (deterministic)",
    "expected": "expected value over a uniformly random order of the items tied at equal scores",
}


@dataclass
class TieBlocks:
    """Per list position (n, K): ``valid``, block ``start`` (list position), ``size`` and
    ``relevant``; ``cut``: rows whose last block was sized from the full catalog; ``cut_mask``
    (n, n_items) or None: the catalog items tied with the last list position of those rows."""

    valid: np.ndarray
    start: np.ndarray
    size: np.ndarray
    relevant: np.ndarray
    cut: np.ndarray
    cut_mask: np.ndarray | None = None

    def without_mask(self) -> TieBlocks:
        return TieBlocks(self.valid, self.start, self.size, self.relevant, self.cut, None)

    @staticmethod
    def concat(parts: list[TieBlocks], k: int) -> TieBlocks:
        if not parts:
            z = np.zeros((0, k), np.int64)
            return TieBlocks(z.astype(bool), z, z, z, np.zeros(0, bool))
        return TieBlocks(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("valid", "start", "size", "relevant", "cut"))
        )


def tie_blocks(items, scores, *, target_mask=None, full_scores=None) -> TieBlocks:
    """Tie blocks of ranked lists. ``items`` (n, K), -1 = padding; ``scores`` (n, K) the list's
    scores (non-increasing along a row); ``target_mask`` (n, n_items) bool; ``full_scores``
    (n, n_items) float with -inf for items the list may not hold (history, cannot score), or None
    when the model gives no full scores (blocks are then read from the list only)."""
    items = np.asarray(items)
    n, k = items.shape
    valid = items >= 0
    v = np.where(valid, np.asarray(scores, np.float64), np.nan)  # padding never ties
    pos = np.arange(k)
    same_prev = np.zeros((n, k), bool)
    same_prev[:, 1:] = v[:, 1:] == v[:, :-1]
    start = np.maximum.accumulate(np.where(same_prev, 0, pos), axis=1)
    same_next = np.zeros((n, k), bool)
    same_next[:, :-1] = same_prev[:, 1:]
    rev_start = np.maximum.accumulate(np.where(same_next[:, ::-1], 0, pos), axis=1)
    end = k - rev_start[:, ::-1]  # exclusive
    if target_mask is not None:
        rows = np.arange(n)[:, None]
        hits = target_mask[rows, np.where(valid, items, 0)] & valid
    else:
        hits = np.zeros((n, k), bool)
    csum = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(hits, axis=1)], axis=1)
    size = end - start
    relevant = np.take_along_axis(csum, end, 1) - np.take_along_axis(csum, start, 1)
    cut = np.zeros(n, bool)
    cut_mask = None
    if full_scores is not None and k:
        full = np.asarray(full_scores, np.float64)
        last = v[:, -1]
        cut = valid[:, -1] & np.isfinite(last)
        cut_mask = (full == np.where(cut, last, np.nan)[:, None]) & cut[:, None]
        in_cut = cut[:, None] & (end == k)
        t_cut = cut_mask.sum(1)
        h_cut = (cut_mask & target_mask).sum(1) if target_mask is not None else np.zeros(n, np.int64)
        size = np.where(in_cut, t_cut[:, None], size)
        relevant = np.where(in_cut, h_cut[:, None], relevant)
    return TieBlocks(valid, start, np.maximum(size, 1), relevant, cut, cut_mask)


def _slots(tb: TieBlocks, k: int):
    valid = tb.valid[:, :k]
    t = tb.size[:, :k].astype(np.float64)
    h = tb.relevant[:, :k].astype(np.float64)
    j = (np.arange(valid.shape[1]) - tb.start[:, :k]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(valid, h / t, 0.0)  # P(slot holds a target)
        f = np.where(valid, np.clip((t - h - j) / np.maximum(t - j, 1), 0, 1), 1.0)  # P(no target | none before)
        q = np.where(valid & (t > 1), h * (h - 1) / np.maximum(t * (t - 1), 1), 0.0)  # P(two slots of a block)
    return p, f, q, j


def _safe_div(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def expected_accuracy(name: str, tb: TieBlocks, n_relevant, k: int) -> np.ndarray:
    """Per user, the expected ``name@k`` (recall, precision, hr, ndcg, mrr, map, map_trec)."""
    n_rel = np.asarray(n_relevant, np.float64)
    kk = min(k, tb.valid.shape[1])  # a list narrower than k (tiny catalog) is all there is
    p, f, q, j = _slots(tb, kk)
    ranks = np.arange(1, kk + 1, dtype=np.float64)
    if name == "recall":
        return _safe_div(p.sum(1), n_rel)
    if name == "precision":
        return np.where(n_rel > 0, p.sum(1) / max(kk, 1), np.nan)
    if name == "hr":
        return np.where(n_rel > 0, 1.0 - f.prod(1), np.nan)
    if name == "ndcg":
        discounts = 1.0 / np.log2(ranks + 1)
        ideal = np.concatenate([[0.0], np.cumsum(discounts)])
        return _safe_div(p @ discounts, ideal[np.minimum(n_rel, kk).astype(np.int64)])
    if name == "mrr":
        none_before = np.concatenate([np.ones((len(f), 1)), np.cumprod(f, axis=1)[:, :-1]], axis=1)
        return np.where(n_rel > 0, (none_before * (1 - f) / ranks).sum(1), np.nan)
    if name in ("map", "map_trec"):
        before = np.concatenate([np.zeros((len(p), 1)), np.cumsum(p, axis=1)], axis=1)
        earlier = np.take_along_axis(before, tb.start[:, :kk], 1)  # targets expected in earlier blocks
        pair = p + p * earlier + j * q  # E[hit_r * hits up to r]
        num = (pair / ranks).sum(1)
        return _safe_div(num, np.minimum(n_rel, kk) if name == "map" else n_rel)
    raise ValueError(f"expected_accuracy: unknown metric {name!r}")


def block_means(tb: TieBlocks, items, values) -> np.ndarray:
    """Per list position, the mean of ``values`` (n_items,) or (n_items, d) over the items of its
    tie block (catalog-wide for the cut block when known). Padding gets 0."""
    items = np.asarray(items)
    vals = np.asarray(values, np.float64)
    n, k = items.shape
    flat = vals.reshape(len(vals), -1)
    per = np.where(tb.valid[..., None], flat[np.where(tb.valid, items, 0)], 0.0)  # (n, K, d)
    csum = np.concatenate([np.zeros((n, 1, flat.shape[1])), np.cumsum(per, axis=1)], axis=1)
    pos = np.arange(k)
    same_next = np.zeros((n, k), bool)
    same_next[:, :-1] = tb.start[:, 1:] == tb.start[:, :-1]
    same_next &= tb.valid & np.concatenate([tb.valid[:, 1:], np.zeros((n, 1), bool)], axis=1)
    rev_start = np.maximum.accumulate(np.where(same_next[:, ::-1], 0, pos), axis=1)
    end = k - rev_start[:, ::-1]
    in_list = np.take_along_axis(csum, end[..., None], 1) - np.take_along_axis(csum, tb.start[..., None], 1)
    out = in_list / np.maximum(end - tb.start, 1)[..., None]
    if tb.cut_mask is not None and tb.cut.any():
        rows = np.flatnonzero(tb.cut)
        cut_sum = tb.cut_mask[rows].astype(np.float64) @ flat  # (n_cut, d)
        cut_mean = cut_sum / np.maximum(tb.cut_mask[rows].sum(1), 1)[:, None]
        in_cut = (tb.start[rows] == tb.start[rows, -1:]) & tb.valid[rows]
        out[rows] = np.where(in_cut[..., None], cut_mean[:, None, :], out[rows])
    out = np.where(tb.valid[..., None], out, 0.0)
    return out.reshape((n, k, *vals.shape[1:]))


def expected_item_mean(tb: TieBlocks, means: np.ndarray, k: int) -> np.ndarray:
    """Per user, the expected mean of an item statistic over the top ``k`` (``means`` from
    :func:`block_means`); NaN for empty lists."""
    valid = tb.valid[:, :k]
    return _safe_div(np.where(valid, means[:, :k], 0.0).sum(1), valid.sum(1))


def expected_ild(tb: TieBlocks, unit_means: np.ndarray, sq_means: np.ndarray, k: int) -> np.ndarray:
    """Per user, the expected intra-list diversity (1 - mean pairwise cosine) of the top ``k``:
    slots in different blocks have expected cosine ``m_r . m_s`` (block-mean unit vectors), two
    slots of one block ``(t |m|^2 - mean |u|^2) / (t - 1)``."""
    valid = tb.valid[:, :k]
    m = unit_means[:, :k]
    t = tb.size[:, :k].astype(np.float64)
    same_block = tb.start[:, :k, None] == tb.start[:, None, :k]
    cross = np.einsum("nkd,njd->nkj", m, m)
    with np.errstate(divide="ignore", invalid="ignore"):
        within = np.where(t > 1, (t * (m * m).sum(-1) - sq_means[:, :k]) / np.maximum(t - 1, 1), 0.0)
    sims = np.where(same_block, within[:, :, None], cross)
    pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(valid.shape[1], dtype=bool)[None]
    mean_sim = _safe_div((sims * pair).sum((1, 2)), pair.sum((1, 2)))
    return np.where(valid.sum(1) >= 2, 1.0 - mean_sim, np.nan)


class ExposureAccumulator:
    """Expected exposure of each item over users (for coverage and Gini), batch by batch: an item
    at a list position is in the top ``k`` with probability ``min(1, (k - start) / size)``, and so
    is each catalog item of a cut block past the list."""

    def __init__(self, n_items: int, k: int):
        self.k = k
        self.exposure = np.zeros(n_items)
        self.log_absent = np.zeros(n_items)  # sum over users of log P(item not in the list)
        self.certain = np.zeros(n_items, np.int64)  # users whose top k surely holds the item

    def add(self, tb: TieBlocks, items) -> None:
        items = np.asarray(items)
        n_items = len(self.exposure)
        member = np.where(tb.valid, np.clip((self.k - tb.start) / tb.size, 0.0, 1.0), 0.0)
        ok = tb.valid & (member > 0)
        idx = items[ok]
        mem = member[ok]
        self.exposure += np.bincount(idx, weights=mem, minlength=n_items)
        sure = mem >= 1.0
        self.certain += np.bincount(idx[sure], minlength=n_items)
        self.log_absent += np.bincount(idx[~sure], weights=np.log1p(-mem[~sure]), minlength=n_items)
        if tb.cut_mask is not None and tb.cut.any():
            rows = np.flatnonzero(tb.cut)
            last = tb.start[rows, -1]
            m_cut = np.clip((self.k - last) / tb.size[rows, -1], 0.0, 1.0)
            beyond = tb.cut_mask[rows].copy()
            r = np.repeat(np.arange(len(rows)), items.shape[1])
            listed = items[rows].ravel()
            keep = listed >= 0
            beyond[r[keep], listed[keep]] = False  # in-list items counted above
            live = m_cut > 0
            if live.any():
                b = beyond[live].astype(np.float64)
                self.exposure += m_cut[live] @ b
                self.log_absent += np.log1p(-np.minimum(m_cut[live], 1 - 1e-15)) @ b

    def coverage(self) -> float:
        n = len(self.exposure)
        p_shown = np.where(self.certain > 0, 1.0, 1.0 - np.exp(self.log_absent))
        return float(p_shown.sum() / n) if n else np.nan
