"""The BIGRec / D3 CSV layout used by LLM generative recommenders.

A folder with ``info/NAME.txt`` (``title<TAB>item_id`` per line) and ``train/``, ``valid/``,
``test/`` each holding ``NAME.csv`` with 11 columns::

    user_id,item_asins,item_asin,history_item_id,item_id,history_item_title,item_title,
    history_rating,rating,history_timestamp,timestamp

Each row is a user's recent history (Python-literal lists) and the next item (the target).
The interaction log is rebuilt from every history and target: the train CSV, when present,
holds the same kind of rows as valid and test. Valid and test targets are kept as
``extras['valid']`` and ``extras['test']``.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustrec.data._bigrec_checks import (
    CELL_LIMIT,
    check_cell_sizes,
    check_chronology,
    check_filled,
    check_history_limit,
    check_items_and_titles,
    check_list_lengths,
    duplicate_note,
    row_of,
)
from trustrec.data._dataset import Dataset
from trustrec.data._tabular import (
    _check_present,
    _numeric,
    _read_file_text,
    _read_text_table,
    _timestamps,
    _where,
)
from trustrec.data._validate import timestamps_to_int64
from trustrec.errors import ConfigError, DataError

__all__ = ["load_bigrec"]

SPLITS = ("train", "valid", "test")
REQUIRED = ("user_id", "history_item_id", "item_id", "history_timestamp", "timestamp")
#: Optional columns that come in pairs: a file with one of a pair must have the other.
PAIRS = (("history_item_title", "item_title"), ("history_rating", "rating"), ("item_asins", "item_asin"))
LIST_COLUMNS = ("history_item_id", "history_timestamp", "history_rating", "history_item_title", "item_asins")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_LIST = re.compile(rf"\[\s*(?:{_NUM}\s*(?:,\s*{_NUM}\s*)*,?)?\s*\]")
_STR = r"""(?:'[^'\\]*'|"[^"\\]*")"""  # a quoted string without escapes, in either quote
_STR_LIST = re.compile(rf"\[\s*(?:{_STR}\s*(?:,\s*{_STR}\s*)*,?)?\s*\]")
_NUM_ITEM = re.compile(_NUM)
_STR_ITEM = re.compile(r"""'([^'\\]*)'|"([^"\\]*)\"""")


def _parse_lists(
    frame: pd.DataFrame, col: str, path: Path, lines: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of Python-literal lists; returns (length per row, all values in order).

    ``kind``: 'number' (values float64), 'string' (values str) or 'id' (numbers or strings,
    values as str). Well-formed simple cells are parsed with vectorised regular expressions;
    only the others go through ``ast.literal_eval``. A cell that is not a flat list of the
    expected kind raises a DataError naming the file, line and column.
    """
    text = frame[col].astype(object).where(frame[col].notna(), "").astype(str).str.strip()
    n = len(text)
    num_mask = np.zeros(n, dtype=bool)
    str_mask = np.zeros(n, dtype=bool)
    if kind in ("number", "id"):
        num_mask = text.str.fullmatch(_NUM_LIST).to_numpy(dtype=bool)
    if kind in ("string", "id"):
        str_mask = text.str.fullmatch(_STR_LIST).to_numpy(dtype=bool) & ~num_mask
    slow = np.flatnonzero(~(num_mask | str_mask))
    pieces = [
        text[num_mask].str.findall(_NUM_ITEM),
        # Each match is (single-quoted text, double-quoted text); one of the two is empty.
        text[str_mask].str.findall(_STR_ITEM).map(lambda found: [a or b for a, b in found]),
        # Only the cells the regular expressions could not read go through literal_eval.
        pd.Series(
            [_literal_list(text.iloc[r], path, lines, int(r), col, kind) for r in slow],
            index=text.index[slow],
            dtype=object,
        ),
    ]
    parsed = pd.concat(pieces).sort_index()
    rows = parsed.tolist()
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = list(itertools.chain.from_iterable(rows))
    if kind == "number":
        values = pd.to_numeric(pd.Series(flat, dtype=object), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():  # cannot happen for regex-parsed cells; kept as a guard
            row = int(np.searchsorted(np.cumsum(lengths), np.flatnonzero(bad)[0], side="right"))
            raise DataError(f"{_where(path, lines, row)}, column '{col}': a list value is not a finite number")
        return lengths, values
    values = np.asarray([_id_text(v) for v in flat], dtype=object) if kind == "id" else np.asarray(flat, dtype=object)
    return lengths, values


def _id_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _literal_list(cell: str, path: Path, lines, row: int, col: str, kind: str) -> list:
    where = f"{_where(path, lines, row)}, column '{col}'"
    expected = {
        "number": "a list of numbers like [1, 2.5]",
        "string": "a list of strings like ['a', 'b']",
        "id": "a list of ids like [12, 40] or ['B00X', 'B00Y']",
    }[kind]
    if not cell:
        raise DataError(f"{where}: the cell is empty; expected {expected}")
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise DataError(f"{where}: {cell[:80]!r} is not a Python-literal list; expected {expected}") from None
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: {cell[:80]!r} is a {type(value).__name__}, expected {expected}")
    for v in value:
        ok = (
            (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v))
            if kind == "number"
            else isinstance(v, str)
            if kind == "string"
            else (isinstance(v, (int, str)) and not isinstance(v, bool))
        )
        if kind == "id" and isinstance(v, float) and v.is_integer():
            ok = True
        if not ok:
            raise DataError(f"{where}: element {v!r} of {cell[:80]!r} is not valid; expected {expected}")
    if kind == "number":
        return [repr(float(v)) for v in value]
    return list(value)


def _read_info(path: Path) -> pd.DataFrame:
    text = _read_file_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected 'title<TAB>item_id' lines")
    lines = pd.Series(text.split("\n"), dtype=object)
    line_no = np.arange(1, len(lines) + 1)
    big = (lines.str.len() > CELL_LIMIT).to_numpy(dtype=bool)
    if big.any():
        row = int(np.flatnonzero(big)[0])
        raise DataError(
            f"{path}, line {line_no[row]}: the line holds {len(lines.iloc[row]):,} characters, over "
            f"the {CELL_LIMIT:,}-character limit; it was not parsed: check the file for corruption"
        )
    keep = (lines.str.strip() != "").to_numpy()
    lines, line_no = lines[keep].reset_index(drop=True), line_no[keep]
    no_tab = ~lines.str.contains("\t", regex=False).to_numpy(dtype=bool)
    if no_tab.any():
        row = int(np.flatnonzero(no_tab)[0])
        raise DataError(
            f"{path}, line {line_no[row]}: no tab in {lines.iloc[row][:80]!r}; expected 'title<TAB>item_id'"
        )
    parts = lines.str.rpartition("\t")
    ids = parts[2].str.strip()
    titles = parts[0].str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path}, line {line_no[row]}, column 2 (item_id): the item id is empty")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{path}, line {line_no[row]}, column 2 (item_id): item id {ids.iloc[row]!r} is listed "
            f"again ({int(dup.sum())} repeated ids); each item must appear once"
        )
    return pd.DataFrame(
        {
            "item_id": ids.to_numpy(dtype=object),
            "title": titles.where(titles != "", None).to_numpy(dtype=object),
        }
    )


def _read_split(path: Path, info: pd.Series, info_name: str, max_history: int | None) -> dict:
    """Read and check one split CSV (the rules are in ``trustrec.data._bigrec_checks``)."""
    frame, lines = _read_text_table(path, sep=",")
    missing = [c for c in REQUIRED if c not in frame.columns]
    missing += [c for pair in PAIRS if any(p in frame.columns for p in pair) for c in pair if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}, line 1: missing column(s) {missing}; the BIGRec/D3 layout has user_id, "
            "item_asins, item_asin, history_item_id, item_id, history_item_title, item_title, "
            "history_rating, rating, history_timestamp, timestamp "
            f"(this file has {list(frame.columns)})"
        )
    has_rating = "rating" in frame.columns
    has_titles = "item_title" in frame.columns
    check_cell_sizes(frame, path, lines)
    _check_present(frame, "user_id", path, lines, "user id")
    _check_present(frame, "item_id", path, lines, "target item id")
    list_cols = [c for c in LIST_COLUMNS if c in frame.columns]
    scalar_cols = [c for c in ("user_id", "item_id", "timestamp", "rating") if c in frame.columns]
    check_filled(frame, [*scalar_cols, *list_cols, "item_title"], path, lines, tokens=[*scalar_cols, *list_cols])
    n_hist, hist_items = _parse_lists(frame, "history_item_id", path, lines, "id")
    n_ts, hist_ts = _parse_lists(frame, "history_timestamp", path, lines, "number")
    lengths = {"history_timestamp": n_ts}
    hist_rating = hist_titles = None
    if has_rating:
        lengths["history_rating"], hist_rating = _parse_lists(frame, "history_rating", path, lines, "number")
    if has_titles:
        lengths["history_item_title"], hist_titles = _parse_lists(frame, "history_item_title", path, lines, "string")
    check_list_lengths(n_hist, lengths, path, lines, "each history list must have one entry per history item")
    check_history_limit(n_hist, max_history, path, lines)
    bad_ts = hist_ts != np.round(hist_ts)
    if bad_ts.any():
        row, k = row_of(n_hist, int(np.flatnonzero(bad_ts)[0]))
        raise DataError(
            f"{_where(path, lines, row)}, column 'history_timestamp', element {k}: timestamps must "
            "be whole numbers (epoch seconds)"
        )
    users = frame["user_id"].str.strip().to_numpy(dtype=object)
    items = frame["item_id"].str.strip().to_numpy(dtype=object)
    stamps = _target_timestamps(frame, path, lines)
    hist_stamps = timestamps_to_int64(hist_ts, lambda i: _where(path, lines, row_of(n_hist, i)[0]), "history_timestamp")
    check_chronology(n_hist, hist_stamps, stamps, path, lines)
    check_items_and_titles(
        info,
        info_name,
        {
            "history_item_id": (
                hist_items,
                ("history_item_title", hist_titles) if has_titles else None,
                n_hist,
            ),
            "item_id": (
                items,
                ("item_title", frame["item_title"].to_numpy(dtype=object)) if has_titles else None,
                None,
            ),
        },
        path,
        lines,
    )
    target = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": stamps})
    history = pd.DataFrame({"user_id": np.repeat(users, n_hist), "item_id": hist_items, "timestamp": hist_stamps})
    if has_rating:
        target["rating"] = _numeric(frame, "rating", path, lines, "a numeric rating")
        history["rating"] = hist_rating
    asins = _asins(frame, path, lines, n_hist, hist_items, items)
    note = duplicate_note(frame, users, items, stamps, path, lines)
    return {
        "target": target,
        "history": history,
        "asins": asins,
        "has_rating": has_rating,
        "notes": [] if note is None else [note],
        # Which row each event was read from: a key twice in one row is an event that happened twice.
        "target_row": np.arange(len(target)),
        "history_row": np.repeat(np.arange(len(target)), n_hist),
    }


def _target_timestamps(frame: pd.DataFrame, path: Path, lines: np.ndarray) -> np.ndarray:
    """The target timestamps as int64 epoch numbers: whole numbers only, like the history's."""
    stamps = _timestamps(frame, "timestamp", path, lines)
    text = frame["timestamp"].str.strip()
    bad = ~text.str.fullmatch(_NUM).to_numpy(dtype=bool)
    if not bad.any():
        values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
        bad = values != np.round(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{_where(path, lines, row)}, column 'timestamp': {frame['timestamp'].iloc[row]!r} is not "
            f"a whole number ({int(bad.sum())} such rows); the BIGRec/D3 layout gives epoch "
            "seconds, like its history_timestamp lists"
        )
    return stamps


def _asins(frame, path, lines, n_hist, hist_items, target_items) -> pd.Series | None:
    """item id -> ASIN, from the target column and the history lists when the file has them."""
    parts = []
    if "item_asin" in frame.columns:
        parts.append(pd.Series(frame["item_asin"].str.strip().to_numpy(dtype=object), index=target_items))
    if "item_asins" in frame.columns:
        n, values = _parse_lists(frame, "item_asins", path, lines, "string")
        check_list_lengths(n_hist, {"item_asins": n}, path, lines, "each history item needs its ASIN")
        parts.append(pd.Series(values, index=hist_items))
    if not parts:
        return None
    out = pd.concat(parts).dropna()
    return out[~out.index.duplicated()]


def _pick_stem(folder: Path, name: str | None) -> tuple[Path, str]:
    info_dir = folder / "info"
    infos = sorted(info_dir.glob("*.txt")) if info_dir.is_dir() else []
    if not infos:
        raise DataError(
            f"{folder}: no info/*.txt; the BIGRec/D3 layout needs info/NAME.txt "
            "('title<TAB>item_id' lines) next to train/, valid/ and test/ folders of NAME.csv"
        )
    if len(infos) == 1:
        return infos[0], infos[0].stem
    chosen = [p for p in infos if name is not None and p.stem == name]
    if len(chosen) == 1:
        return chosen[0], chosen[0].stem
    raise DataError(
        f"{info_dir}: {len(infos)} info files ({[p.stem for p in infos]}); pass name=<one of them> "
        "to choose the dataset"
    )


def _split_file(folder: Path, split: str, stem: str) -> Path | None:
    split_dir = folder / split
    if not split_dir.is_dir():
        return None
    exact = split_dir / f"{stem}.csv"
    if exact.is_file():
        return exact
    csvs = sorted(split_dir.glob("*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    if csvs:
        raise DataError(
            f"{split_dir}: no {stem}.csv and several other CSVs ({[p.name for p in csvs]}); "
            "cannot tell which belongs to the info file"
        )
    return None


def load_bigrec(path: str | os.PathLike, name: str | None = None, *, max_history: int | None = None) -> Dataset:
    """Load a BIGRec/D3 folder (``info/``, ``train/``, ``valid/``, ``test/``).

    The interaction log is rebuilt from every history and target of every split present;
    identical (user, item, timestamp) events are kept as many times as one row shows them (once,
    unless a user did the same thing twice at one time), and ``Dataset.notes`` say
    how many events came from where. Valid and test targets (user_id, item_id, timestamp, rating)
    are ``extras['valid']`` and ``extras['test']``. Items come from the info file (``title``),
    with their ``asin`` where the CSVs give it. ``name`` defaults to the folder name (and chooses
    the info file when there are several).

    Every split file is checked before it is used (``trustrec.data._bigrec_checks`` has the
    rules): required and paired columns, cell sizes, empty or missing-value cells, list lengths
    that agree within a row, whole-number timestamps in time order (the history never goes back
    in time and the target is not earlier than the history), item ids listed in the info file
    with the same title (compared after stripping surrounding whitespace) and, when given,
    ``max_history``. A failed check raises a DataError naming the file, line, column (and list
    element); no file is ever written or deleted. Rows repeating an earlier row's user, target
    item and timestamp are kept and counted in ``Dataset.notes``.

    Parameters
    ----------
    path : str or os.PathLike
        The BIGRec/D3 folder.
    name : str, optional
        The dataset's name, and the stem of the info and split files to read; ``None`` uses the
        folder name.
    max_history : int, optional
        The longest history a row may have (the protocol's, e.g. 10); a longer one raises.
        ``None``: no limit.

    Returns
    -------
    Dataset
        The rebuilt interaction log, with ``extras['valid']`` / ``extras['test']`` for the splits
        present; rated when every split has ratings.

    Raises
    ------
    DataError
        If ``path`` is not a folder, the info file cannot be chosen or read, no split holds a
        CSV, or a split file cannot be read or breaks one of the rules above.
    ConfigError
        If ``max_history`` is not a non-negative integer.
    """
    if max_history is not None and (
        isinstance(max_history, bool) or not isinstance(max_history, (int, np.integer)) or max_history < 0
    ):
        raise ConfigError(f"load_bigrec: max_history must be a non-negative integer or None, got {max_history!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected a BIGRec/D3 folder with info/ and train/, valid/, test/")
    info_path, stem = _pick_stem(folder, name)
    files = {s: _split_file(folder, s, stem) for s in SPLITS}
    if not any(files.values()):
        raise DataError(f"{folder}: none of train/, valid/, test/ holds a CSV; nothing to load")
    items = _read_info(info_path)
    info = pd.Series(items["title"].to_numpy(dtype=object), index=pd.Index(items["item_id"], dtype=object))
    parts, sources, counts = [], [], {}
    splits = {}
    row_offset = 0
    for split, file in files.items():
        if file is None:
            continue
        data = _read_split(file, info, f"info/{info_path.name}", max_history)
        splits[split] = data
        for what in ("history", "target"):
            frame = data[what].assign(row=data[f"{what}_row"] + row_offset)
            parts.append(frame)
            sources.append(np.full(len(frame), f"{split} {what}", dtype=object))
            counts[f"{split} {'history events' if what == 'history' else 'targets'}"] = len(frame)
        row_offset += len(data["target"])
    has_rating = all(d["has_rating"] for d in splits.values())
    events = pd.concat(
        [p if has_rating else p.drop(columns="rating", errors="ignore") for p in parts],
        ignore_index=True,
    )
    events["source"] = np.concatenate(sources)
    keys = ["user_id", "item_id", "timestamp"]
    # Rows overlap (each event appears in the histories of the rows after it), so an event is kept
    # as many times as one row holds it: once, unless the user really did it twice at that time.
    per_row = events.groupby([*keys, "row"], sort=False).size()
    times = per_row.groupby(level=[0, 1, 2], sort=False).max()
    allowed = times.reindex(pd.MultiIndex.from_frame(events[keys])).to_numpy()
    dup = events.groupby(keys, sort=False).cumcount().to_numpy() >= allowed
    repeats = int((times - 1).sum())
    events = events.drop(columns="row")
    conflicts = 0
    if has_rating:
        conflicts = int((events.groupby(keys, sort=False)["rating"].nunique() > 1).sum())
    log = events.loc[~dup]
    # Where each kept event is known from: a valid/test target, or only from histories.
    target_keys = {s: pd.MultiIndex.from_frame(splits[s]["target"][keys]) for s in splits}
    log_keys = pd.MultiIndex.from_frame(log[keys])
    in_target = np.zeros(len(log), dtype=bool)
    from_parts = []
    for split in splits:
        hit = log_keys.isin(target_keys[split])
        from_parts.append(f"{int(hit.sum())} are {split} targets")
        in_target = in_target | hit
    from_parts.append(f"{int((~in_target).sum())} appear only in histories")
    log = log.sort_values("timestamp", kind="stable").drop(columns="source").reset_index(drop=True)
    present = [s for s in SPLITS if s in splits]
    if "train" in splits:
        head = f"interaction log built from the histories and targets of the {', '.join(present)} rows"
    else:
        head = (
            "BIGRec/D3 folder without a train split: the interaction log was rebuilt from the "
            f"histories and targets of the {' and '.join(present)} rows"
        )
    notes = [
        f"{head}: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + f" ({len(events)} events); "
        f"{int(dup.sum())} repeated (user, item, timestamp) events removed, keeping the first"
        + (f" (an event shown twice in one row is kept twice: {repeats} such repeats)" if repeats else "")
        + (f" ({conflicts} such keys had differing ratings)" if conflicts else "")
        + f"; {len(log)} interactions remain, of which "
        + ", ".join(from_parts)
    ]
    if "train" not in splits:
        notes.append(
            "the train split is absent: each user's interactions before the shown history are not "
            "recoverable, and the log includes the valid and test targets (given separately as "
            "extras['valid'] and extras['test'])"
        )
    notes.extend(note for data in splits.values() for note in data["notes"])
    asins = [d["asins"] for d in splits.values() if d["asins"] is not None]
    if asins:
        mapping = pd.concat(asins)
        mapping = mapping[~mapping.index.duplicated()]
        items["asin"] = items["item_id"].map(mapping)
    extras: dict[str, Any] = {s: splits[s]["target"] for s in ("valid", "test") if s in splits}
    return Dataset.from_frame(
        log,
        name=name or folder.resolve().name,
        items=items,
        rating_col="rating" if has_rating else None,
        source=f"bigrec:{folder.name}",
        notes=notes,
        extras=extras,
    )
