"""Amazon review data as published by McAuley's lab: the 2018 release and the 2023 release.

- 2018 (Ni, Li, McAuley 2019): review lines with ``reviewerID``, ``asin``, ``overall``,
  ``unixReviewTime`` (seconds); meta lines with ``asin``, ``title``, ``brand``, ``main_cat``,
  ``category`` (list), ``description`` (list) ... Some meta files hold Python-literal dicts
  instead of JSON; those lines are read with ``ast.literal_eval``.
- 2023 (Hou et al. 2024): review lines with ``user_id``, ``parent_asin`` (the item; ``asin`` when
  absent), ``rating``, ``timestamp`` (milliseconds, converted to seconds); meta lines with
  ``parent_asin``, ``title``, ``main_category``, ``store``, ``categories``, ``description`` ...

Files may be gzipped (``.gz``). The format is detected from the keys of the first record.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec._safeio import open_decompressed
from trustrec.data._dataset import Dataset
from trustrec.data._tabular import _check_present, _numeric, _timestamps
from trustrec.errors import DataError

__all__ = ["load_amazon"]

REVIEW_KEYS = {
    "2018": {
        "user": "reviewerID",
        "item": "asin",
        "rating": "overall",
        "timestamp": "unixReviewTime",
    },
    "2023": {
        "user": "user_id",
        "item": "parent_asin",
        "rating": "rating",
        "timestamp": "timestamp",
    },
}
# Output column -> source keys, first present wins (2018 and 2023 names).
META_TEXT = {
    "title": ("title",),
    "brand": ("brand",),
    "store": ("store",),
    "main_category": ("main_category", "main_cat"),
    "categories": ("categories", "category"),
    "description": ("description",),
    "features": ("features", "feature"),
}
LIST_JOIN = {"categories": "|", "description": " ", "features": " "}


def _open(path: Path):
    """A reader of the file, gunzipped when it is gzip data, within the decompression limits."""
    return open_decompressed(path, what="a JSON-lines file")


def _parse_line(raw: bytes, path: Path, lineno: int, literal: bool) -> dict:
    try:
        record = json.loads(raw)
    except RecursionError:
        raise DataError(
            f"{path}, line {lineno}: JSON nested too deeply to read; expected one flat review object per line"
        ) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        record = None
        if isinstance(exc, UnicodeDecodeError):
            try:
                record = json.loads(raw.decode("latin-1"))
            except (ValueError, RecursionError):
                record = None
        if record is None and literal:
            try:
                record = ast.literal_eval(_decode_line(raw).strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                record = None
        if record is None:
            detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            also = " nor a Python literal dict" if literal else ""
            raise DataError(
                f"{path}, line {lineno}: not valid JSON{also} ({detail}): "
                f"{_decode_line(raw)[:80]!r}; fix or remove that line"
            ) from exc
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {lineno}: expected a JSON object per line, got {type(record).__name__}")
    return record


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _records(path: Path, *, literal: bool) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line."""
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                yield lineno, _parse_line(raw, path, lineno, literal)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); is the file complete and, if .gz, gzipped?") from exc


def _detect_reviews(record: dict, path: Path, lineno: int) -> str:
    if "reviewerID" in record or "unixReviewTime" in record or "overall" in record:
        return "2018"
    if "user_id" in record and ("parent_asin" in record or "asin" in record):
        return "2023"
    raise DataError(
        f"{path}, line {lineno}: cannot tell the Amazon review format from the keys "
        f"{sorted(record)[:20]}; expected 2018 keys (reviewerID, asin, overall, unixReviewTime) "
        "or 2023 keys (user_id, parent_asin, rating, timestamp)"
    )


def _read_reviews(path: Path) -> tuple[pd.DataFrame, np.ndarray, str]:
    users, items, ratings, stamps, lines = [], [], [], [], []
    version = None
    keys: dict[str, str] = {}  # set with the version, from the first record
    for lineno, rec in _records(path, literal=False):
        if version is None:
            version = _detect_reviews(rec, path, lineno)
            keys = REVIEW_KEYS[version]
        item = rec.get(keys["item"])
        if version == "2023" and item in (None, ""):
            item = rec.get("asin")
        values = (rec.get(keys["user"]), item, rec.get(keys["rating"]), rec.get(keys["timestamp"]))
        for role, value in zip(("user", "item", "rating", "timestamp"), values, strict=True):
            if value is None:
                key = f"'{keys[role]}'" + (" (or 'asin')" if role == "item" and version == "2023" else "")
                raise DataError(
                    f"{path}, line {lineno}, key {key}: missing; Amazon {version} review lines "
                    f"need {list(keys.values())} (this line has {sorted(rec)[:20]})"
                )
        users.append(values[0])
        items.append(values[1])
        ratings.append(values[2])
        stamps.append(values[3])
        lines.append(lineno)
    if version is None:
        raise DataError(f"{path}: the file is empty; expected one JSON review per line")
    k = REVIEW_KEYS[version]
    frame = pd.DataFrame(
        {
            k["user"]: pd.Series(users, dtype=object).astype(str),
            k["item"]: pd.Series(items, dtype=object).astype(str),
            k["rating"]: pd.Series(ratings, dtype=object),
            k["timestamp"]: pd.Series(stamps, dtype=object),
        }
    )
    return frame, np.asarray(lines, dtype=np.int64), version


def _text(value, sep: str):
    """Meta values as text: lists (possibly nested) joined, blanks as missing."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [_text(v, sep) for v in value]
        joined = sep.join(p for p in parts if p)
        return joined or None
    if isinstance(value, dict):
        return None
    text = str(value).strip()
    return text or None


def _read_meta(path: Path) -> tuple[pd.DataFrame, list[str]]:
    ids, lines = [], []
    columns: dict[str, list] = {col: [] for col in META_TEXT}
    for lineno, rec in _records(path, literal=True):
        item = rec.get("parent_asin") or rec.get("asin")
        if item in (None, ""):
            raise DataError(
                f"{path}, line {lineno}, key 'parent_asin'/'asin': missing; every meta line needs "
                f"the item id (this line has {sorted(rec)[:20]})"
            )
        ids.append(str(item).strip())
        lines.append(lineno)
        for col, keys in META_TEXT.items():
            value = next((rec[k] for k in keys if k in rec), None)
            columns[col].append(_text(value, LIST_JOIN.get(col, " ")))
    if not ids:
        raise DataError(f"{path}: the file is empty; expected one JSON object per item per line")
    frame = pd.DataFrame({"item_id": ids})
    for col, values in columns.items():
        series = pd.Series(values, dtype=object)
        if col == "title" or series.notna().any():
            frame[col] = series
    notes = []
    dup = frame["item_id"].duplicated().to_numpy()
    if dup.any():
        first_line = lines[int(np.flatnonzero(dup)[0])]
        notes.append(
            f"{path.name}: {int(dup.sum())} repeated item ids (first at line {first_line}); "
            "the first record of each item is kept"
        )
        frame = frame.loc[~dup].reset_index(drop=True)
    return frame, notes


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def load_amazon(reviews: str | os.PathLike, meta: str | os.PathLike | None = None, name: str | None = None) -> Dataset:
    """Load Amazon reviews (2018 or 2023 JSON lines, optionally ``.gz``) and optional item meta.

    Interactions carry the star rating and the review time in seconds. The items table has
    ``title`` and, where the meta has them, ``brand``/``store``, ``main_category``,
    ``categories`` ("A|B|C"), ``description`` and ``features`` (lists joined as text). Items that
    appear only in the meta stay in the catalog; missing titles stay missing and are counted in
    ``Dataset.notes``.

    Parameters
    ----------
    reviews : str or os.PathLike
        The review file (JSON lines, optionally gzipped); the release is detected from the keys
        of its first record.
    meta : str or os.PathLike, optional
        The item meta file of the same release; ``None`` leaves items without titles.
    name : str, optional
        The dataset's name; ``None`` uses the review file's name without ``.json``/``.jsonl``/
        ``.gz``.

    Returns
    -------
    Dataset
        The reviews as rated interactions (timestamps in seconds), with the meta's items.

    Raises
    ------
    DataError
        If a file cannot be read, or a review lacks its user id or item id or has a rating or
        time that is not a number.
    """
    path = Path(reviews)
    frame, lines, version = _read_reviews(path)
    keys = REVIEW_KEYS[version]
    _check_present(frame, keys["user"], path, lines, "user id")
    _check_present(frame, keys["item"], path, lines, "item id")
    ts = _timestamps(frame, keys["timestamp"], path, lines)
    notes = [f"Amazon {version} review format"]
    if version == "2023":
        ts = ts // 1000
        notes.append("timestamps converted from milliseconds to seconds")
    out = pd.DataFrame(
        {
            "user_id": frame[keys["user"]].str.strip().to_numpy(dtype=object),
            "item_id": frame[keys["item"]].str.strip().to_numpy(dtype=object),
            "timestamp": ts,
            "rating": _numeric(frame, keys["rating"], path, lines, "a numeric rating"),
        }
    )
    repeated = int(out.duplicated(["user_id", "item_id", "timestamp"]).sum())
    if repeated:
        notes.append(f"{repeated} reviews repeat an earlier (user, item, timestamp); all are kept")
    items = None
    if meta is not None:
        meta_path = Path(meta)
        items, meta_notes = _read_meta(meta_path)
        notes += meta_notes
        seen = pd.unique(out["item_id"])
        absent = int((~pd.Index(seen).isin(items["item_id"])).sum())
        untitled = int(items["title"].isna().sum())
        only_meta = int((~items["item_id"].isin(seen)).sum())
        if absent or untitled:
            notes.append(
                f"{absent + untitled} items have no title: {untitled} with an empty or missing "
                f"title in {meta_path.name}, {absent} reviewed items absent from it"
            )
        if only_meta:
            notes.append(f"{only_meta} items appear only in {meta_path.name} (kept in the catalog, no interactions)")
    else:
        notes.append("no meta file: items have no titles")
    return Dataset.from_frame(
        out,
        name=name or _stem(path),
        items=items,
        source=f"amazon{version}:{path.name}",
        notes=notes,
    )
