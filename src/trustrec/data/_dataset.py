"""The immutable Dataset: interactions, item and user tables, raw id <-> index maps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from trustrec.data._arrays import Ragged, readonly
from trustrec.data._validate import (
    check_time_units,
    data_rows,
    epoch_seconds,
    id_strings,
    parse_dates,
    timestamps_to_int64,
)
from trustrec.errors import DataError

__all__ = ["Dataset", "FilterStep", "IndexedArray", "Interactions"]

#: Notes a loader leaves when a dataset has no timestamps and an order stands in for time; such a
#: "time" orders one user's events but does not compare events of different users.
ROW_ORDER_TIME = "no timestamps: the row order of the source is used as time"
SEQUENCE_ORDER_TIME = "sequence file: interaction order within each user's list is used as time"


@dataclass(frozen=True, eq=False)
class IndexedArray:
    """An array whose leading axes are indexed by users and/or items (e.g. Coat's propensities).

    ``axes`` names the leading axes, e.g. ``("user", "item")``; filters that renumber users or
    items slice these axes so the array stays aligned with the dataset.

    Parameters
    ----------
    array : numpy.ndarray
        The values; stored as a read-only copy.
    axes : tuple of str
        The name (``"user"`` or ``"item"``) of each leading axis of ``array``, in order.

    Raises
    ------
    DataError
        If an axis name is not ``"user"``/``"item"`` or there are more names than dimensions.
    """

    array: np.ndarray
    axes: tuple[str, ...]

    def __post_init__(self):
        if not set(self.axes) <= {"user", "item"} or len(self.axes) > self.array.ndim:
            raise DataError(f"IndexedArray: axes {self.axes} must be 'user'/'item' leading axes")
        object.__setattr__(self, "array", readonly(self.array))

    def take(self, keep_users: np.ndarray, keep_items: np.ndarray) -> IndexedArray:
        arr = self.array
        for axis, name in enumerate(self.axes):
            arr = np.compress(keep_users if name == "user" else keep_items, arr, axis=axis)
        return IndexedArray(arr, self.axes)


@dataclass(frozen=True, eq=False)
class Interactions:
    """Parallel read-only arrays, one row per interaction, in index space.

    ``timestamp`` is int64 (seconds, or the position in the log when a source has no clock);
    ``rating`` is float32 or ``None`` for implicit data.

    Parameters
    ----------
    user : numpy.ndarray
        The user index of each interaction (stored as read-only int64, >= 0).
    item : numpy.ndarray
        The item index of each interaction (stored as read-only int64, >= 0).
    timestamp : numpy.ndarray
        The time of each interaction; integers are kept, other values are converted to int64.
    rating : numpy.ndarray, optional
        The rating of each interaction (stored as float32, no NaN); ``None`` for implicit data.

    Raises
    ------
    DataError
        If the arrays are not 1-d with one value per interaction, a rating is NaN, an index is
        negative, or the timestamps cannot be converted to int64.
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray | None = None

    def __post_init__(self):
        user = readonly(self.user, np.int64)
        item = readonly(self.item, np.int64)
        raw_ts = np.asarray(self.timestamp)
        if raw_ts.dtype.kind not in "iu" or raw_ts.dtype == np.uint64:  # no silent wrap-around
            raw_ts = timestamps_to_int64(raw_ts.ravel(), data_rows("Interactions")).reshape(raw_ts.shape)
        ts = readonly(raw_ts, np.int64)
        n = len(user)
        for name, arr in (("item", item), ("timestamp", ts)):
            if arr.ndim != 1 or len(arr) != n:
                raise DataError(f"Interactions: '{name}' has shape {arr.shape}, expected ({n},) like 'user'")
        rating = None
        if self.rating is not None:
            rating = readonly(self.rating, np.float32)
            if rating.shape != (n,):
                raise DataError(f"Interactions: 'rating' has shape {rating.shape}, expected ({n},)")
            if n and np.isnan(rating).any():
                raise DataError(
                    f"Interactions: 'rating' has {int(np.isnan(rating).sum())} NaN values; "
                    "fill or drop them before building the dataset"
                )
        if n and (user.min() < 0 or item.min() < 0):
            raise DataError("Interactions: user and item indices must be >= 0")
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "item", item)
        object.__setattr__(self, "timestamp", ts)
        object.__setattr__(self, "rating", rating)

    def __len__(self) -> int:
        return len(self.user)

    @property
    def has_rating(self) -> bool:
        return self.rating is not None

    def select(self, mask_or_index: npt.ArrayLike) -> Interactions:
        sel = np.asarray(mask_or_index)
        return Interactions(
            self.user[sel],
            self.item[sel],
            self.timestamp[sel],
            None if self.rating is None else self.rating[sel],
        )

    def chronological_order(self) -> np.ndarray:
        """Row order by (user, timestamp, original position): the one order every split uses."""
        return np.lexsort((np.arange(len(self)), self.timestamp, self.user))

    def by_user(self, n_users: int) -> Ragged:
        """Each user's items in chronological order (ties keep file order)."""
        order = self.chronological_order()
        counts = np.bincount(self.user, minlength=n_users)
        return Ragged(np.concatenate([[0], np.cumsum(counts)]), self.item[order])

    def to_frame(self) -> pd.DataFrame:
        cols = {"user": self.user, "item": self.item, "timestamp": self.timestamp}
        if self.rating is not None:
            cols["rating"] = self.rating
        return pd.DataFrame(cols)

    @classmethod
    def concat(cls, parts: Iterable[Interactions]) -> Interactions:
        parts = list(parts)
        ratings = [p.rating for p in parts if p.rating is not None]
        rating = np.concatenate(ratings) if len(ratings) == len(parts) else None  # None unless every part has ratings
        return cls(
            np.concatenate([p.user for p in parts]),
            np.concatenate([p.item for p in parts]),
            np.concatenate([p.timestamp for p in parts]),
            rating,
        )


@dataclass(frozen=True)
class FilterStep:
    """One preprocessing step applied to a dataset and what it removed (nothing is dropped silently).

    Parameters
    ----------
    name : str
        The step's name (e.g. a filter's name).
    params : Mapping[str, Any]
        The parameters the step ran with.
    removed_interactions : int
        How many interactions it removed.
    removed_users, removed_items : int, default 0
        How many users and items it removed.
    iterations : int, default 1
        How many passes it took (e.g. :func:`k_core`).
    """

    name: str
    params: Mapping[str, Any]
    removed_interactions: int
    removed_users: int = 0
    removed_items: int = 0
    iterations: int = 1

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return (
            f"{self.name}({params}): removed {self.removed_interactions} interactions, "
            f"{self.removed_users} users, {self.removed_items} items"
            + (f" in {self.iterations} iterations" if self.iterations > 1 else "")
        )


def _frozen_frame(frame: pd.DataFrame) -> pd.DataFrame:
    # Callers get their own view: under pandas copy-on-write a shallow copy is already private.
    major = int(pd.__version__.split(".")[0])
    return frame.copy(deep=major < 3)


@dataclass(frozen=True, eq=False)
class Dataset:
    """An immutable recommendation dataset in index space.

    Build one with :meth:`from_frame` (or a loader); never mutate what its properties return.
    ``items`` is indexed by item index and has at least ``item_id`` and ``title``;
    ``users`` is indexed by user index and has at least ``user_id``.

    Parameters
    ----------
    name : str
        The dataset's name.
    interactions : Interactions
        The interactions, in index space.
    _items : pandas.DataFrame
        The item table, indexed ``0..n_items-1``, with unique raw ``item_id`` values; a missing
        ``title`` column is added (all missing).
    _users : pandas.DataFrame
        The user table, indexed ``0..n_users-1``, with unique raw ``user_id`` values.
    provenance : tuple of FilterStep, default ()
        The preprocessing steps applied so far.
    notes : tuple of str, default ()
        Remarks on how the data was read.
    source : str, default ""
        Where the data came from.
    extras : Mapping[str, Interactions or IndexedArray], optional
        Named companions of the interactions (stored read-only); see :attr:`extras`.

    Raises
    ------
    DataError
        If an interaction or extra refers to an unknown user or item, an extra is of another
        type or misshaped, or a table lacks its id column, is not indexed ``0..n-1`` or repeats
        a raw id.
    """

    name: str
    interactions: Interactions
    _items: pd.DataFrame = field(repr=False)
    _users: pd.DataFrame = field(repr=False)
    provenance: tuple[FilterStep, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Named companions of the interactions: ``Interactions`` (e.g. a published random-exposure
    test set, a given valid/test split) or ``IndexedArray`` (e.g. propensities)."""

    def __post_init__(self):
        n_users, n_items = len(self._users), len(self._items)
        for key, value in self.extras.items():
            if isinstance(value, Interactions):
                if len(value) and (value.user.max() >= n_users or value.item.max() >= n_items):
                    raise DataError(f"Dataset '{self.name}': extra '{key}' refers to unknown users/items")
            elif isinstance(value, IndexedArray):
                sizes = {"user": n_users, "item": n_items}
                expected = tuple(sizes[a] for a in value.axes)
                if value.array.shape[: len(expected)] != expected:
                    raise DataError(
                        f"Dataset '{self.name}': extra '{key}' has shape {value.array.shape}, but its "
                        f"{'/'.join(value.axes)} axes need {expected}"
                    )
            else:
                raise DataError(f"Dataset '{self.name}': extra '{key}' must be Interactions or IndexedArray")
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))
        inter = self.interactions
        if len(inter):
            if inter.user.max() >= n_users:
                raise DataError(
                    f"Dataset '{self.name}': interaction user index {inter.user.max()} >= n_users {n_users}"
                )
            if inter.item.max() >= n_items:
                raise DataError(
                    f"Dataset '{self.name}': interaction item index {inter.item.max()} >= n_items {n_items}"
                )
        for label, frame, col in (("items", self._items, "item_id"), ("users", self._users, "user_id")):
            if col not in frame.columns:
                raise DataError(f"Dataset '{self.name}': {label} table has no '{col}' column")
            if not frame.index.equals(pd.RangeIndex(len(frame))):
                raise DataError(f"Dataset '{self.name}': {label} table must be indexed 0..n-1")
            if frame[col].duplicated().any():
                dup = frame.loc[frame[col].duplicated(), col].iloc[0]
                raise DataError(f"Dataset '{self.name}': duplicate raw {col} {dup!r} in the {label} table")
        if "title" not in self._items.columns:
            object.__setattr__(self, "_items", self._items.assign(title=pd.NA))

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        interactions: pd.DataFrame,
        *,
        name: str,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        user_col: str = "user_id",
        item_col: str = "item_id",
        timestamp_col: str | None = "timestamp",
        rating_col: str | None = "rating",
        source: str = "",
        notes: Iterable[str] = (),
        extras: Mapping[str, pd.DataFrame | IndexedArray] | None = None,
    ) -> Dataset:
        """Build a dataset from a frame of raw ids.

        Raw ids are kept as strings. Item indices follow the order of the ``items`` table, then
        any item seen only in interactions (in order of first appearance); users likewise.
        A missing timestamp column becomes the row position (order is the only time).
        ``extras`` may hold more interaction frames (same columns, ids must be known) or
        ``IndexedArray`` values; frames are converted to ``Interactions`` in the same index space.
        """
        frame = interactions
        for col in (user_col, item_col):
            if col not in frame.columns:
                raise DataError(
                    f"Dataset '{name}': interactions have no '{col}' column (columns: {list(frame.columns)})"
                )
            missing = frame[col].isna().to_numpy()
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise DataError(
                    f"Dataset '{name}': column '{col}' has {int(missing.sum())} missing ids "
                    f"(first at data row {row}); drop or fill those rows"
                )
        notes = list(notes)
        raw_users = _as_id_strings(frame[user_col], data_rows(f"Dataset '{name}'"), user_col)
        raw_items = _as_id_strings(frame[item_col], data_rows(f"Dataset '{name}'"), item_col)
        items_table = _id_table(items, item_col, "item_id", raw_items, name, "items")
        users_table = _id_table(users, user_col, "user_id", raw_users, name, "users")
        item_index = pd.Index(items_table["item_id"])
        user_index = pd.Index(users_table["user_id"])
        if timestamp_col is not None and timestamp_col in frame.columns:
            ts = _as_timestamps(frame[timestamp_col], name, timestamp_col, notes)
        else:
            ts = np.arange(len(frame), dtype=np.int64)
            notes.append(ROW_ORDER_TIME)
        rating = None
        if rating_col is not None and rating_col in frame.columns:
            rating = pd.to_numeric(frame[rating_col], errors="coerce").to_numpy(np.float64)
            bad = np.isnan(rating)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"Dataset '{name}': column '{rating_col}' has {int(bad.sum())} missing or "
                    f"non-numeric values (first at data row {row}: {frame[rating_col].iloc[row]!r})"
                )
        inter = Interactions(user_index.get_indexer(raw_users), item_index.get_indexer(raw_items), ts, rating)
        converted: dict[str, Interactions | IndexedArray] = {}
        for key, value in (extras or {}).items():
            if isinstance(value, pd.DataFrame):
                sub = cls.from_frame(
                    value,
                    name=f"{name}[{key}]",
                    items=items_table,
                    users=users_table,
                    user_col=user_col,
                    item_col=item_col,
                    timestamp_col=timestamp_col,
                    rating_col=rating_col,
                )
                if sub.n_items != len(items_table) or sub.n_users != len(users_table):
                    raise DataError(
                        f"Dataset '{name}': extra '{key}' mentions users or items that the main "
                        "interactions and tables do not have"
                    )
                converted[key] = sub.interactions
            else:
                converted[key] = value
        return cls(name, inter, items_table, users_table, source=source, notes=tuple(notes), extras=converted)

    # -- sizes and maps -----------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self._users)

    @property
    def n_items(self) -> int:
        return len(self._items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def items(self) -> pd.DataFrame:
        return _frozen_frame(self._items)

    @property
    def users(self) -> pd.DataFrame:
        return _frozen_frame(self._users)

    @property
    def item_ids(self) -> np.ndarray:
        return self._items["item_id"].to_numpy(copy=True)

    @property
    def user_ids(self) -> np.ndarray:
        return self._users["user_id"].to_numpy(copy=True)

    def item_index(self, raw_ids: npt.ArrayLike, *, missing: str = "raise") -> np.ndarray:
        """Indices of raw item ids; unknown ids raise (``missing='raise'``) or map to -1."""
        return _lookup(self._items["item_id"], raw_ids, "item", self.name, missing)

    def user_index(self, raw_ids: npt.ArrayLike, *, missing: str = "raise") -> np.ndarray:
        """Indices of raw user ids; unknown ids raise (``missing='raise'``) or map to -1."""
        return _lookup(self._users["user_id"], raw_ids, "user", self.name, missing)

    def histories(self) -> Ragged:
        """Every user's items in chronological order."""
        return self.interactions.by_user(self.n_users)

    # -- derived datasets ---------------------------------------------------------------
    def with_interactions(self, interactions: Interactions, step: FilterStep | None = None) -> Dataset:
        """Same catalog and users, other interactions (e.g. a training subset)."""
        return Dataset(
            self.name,
            interactions,
            self._items,
            self._users,
            self.provenance + ((step,) if step else ()),
            self.notes,
            self.source,
            self.extras,
        )

    def compact(
        self, keep_users: np.ndarray, keep_items: np.ndarray, interactions: Interactions, step: FilterStep
    ) -> Dataset:
        """Drop users/items outside the boolean masks and renumber indices densely."""
        user_map = np.cumsum(keep_users) - 1
        item_map = np.cumsum(keep_items) - 1

        def remap(x: Interactions) -> Interactions:
            ok = keep_users[x.user] & keep_items[x.item]
            x = x.select(ok)
            return Interactions(user_map[x.user], item_map[x.item], x.timestamp, x.rating)

        extras = {
            k: remap(v) if isinstance(v, Interactions) else v.take(keep_users, keep_items)
            for k, v in self.extras.items()
        }
        inter = remap(interactions)
        return Dataset(
            self.name,
            inter,
            self._items[keep_items].reset_index(drop=True),
            self._users[keep_users].reset_index(drop=True),
            (*self.provenance, step),
            self.notes,
            self.source,
            extras,
        )

    # -- summaries ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Summary statistics as plain data (JSON-ready)."""
        inter = self.interactions
        lengths = np.bincount(inter.user, minlength=self.n_users)
        item_counts = np.bincount(inter.item, minlength=self.n_items)
        q = [0, 0.25, 0.5, 0.75, 0.9, 1.0]
        quant = np.quantile(lengths, q) if self.n_users else np.zeros(len(q))
        n_pairs = _distinct_pairs(inter.user, inter.item, self.n_items)
        out: dict[str, Any] = {
            "name": self.name,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            # Distinct (user, item) pairs: a repeated interaction never pushes density past 100%.
            "n_user_item_pairs": n_pairs,
            "n_repeated_interactions": self.n_interactions - n_pairs,
            "density": n_pairs / max(1, self.n_users * self.n_items),
            "history_length": {f"q{int(p * 100)}": float(v) for p, v in zip(q, quant)},
            "users_without_interactions": int((lengths == 0).sum()),
            "items_without_interactions": int((item_counts == 0).sum()),
            "has_timestamps": not any("no timestamps" in n for n in self.notes),
            "has_ratings": inter.has_rating,
            "item_columns": [c for c in self._items.columns if c != "item_id"],
            "user_columns": [c for c in self._users.columns if c != "user_id"],
            "items_without_title": int(self._items["title"].isna().sum()),
        }
        if inter.rating is not None and len(inter):
            out["rating"] = {
                "min": float(inter.rating.min()),
                "mean": float(inter.rating.mean()),
                "max": float(inter.rating.max()),
            }
        if len(inter):
            out["time_range"] = [int(inter.timestamp.min()), int(inter.timestamp.max())]
        out["extras"] = {
            k: (f"{len(v)} interactions" if isinstance(v, Interactions) else f"array {v.array.shape}")
            for k, v in self.extras.items()
        }
        out["provenance"] = [s.describe() for s in self.provenance]
        out["notes"] = list(self.notes)
        if out["n_repeated_interactions"]:
            out["notes"].append(
                f"{out['n_repeated_interactions']:,} interactions repeat an earlier (user, item) pair "
                f"({n_pairs:,} distinct pairs); density counts each pair once"
            )
        return out

    def fingerprint(self) -> str:
        """sha256 of the interactions and id maps: identifies the exact data a run used."""
        h = hashlib.sha256()
        inter = self.interactions
        for arr in (inter.user, inter.item, inter.timestamp):
            h.update(np.ascontiguousarray(arr).tobytes())
        if inter.rating is not None:
            h.update(np.ascontiguousarray(inter.rating).tobytes())
        h.update("\x1f".join(map(str, self._items["item_id"])).encode())
        h.update("\x1f".join(map(str, self._users["user_id"])).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_users={self.n_users}, n_items={self.n_items}, "
            f"n_interactions={self.n_interactions})"
        )


# -- helpers ------------------------------------------------------------------------------
def _distinct_pairs(user: np.ndarray, item: np.ndarray, n_items: int) -> int:
    """Number of distinct (user, item) pairs."""
    if not len(user):
        return 0
    if (int(user.max()) + 1) * max(n_items, 1) < 2**62:
        return len(np.unique(user.astype(np.int64) * max(n_items, 1) + item))
    return int((~pd.DataFrame({"u": user, "i": item}).duplicated()).sum())


def _as_id_strings(col: pd.Series, where=None, column: str = "id") -> np.ndarray:
    """Raw ids as exact strings (rules in ``trustrec.data._validate``); integral floats such as
    3.0 print as '3', at any size."""
    return id_strings(col, where, column)


def _as_timestamps(col: pd.Series, name: str, column: str, notes: list[str] | None = None) -> np.ndarray:
    """Epoch numbers or date strings as int64 (rules in ``trustrec.data._validate``)."""
    where = data_rows(f"Dataset '{name}'")
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col, utc=True)
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataError(
                f"{where(row)}, column '{column}': the timestamp is missing "
                f"({int(parsed.isna().sum())} such rows); fill them or drop the column"
            )
        return epoch_seconds(parsed)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy()
        if values.dtype.kind == "f" or col.hasnans:
            values = col.to_numpy(np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
        non_numeric = np.isnan(values) & col.notna().to_numpy()
        if non_numeric.any():
            if not non_numeric[col.notna().to_numpy()].all():
                row = int(np.flatnonzero(non_numeric)[0])
                raise DataError(
                    f"Dataset '{name}': column '{column}' mixes numbers and text; {col.iloc[row]!r} "
                    f"at data row {row} is not a number; timestamps must be numbers (epoch) or dates"
                )
            # Dates as text (ISO or similar): parse them; anything unparsable is an error.
            parsed = parse_dates(col.where(col.notna(), ""), where, column, notes)
            if parsed.isna().any():
                row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
                raise DataError(
                    f"Dataset '{name}': column '{column}' has a timestamp {col.iloc[row]!r} at data row "
                    f"{row} that is neither a number (epoch) nor a date"
                )
            return epoch_seconds(parsed)
    ts = timestamps_to_int64(values, where, column, "fill them or drop the column to use row order as time")
    check_time_units(ts, where, column)
    return ts


def _id_table(table, raw_col, id_col, raw_seen, name, label) -> pd.DataFrame:
    """Table of raw ids (plus attributes) covering every id seen in interactions."""
    seen = pd.unique(raw_seen)
    if table is None:
        out = pd.DataFrame({id_col: seen})
    else:
        table = table.copy()
        col = raw_col if raw_col in table.columns else id_col
        if col not in table.columns:
            raise DataError(
                f"Dataset '{name}': {label} table has no '{raw_col}' column (columns: {list(table.columns)})"
            )
        if table[col].isna().any():
            row = int(np.flatnonzero(table[col].isna().to_numpy())[0])
            raise DataError(f"Dataset '{name}': {label} table has a missing '{col}' at data row {row}")
        table[col] = _as_id_strings(table[col])
        table = table.rename(columns={col: id_col})
        dup = table[id_col].duplicated()
        if dup.any():
            raise DataError(
                f"Dataset '{name}': {label} table repeats {id_col} {table.loc[dup, id_col].iloc[0]!r} "
                f"({int(dup.sum())} duplicate rows); each id must appear once"
            )
        extra = seen[~pd.Index(seen).isin(table[id_col])]
        if len(extra):
            table = pd.concat([table, pd.DataFrame({id_col: extra})], ignore_index=True)
        out = table
    cols = [id_col] + [c for c in out.columns if c != id_col]
    return out[cols].reset_index(drop=True)


def _lookup(column: pd.Series, raw_ids, kind: str, name: str, missing: str) -> np.ndarray:
    scalar = np.ndim(raw_ids) == 0
    raw = np.atleast_1d(np.asarray(raw_ids)).astype(str).astype(object)
    idx = pd.Index(column).get_indexer(raw)
    if missing == "raise" and (idx < 0).any():
        bad = raw[idx < 0]
        raise DataError(
            f"Dataset '{name}': unknown {kind} id {str(bad[0])!r}"
            + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
            + f"; valid {kind} ids look like {list(column.iloc[:3])}"
        )
    return idx[0] if scalar else idx
