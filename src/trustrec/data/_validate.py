"""Checks on raw ids and timestamps, shared by :meth:`Dataset.from_frame` and the format loaders.

Rules (each failure names the row, or the file and line when the loader knows them):

- **Ids are kept exactly, as text.** Text ids are stripped, nothing else. Ids held as integral
  floating-point numbers (e.g. a parquet column of floats, or a CSV column with missing values
  read as floats) become the integer they equal (``3.0`` -> ``"3"``), exactly, at any size; ids
  at or above 2**53 warn (:class:`~trustrec.errors.DataWarning`), because a float cannot hold
  every integer that large: read such columns as text. Infinite or NaN ids are refused.
- **Timestamps are whole numbers that fit in 64 bits.** NaN, infinite and out-of-range values
  are refused with the row (they used to wrap to the minimum int64 and sort first).
- **One time unit per column.** Values are classed by magnitude: seconds (1e8 to 1e11, i.e.
  1973 to 5138), milliseconds (1e11 to 1e14), microseconds (1e14 to 1e17) and nanoseconds
  (1e17 and above); values below 1e8 in absolute value (positions, small counters) are not
  classed. A column with values of two classes is refused, naming the first row of each.
- **Dates written ``A/B/YEAR`` (also with ``-`` or ``.``) are read by one rule, printed in the
  dataset's notes**: when some date has A > 12 the whole column is day/month/year; when some date
  has B > 12 it is month/day/year; both in one column is refused; when no date settles it and some
  date is ambiguous (A != B, both <= 12) the column is refused with both readings of that date
  (write ISO 8601 dates, YYYY-MM-DD, to be unambiguous). Other date forms (ISO 8601, "March 3,
  2020", ...) are parsed by pandas.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from trustrec.errors import DataError, DataWarning

__all__ = ["check_time_units", "id_strings", "parse_dates", "timestamps_to_int64"]

Where = Callable[[int], str]

_EXACT = 2.0**53
_INT64_LIMIT = 2.0**63
UNITS = (
    ("seconds", 1e8, 1e11),
    ("milliseconds", 1e11, 1e14),
    ("microseconds", 1e14, 1e17),
    ("nanoseconds", 1e17, np.inf),
)
_DMY = re.compile(r"^\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?!\d)(.*)$", re.DOTALL)


def data_rows(label: str) -> Where:
    """A ``where`` for frames without file lines: ``"<label>, data row N"`` (0-based)."""
    return lambda row: f"{label}, data row {row}"


def id_strings(col: pd.Series, where: Where | None = None, column: str = "id") -> np.ndarray:
    """Raw ids as exact strings (see the module rules)."""
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            at = where(row) if where else f"data row {row}"
            raise DataError(
                f"{at}, column '{column}': id {values[row]!r} is not a finite number "
                f"({int(bad.sum())} such rows); fix or remove those rows"
            )
        if np.all(np.mod(values, 1) == 0):
            big = np.abs(values) >= _EXACT
            out = np.empty(len(values), dtype=object)
            small = ~big
            out[small] = values[small].astype(np.int64).astype(str)
            if big.any():
                # Python's int() is exact for any float, so distinct floats stay distinct ids.
                out[big] = [str(int(v)) for v in values[big]]
                row = int(np.flatnonzero(big)[0])
                at = where(row) if where else f"data row {row}"
                warnings.warn(
                    f"{at}, column '{column}': {int(big.sum())} ids are floating-point numbers of 2**53 "
                    f"or more (e.g. {values[row]!r}); a float cannot hold every integer that large, so "
                    "ids may have merged when the column was read as numbers: read it as text",
                    DataWarning,
                    stacklevel=3,
                )
            return out
    return col.astype(str).str.strip().to_numpy(dtype=object)


def timestamps_to_int64(
    values, where: Where, column: str = "timestamp", hint: str = "fix or remove those rows"
) -> np.ndarray:
    """Whole-number timestamps as int64: NaN, infinite and values outside 64 bits are refused."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 8 and not (arr.dtype.kind == "u" and arr.dtype.itemsize == 8):
        return arr.astype(np.int64)
    if arr.dtype.kind == "u":
        too_big = arr > np.iinfo(np.int64).max
        if too_big.any():
            row = int(np.flatnonzero(too_big)[0])
            raise DataError(
                f"{where(row)}, column '{column}': timestamp {int(arr[row])} does not fit in a "
                f"64-bit integer ({int(too_big.sum())} such rows); {hint}"
            )
        return arr.astype(np.int64)
    if arr.dtype == object:  # Python ints of any size: checked exactly, no float rounding
        big = [
            i for i, v in enumerate(arr) if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63
        ]
        if big:
            raise DataError(
                f"{where(big[0])}, column '{column}': timestamp {arr[big[0]]} does not fit in a "
                f"64-bit integer ({len(big)} such rows); {hint}"
            )
        try:
            return np.array([int(v) for v in arr], dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            arr = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(np.float64)
    floats = arr.astype(np.float64)
    bad = ~np.isfinite(floats)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "missing" if np.isnan(floats[row]) else "infinite"
        raise DataError(
            f"{where(row)}, column '{column}': the timestamp is {what} ({int(bad.sum())} such rows); {hint}"
        )
    rounded = np.round(floats)
    out_of_range = (rounded >= _INT64_LIMIT) | (rounded < -_INT64_LIMIT)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        raise DataError(
            f"{where(row)}, column '{column}': timestamp {raw_text(values, row)} does not fit in a "
            f"64-bit integer ({int(out_of_range.sum())} such rows); {hint}"
        )
    return rounded.astype(np.int64)


def raw_text(values, row: int) -> str:
    """A value as the user wrote it, as far as we can tell (no numpy reprs)."""
    v = np.asarray(values)[row]
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e300:
        return f"{v:.17g}"
    return repr(v)


def epoch_seconds(parsed: pd.Series) -> np.ndarray:
    """Seconds since 1970 of UTC datetimes, at any resolution pandas parsed them to (dates past
    2262 do not fit nanoseconds, so no nanosecond arithmetic happens here)."""
    naive = parsed.dt.tz_convert("UTC").dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    return naive.to_numpy().astype("datetime64[s]").astype(np.int64)


def check_time_units(ts, where: Where, column: str = "timestamp") -> None:
    """Refuse a column whose values have the magnitudes of two different time units."""
    arr = np.abs(np.asarray(ts, dtype=np.float64))
    if not len(arr) or arr.max() < UNITS[0][1]:
        return
    found = []
    for unit, lo, hi in UNITS:
        hit = (arr >= lo) & (arr < hi)
        if hit.any():
            row = int(np.flatnonzero(hit)[0])
            found.append((unit, int(hit.sum()), row))
    if len(found) > 1:
        parts = [
            f"{n:,} look like {unit} (first: {where(row)}: {np.asarray(ts)[row].item()!r})" for unit, n, row in found
        ]
        raise DataError(
            f"column '{column}' mixes time units by magnitude: "
            + "; ".join(parts)
            + "; convert every timestamp to one unit (epoch seconds) and load again"
        )


def parse_dates(raw: pd.Series, where: Where, column: str = "timestamp", notes: list[str] | None = None) -> pd.Series:
    """Date strings as UTC datetimes (NaT where a value is not a date); ``A/B/YEAR`` dates follow
    the module's one rule, which is appended to ``notes`` when it decided anything."""
    text = raw.astype(str)
    parts = text.str.extract(_DMY)
    matched = parts[0].notna().to_numpy()
    values = text
    if matched.any():
        a = parts[0].to_numpy()[matched].astype(np.int64)
        b = parts[2].to_numpy()[matched].astype(np.int64)
        rows = np.flatnonzero(matched)
        day_first = (a > 12) & (b <= 12)
        month_first = (b > 12) & (a <= 12)
        ambiguous = (a <= 12) & (b <= 12) & (a != b)

        def sample(mask):
            return int(rows[np.flatnonzero(mask)[0]])

        if day_first.any() and month_first.any():
            r1, r2 = sample(day_first), sample(month_first)
            raise DataError(
                f"column '{column}' mixes date orders: {text.iloc[r1]!r} ({where(r1)}) can only be "
                f"day/month/year and {text.iloc[r2]!r} ({where(r2)}) only month/day/year; write the "
                "dates as ISO 8601 (YYYY-MM-DD)"
            )
        if day_first.any():
            order, r = "day/month/year", sample(day_first)
        elif month_first.any():
            order, r = "month/day/year", sample(month_first)
        elif ambiguous.any():
            r = sample(ambiguous)
            first, second, year = parts[0].iloc[r], parts[2].iloc[r], parts[3].iloc[r]
            raise DataError(
                f"{where(r)}, column '{column}': date {text.iloc[r]!r} is ambiguous: day/month/year "
                f"reads it as {_iso(year, second, first)}, month/day/year as {_iso(year, first, second)}, "
                f"and no date in the column has a day above 12 to settle it ({int(ambiguous.sum())} "
                "ambiguous dates); write the dates as ISO 8601 (YYYY-MM-DD)"
            )
        else:
            order, r = "month/day/year", None
        if r is not None and notes is not None:
            notes.append(
                f"column '{column}': dates written A/B/YEAR read as {order} "
                f"({text.iloc[r]!r} at {where(r)} allows only that order)"
            )
        day = parts[0] if order == "day/month/year" else parts[2]
        month = parts[2] if order == "day/month/year" else parts[0]
        year = parts[3].where(
            parts[3].str.len() != 2,
            parts[3].map(lambda y: ("19" if isinstance(y, str) and int(y) >= 69 else "20") + str(y)),
        )
        iso = year + "-" + month.str.zfill(2) + "-" + day.str.zfill(2) + parts[4].fillna("")
        values = text.where(~matched, iso)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(values, errors="coerce", utc=True, format="mixed")


def _iso(year: str, month: str, day: str) -> str:
    year = year if len(year) == 4 else ("19" if int(year) >= 69 else "20") + year
    return f"{year}-{int(month):02d}-{int(day):02d}"
