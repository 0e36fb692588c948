"""MovieLens in its raw GroupLens layouts.

- ml-100k: ``u.data`` (tab: user, item, rating, timestamp), ``u.item`` (pipe-separated, latin-1:
  id|title|release date|video release date|IMDb URL|genre flags), ``u.genre`` (name|index),
  ``u.user`` (id|age|gender|occupation|zip).
- ml-1m / ml-10m: ``ratings.dat`` (UserID::MovieID::Rating::Timestamp), ``movies.dat``
  (MovieID::Title::Genres), ``users.dat`` (UserID::Gender::Age::Occupation::Zip-code, ml-1m).
- ml-20m / ml-latest: ``ratings.csv`` and ``movies.csv`` with headers (read by ``load_tabular``).
- A folder of RecBole atomic files (``*.inter``) is handed to ``load_atomic``.

Every error names the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trustrec._safeio import check_path_text
from trustrec.data._atomic import load_atomic
from trustrec.data._dataset import Dataset
from trustrec.data._tabular import (
    _check_present,
    _numeric,
    _read_file_text,
    _sep_label,
    _side_table,
    _tabular_dataset,
    _timestamps,
    _where,
)
from trustrec.errors import DataError

__all__ = ["load_movielens"]

# The 19 genres of ml-100k, in flag order (the content of its u.genre).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_UNIT_SEP = "\x1f"


def _read_fields(path: Path, sep: str, names: list[str], spec: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A header-less file of ``len(names)`` fields per line, no quoting, all values as strings.

    Returns the frame and the file line of each row. Blank lines are skipped; a line with another
    number of fields raises a DataError that names the line and what was expected.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected lines of {spec}")
    text = _read_file_text(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; expected lines of {spec}")
    body = text.lstrip("\n\t\r ")
    body = text[text.rfind("\n", 0, len(text) - len(body)) + 1 :]  # keep the first line whole
    leading = text.count("\n", 0, len(text) - len(body))
    first = body.split("\n", 1)[0]
    expected = len(names)
    found = first.count(sep) + 1
    if found != expected:
        _field_count_error(path, leading + 1, first, sep, expected, found, spec)
    csep = sep
    if len(sep) > 1:
        csep = _UNIT_SEP
        body = body.replace(sep, csep)
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            sep=csep,
            header=None,
            dtype=str,
            quoting=csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match is None:
            raise DataError(
                f"{path}: cannot parse as {_sep_label(sep)}-separated fields ({spec}): {str(exc).strip()}"
            ) from exc
        line_no = int(match.group(2)) + leading
        bad_line = body.split("\n")[int(match.group(2)) - 1].replace(csep, sep)
        _field_count_error(path, line_no, bad_line, sep, expected, int(match.group(3)), spec)
    frame.columns = names
    lines = np.arange(1, len(frame) + 1, dtype=np.int64) + leading
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    short = frame[names[-1]].isna().to_numpy()
    if short.any():
        row = int(np.flatnonzero(short)[0])
        line = text.split("\n")[lines[row] - 1]
        if line.count(sep) + 1 == expected:
            raise DataError(
                f"{path}, line {lines[row]}, field '{names[-1]}': the value is empty "
                f"({int(short.sum())} such lines); expected {spec}"
            )
        _field_count_error(path, lines[row], line, sep, expected, line.count(sep) + 1, spec)
    return frame, lines


def _field_count_error(path, line_no, line, sep, expected, found, spec):
    hint = ""
    if found == 1:
        other = {s: line.count(s) for s in ("\t", ",", ";", "|", "::") if s != sep}
        best = max(other, key=other.get)
        if other[best]:
            hint = f"; the line contains {_sep_label(best)}s: is this the right file or delimiter?"
    raise DataError(
        f"{path}, line {line_no}: expected {expected} {_sep_label(sep)}-separated fields "
        f"({spec}), found {found} in {line[:80]!r}{hint}"
    )


def _year_from_title(titles: pd.Series) -> pd.Series:
    return pd.to_numeric(titles.str.extract(_YEAR, expand=False), errors="coerce").astype("Int64")


def _genre_names(folder: Path, n_flags: int, item_path: Path) -> list[str]:
    genre_path = folder / "u.genre"
    if genre_path.is_file():
        frame, lines = _read_fields(genre_path, "|", ["genre", "index"], "name|index")
        index = _numeric(frame, "index", genre_path, lines, "a genre index").astype(np.int64)
        order = np.argsort(index, kind="stable")
        if not np.array_equal(index[order], np.arange(len(index))):
            raise DataError(f"{genre_path}: genre indices are {sorted(index.tolist())}; expected 0..{len(index) - 1}")
        names = frame["genre"].str.strip().to_numpy()[order].tolist()
        if len(names) != n_flags:
            raise DataError(
                f"{genre_path}: lists {len(names)} genres but {item_path} has {n_flags} genre "
                "flags per line; the two files do not belong together"
            )
        return names
    if n_flags != len(ML100K_GENRES):
        raise DataError(
            f"{item_path}: {n_flags} genre flags per line and no u.genre to name them; the "
            f"standard ml-100k layout has {len(ML100K_GENRES)}: add u.genre"
        )
    return list(ML100K_GENRES)


def _flags_to_genres(
    frame: pd.DataFrame, flag_cols: list[str], genres: list[str], path: Path, lines: np.ndarray
) -> pd.Series:
    """'Action|Comedy' from 0/1 flag columns, vectorised over rows (a loop over the genres)."""
    n = len(frame)
    joined = np.full(n, "", dtype=object)
    for col, genre in zip(flag_cols, genres, strict=True):
        raw = frame[col].str.strip()
        ok = raw.isin(["0", "1"]).to_numpy()
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"{_where(path, lines, row)}, column '{col}' (genre {genre!r}): expected a 0/1 "
                f"flag, got {frame[col].iloc[row]!r}"
            )
        on = (raw == "1").to_numpy()
        joined = np.where(on, joined + genre + "|", joined)
    out = pd.Series(joined, dtype=object).str.rstrip("|")
    return out.where(out != "", pd.NA)


def _load_100k(folder: Path, name: str) -> Dataset:
    data_path = folder / "u.data"
    inter, lines = _read_fields(
        data_path,
        "\t",
        ["user_id", "item_id", "rating", "timestamp"],
        "user<TAB>item<TAB>rating<TAB>timestamp",
    )
    frame = _ratings_frame(inter, data_path, lines)
    notes: list[str] = []
    items = users = None
    item_path = folder / "u.item"
    if item_path.is_file():
        text_first = _read_file_text(item_path).split("\n", 1)[0]
        n_fields = text_first.count("|") + 1
        if n_fields < 6:
            raise DataError(
                f"{item_path}, line 1: expected pipe-separated fields id|title|release date|"
                f"video release date|IMDb URL|genre flags..., found {n_fields} in "
                f"{text_first[:80]!r}"
            )
        flag_cols = [f"flag_{i}" for i in range(n_fields - 5)]
        names = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *flag_cols]
        raw, item_lines = _read_fields(
            item_path,
            "|",
            names,
            f"id|title|release date|video release date|IMDb URL|{n_fields - 5} genre flags",
        )
        _check_present(raw, "item_id", item_path, item_lines, "movie id")
        genres = _genre_names(folder, len(flag_cols), item_path)
        items = pd.DataFrame({"item_id": raw["item_id"].str.strip()})
        title = raw["title"].str.strip()
        items["title"] = title.where(title != "", pd.NA)
        year = _year_from_title(title)
        release = pd.to_datetime(raw["release_date"], errors="coerce", format="%d-%b-%Y")
        items["year"] = year.fillna(pd.Series(release.dt.year, dtype="Int64"))
        items["release_date"] = raw["release_date"]
        items["imdb_url"] = raw["imdb_url"]
        items["genres"] = _flags_to_genres(raw, flag_cols, genres, item_path, item_lines)
        _check_unique(items, "item_id", item_path, item_lines)
    else:
        notes.append(f"{item_path.name} not found: items have no titles or genres")
    user_path = folder / "u.user"
    if user_path.is_file():
        raw, user_lines = _read_fields(
            user_path,
            "|",
            ["user_id", "age", "gender", "occupation", "zip_code"],
            "id|age|gender|occupation|zip",
        )
        _check_present(raw, "user_id", user_path, user_lines, "user id")
        users = raw.assign(user_id=raw["user_id"].str.strip())
        users["age"] = pd.array(
            _numeric(raw, "age", user_path, user_lines, "an age in years").astype(np.int64),
            dtype="Int64",
        )
        _check_unique(users, "user_id", user_path, user_lines)
    return _build(frame, items, users, name, folder, "ml-100k", notes, item_path)


def _ratings_frame(inter: pd.DataFrame, path: Path, lines: np.ndarray) -> pd.DataFrame:
    _check_present(inter, "user_id", path, lines, "user id")
    _check_present(inter, "item_id", path, lines, "movie id")
    return pd.DataFrame(
        {
            "user_id": inter["user_id"].str.strip(),
            "item_id": inter["item_id"].str.strip(),
            "rating": _numeric(inter, "rating", path, lines, "a numeric rating"),
            "timestamp": _timestamps(inter, "timestamp", path, lines),
        }
    )


def _check_unique(table: pd.DataFrame, col: str, path: Path, lines: np.ndarray) -> None:
    dup = table[col].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"{_where(path, lines, row)}, column '{col}': id {table[col].iloc[row]!r} is listed "
            f"again ({int(dup.sum())} repeated ids); each id must appear once"
        )


def _load_dat(folder: Path, name: str) -> Dataset:
    ratings_path = folder / "ratings.dat"
    inter, lines = _read_fields(
        ratings_path,
        "::",
        ["user_id", "item_id", "rating", "timestamp"],
        "UserID::MovieID::Rating::Timestamp",
    )
    frame = _ratings_frame(inter, ratings_path, lines)
    notes: list[str] = []
    items = users = None
    movies_path = folder / "movies.dat"
    if movies_path.is_file():
        raw, mlines = _read_fields(movies_path, "::", ["item_id", "title", "genres"], "MovieID::Title::Genres")
        _check_present(raw, "item_id", movies_path, mlines, "movie id")
        title = raw["title"].str.strip()
        genres = raw["genres"].str.strip()
        items = pd.DataFrame(
            {
                "item_id": raw["item_id"].str.strip(),
                "title": title.where(title != "", pd.NA),
                "year": _year_from_title(title),
                "genres": genres.where(~genres.isin(["", "(no genres listed)"]), pd.NA),
            }
        )
        _check_unique(items, "item_id", movies_path, mlines)
    else:
        notes.append(f"{movies_path.name} not found: items have no titles or genres")
    users_path = folder / "users.dat"
    if users_path.is_file():
        raw, ulines = _read_fields(
            users_path,
            "::",
            ["user_id", "gender", "age", "occupation", "zip_code"],
            "UserID::Gender::Age::Occupation::Zip-code",
        )
        _check_present(raw, "user_id", users_path, ulines, "user id")
        users = raw.assign(user_id=raw["user_id"].str.strip())
        for col, what in (("age", "an age group code"), ("occupation", "an occupation code")):
            users[col] = pd.array(_numeric(raw, col, users_path, ulines, what).astype(np.int64), dtype="Int64")
        _check_unique(users, "user_id", users_path, ulines)
    return _build(frame, items, users, name, folder, "ml-dat", notes, movies_path)


def _build(frame, items, users, name, folder, layout, notes, item_path) -> Dataset:
    if items is not None:
        seen = pd.unique(frame["item_id"])
        unknown = int((~pd.Index(seen).isin(items["item_id"])).sum())
        if unknown:
            notes.append(f"{unknown} rated movies are not in {item_path.name} (added without title)")
    return Dataset.from_frame(
        frame,
        name=name,
        items=items,
        users=users,
        source=f"movielens:{layout}:{folder.name}",
        notes=notes,
    )


def _load_csv(folder: Path, name: str) -> Dataset:
    movies = folder / "movies.csv"
    table = None
    if movies.is_file():
        table = _side_table(movies, "item", "movieId")
        if "title" in table.columns:
            table["year"] = _year_from_title(table["title"].astype(object))
    columns = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    return _tabular_dataset(
        folder / "ratings.csv",
        columns=columns,
        sep=",",
        items=table,
        users=None,
        name=name,
        source=f"movielens:csv:{folder.name}",
    )


def load_movielens(path: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load a MovieLens folder in its raw GroupLens layout (ml-100k, ml-1m, ml-10m, ml-20m).

    ``path`` is the folder or its ratings file (``u.data``, ``ratings.dat`` or ``ratings.csv``);
    the layout's other files are read from the same folder (ml-100k: ``u.item``, ``u.genre``,
    ``u.user``; ml-1m/10m: ``movies.dat``, ``users.dat``; csv: ``movies.csv``). Any other file
    name is refused, and so is a folder holding more than one ratings file (pass the one to use).

    ml-100k items get ``title`` (e.g. "Toy Story (1995)"), ``year``, ``release_date``,
    ``imdb_url`` and ``genres`` ("Animation|Children's|Comedy", named by ``u.genre`` when present);
    users get ``age``, ``gender``, ``occupation``, ``zip_code``. ml-1m/10m items get ``title``,
    ``year``, ``genres``; ml-1m users get ``gender``, ``age`` and ``occupation`` (the numeric codes
    of its README) and ``zip_code``. ``name`` defaults to the folder name.

    A folder with no ratings file but RecBole atomic files (``*.inter``) is loaded with
    :func:`load_atomic`.

    Parameters
    ----------
    path : str or os.PathLike
        The MovieLens folder, or its ratings file.
    name : str, optional
        The dataset's name; ``None`` uses the folder name.

    Returns
    -------
    Dataset
        The rated interactions with the layout's items and users.

    Raises
    ------
    DataError
        If the path does not exist, is a file other than a ratings file, is a folder with
        several ratings files or none (and no ``.inter`` file), or a file cannot be read.
    """
    path = Path(path)
    check_path_text(path)
    layouts = {"u.data": _load_100k, "ratings.dat": _load_dat, "ratings.csv": _load_csv}
    if path.is_dir():
        folder = path
        present = [f for f in layouts if (folder / f).exists()]
        if len(present) > 1:
            raise DataError(
                f"{folder}: holds several MovieLens ratings files {present}; pass the path of the "
                f"one to load (e.g. {folder / present[0]})"
            )
    elif path.exists() or path.is_symlink():
        if path.name not in layouts:
            raise DataError(
                f"{path}: a MovieLens dataset is read from its ratings file (u.data, ratings.dat or "
                "ratings.csv) and the files beside it; pass one of those or the folder, or load a "
                "single table with format='tabular' (--format tabular)"
            )
        folder, present = path.parent, [path.name]
    else:
        raise DataError(f"{path}: folder not found; expected a MovieLens folder (u.data or ratings.dat)")
    name = name or folder.resolve().name
    if present:
        return layouts[present[0]](folder, name)
    if any(folder.glob("*.inter")):
        return load_atomic(folder, name=name)
    present = sorted(p.name for p in folder.iterdir())[:20]
    raise DataError(
        f"{folder}: no MovieLens ratings file; expected u.data (ml-100k), ratings.dat (ml-1m, "
        f"ml-10m) or ratings.csv (ml-20m, ml-latest); the folder has {present}"
    )
