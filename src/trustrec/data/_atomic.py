"""RecBole atomic files (``.inter``, ``.item``, ``.user``): tab-separated, typed headers.

A header field is ``name:type`` with type one of token, token_seq, float, float_seq.
Sequence-style ``.inter`` files (``item_id_list:token_seq`` + ``item_id:token``, as LLMRank and
RecBole's benchmark files use) are expanded into one interaction per list element.

Which files are read (one rule, and the choice is printed in ``Dataset.notes``):

- Given a ``.inter`` file, that file. Its tables are ``STEM.item`` and ``STEM.user`` next to it,
  where STEM is the file name without ``.inter`` (dots inside a name are kept: ``ml.v2.inter``
  pairs with ``ml.v2.item``). For a RecBole split file ``BASE.train|valid|test.inter`` without
  its own tables, ``BASE.item`` / ``BASE.user`` are used.
- Given a folder: ``FOLDER.inter`` when it exists (other ``.inter`` files are ignored, and named
  in a note); else the only ``.inter`` file; else, for the split files of one sequence dataset
  (``BASE.test.inter`` with ``item_id_list``, plus ``BASE.train/valid.inter``), the test file,
  whose histories extend the others (the LLMRank layout). Any other set of ``.inter`` files is
  refused with the list of choices: pass the path of the one to load.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec._safeio import check_path_text, open_regular
from trustrec.data._dataset import SEQUENCE_ORDER_TIME, Dataset
from trustrec.data._io import numeric_column, read_delimited, read_text, require_nonempty
from trustrec.errors import DataError

__all__ = ["load_atomic", "read_atomic_file"]

ATOMIC_TYPES = {"token", "token_seq", "float", "float_seq"}
TITLE_COLUMNS = ("title", "movie_title", "name", "item_name", "book_title")


def read_atomic_file(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one atomic file; returns the frame (column names without types) and the types.

    ``float`` columns are parsed as numbers (missing values allowed); the others are kept as
    read.

    Parameters
    ----------
    path : str or pathlib.Path
        A tab-separated atomic file (``.inter``, ``.item`` or ``.user``) with a typed header.

    Returns
    -------
    frame : pandas.DataFrame
        The data rows, with the header's names without their types.
    types : dict of str to str
        The type of each column (``token``, ``token_seq``, ``float`` or ``float_seq``).

    Raises
    ------
    DataError
        If the file is empty or has no data rows, the header is not tab-separated, a header
        field has no type or an unknown one, a column appears twice, or a row or ``float``
        value cannot be read.
    """
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
            raise DataError(
                f"{path}, line 1, field {i}: unknown type {typ!r} in {f!r}; expected one of {sorted(ATOMIC_TYPES)}"
            )
        if name in types:
            raise DataError(f"{path}, line 1: column {name!r} appears twice in the header")
        names.append(name)
        types[name] = typ
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        raise DataError(f"{path}: the file has a header but no data rows")
    frame = read_delimited(path, sep="\t", header=False, names=names, quoting=csv.QUOTE_NONE, text=body, line_offset=1)
    for col, typ in types.items():
        if typ == "float":
            frame[col] = numeric_column(frame, col, path, allow_missing=True)
    return frame, types


def _expand_sequences(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Turn rows of (user, item_id_list, item_id) into one row per interaction, order as time."""
    notes = []
    lists = frame["item_id_list"].fillna("").str.split()
    if "item_id" in frame.columns:
        lists = [[*lst, target] for lst, target in zip(lists, frame["item_id"])]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(frame))
    users = frame["user_id"].to_numpy()
    # Several rows of one user are prefixes of one sequence: keep the longest.
    keep = pd.Series(lengths).groupby(users).idxmax().to_numpy()
    if len(keep) < len(frame):
        notes.append(f"{path.name}: {len(frame) - len(keep)} shorter prefix rows of the same users dropped")
    keep = np.sort(keep)
    rows = [lists[i] for i in keep]
    out = pd.DataFrame(
        {
            "user_id": np.repeat(users[keep], lengths[keep]),
            "item_id": np.concatenate([np.asarray(r, dtype=object) for r in rows]) if rows else [],
        }
    )
    out["timestamp"] = np.arange(len(out))
    notes.append(SEQUENCE_ORDER_TIME)
    return out, notes


_SPLIT_PARTS = (".train", ".valid", ".test")


def _stem(inter: Path) -> str:
    return inter.name.removesuffix(".inter")


def _split_base(stem: str) -> str | None:
    """``BASE`` of a RecBole split file stem ``BASE.train|valid|test``, else None."""
    for part in _SPLIT_PARTS:
        if stem.endswith(part) and len(stem) > len(part):
            return stem[: -len(part)]
    return None


def _is_sequence_file(path: Path) -> bool:
    with open_regular(path, what="a RecBole .inter file") as fh:
        header = fh.readline(1 << 16).decode("utf-8", "replace")
    return any(f.split(":", 1)[0].strip() == "item_id_list" for f in header.split("\t"))


def _choose_inter(folder: Path) -> tuple[Path | None, list[str]]:
    """The ``.inter`` file of a folder by the module's rule, and the notes saying what was chosen."""
    inters = sorted(p for p in folder.glob("*.inter"))
    if not inters:
        return None, []
    if len(inters) == 1:
        return inters[0], []
    names = [p.name for p in inters]
    own = folder / f"{folder.name}.inter"
    if own in inters:
        others = [n for n in names if n != own.name]
        return own, [f"read {own.name} (named like its folder); other .inter files ignored: {others}"]
    bases = {_split_base(_stem(p)) for p in inters}
    if len(bases) == 1 and None not in bases:
        base = bases.pop()
        test = folder / f"{base}.test.inter"
        if test in inters and _is_sequence_file(test):
            others = [n for n in names if n != test.name]
            return test, [
                (
                    f"read {test.name}: in a folder of split sequence files its histories extend "
                    f"the others ({others}, ignored)"
                )
            ]
    raise DataError(
        f"{folder}: {len(inters)} .inter files {names} and none named {folder.name}.inter; trustrec "
        "reads one interaction file: pass the path of the one to load (e.g. "
        f"{folder / names[0]})"
    )


def _side_tables(inter: Path) -> tuple[Path | None, Path | None, str]:
    """The ``.item`` and ``.user`` files that go with a ``.inter`` file, and the dataset name."""
    stem = _stem(inter)
    stems = [stem]
    base = _split_base(stem)
    if base is not None:
        stems.append(base)
    found = {}
    for ext in ("item", "user"):
        found[ext] = next((inter.parent / f"{s}.{ext}" for s in stems if (inter.parent / f"{s}.{ext}").exists()), None)
    return found["item"], found["user"], base or stem


def load_atomic(path: str | Path, name: str | None = None) -> Dataset:
    """Load a RecBole atomic dataset from a folder (or the path of its ``.inter`` file).

    Which files are read follows the rule of this module's docstring, and notes on the choice
    go to ``Dataset.notes``. Sequence files (``item_id_list``) are expanded into one interaction
    per list element, their order used as time.

    Parameters
    ----------
    path : str or pathlib.Path
        A folder holding ``.inter`` files, or one ``.inter`` file.
    name : str, optional
        The dataset's name; ``None`` uses the ``.inter`` file's stem (without a
        ``.train``/``.valid``/``.test`` part).

    Returns
    -------
    Dataset
        The dataset, with ratings when the ``.inter`` file has a ``rating`` column and
        timestamps when it has a ``timestamp`` column.

    Raises
    ------
    DataError
        If a folder has no ``.inter`` file or several without a rule to choose one, a file
        cannot be read, or a required column (``user_id``, ``item_id``) is missing.
    """
    path = Path(path)
    check_path_text(path)
    notes: list[str] = []
    if path.is_dir():
        folder = path
        inter_path, notes = _choose_inter(folder)
        if inter_path is None:
            raise DataError(f"{folder}: no '.inter' file found; an atomic dataset needs NAME.inter")
    else:
        folder, inter_path = path.parent, path
    item_path, user_path, stem = _side_tables(inter_path)
    name = name or stem
    inter, types = read_atomic_file(inter_path)
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
        inter,
        name=name,
        items=items,
        users=users,
        timestamp_col="timestamp" if "timestamp" in inter.columns else None,
        rating_col=rating_col,
        source=f"atomic:{folder.name}",
        notes=notes,
    )
