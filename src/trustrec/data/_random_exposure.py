"""Datasets with a random-exposure test set besides the logged (missing-not-at-random) train data.

The generic loader :func:`load_random_exposure` reads two interaction tables, the log and the
random-exposure ratings, and returns a Dataset whose ``extras['random_exposure_test']`` holds the
second; :func:`trustrec.data.split_random_exposure` then makes the ready split. Two published
datasets load this way from a local copy (they are not shipped; their terms ask users to obtain
them from the publisher):

* **Yahoo! R3** (Marlin & Zemel 2009; Yahoo! Webscope): ``ydata-ymusic-rating-study-v1_0-train.txt``
  (user-selected song ratings) and ``...-test.txt`` (ratings of 10 randomly shown songs per test
  user), tab-separated ``user item rating`` without a header, ratings 1-5.
* **KuaiRec** (Gao et al., CIKM 2022): ``big_matrix.csv`` (the platform's log) and
  ``small_matrix.csv`` (1,411 users x 3,327 videos, almost fully exposed), with ``watch_ratio`` as
  the rating (a positive is commonly ``watch_ratio >= 2``: pass ``positive_threshold=2`` to the
  split). The small matrix is a fully-exposed test set, so URE there is exact.

Test rows whose user or item never occurs in the train log raise an error by default
(``unknown='error'``); ``unknown='drop'`` removes them and says how many in the notes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec.data._dataset import Dataset, Interactions
from trustrec.errors import ConfigError, DataError

__all__ = ["KUAIREC_FILES", "YAHOO_R3_FILES", "load_kuairec", "load_random_exposure", "load_yahoo_r3"]

YAHOO_R3_FILES = ("ydata-ymusic-rating-study-v1_0-train.txt", "ydata-ymusic-rating-study-v1_0-test.txt")
KUAIREC_FILES = ("big_matrix.csv", "small_matrix.csv")


def _attach_test(
    train: Dataset, test: pd.DataFrame, *, test_path, unknown: str, test_name: str, notes: list[str]
) -> Dataset:
    if unknown not in ("error", "drop"):
        raise ConfigError(f"unknown must be 'error' or 'drop', got {unknown!r}")
    users = train.user_index(test["user_id"].astype(str).to_numpy(), missing="ignore")
    items = train.item_index(test["item_id"].astype(str).to_numpy(), missing="ignore")
    bad = (users < 0) | (items < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = (
            f"{int(bad.sum())} rows of the random-exposure test set ({test_path}) name users or items "
            f"that the train log does not have (first: user {test['user_id'].iloc[row]!r}, item "
            f"{test['item_id'].iloc[row]!r})"
        )
        if unknown == "error":
            raise DataError(f"{what}; no model could score them. Pass unknown='drop' to remove those rows")
        notes.append(f"dropped {what}")
    keep = ~bad
    rating = None
    if "rating" in test.columns:
        rating = pd.to_numeric(test["rating"], errors="coerce").to_numpy(np.float64)[keep]
        if np.isnan(rating).any():
            raise DataError(f"{test_path}: {int(np.isnan(rating).sum())} test ratings are missing or not numbers")
    ts = (
        pd.to_numeric(test["timestamp"], errors="coerce").fillna(0).round().to_numpy(np.int64)[keep]
        if "timestamp" in test.columns
        else np.zeros(int(keep.sum()), np.int64)
    )
    inter = Interactions(users[keep], items[keep], ts, rating)
    notes.append(
        f"random-exposure test set: {len(inter)} ratings of {len(np.unique(inter.user))} users ({Path(test_path).name})"
    )
    return Dataset(
        train.name,
        train.interactions,
        train.items,
        train.users,
        notes=tuple(train.notes) + tuple(notes),
        source=train.source,
        extras={**dict(train.extras), test_name: inter},
    )


def load_random_exposure(
    train: str | os.PathLike,
    test: str | os.PathLike,
    *,
    name: str | None = None,
    columns: Mapping[str, str | None] | None = None,
    sep: str | None = None,
    items: str | os.PathLike | pd.DataFrame | None = None,
    users: str | os.PathLike | pd.DataFrame | None = None,
    unknown: str = "error",
    test_name: str = "random_exposure_test",
) -> Dataset:
    """Load a logged interaction table (``train``) and a random-exposure table (``test``).

    Both are CSV/TSV/parquet with the same columns (``columns`` maps roles as in
    ``load_tabular``). The test rows go to ``extras[test_name]``, in the train log's index
    space; test rows without a timestamp column get timestamp 0.

    Parameters
    ----------
    train : str or os.PathLike
        The logged (missing-not-at-random) interaction table.
    test : str or os.PathLike
        The random-exposure table.
    name : str, optional
        The dataset's name; ``None`` uses the train file's name.
    columns : Mapping[str, str or None], optional
        Column names by role (``user``, ``item``, ``timestamp``, ``rating``), as in
        :func:`load_tabular`.
    sep : str, optional
        The delimiter of text tables; ``None`` sniffs it.
    items, users : str, os.PathLike or pandas.DataFrame, optional
        Item and user tables, as in :func:`load_tabular`.
    unknown : {"error", "drop"}, default "error"
        What to do with test rows whose user or item is not in the train log.
    test_name : str, default "random_exposure_test"
        The key of the test set in ``Dataset.extras``.

    Returns
    -------
    Dataset
        The train log, with the test set as ``extras[test_name]``.

    Raises
    ------
    ConfigError
        If ``unknown`` is neither ``"error"`` nor ``"drop"``.
    DataError
        If a table cannot be read, a test rating is missing or not a number, or (with
        ``unknown="error"``) a test row names a user or item absent from the train log.
    """
    from trustrec.data._tabular import _read_any_table, _resolve_roles, load_tabular

    ds = load_tabular(train, columns=columns, sep=sep, items=items, users=users, name=name)
    frame, _ = _read_any_table(Path(test), sep)
    roles = _resolve_roles(list(frame.columns), columns, Path(test))
    test_frame = pd.DataFrame({"user_id": frame[roles["user"]], "item_id": frame[roles["item"]]})
    for role in ("rating", "timestamp"):
        if roles[role] is not None:
            test_frame[role] = frame[roles[role]]
    return _attach_test(ds, test_frame, test_path=Path(test).name, unknown=unknown, test_name=test_name, notes=[])


def _read_headerless(path: Path, names: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, sep="\t", header=None, names=names, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as tab-separated 'user item rating' lines ({exc})") from exc
    missing = frame.isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{path}, line {row + 1}: expected 3 tab-separated values (user, item, rating)")
    return frame


def load_yahoo_r3(path: str | os.PathLike, *, name: str = "yahoo-r3", unknown: str = "error") -> Dataset:
    """Yahoo! R3 from a local folder holding the two ``ydata-ymusic-rating-study-v1_0-*.txt`` files.

    Yahoo! R3 has no timestamps: every rating has timestamp 0.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding the train and test files.
    name : str, default "yahoo-r3"
        The dataset's name.
    unknown : {"error", "drop"}, default "error"
        What to do with test rows whose user or item is not in the train log.

    Returns
    -------
    Dataset
        The user-selected ratings, with the random-exposure ratings as
        ``extras['random_exposure_test']``.

    Raises
    ------
    ConfigError
        If ``unknown`` is neither ``"error"`` nor ``"drop"``.
    DataError
        If a file is missing or cannot be read, a rating is not a number, or (with
        ``unknown="error"``) a test row names a user or item absent from the train log.
    """
    folder = Path(path)
    train_path, test_path = (folder / f for f in YAHOO_R3_FILES)
    train = _read_headerless(train_path, ["user_id", "item_id", "rating"])
    test = _read_headerless(test_path, ["user_id", "item_id", "rating"])
    rating = pd.to_numeric(train["rating"], errors="coerce")
    if rating.isna().any():
        row = int(np.flatnonzero(rating.isna().to_numpy())[0])
        raise DataError(f"{train_path}, line {row + 1}: rating {train['rating'].iloc[row]!r} is not a number")
    train = train.assign(rating=rating, timestamp=0)
    ds = Dataset.from_frame(
        train,
        name=name,
        source=f"yahoo-r3:{folder.name}",
        notes=["no timestamps in Yahoo! R3: every rating has timestamp 0"],
    )
    return _attach_test(ds, test, test_path=test_path.name, unknown=unknown, test_name="random_exposure_test", notes=[])


def load_kuairec(path: str | os.PathLike, *, name: str = "kuairec", unknown: str = "error") -> Dataset:
    """KuaiRec from a local folder holding ``big_matrix.csv`` and ``small_matrix.csv``.

    The files may also be in a ``data/`` folder inside it; ``watch_ratio`` is the rating,
    ``timestamp`` the time.

    Parameters
    ----------
    path : str or os.PathLike
        The KuaiRec folder.
    name : str, default "kuairec"
        The dataset's name.
    unknown : {"error", "drop"}, default "error"
        What to do with small-matrix rows whose user or item is not in the big matrix.

    Returns
    -------
    Dataset
        The big matrix as interactions, with the small matrix as
        ``extras['random_exposure_test']``.

    Raises
    ------
    ConfigError
        If ``unknown`` is neither ``"error"`` nor ``"drop"``.
    DataError
        If a file is missing or cannot be read, or (with ``unknown="error"``) a small-matrix row
        names a user or item absent from the big matrix.
    """
    folder = Path(path)
    if not (folder / KUAIREC_FILES[0]).is_file() and (folder / "data" / KUAIREC_FILES[0]).is_file():
        folder = folder / "data"
    columns = {"user": "user_id", "item": "video_id", "rating": "watch_ratio", "timestamp": None}
    for f in KUAIREC_FILES:
        if not (folder / f).is_file():
            raise DataError(f"{folder / f}: file not found; expected KuaiRec's {' and '.join(KUAIREC_FILES)}")
    ds = load_random_exposure(
        folder / KUAIREC_FILES[0], folder / KUAIREC_FILES[1], name=name, columns=columns, sep=",", unknown=unknown
    )
    return ds
