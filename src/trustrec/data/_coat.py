"""Coat shopping (Schnabel et al., ICML 2016): self-selected train ratings, random-exposure test.

The folder holds dense whitespace-separated matrices (users x items, 0 = unobserved):
``train.ascii`` (missing-not-at-random ratings), ``test.ascii`` (ratings of randomly shown items),
``propensities.ascii`` (the authors' estimates); and under ``user_item_features/`` (or the folder
itself) binary one-hot matrices ``user_features.ascii`` / ``item_features.ascii`` whose columns are
named by ``*_features_map.txt`` lines like ``gender:men``.

Users and items have no ids in the source: the row (column) number, from 0, is the id.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data._dataset import Dataset, IndexedArray
from trustrec.data._tabular import _read_file_text
from trustrec.errors import ConfigError, DataError

__all__ = ["load_coat"]


def _read_matrix(path: Path, what: str) -> np.ndarray:
    """A dense whitespace-separated numeric matrix; errors name the line and the column."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected {what}")
    text = _read_file_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected {what}")
    lines = pd.Series(text.split("\n"), dtype=object)
    counts = lines.str.count(r"\S+").to_numpy(np.int64)
    keep = np.flatnonzero(counts > 0)
    counts = counts[keep]
    width = counts[0]
    ragged = counts != width
    if ragged.any():
        row = int(np.flatnonzero(ragged)[0])
        raise DataError(
            f"{path}, line {keep[row] + 1}: {counts[row]} values, but line {keep[0] + 1} has "
            f"{width}; every row of {what} must have the same number of columns"
        )
    tokens = pd.Series(text.split(), dtype=object)
    values = pd.to_numeric(tokens, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        row, col = divmod(pos, width)
        raise DataError(
            f"{path}, line {keep[row] + 1}, column {col + 1}: {tokens.iloc[pos]!r} is not a finite "
            f"number ({int(bad.sum())} such values); expected {what}"
        )
    return values.reshape(len(keep), width)


def _check_shape(
    path: Path, matrix: np.ndarray, shape: tuple[int | None, int | None], what: str, reference: str
) -> None:
    rows, cols = shape
    if (rows is not None and matrix.shape[0] != rows) or (cols is not None and matrix.shape[1] != cols):
        want = f"{rows if rows is not None else 'any'} x {cols if cols is not None else 'any'}"
        raise DataError(
            f"{path}: {what} is {matrix.shape[0]} x {matrix.shape[1]}, expected {want} "
            f"to match {reference}; the files do not belong together"
        )


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / "user_item_features" / name, folder / name):
        if candidate.is_file():
            return candidate
    return None


def _decode_features(matrix_path: Path, map_path: Path, n_rows: int, kind: str) -> pd.DataFrame:
    """One column per feature group ('gender' -> 'men'/'women') from a one-hot matrix.

    Names without ':' are single yes/no features (boolean columns). A row with no active column
    in a group gets a missing value; several active columns are joined with '|'.
    """
    features = _read_matrix(matrix_path, f"a binary {kind}-feature matrix")
    names = [s.strip() for s in _read_file_text(map_path).split("\n") if s.strip()]
    _check_shape(
        matrix_path,
        features,
        (n_rows, None),
        f"the {kind}-feature matrix",
        f"the {n_rows} {kind}s of train.ascii",
    )
    if features.shape[1] != len(names):
        raise DataError(
            f"{matrix_path}: {features.shape[1]} feature columns but {map_path.name} names "
            f"{len(names)}; the files do not belong together"
        )
    binary = np.isin(features, (0.0, 1.0))
    if not binary.all():
        row, col = (int(i[0]) for i in np.nonzero(~binary))
        raise DataError(
            f"{matrix_path}, line {row + 1}, column {col + 1} ({names[col]!r}): value "
            f"{features[row, col]:g}, expected 0 or 1 (one-hot features)"
        )
    active = features.astype(bool)
    groups: dict[str, list[int]] = {}
    for j, label in enumerate(names):
        groups.setdefault(label.split(":", 1)[0].strip(), []).append(j)
    table = pd.DataFrame({f"{kind}_id": np.arange(n_rows).astype(str).astype(object)})
    for group, cols in groups.items():
        if len(cols) == 1 and ":" not in names[cols[0]]:
            table[group] = active[:, cols[0]]
            continue
        joined = np.full(n_rows, "", dtype=object)
        for j in cols:  # a loop over the group's columns, vectorised over rows
            value = names[j].split(":", 1)[1].strip() if ":" in names[j] else names[j]
            joined = np.where(active[:, j], joined + value + "|", joined)
        col = pd.Series(joined, dtype=object).str.rstrip("|")
        table[group] = col.where(col != "", None)
    return table


def _frame(matrix: np.ndarray) -> pd.DataFrame:
    users, items = np.nonzero(matrix)
    return pd.DataFrame(
        {
            "user_id": users.astype(str).astype(object),
            "item_id": items.astype(str).astype(object),
            "timestamp": np.zeros(len(users), dtype=np.int64),
            "rating": matrix[users, items],
        }
    )


def load_coat(path: str | os.PathLike, name: str = "coat", positive_threshold: float | None = None) -> Dataset:
    """Load the Coat folder: train ratings as interactions, the random-exposure test as an extra.

    ``extras['random_exposure_test']`` holds the test ratings (all of them, whatever
    ``positive_threshold``: unbiased evaluation needs the negatives too) and
    ``extras['propensities']`` the propensity matrix (``IndexedArray`` over user x item).
    With ``positive_threshold``, only train ratings >= it are kept as interactions. Users and items
    get one column per feature group (``gender``, ``age``, ``jackettype`` ...). Coat has no
    timestamps: every interaction has timestamp 0.

    Parameters
    ----------
    path : str or os.PathLike
        The Coat folder (``train.ascii``; optionally ``test.ascii``, ``propensities.ascii`` and
        the feature files).
    name : str, default "coat"
        The dataset's name.
    positive_threshold : float, optional
        Keep only train ratings at least this high; ``None`` keeps every train rating.

    Returns
    -------
    Dataset
        The train ratings as interactions, with the test ratings and propensities as extras
        where their files exist.

    Raises
    ------
    ConfigError
        If ``positive_threshold`` is not a number.
    DataError
        If ``path`` is not a folder, a matrix cannot be read or has another shape than
        ``train.ascii``, or a feature matrix has no ``*_features_map.txt`` (or does not match it).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; expected the Coat folder with train.ascii")
    if positive_threshold is not None:
        try:
            positive_threshold = float(positive_threshold)
        except (TypeError, ValueError):
            raise ConfigError(
                f"load_coat: positive_threshold must be a number (e.g. 4), got {positive_threshold!r}"
            ) from None
    train_path = folder / "train.ascii"
    train = _read_matrix(train_path, "a users x items rating matrix (0 = unobserved)")
    shape = train.shape
    ref = f"train.ascii ({shape[0]} users x {shape[1]} items)"
    notes = ["no timestamps in Coat: every interaction has timestamp 0 (order carries no meaning)"]
    extras: dict = {}
    test_path = folder / "test.ascii"
    if test_path.is_file():
        test = _read_matrix(test_path, "a users x items rating matrix (0 = unobserved)")
        _check_shape(test_path, test, shape, "the test matrix", ref)
        extras["random_exposure_test"] = _frame(test)
    else:
        notes.append("test.ascii not found: no random-exposure test set")
    prop_path = folder / "propensities.ascii"
    if prop_path.is_file():
        prop = _read_matrix(prop_path, "a users x items propensity matrix")
        _check_shape(prop_path, prop, shape, "the propensity matrix", ref)
        extras["propensities"] = IndexedArray(prop, ("user", "item"))
    else:
        notes.append("propensities.ascii not found: no propensities")
    users = pd.DataFrame({"user_id": np.arange(shape[0]).astype(str).astype(object)})
    items = pd.DataFrame({"item_id": np.arange(shape[1]).astype(str).astype(object)})
    for kind, n in (("user", shape[0]), ("item", shape[1])):
        matrix_path = _find(folder, f"{kind}_features.ascii")
        map_path = _find(folder, f"{kind}_features_map.txt")
        if matrix_path is None:
            notes.append(f"{kind}_features.ascii not found: {kind}s have no attributes")
            continue
        if map_path is None:
            raise DataError(f"{matrix_path}: found, but not {kind}_features_map.txt that names its columns")
        table = _decode_features(matrix_path, map_path, n, kind)
        if kind == "user":
            users = table
        else:
            items = table
    inter = _frame(train)
    if positive_threshold is not None:
        keep = inter["rating"].to_numpy() >= positive_threshold
        notes.append(
            f"positive_threshold={positive_threshold:g}: kept {int(keep.sum())} of {len(inter)} "
            f"train ratings (those >= {positive_threshold:g}); the random-exposure test keeps all "
            "ratings"
        )
        inter = inter.loc[keep].reset_index(drop=True)
    return Dataset.from_frame(
        inter,
        name=name,
        items=items,
        users=users,
        source=f"coat:{folder.name}",
        notes=notes,
        extras=extras,
    )
