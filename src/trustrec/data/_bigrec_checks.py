"""Consistency checks of BIGRec / D3 split files, used by :func:`trustrec.data.load_bigrec`.

Every check is vectorised over a whole file and raises a :class:`~trustrec.errors.DataError`
naming the file, the 1-based line of the first offending row (as ``_where`` does), the column
and, for list columns, the element. Nothing here writes or deletes a file.

The rules (each names the first offending row and how many rows break it):

- a cell holding more than :data:`CELL_LIMIT` characters is refused before it is parsed;
- a required cell (and a title or rating cell where the file has those columns) may not be
  empty, and may not hold a missing-value token such as ``nan``, ``None`` or ``null``;
- every history list of a row has one entry per history item;
- a history longer than ``max_history`` (when given) is refused;
- history timestamps never decrease within a row, and the target's timestamp is not earlier
  than the row's last history timestamp (equal timestamps are allowed);
- every item id, in the history or as the target, is listed in the info file, and each title
  a row gives equals the info file's title for that id after stripping surrounding whitespace;
- rows repeating the (user, target item, timestamp) of an earlier row are kept (the shipped
  Amazon Industrial & Scientific files have such rows, with different histories) and counted
  in a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data._tabular import _where
from trustrec.errors import DataError

__all__ = [
    "CELL_LIMIT",
    "NA_TOKENS",
    "check_cell_sizes",
    "check_chronology",
    "check_filled",
    "check_history_limit",
    "check_items_and_titles",
    "check_list_lengths",
    "duplicate_note",
    "row_of",
]

#: Largest cell accepted, in characters; a bigger cell is refused before it is parsed.
CELL_LIMIT = 1_000_000
#: Cell texts (compared lower-case, stripped) that stand for a missing value.
NA_TOKENS = frozenset({"nan", "none", "null", "na", "n/a", "<na>", "nat"})


def row_of(lengths: np.ndarray, index: int) -> tuple[int, int]:
    """Locate an element of the flattened history lists.

    Parameters
    ----------
    lengths : numpy.ndarray
        The history length of each row.
    index : int
        A position in the flattened (all rows, in order) history values.

    Returns
    -------
    tuple of int
        The row (0-based) and the element within that row (1-based).
    """
    ends = np.cumsum(lengths)
    row = int(np.searchsorted(ends, index, side="right"))
    return row, int(index - (ends[row] - lengths[row])) + 1


def check_cell_sizes(frame: pd.DataFrame, path: Path, lines: np.ndarray, limit: int = CELL_LIMIT) -> None:
    """Refuse any cell longer than ``limit`` characters, before it is parsed.

    Parameters
    ----------
    frame : pandas.DataFrame
        The split file's cells, as strings (missing cells as NaN).
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.
    limit : int, default CELL_LIMIT
        The largest cell accepted, in characters.

    Raises
    ------
    DataError
        Naming the file, line and column of the first cell over the limit, and its size.
    """
    for col in frame.columns:
        sizes = frame[col].str.len().to_numpy(dtype=np.float64, na_value=0.0)
        big = sizes > limit
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise DataError(
                f"{_where(path, lines, row)}, column '{col}': the cell holds {int(sizes[row]):,} "
                f"characters, over the {limit:,}-character limit ({int(big.sum())} such cells in "
                "this column); it was not parsed: check the file for a missing quote or a "
                "corrupted row"
            )


def check_filled(
    frame: pd.DataFrame, columns: Iterable[str], path: Path, lines: np.ndarray, tokens: Iterable[str] = ()
) -> None:
    """Refuse empty cells, and cells that hold a missing-value token, in ``columns``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The split file's cells, as strings (missing cells as NaN).
    columns : iterable of str
        The columns checked for empty cells (those absent from ``frame`` are skipped).
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.
    tokens : iterable of str, default ()
        The columns also checked for :data:`NA_TOKENS` (``nan``, ``None``, ...).

    Raises
    ------
    DataError
        Naming the file, line and column of the first empty (or missing-value) cell.
    """
    tokens = set(tokens)
    for col in columns:
        if col not in frame.columns:
            continue
        text = frame[col].str.strip()
        sizes = text.str.len().to_numpy(dtype=np.float64, na_value=0.0)
        empty = sizes == 0
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"{_where(path, lines, row)}, column '{col}': the cell is empty ({int(empty.sum())} "
                "such rows); every row needs a value here"
            )
        if col in tokens:
            short = np.flatnonzero(sizes <= max(map(len, NA_TOKENS)))  # only short cells can match
            na = np.zeros(len(text), dtype=bool)
            na[short] = text.iloc[short].str.lower().isin(NA_TOKENS).to_numpy(dtype=bool)
            if na.any():
                row = int(np.flatnonzero(na)[0])
                raise DataError(
                    f"{_where(path, lines, row)}, column '{col}': {text.iloc[row]!r} marks a missing "
                    f"value ({int(na.sum())} such rows); every row needs a value here"
                )


def check_list_lengths(
    n_hist: np.ndarray, lists: Mapping[str, np.ndarray], path: Path, lines: np.ndarray, why: str
) -> None:
    """Every history list of a row must have one entry per history item.

    Parameters
    ----------
    n_hist : numpy.ndarray
        Each row's number of ``history_item_id`` entries.
    lists : mapping of str to numpy.ndarray
        Each other list column's lengths per row.
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.
    why : str
        The end of the message (what the lists must agree on).

    Raises
    ------
    DataError
        Naming the file, line, both columns and both lengths of the first disagreeing row.
    """
    for col, lengths in lists.items():
        bad = lengths != n_hist
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{_where(path, lines, row)}, columns 'history_item_id' and '{col}': lists of "
                f"{n_hist[row]} and {lengths[row]} elements ({int(bad.sum())} such rows); {why}"
            )


def check_history_limit(n_hist: np.ndarray, max_history: int | None, path: Path, lines: np.ndarray) -> None:
    """Refuse rows whose history is longer than ``max_history`` (``None``: no limit).

    Parameters
    ----------
    n_hist : numpy.ndarray
        Each row's history length.
    max_history : int or None
        The longest history allowed.
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.

    Raises
    ------
    DataError
        Naming the file, line, column and length of the first over-long history.
    """
    if max_history is None:
        return
    long = n_hist > max_history
    if long.any():
        row = int(np.flatnonzero(long)[0])
        raise DataError(
            f"{_where(path, lines, row)}, column 'history_item_id': a history of {int(n_hist[row])} "
            f"items, longer than max_history={max_history} ({int(long.sum())} such rows; the "
            f"longest has {int(n_hist.max())}); the file does not follow the stated protocol"
        )


def check_chronology(
    n_hist: np.ndarray, hist_ts: np.ndarray, target_ts: np.ndarray, path: Path, lines: np.ndarray
) -> None:
    """History timestamps must not decrease, and the target must not precede the history.

    Parameters
    ----------
    n_hist : numpy.ndarray
        Each row's history length.
    hist_ts : numpy.ndarray
        The flattened history timestamps (int64), rows in order.
    target_ts : numpy.ndarray
        Each row's target timestamp (int64).
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.

    Raises
    ------
    DataError
        Naming the file, line, column (and element) of the first row out of time order.
    """
    if len(hist_ts) > 1:
        starts = np.zeros(len(hist_ts), dtype=bool)
        starts[(np.cumsum(n_hist) - n_hist)[n_hist > 0]] = True
        down = np.concatenate([[False], np.diff(hist_ts) < 0]) & ~starts
        if down.any():
            i = int(np.flatnonzero(down)[0])
            row, k = row_of(n_hist, i)
            n_rows = len(np.unique(np.searchsorted(np.cumsum(n_hist), np.flatnonzero(down), side="right")))
            raise DataError(
                f"{_where(path, lines, row)}, column 'history_timestamp', element {k}: timestamp "
                f"{int(hist_ts[i])} is earlier than the element before it ({int(hist_ts[i - 1])}) "
                f"({n_rows} such rows); a history must be in time order, oldest first"
            )
    has = n_hist > 0
    last = np.full(len(n_hist), np.iinfo(np.int64).min, dtype=np.int64)
    last[has] = hist_ts[np.cumsum(n_hist)[has] - 1]
    early = target_ts < last
    if early.any():
        row = int(np.flatnonzero(early)[0])
        raise DataError(
            f"{_where(path, lines, row)}, column 'timestamp': the target's timestamp "
            f"{int(target_ts[row])} is earlier than the last history timestamp {int(last[row])} "
            f"({int(early.sum())} such rows); the target must be the next interaction"
        )


def _cut(text: object) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def check_items_and_titles(
    info: pd.Series,
    info_name: str,
    columns: Mapping[str, tuple[np.ndarray, tuple[str, np.ndarray | None] | None, np.ndarray | None]],
    path: Path,
    lines: np.ndarray,
) -> None:
    """Every item id must be in the info file, with the same title as there.

    Titles are compared after stripping surrounding whitespace (the info file's titles are
    stripped when read); otherwise exactly (case, inner spaces and punctuation count).

    Parameters
    ----------
    info : pandas.Series
        The info file's title (str, or None when empty) per item id (the index).
    info_name : str
        The info file's name, for messages.
    columns : mapping of str to tuple
        For each id column checked (``'history_item_id'``, ``'item_id'``): its ids (str), the
        title column's name and its titles (``None`` when the file has no titles), and, for a
        list column, the row lengths (``None`` for a plain column).
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.

    Raises
    ------
    DataError
        Naming the file, line, column (and element) of the first unknown id or differing title,
        the item id, and both titles cut to 80 characters.
    """
    known_titles = info.fillna("").to_numpy(dtype=object)
    for id_col, (ids, titles, lengths) in columns.items():
        pos = info.index.get_indexer(ids)

        def where(i: int, col: str, lengths: np.ndarray | None = lengths) -> str:
            if lengths is None:
                return f"{_where(path, lines, i)}, column '{col}'"
            row, k = row_of(lengths, i)
            return f"{_where(path, lines, row)}, column '{col}', element {k}"

        unknown = pos < 0
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"{where(i, id_col)}: item id {ids[i]!r} is not in {info_name} "
                f"({len(pd.unique(ids[unknown]))} such ids, {int(unknown.sum())} occurrences); every "
                "item must be listed there with its title"
            )
        if titles is None:
            continue
        title_col, given = titles
        given = pd.Series(given, dtype=object).fillna("").astype(str).str.strip().to_numpy(dtype=object)
        expected = known_titles[pos]
        differ = given != expected
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            raise DataError(
                f"{where(i, title_col)}: the title of item {ids[i]!r} is {_cut(given[i])} here but "
                f"{_cut(expected[i])} in {info_name} ({int(differ.sum())} such titles in this "
                "file); titles must equal the info file's after stripping surrounding whitespace"
            )


def duplicate_note(
    frame: pd.DataFrame, users: np.ndarray, items: np.ndarray, stamps: np.ndarray, path: Path, lines: np.ndarray
) -> str | None:
    """A note counting rows that repeat an earlier row's (user, target item, timestamp).

    Parameters
    ----------
    frame : pandas.DataFrame
        The split file's cells (to count rows identical in every column).
    users, items : numpy.ndarray
        Each row's user id and target item id (stripped).
    stamps : numpy.ndarray
        Each row's target timestamp (int64).
    path : pathlib.Path
        The file, for messages.
    lines : numpy.ndarray
        Each row's 1-based line in the file.

    Returns
    -------
    str or None
        The note, or ``None`` when no row repeats another.
    """
    keys = pd.DataFrame({"u": users, "i": items, "t": stamps})
    dup = keys.duplicated().to_numpy()
    if not dup.any():
        return None
    involved = keys.duplicated(keep=False).to_numpy()
    row = int(np.flatnonzero(dup)[0])
    first = int(np.flatnonzero((users == users[row]) & (items == items[row]) & (stamps == stamps[row]))[0])
    same = int(frame.loc[involved].duplicated().sum())  # identical rows share their keys too
    return (
        f"{path.parent.name}/{path.name}: {int(dup.sum())} rows repeat the (user_id, item_id, "
        f"timestamp) of an earlier row (first: line {int(lines[row])} repeats line "
        f"{int(lines[first])}); {same} of them are identical in every column; all rows are kept "
        "as given (targets and extras included)"
    )
