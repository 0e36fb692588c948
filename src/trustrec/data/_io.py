"""Reading delimited text robustly: encodings, clear errors that name file, line and column."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from trustrec._safeio import read_decompressed
from trustrec.errors import DataError

ENCODINGS = ("utf-8", "latin-1")


def read_text(path: Path, encodings=ENCODINGS) -> tuple[str, str]:
    """The file's text and the encoding that decoded it (MovieLens files are latin-1)."""
    data = read_decompressed(path, what="a data file")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for enc in encodings:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:  # noqa: PERF203 - a few encodings, tried in order
            continue
    raise DataError(f"{path}: cannot decode as any of {encodings}")


def require_nonempty(path: Path, text: str) -> None:
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected a header line and data rows")


def read_delimited(
    path: Path,
    *,
    sep: str,
    header: bool,
    names=None,
    quoting=csv.QUOTE_MINIMAL,
    text: str | None = None,
    line_offset: int = 0,
) -> pd.DataFrame:
    """All columns as strings; ragged rows raise a DataError naming the line."""
    if text is None:
        text, _ = read_text(path)
    require_nonempty(path, text)
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header else None,
            names=names,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            quoting=quoting,
            engine="c",
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        detail = str(exc).strip()
        if line_offset:
            detail += f" (line numbers count from the first data row; add {line_offset} for the file line)"
        raise DataError(f"{path}: cannot parse as {_sep_name(sep)}-separated rows: {detail}") from exc


def numeric_column(
    frame: pd.DataFrame, column: str, path: Path, *, header_lines: int = 1, allow_missing: bool = False
) -> pd.Series:
    """Parse one column as numbers, naming the first bad line if any value is not a number."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & (frame[column].notna() | (not allow_missing))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raw = frame[column].iloc[row]
        what = "is missing" if pd.isna(raw) else f"is {raw!r}, not a number"
        raise DataError(
            f"{path}, line {row + 1 + header_lines}, column '{column}': value {what} "
            f"({int(bad.sum())} such rows); fix or remove those rows"
        )
    return values


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", "|": "pipe", "::": "double-colon"}.get(sep, sep)


def sniff_separator(path: Path, first_line: str, expected_columns: int | None = None) -> str:
    """Guess the delimiter of a header line: tab, comma, semicolon, pipe."""
    counts = {s: first_line.count(s) for s in ("\t", ",", ";", "|")}
    sep = max(counts, key=counts.__getitem__)
    if counts[sep] == 0:
        raise DataError(
            f"{path}, line 1: no tab, comma, semicolon or pipe in the header {first_line[:80]!r}; "
            "cannot tell the delimiter"
        )
    return sep
