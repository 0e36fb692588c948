"""Ranked lists: turning a score matrix into top-k items with a fixed, documented tie rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trustrec.data import readonly

if TYPE_CHECKING:
    import torch

__all__ = ["RawTopK", "TopK", "topk_from_scores"]


@dataclass(frozen=True, eq=False)
class TopK:
    """Aligned (n_queries, k) arrays: item indices (-1 = no item) and scores (-inf there).

    Scores never increase along a row; a row may hold fewer than k items when fewer could be
    scored (padding comes last).

    Parameters
    ----------
    items : numpy.ndarray
        (n_queries, k) item indices, -1 where there is no item (stored as read-only int64).
    scores : numpy.ndarray
        (n_queries, k) scores aligned with ``items``, -inf at padding (stored as read-only float64).

    Raises
    ------
    ValueError
        When ``items`` and ``scores`` are not 2-d arrays of the same shape.
    """

    items: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "items", readonly(self.items, np.int64))
        object.__setattr__(self, "scores", readonly(self.scores, np.float64))
        if self.items.shape != self.scores.shape or self.items.ndim != 2:
            raise ValueError(f"TopK: items {self.items.shape} and scores {self.scores.shape} must match (2-d)")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def k(self) -> int:
        return self.items.shape[1]

    @property
    def valid(self) -> np.ndarray:
        return self.items >= 0

    def row(self, i: int) -> np.ndarray:
        r = self.items[i]
        return r[r >= 0]

    def __getitem__(self, index) -> TopK:
        rows = np.atleast_1d(np.arange(len(self))[index])
        return TopK(self.items[rows], self.scores[rows])

    def truncate(self, k: int) -> TopK:
        return TopK(self.items[:, :k], self.scores[:, :k])

    @classmethod
    def concat(cls, parts) -> TopK:
        parts = list(parts)
        k = max((p.k for p in parts), default=0)

        def pad(a, fill):
            return np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=fill)

        return cls(
            np.concatenate([pad(p.items, -1) for p in parts]) if parts else np.empty((0, 0)),
            np.concatenate([pad(p.scores, -np.inf) for p in parts]) if parts else np.empty((0, 0)),
        )


@dataclass(frozen=True, eq=False)
class RawTopK:
    """A :class:`TopK` in raw ids.

    Parameters
    ----------
    item_ids : numpy.ndarray
        (n_queries, k) object array of the dataset's raw item ids, ``None`` where there is no item.
    scores : numpy.ndarray
        (n_queries, k) scores aligned with ``item_ids``, -inf where there is no item.
    """

    item_ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    def row(self, i: int) -> list[str]:
        """The raw item ids of query ``i``, best first."""
        return [item for item in self.item_ids[i] if item is not None]

    @classmethod
    def from_topk(cls, top: TopK, item_ids) -> RawTopK:
        """``top`` with each item index replaced by ``item_ids[index]``."""
        vocab = np.asarray([*list(item_ids), None], dtype=object)  # index -1 (padding) -> None
        return cls(readonly(vocab[top.items], object), top.scores)


def topk_from_scores(
    scores: npt.ArrayLike | torch.Tensor, k: int, exclude: npt.ArrayLike | torch.Tensor | None = None
) -> TopK:
    """Top-``k`` of each row of ``scores`` (numpy or torch, shape (n, n_items)).

    NaN and -inf mean "cannot score" and are never returned; ``exclude`` (a boolean mask of the
    same shape) removes items such as the user's history. Ties are broken by the lower item
    index, always, so rankings do not depend on the sorting algorithm. Vectorised with torch.

    Parameters
    ----------
    scores : array_like
        (n, n_items) scores, a numpy array or a torch tensor; NaN and -inf mean "cannot score".
    k : int
        Number of items per row (clipped to [0, n_items]).
    exclude : array_like or None
        Boolean mask of the shape of ``scores``, True where an item must not be returned.

    Returns
    -------
    TopK
        The (n, k) ranked items and their scores; rows with fewer scorable items are padded.
    """
    import torch

    s = torch.as_tensor(scores)
    if not torch.is_floating_point(s):
        s = s.to(torch.float64)
    s = torch.nan_to_num(s, nan=-torch.inf)  # a copy: the input is untouched
    n, m = s.shape
    if exclude is not None:
        s.masked_fill_(torch.as_tensor(exclude, dtype=torch.bool), -torch.inf)
    k = int(max(0, min(k, m)))
    if n == 0 or k == 0:
        return TopK(np.full((n, k), -1), np.full((n, k), -np.inf))
    vals, idx = torch.topk(s, min(k + 1, m), dim=1, sorted=True)
    # Rows whose top k+1 values are all distinct are already exact; only rows with a tie need
    # the index-order rule (rare for learned scores, common for counts).
    finite = torch.isfinite(vals)
    tie = ((vals[:, :-1] == vals[:, 1:]) & finite[:, 1:]).any(dim=1)
    items = idx[:, :k].clone()
    out = vals[:, :k].to(torch.float64)
    if tie.any():
        rows_t = torch.nonzero(tie, as_tuple=True)[0]
        items[rows_t], out[rows_t] = _exact_with_ties(s[rows_t], k)
    items[~torch.isfinite(out) & (out < 0)] = -1
    return TopK(items.numpy(), out.numpy())


def _exact_with_ties(s, k: int):
    """Top-k of rows with ties: everything above the k-th value, then tied items by index."""
    import torch

    n = s.shape[0]
    kth = torch.topk(s, k, dim=1, sorted=True).values[:, -1:]
    above = s > kth
    tied = s == kth
    need = k - above.sum(dim=1, keepdim=True)
    take = (above | (tied & (torch.cumsum(tied, dim=1) <= need))) & (s > -torch.inf)
    counts = take.sum(dim=1)
    rows, cols = torch.nonzero(take, as_tuple=True)  # row-major: ascending item index
    vals = s[rows, cols].to(torch.float64)
    order = torch.argsort(-vals, stable=True)  # score desc, index asc within ties
    order = order[torch.argsort(rows[order], stable=True)]
    rows, cols, vals = rows[order], cols[order], vals[order]
    pos = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
    items = torch.full((n, k), -1, dtype=torch.int64)
    out = torch.full((n, k), -torch.inf, dtype=torch.float64)
    items[rows, pos] = cols
    out[rows, pos] = vals
    return items, out
