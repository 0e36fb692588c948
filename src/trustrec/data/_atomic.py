"""RecBole atomic files (``.inter``, ``.item``, ``.user``): tab-separated, typed headers.

A header field is ``name:type`` with type one of token, token_seq, float, float_seq.
Sequence-style ``.inter`` files (``item_id_list:token_seq`` + ``item_id:token``, as LLMRank and
RecBole's benchmark files use) are expanded into one interaction per list element.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data._dataset import Dataset
from trustrec.data._io import numeric_column, read_delimited, read_text, require_nonempty
from trustrec.errors import DataError

__all__ = ["read_atomic_file", "load_atomic"]

ATOMIC_TYPES = {"token", "token_seq", "float", "float_seq"}
TITLE_COLUMNS = ("title", "movie_title", "name", "item_name", "book_title")


def read_atomic_file(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one atomic file; returns the frame (column names without types) and the types."""
    path = Path(path)
    text, _ = read_text(path)
    require_nonempty(path, text)
    header_line = text.split("\n", 1)[0].rstrip("\r")
    fields = header_line.split("\t")
    if len(fields) == 1 and ("," in header_line or " " in header_line.strip()):
        raise DataError(
            f"{path}, line 1: the header {header_line[:80]!r} has no tab; atomic files are "
            "tab-separated (is this a CSV? load it with format='csv' and a column mapping)"
        )
    names, types = [], {}
    for i, f in enumerate(fields, start=1):
        if ":" not in f:
            raise DataError(
                f"{path}, line 1, field {i}: header {f!r} has no type; atomic headers look like "
                "'user_id:token' (types: token, token_seq, float, float_seq)"
            )
        name, typ = f.rsplit(":", 1)
        name, typ = name.strip(), typ.strip()
        if typ not in ATOMIC_TYPES:
            raise DataError(f"{path}, line 1, field {i}: unknown type {typ!r} in {f!r}; "
                            f"expected one of {sorted(ATOMIC_TYPES)}")
        if name in types:
            raise DataError(f"{path}, line 1: column {name!r} appears twice in the header")
        names.append(name)
        types[name] = typ
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        raise DataError(f"{path}: the file has a header but no data rows")
    frame = read_delimited(path, sep="\t", header=False, names=names, quoting=csv.QUOTE_NONE,
                           text=body, line_offset=1)
    for col, typ in types.items():
        if typ == "float":
            frame[col] = numeric_column(frame, col, path, allow_missing=True)
    return frame, types


def _expand_sequences(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Turn rows of (user, item_id_list, item_id) into one row per interaction, order as time."""
    notes = []
    lists = frame["item_id_list"].fillna("").str.split()
    if "item_id" in frame.columns:
        lists = [lst + [target] for lst, target in zip(lists, frame["item_id"])]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(frame))
    users = frame["user_id"].to_numpy()
    # Several rows of one user are prefixes of one sequence: keep the longest.
    keep = pd.Series(lengths).groupby(users).idxmax().to_numpy()
    if len(keep) < len(frame):
        notes.append(f"{path.name}: {len(frame) - len(keep)} shorter prefix rows of the same users dropped")
    keep = np.sort(keep)
    rows = [lists[i] for i in keep]
    out = pd.DataFrame({
        "user_id": np.repeat(users[keep], lengths[keep]),
        "item_id": np.concatenate([np.asarray(r, dtype=object) for r in rows]) if rows else [],
    })
    out["timestamp"] = np.arange(len(out))
    notes.append("sequence file: interaction order within each user's list is used as time")
    return out, notes


def _find_files(folder: Path) -> tuple[Path | None, Path | None, Path | None]:
    inters = sorted(folder.glob("*.inter"))
    if not inters:
        return None, None, None
    stem = folder.name
    inter = next((p for p in inters if p.name == f"{stem}.inter"), None)
    if inter is None:
        plain = [p for p in inters if p.name.count(".") == 1]
        tests = [p for p in inters if p.name.endswith(".test.inter")]
        inter = plain[0] if plain else (tests[0] if tests else inters[0])
    prefix = inter.name.split(".")[0]
    item = folder / f"{prefix}.item"
    user = folder / f"{prefix}.user"
    return inter, item if item.exists() else None, user if user.exists() else None


def load_atomic(path: str | Path, name: str | None = None) -> Dataset:
    """Load a RecBole atomic dataset from a folder (or the path of its ``.inter`` file)."""
    path = Path(path)
    if path.is_file():
        folder, inter_path = path.parent, path
        prefix = path.name.split(".")[0]
        item_path = folder / f"{prefix}.item"
        user_path = folder / f"{prefix}.user"
        item_path = item_path if item_path.exists() else None
        user_path = user_path if user_path.exists() else None
    else:
        folder = path
        inter_path, item_path, user_path = _find_files(folder)
        if inter_path is None:
            raise DataError(f"{folder}: no '.inter' file found; an atomic dataset needs NAME.inter")
    name = name or inter_path.name.split(".")[0]
    inter, types = read_atomic_file(inter_path)
    notes: list[str] = []
    if "item_id_list" in inter.columns:
        if "user_id" not in inter.columns:
            raise DataError(f"{inter_path}: a sequence file needs a 'user_id' column")
        inter, seq_notes = _expand_sequences(inter, inter_path)
        notes += seq_notes
    for col in ("user_id", "item_id"):
        if col not in inter.columns:
            raise DataError(f"{inter_path}: missing required column '{col}' (header has {list(types)})")
    items = users = None
    if item_path is not None:
        items, _ = read_atomic_file(item_path)
        if "item_id" not in items.columns:
            raise DataError(f"{item_path}: missing required column 'item_id'")
        title = next((c for c in TITLE_COLUMNS if c in items.columns), None)
        if title and title != "title":
            items = items.rename(columns={title: "title"})
    if user_path is not None:
        users, _ = read_atomic_file(user_path)
        if "user_id" not in users.columns:
            raise DataError(f"{user_path}: missing required column 'user_id'")
    rating_col = "rating" if "rating" in inter.columns else None
    return Dataset.from_frame(
        inter, name=name, items=items, users=users,
        timestamp_col="timestamp" if "timestamp" in inter.columns else None,
        rating_col=rating_col, source=f"atomic:{folder.name}", notes=notes,
    )
