"""Queries: what a recommender is asked about a user (history, attributes, free text, candidates).

The batch is the unit (``QueryBatch``, rows aligned with every output); ``Query`` is one row for
convenience. Every model, classic or LLM, answers queries, so every audit can perturb a history
or an attribute and ask again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data._arrays import Ragged, readonly
from trustrec.errors import DataError

__all__ = ["Query", "QueryBatch"]


@dataclass(frozen=True, eq=False)
class Query:
    """One user's request. ``user`` is -1 for a user unknown at fit time (cold start).

    Parameters
    ----------
    user : int, default -1
        The user index, or -1 for a user unknown at fit time.
    history : numpy.ndarray, optional
        The item indices the user interacted with, oldest first (stored as read-only int64);
        empty by default.
    attributes : Mapping[str, Any], optional
        User attributes by name (stored read-only); empty by default.
    text : str, optional
        A free-text request.
    candidates : numpy.ndarray, optional
        Item indices to rank (stored as read-only int64); ``None`` for the whole catalog.
    """

    user: int = -1
    history: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    attributes: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None
    candidates: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "history", readonly(np.asarray(self.history).ravel(), np.int64))
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        if self.candidates is not None:
            object.__setattr__(self, "candidates", readonly(np.asarray(self.candidates).ravel(), np.int64))


@dataclass(frozen=True, eq=False)
class QueryBatch:
    """A batch of queries as aligned arrays.

    ``users`` (n,), ``histories`` (ragged, ordered oldest first), optional ``attributes``
    (DataFrame with n rows), ``texts`` and ``candidates``.

    Parameters
    ----------
    users : numpy.ndarray
        The user index of each query (-1 for unknown users); stored as read-only int64.
    histories : Ragged
        Each query's history of item indices, oldest first.
    attributes : pandas.DataFrame, optional
        One row of user attributes per query (its index is reset).
    texts : tuple of (str or None), optional
        One free-text request per query.
    candidates : Ragged, optional
        Each query's item indices to rank; ``None`` for the whole catalog.

    Raises
    ------
    DataError
        If ``histories``, ``attributes``, ``texts`` or ``candidates`` does not have one entry
        per user.
    """

    users: np.ndarray
    histories: Ragged
    attributes: pd.DataFrame | None = None
    texts: tuple[str | None, ...] | None = None
    candidates: Ragged | None = None

    def __post_init__(self):
        users = readonly(self.users, np.int64)
        object.__setattr__(self, "users", users)
        n = len(users)
        if len(self.histories) != n:
            raise DataError(f"QueryBatch: {n} users but {len(self.histories)} histories")
        if self.attributes is not None:
            if len(self.attributes) != n:
                raise DataError(f"QueryBatch: {n} users but {len(self.attributes)} attribute rows")
            object.__setattr__(self, "attributes", self.attributes.reset_index(drop=True))
        if self.texts is not None:
            if len(self.texts) != n:
                raise DataError(f"QueryBatch: {n} users but {len(self.texts)} texts")
            object.__setattr__(self, "texts", tuple(self.texts))
        if self.candidates is not None and len(self.candidates) != n:
            raise DataError(f"QueryBatch: {n} users but {len(self.candidates)} candidate lists")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_queries(cls, queries: Iterable[Query]) -> QueryBatch:
        queries = list(queries)
        attrs = None
        if any(q.attributes for q in queries):
            attrs = pd.DataFrame([dict(q.attributes) for q in queries])
        texts = tuple(q.text for q in queries) if any(q.text is not None for q in queries) else None
        cands = None
        if any(q.candidates is not None for q in queries):
            cands = Ragged.from_rows([q.candidates if q.candidates is not None else [] for q in queries])
        return cls(
            np.array([q.user for q in queries], dtype=np.int64),
            Ragged.from_rows([q.history for q in queries]),
            attrs,
            texts,
            cands,
        )

    @classmethod
    def from_histories(
        cls, histories: Sequence[Sequence[int] | np.ndarray], users: npt.ArrayLike | None = None, **kw: Any
    ) -> QueryBatch:
        users = np.full(len(histories), -1) if users is None else users
        return cls(np.asarray(users), Ragged.from_rows(histories), **kw)

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index) -> QueryBatch:
        rows = np.arange(len(self))[index]
        rows = np.atleast_1d(rows)
        return QueryBatch(
            self.users[rows],
            self.histories.take(rows),
            None if self.attributes is None else self.attributes.iloc[rows],
            None if self.texts is None else tuple(self.texts[i] for i in rows),
            None if self.candidates is None else self.candidates.take(rows),
        )

    def query(self, i: int) -> Query:
        return Query(
            int(self.users[i]),
            self.histories.row(i),
            {} if self.attributes is None else self.attributes.iloc[i].dropna().to_dict(),
            None if self.texts is None else self.texts[i],
            None if self.candidates is None else self.candidates.row(i),
        )

    def __iter__(self):
        return (self.query(i) for i in range(len(self)))

    def batches(self, size: int) -> Iterator[QueryBatch]:
        for start in range(0, len(self), size):
            yield self[start : start + size]

    # -- derived ------------------------------------------------------------------------
    def with_histories(self, histories: Ragged) -> QueryBatch:
        return replace(self, histories=histories)

    def with_candidates(self, candidates: Ragged | None) -> QueryBatch:
        return replace(self, candidates=candidates)

    def with_attributes(self, attributes: pd.DataFrame | None) -> QueryBatch:
        return replace(self, attributes=attributes)

    def with_texts(self, texts: Iterable[str | None] | None) -> QueryBatch:
        return replace(self, texts=None if texts is None else tuple(texts))

    def restrict(self, n_users: int, n_items: int) -> tuple[QueryBatch, dict[str, int]]:
        """Map users outside the fit-time range to -1 and drop unknown history/candidate items.

        Returns the cleaned batch and counts of what was changed, so models never index out of
        range and audits can report it.
        """
        users = np.where((self.users >= 0) & (self.users < n_users), self.users, -1)
        hist = _keep_valid(self.histories, n_items)
        cands: Ragged | None = None
        dropped_candidates = 0
        if self.candidates is not None:
            cands = _keep_valid(self.candidates, n_items)
            dropped_candidates = len(self.candidates.values) - len(cands.values)
        counts = {
            "unknown_users": int(((self.users >= n_users) | (self.users < -1)).sum()),
            "unknown_history_items": len(self.histories.values) - len(hist.values),
            "unknown_candidate_items": dropped_candidates,
        }
        return QueryBatch(users, hist, self.attributes, self.texts, cands), counts

    def seen_mask(self, n_items: int) -> np.ndarray:
        """(n_queries, n_items) boolean mask of history items (to exclude from rankings)."""
        return self.histories.to_dense_mask(n_items)


def _keep_valid(rows: Ragged, n_items: int) -> Ragged:
    ok = (rows.values >= 0) & (rows.values < n_items)
    if ok.all():
        return rows
    lengths = np.bincount(rows.row_ids()[ok], minlength=len(rows))
    return Ragged(np.concatenate([[0], np.cumsum(lengths)]), rows.values[ok])
