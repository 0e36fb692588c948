"""Generic interaction tables: CSV, TSV (optionally gzipped) and parquet, with a role mapping.

``load_tabular`` reads one interaction table plus optional item and user tables. Columns are
found through a mapping of roles (``user``, ``item``, ``timestamp``, ``rating``) to column names,
or guessed from common names. Every error names the file, the line (data row for parquet) and
the column.

The private helpers here (reading text tables with file line numbers, checking ids, numbers and
timestamps) are shared by the other format loaders.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trustrec._safeio import open_regular, read_decompressed
from trustrec.data._atomic import TITLE_COLUMNS
from trustrec.data._dataset import Dataset, _as_id_strings
from trustrec.data._io import ENCODINGS, sniff_separator
from trustrec.data._validate import (
    check_time_units,
    epoch_seconds,
    parse_dates,
    timestamps_to_int64,
)
from trustrec.errors import ConfigError, DataError

__all__ = ["load_tabular"]

ROLES = ("user", "item", "timestamp", "rating")
REQUIRED_ROLES = ("user", "item")
ROLE_CANDIDATES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userId", "user", "reviewerID", "uid", "userid", "customer_id"),
    "item": (
        "item_id",
        "itemId",
        "movieId",
        "movie_id",
        "parent_asin",
        "asin",
        "iid",
        "itemid",
        "product_id",
        "item",
    ),
    "timestamp": ("timestamp", "time", "ts", "unixReviewTime", "date", "datetime"),
    "rating": ("rating", "overall", "score", "stars"),
}
PARQUET_SUFFIXES = (".parquet", ".pq")
_SEP_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "double-colon"}


# -- shared low-level helpers ------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip data (bounded: see ``trustrec._safeio``);
    folders, FIFOs and other non-regular files are refused."""
    return read_decompressed(path, what="a data file")


def _decode(path: Path, data: bytes) -> str:
    """Text of ``data``: utf-8, else latin-1 (as MovieLens files are); BOM and CRLF removed."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for enc in ENCODINGS:
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - latin-1 decodes every byte
        raise DataError(f"{path}: cannot decode as any of {ENCODINGS}")
    return text.replace("\r\n", "\n")


def _read_file_text(path: Path) -> str:
    return _decode(path, _read_bytes(path))


def _where(path: Path, lines: np.ndarray | None, row: int) -> str:
    """'file, line N' for text files (lines holds each data row's file line), else 'data row N'."""
    if lines is None:
        return f"{path}, data row {row + 1}"
    return f"{path}, line {int(lines[row])}"


def _first_bad(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask, dtype=bool))[0])


def _missing_mask(col: pd.Series) -> np.ndarray:
    """True where a value is missing or only whitespace."""
    missing = col.isna().to_numpy()
    if col.dtype == object or pd.api.types.is_string_dtype(col):
        missing = missing | ((col.astype(str).str.strip() == "").to_numpy() & ~missing)
    return missing


def _check_present(frame: pd.DataFrame, col: str, path: Path, lines, what: str) -> None:
    """Raise if ``col`` has missing or empty values (ids must all be present)."""
    missing = _missing_mask(frame[col])
    if missing.any():
        row = _first_bad(missing)
        raise DataError(
            f"{_where(path, lines, row)}, column '{col}': the {what} is missing or empty "
            f"({int(missing.sum())} such rows); fill in or remove those rows"
        )


def _to_float(col: pd.Series) -> np.ndarray:
    """float64 values, NaN where a value is missing or not a number (arrow fast path)."""
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(np.float64, na_value=np.nan)
    if hasattr(col.array, "__arrow_array__"):
        try:
            arr = pc.utf8_trim_whitespace(pa.array(col.array))
            return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
            pass  # some value is not a number: the slow path finds which
    return pd.to_numeric(col, errors="coerce").to_numpy(np.float64)


def _numeric(
    frame: pd.DataFrame,
    col: str,
    path: Path,
    lines,
    what: str = "a number",
    allow_missing: bool = False,
) -> np.ndarray:
    """Parse one column as float64, naming the first line whose value is not a finite number."""
    raw = frame[col]
    values = _to_float(raw)
    missing = _missing_mask(raw)
    bad = ~np.isfinite(values)
    if allow_missing:
        bad = bad & ~missing
    if bad.any():
        row = _first_bad(bad)
        got = "nothing (the value is missing)" if missing[row] else repr(raw.iloc[row])
        raise DataError(
            f"{_where(path, lines, row)}, column '{col}': expected {what}, got {got} "
            f"({int(bad.sum())} such rows); fix or remove those rows"
        )
    return values


def _timestamps(
    frame: pd.DataFrame,
    col: str,
    path: Path,
    lines,
    hint: str = "fix or remove those rows",
    notes: list[str] | None = None,
) -> np.ndarray:
    """Epoch numbers (int64, exact for whole numbers) or date strings (as epoch seconds).

    Errors name the first bad line: missing values, text that is neither a number nor a date,
    values that do not fit in 64 bits, a column mixing time units, and ambiguous day/month dates
    (the rules are in ``trustrec.data._validate``; a date-order decision is appended to ``notes``).
    """
    raw = frame[col]

    def where(row):
        return _where(path, lines, row)

    missing = _missing_mask(raw)
    if missing.any():
        row = _first_bad(missing)
        raise DataError(
            f"{_where(path, lines, row)}, column '{col}': the timestamp is missing "
            f"({int(missing.sum())} such rows); {hint}"
        )
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
        return _epoch_seconds(parsed)
    exact = _to_int64_exact(raw)
    if exact is not None:
        check_time_units(exact, where, col)
        return exact
    values = _to_float(raw)
    if not (pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw)):
        not_number = np.isnan(values)
        if not_number.any():
            parsed = parse_dates(raw.astype(str).str.strip(), where, col, notes)
            not_date = parsed.isna().to_numpy()
            if not not_date.any():
                return _epoch_seconds(parsed)
            # Mostly numbers -> name the first non-number; mostly dates -> the first non-date.
            bad = not_number if (~not_number).sum() >= (~not_date).sum() else not_date
            row = _first_bad(bad)
            raise DataError(
                f"{_where(path, lines, row)}, column '{col}': timestamp {raw.iloc[row]!r} is "
                f"neither a number (epoch seconds) nor a date ({int(bad.sum())} such rows); {hint}"
            )
    ts = timestamps_to_int64(values, where, col, hint)
    check_time_units(ts, where, col)
    return ts


def _to_int64_exact(raw: pd.Series) -> np.ndarray | None:
    """int64 values when every value is a whole number written without a fraction (exact, no
    float rounding), else None."""
    if pd.api.types.is_integer_dtype(raw) and not pd.api.types.is_unsigned_integer_dtype(raw):
        return raw.to_numpy(np.int64)
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):
        try:
            arr = pc.utf8_trim_whitespace(pa.array(raw.astype(str).array))
            return pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError):
            return None
    return None


def _epoch_seconds(parsed: pd.Series) -> np.ndarray:
    # Resolution-independent (pandas may parse to s, ms, us or ns), and safe past 2262.
    return epoch_seconds(parsed)


def _row_lines(frame: pd.DataFrame, first_line: int, text: str, quotechar: str = '"') -> np.ndarray:
    """The file line on which each parsed row starts (quoted fields may span lines)."""
    spans = np.ones(len(frame), dtype=np.int64)
    if quotechar in text:
        for col in frame.columns:  # a loop over columns; each is vectorised over rows
            s = frame[col]
            if s.dtype == object or pd.api.types.is_string_dtype(s):
                spans = spans + s.str.count("\n").fillna(0).to_numpy(np.int64)
    return first_line + np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64)


def _sep_label(sep: str) -> str:
    return _SEP_NAMES.get(sep, repr(sep))


def _header_fields(path: Path, text: str, sep: str) -> list[str]:
    first = text.split("\n", 1)[0]
    if len(sep) == 1:
        try:
            fields = next(csv.reader(io.StringIO(text), delimiter=sep))
        except (csv.Error, StopIteration):
            fields = first.split(sep)
    else:
        fields = first.split(sep)
    return [f.strip() for f in fields]


def _check_header(path: Path, fields: list[str]) -> None:
    seen: dict[str, int] = {}
    for pos, field in enumerate(fields, start=1):
        if field in seen:
            raise DataError(
                f"{path}, line 1: column name {field!r} appears twice in the header "
                f"(fields {seen[field]} and {pos}); rename one of them"
            )
        seen[field] = pos
    empty = [i for i, f in enumerate(fields, start=1) if not f]
    if empty and len(fields) > 1:
        raise DataError(f"{path}, line 1: header field {empty[0]} has no name; every column needs one")


def _guess_sep(path: Path, text: str) -> str:
    first = text.split("\n", 1)[0]
    if "::" in first:
        return "::"
    try:
        return sniff_separator(path, first)
    except DataError:
        return ","  # a single-column header: any delimiter reads it


def _read_text_table(path: Path, sep: str | None = None, text: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """A delimited text file with a header: all columns as strings, and each row's file line.

    Quoted fields may hold delimiters and newlines; blank lines are skipped (their line numbers
    still count); repeated header names and ragged rows raise a DataError naming the line.
    """
    if text is None:
        text = _read_file_text(path)
    stripped = text.lstrip("\n")
    leading = len(text) - len(stripped)  # blank lines before the header
    text = stripped
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a header line and data rows")
    if sep is None:
        sep = _guess_sep(path, text)
    fields = _header_fields(path, text, sep)
    _check_header(path, fields)
    if len(fields) == 1:
        other = {s: fields[0].count(s) for s in ("\t", ",", ";", "|", "::") if s != sep}
        best = max(other, key=other.__getitem__)
        if other[best]:
            raise DataError(
                f"{path}, line 1: the header {fields[0][:80]!r} has no {_sep_label(sep)} "
                f"delimiter but contains {_sep_label(best)}s; the file looks "
                f"{_sep_label(best)}-separated: pass sep={best!r}"
            )
    kwargs = {
        "dtype": str,
        "keep_default_na": False,
        "na_values": [""],
        "skip_blank_lines": False,
        "quoting": csv.QUOTE_MINIMAL,
    }
    try:
        if len(sep) == 1:
            frame = pd.read_csv(io.StringIO(text), sep=sep, engine="c", **kwargs)
        else:
            frame = pd.read_csv(io.StringIO(text), sep=re.escape(sep), engine="python", **kwargs)
    except pd.errors.ParserError as exc:
        raise DataError(
            f"{path}: cannot parse as {_sep_label(sep)}-separated rows: {str(exc).strip()} "
            "(line numbers count from the header); check quoting and the number of fields"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty; expected a header line and data rows") from exc
    frame.columns = fields
    header_lines = 1 + sum(f.count("\n") for f in fields)
    lines = _row_lines(frame, 1 + leading + header_lines, text)
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    return frame, lines


def _read_any_table(path: Path, sep: str | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """A text or parquet table; ``lines`` is None for parquet (errors then name data rows)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        with open_regular(path, what="a parquet file") as fh:
            try:
                import pyarrow.parquet as pq

                table = pq.read_table(fh)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
                raise DataError(f"{path}: cannot read as parquet ({exc})") from None
        names = [str(n).strip() for n in table.column_names]
        _check_header(path, names)
        frame = table.to_pandas()
        frame.columns = names
        if frame.empty:
            raise DataError(f"{path}: the parquet file has no rows")
        return frame.reset_index(drop=True), None
    return _read_text_table(path, sep)


# -- role mapping ---------------------------------------------------------------------------------
def _guess_column(columns: list[str], role: str, taken: set[str]) -> str | None:
    candidates = ROLE_CANDIDATES[role]
    for cand in candidates:
        if cand in columns and cand not in taken:
            return cand
    lower = {c.lower(): c for c in reversed(columns)}
    for cand in candidates:
        col = lower.get(cand.lower())
        if col is not None and col not in taken:
            return col
    return None


def _resolve_roles(columns: list[str], mapping: Mapping[str, str | None] | None, path: Path) -> dict[str, str | None]:
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(ROLES))
    if unknown:
        raise ConfigError(f"load_tabular: unknown role(s) {unknown} in columns=; the roles are {list(ROLES)}")
    roles: dict[str, str | None] = {}
    for role, col in mapping.items():
        if col is None:
            if role in REQUIRED_ROLES:
                raise ConfigError(f"load_tabular: role '{role}' is required and cannot be None")
            roles[role] = None
        elif col not in columns:
            raise DataError(
                f"{path}, line 1: column {col!r} (mapped to role '{role}') is not in the header; "
                f"available columns: {columns}"
            )
        else:
            roles[role] = col
    taken = {c for c in roles.values() if c is not None}
    for role in ROLES:
        if role not in roles:
            col = _guess_column(columns, role, taken)
            roles[role] = col
            if col is not None:
                taken.add(col)
    missing = [r for r in REQUIRED_ROLES if roles[r] is None]
    if missing:
        hints = {r: list(ROLE_CANDIDATES[r]) for r in missing}
        raise DataError(
            f"{path}, line 1: cannot find the column(s) for role(s) {missing} "
            f"(looked for {hints}); the header has {columns}; "
            "pass columns={'user': ..., 'item': ...}"
        )
    return roles


def _id_column(frame: pd.DataFrame, path: Path, role: str, preferred: str) -> str:
    columns = list(frame.columns)
    for cand in (preferred, f"{role}_id"):
        if cand in columns:
            return cand
    col = _guess_column(columns, role, set())
    if col is None and "id" in columns:
        col = "id"
    if col is None:
        raise DataError(
            f"{path}, line 1: no {role} id column; expected {preferred!r}, one of "
            f"{list(ROLE_CANDIDATES[role])} or 'id'; the header has {columns}"
        )
    return col


def _side_table(path, role: str, preferred: str) -> pd.DataFrame:
    path = Path(path)
    frame, lines = _read_any_table(path)
    col = _id_column(frame, path, role, preferred)
    _check_present(frame, col, path, lines, f"{role} id")
    ids = pd.Series(_as_id_strings(frame[col], lambda row: _where(path, lines, row), col))
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = _first_bad(dup)
        raise DataError(
            f"{_where(path, lines, row)}, column '{col}': {role} id {ids.iloc[row]!r} appears "
            f"again ({int(dup.sum())} repeated ids); each {role} must be listed once"
        )
    target = f"{role}_id"
    if target in frame.columns and target != col:
        raise DataError(
            f"{path}, line 1: the id column is {col!r} but the table also has a column '{target}'; rename one of them"
        )
    out = frame.rename(columns={col: target})
    out[target] = ids.to_numpy(dtype=object)
    if role == "item" and "title" not in out.columns:
        title = next((c for c in TITLE_COLUMNS if c in out.columns), None)
        if title is not None:
            out = out.rename(columns={title: "title"})
    return out.reset_index(drop=True)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", *PARQUET_SUFFIXES, ".csv", ".tsv", ".txt", ".dat"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


# -- public loader --------------------------------------------------------------------------------
def load_tabular(
    path: str | os.PathLike,
    *,
    columns: Mapping[str, str | None] | None = None,
    sep: str | None = None,
    items: str | os.PathLike | pd.DataFrame | None = None,
    users: str | os.PathLike | pd.DataFrame | None = None,
    name: str | None = None,
) -> Dataset:
    """Load interactions from a CSV/TSV (optionally ``.gz``) or parquet file.

    ``columns`` maps roles ``user``, ``item``, ``timestamp``, ``rating`` to column names; roles
    left out are guessed from common names (``user_id``, ``itemId``, ``movieId``, ``asin``,
    ``timestamp``, ``rating``, ``overall`` ...) and a role mapped to ``None`` is not used.
    ``sep=None`` sniffs the delimiter of text files from the header. ``items`` and ``users`` are
    optional tables (same formats, delimiter sniffed) with an id column named like the mapped
    interaction column, ``item_id``/``user_id``, a common id name, or ``id``.
    Timestamps may be epoch numbers or dates; without a timestamp column the row order is time.

    Parameters
    ----------
    path : str or os.PathLike
        The interaction table.
    columns : Mapping[str, str or None], optional
        Column names by role (``user``, ``item``, ``timestamp``, ``rating``); ``None`` guesses
        every role.
    sep : str, optional
        The delimiter of a text table; ``None`` sniffs it.
    items, users : str, os.PathLike or pandas.DataFrame, optional
        Item and user tables: a path, or a prepared frame with an ``item_id``/``user_id``
        column.
    name : str, optional
        The dataset's name; ``None`` uses the file's name.

    Returns
    -------
    Dataset
        The interactions, rated when a rating column is used.

    Raises
    ------
    DataError
        If a table cannot be read, a role's column is missing or cannot be found, or an id,
        rating or timestamp cannot be read.
    """
    return _tabular_dataset(path, columns=columns, sep=sep, items=items, users=users, name=name)


def _tabular_dataset(path, *, columns, sep, items, users, name, source=None) -> Dataset:
    """Shared by load_tabular and the MovieLens CSV layout.

    ``items``/``users``: a table path, a prepared frame (id column ``item_id``/``user_id``) or None.
    """
    path = Path(path)
    frame, lines = _read_any_table(path, sep)
    cols = list(frame.columns)
    roles = _resolve_roles(cols, columns, path)
    ucol, icol, tcol, rcol = (roles[r] for r in ROLES)
    assert ucol is not None and icol is not None  # _resolve_roles raises when a required role has no column
    _check_present(frame, ucol, path, lines, "user id")
    _check_present(frame, icol, path, lines, "item id")
    out = pd.DataFrame(
        {
            "user_id": frame[ucol],
            "item_id": frame[icol],
        }
    )
    notes = ["columns used: " + ", ".join(f"{r}={c!r}" for r, c in roles.items() if c)]
    if tcol is not None:
        out["timestamp"] = _timestamps(
            frame,
            tcol,
            path,
            lines,
            hint="fix or remove those rows, or pass columns={'timestamp': None} to use the row order as time",
            notes=notes,
        )
    if rcol is not None:
        out["rating"] = _numeric(frame, rcol, path, lines, "a numeric rating")
    item_table, user_table = items, users
    if items is not None and not isinstance(items, pd.DataFrame):
        item_table = _side_table(items, "item", icol)
    if users is not None and not isinstance(users, pd.DataFrame):
        user_table = _side_table(users, "user", ucol)
    if item_table is not None:
        known = pd.Index(item_table["item_id"])
        unknown = ~pd.Index(pd.unique(_as_id_strings(frame[icol]))).isin(known)
        if unknown.any():
            where = "the items table" if isinstance(items, pd.DataFrame) else Path(items).name
            notes.append(
                f"{int(unknown.sum())} items in the interactions are not in {where} (added without attributes)"
            )
    return Dataset.from_frame(
        out,
        name=name or _stem(path),
        items=item_table,
        users=user_table,
        timestamp_col="timestamp" if tcol is not None else None,
        rating_col="rating" if rcol is not None else None,
        source=source or f"tabular:{path.name}",
        notes=notes,
    )
