"""What the adapters of models trained elsewhere share: raw-id queries, user functions named by
import path, and ranked lists in raw ids checked and turned into a :class:`TopK`."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trustrec.errors import ConfigError, DataError
from trustrec.models._base import exclusion_mask
from trustrec.models._topk import TopK

if TYPE_CHECKING:
    import pandas as pd

    from trustrec.data import QueryBatch

__all__ = ["ExternalQueries", "RefusesToSave", "check_import_path", "import_function", "lists_to_topk"]

_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


class RefusesToSave:
    """Mixin of the adapters whose model lives outside trustrec (your state, file or service):
    :meth:`save` is refused with :meth:`_unsaved_reason`, before anything is written."""

    name: ClassVar[str]

    def _unsaved_reason(self) -> str:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Refused: the model lives outside trustrec (audit it from its config instead).

        Parameters
        ----------
        path : str or Path
            Where the model would be saved (nothing is written).

        Returns
        -------
        Path
            Never: the call raises.

        Raises
        ------
        ConfigError
            Always, saying where the model lives.
        """
        raise ConfigError(f"{self.name}: {self._unsaved_reason()}")


@dataclass(frozen=True)
class ExternalQueries:
    """A batch of queries in the dataset's raw ids, as user functions receive them.

    Parameters
    ----------
    user_ids : list of str or None
        One raw user id per query (None: an anonymous query or a user unknown at fit time).
    histories : list of list of str
        One list of raw item ids per query, oldest first.
    item_ids : list of str
        The catalog: every raw item id of the fitted data; a score function's columns follow
        this order.
    candidates : list of list of str or None
        One candidate list of raw item ids per query, or None (rank the whole catalog).
    k : int
        How many items a ranking function should return per query (0 for a score function).
    exclude_seen : bool
        Whether trustrec removes each query's history items from the answer.
    batch : QueryBatch
        The same queries in trustrec's index space (item ``i`` is ``item_ids[i]``).
    """

    user_ids: list[str | None]
    histories: list[list[str]]
    item_ids: list[str]
    candidates: list[list[str]] | None
    k: int
    exclude_seen: bool
    batch: QueryBatch

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_batch(
        cls, batch: QueryBatch, item_ids: list[str], user_ids: list[str], *, k: int = 0, exclude_seen: bool = True
    ) -> ExternalQueries:
        """The raw-id view of ``batch`` (indices mapped through the fit-time vocabularies).

        Parameters
        ----------
        batch : QueryBatch
            Queries restricted to the fit-time catalog and users.
        item_ids, user_ids : list of str
            The fit-time vocabularies (raw id by index).
        k : int
            Items a ranking function should return per query.
        exclude_seen : bool
            Whether history items are removed from the answer.

        Returns
        -------
        ExternalQueries
        """
        items = np.asarray(item_ids, dtype=object)

        def rows(ragged) -> list[list[str]]:
            return [list(items[ragged.values[a:b]]) for a, b in zip(ragged.indptr[:-1], ragged.indptr[1:])]

        users = [user_ids[u] if u >= 0 else None for u in batch.users.tolist()]
        cands = None if batch.candidates is None else rows(batch.candidates)
        return cls(users, rows(batch.histories), list(item_ids), cands, k, exclude_seen, batch)


def check_import_path(value: str, what: str) -> str:
    """``value`` has the form ``"package.module:function"``; else a ConfigError naming ``what``.

    Parameters
    ----------
    value : str
        The import path.
    what : str
        The setting it comes from (for the message).

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ConfigError
        When ``value`` is not of the form ``module:attribute``.
    """
    if not isinstance(value, str) or not _IMPORT_PATH.fullmatch(value):
        raise ConfigError(
            f"{what} must be an import path 'package.module:function' (importable where the audits run), got {value!r}"
        )
    return value


def import_function(path: str, what: str, python_path: Sequence[str] = ()) -> Callable[..., Any]:
    """The callable an import path names, with ``python_path`` folders put on ``sys.path`` first.

    Parameters
    ----------
    path : str
        ``"package.module:function"`` (attributes may be dotted: ``"mod:Class.method"``).
    what : str
        The setting it comes from (for the message).
    python_path : sequence of str
        Folders to search for the module before ``sys.path``.

    Returns
    -------
    callable
        The imported function.

    Raises
    ------
    ConfigError
        When the module cannot be imported, has no such attribute, or it is not callable.
    """
    check_import_path(path, what)
    for folder in reversed(list(python_path)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported the same way
        raise ConfigError(
            f"{what} {path!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); make it "
            "importable (install it, add its folder to python_path or PYTHONPATH)"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {path!r}: {attr!r} is a {type(obj).__name__}, not a function")
    return obj


def lists_to_topk(
    lists: Sequence[Sequence[Any]],
    scores: Sequence[Sequence[Any]] | None,
    item_index: pd.Index,
    queries: QueryBatch,
    k: int,
    exclude_seen: bool,
    who: str,
) -> TopK:
    """Ranked lists of raw item ids (best first) as a :class:`TopK` over the fit-time catalog.

    Every id must be in the catalog, a list must not repeat an item, and scores (when given)
    must be numbers, never NaN, and never increase down a list; anything else is a DataError
    naming ``who``, the query and the id. History items (with ``exclude_seen``) and items
    outside a query's candidates are removed; then each list is cut to ``k`` (padded when
    shorter). Without scores, an item's score is minus its position (0, -1, -2 ...).

    Parameters
    ----------
    lists : sequence of sequence
        One ranked list of raw item ids per query.
    scores : sequence of sequence or None
        One list of scores per query, aligned with ``lists``; None: scores from positions.
    item_index : pandas.Index
        The catalog's raw item ids (position = item index).
    queries : QueryBatch
        The queries the lists answer (for the history and candidate masks).
    k : int
        Length of the returned lists.
    exclude_seen : bool
        Whether history items are removed.
    who : str
        What produced the lists (for messages).

    Returns
    -------
    TopK
        The (n_queries, min(k, catalog size)) items and scores.

    Raises
    ------
    DataError
        When the lists do not match the queries or hold unknown ids, repeats or bad scores.
    """
    n, n_items = len(queries), len(item_index)
    if isinstance(lists, (str, bytes)) or not hasattr(lists, "__len__") or len(lists) != n:
        got = f"{len(lists)} lists" if hasattr(lists, "__len__") else type(lists).__name__
        raise DataError(f"{who}: returned {got} for {n} queries; expected one ranked list of item ids per query")
    if scores is not None and (not hasattr(scores, "__len__") or len(scores) != n):
        raise DataError(
            f"{who}: returned scores for {len(scores) if hasattr(scores, '__len__') else '?'} queries, expected {n}"
        )
    k = min(k, n_items)  # as every recommender: no list is longer than the catalog
    items = np.full((n, k), -1, np.int64)
    values = np.full((n, k), -np.inf)
    mask = exclusion_mask(queries, n_items, exclude_seen)
    for q in range(n):
        row = lists[q]
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise DataError(f"{who}: query {q}: expected a list of item ids, got {row!r:.80}")
        row = list(row)
        raw = [str(i) for i in row]
        idx = item_index.get_indexer(raw) if raw else np.empty(0, np.int64)
        if (idx < 0).any():
            bad = raw[int(np.flatnonzero(idx < 0)[0])]
            raise DataError(
                f"{who}: query {q} (user {_user(queries, q)}): item id {bad!r} is not in the catalog "
                f"({int((idx < 0).sum())} unknown ids in this list); return raw item ids of the dataset, such as "
                f"{list(item_index[:3])}"
            )
        if len(set(idx.tolist())) != len(idx):
            dup = next(r for r, c in zip(raw, idx) if (idx == c).sum() > 1)
            raise DataError(f"{who}: query {q} (user {_user(queries, q)}): item id {dup!r} is listed twice")
        if scores is None:
            s = -np.arange(len(idx), dtype=np.float64)
        else:
            try:
                s = np.asarray(list(scores[q]), dtype=np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{who}: query {q}: scores must be numbers, got {scores[q]!r:.80}") from None
            if s.shape != (len(idx),):
                raise DataError(f"{who}: query {q}: {len(idx)} items but {s.size} scores")
            if np.isnan(s).any():
                raise DataError(
                    f"{who}: query {q} (user {_user(queries, q)}): NaN score for item {raw[int(np.flatnonzero(np.isnan(s))[0])]!r}"
                )
            if (np.diff(s) > 0).any():
                raise DataError(
                    f"{who}: query {q} (user {_user(queries, q)}): scores increase down the list; "
                    "list items best first (scores never increasing)"
                )
        if mask is not None:
            keep = ~mask[q, idx]
            idx, s = idx[keep], s[keep]
        idx, s = idx[:k], s[:k]
        items[q, : len(idx)], values[q, : len(idx)] = idx, s
    return TopK(items, values)


def _user(queries: QueryBatch, q: int) -> str:
    u = int(queries.users[q])
    return "index " + str(u) if u >= 0 else "anonymous"
