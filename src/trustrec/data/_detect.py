"""Load a file or folder by recognising its format, so users can inspect their own data."""

from __future__ import annotations

import stat
from pathlib import Path

from trustrec._safeio import check_path_text, open_regular
from trustrec.data._dataset import Dataset
from trustrec.errors import DataError

__all__ = ["detect_format", "load_path"]

FORMATS = ("atomic", "movielens", "coat", "yahoo-r3", "kuairec", "bigrec", "amazon", "tabular")
_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")


def _has_suffix(path: Path, suffixes) -> bool:
    return path.name.lower().endswith(suffixes)


def detect_format(path: str | Path) -> str:
    """The format of a file (by its name) or folder (by the files it holds).

    A folder matching more than one layout (e.g. ``NAME.inter`` next to ``u.data``) is refused
    with the choices: pass ``format=`` (``--format``). Paths that are neither a regular file nor a
    folder (FIFOs, sockets, devices) are refused without being opened.

    Parameters
    ----------
    path : str or pathlib.Path
        A data file or folder.

    Returns
    -------
    str
        One of ``FORMATS``: ``"atomic"``, ``"movielens"``, ``"coat"``, ``"yahoo-r3"``,
        ``"kuairec"``, ``"bigrec"``, ``"amazon"`` or ``"tabular"``.

    Raises
    ------
    DataError
        If the path does not exist or cannot be read, is neither a regular file nor a folder,
        or matches no layout, several layouts, or (a folder) several tables.
    """
    path = Path(path)
    check_path_text(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        open_regular(path, what="a data file or folder")  # raises, naming what the path is
    if stat.S_ISREG(mode):
        if path.suffix == ".inter":
            return "atomic"
        if _has_suffix(path, _JSON_SUFFIXES):
            return "amazon"
        if _has_suffix(path, _TABLE_SUFFIXES):
            return "tabular"
        raise DataError(
            f"{path}: cannot tell the format from the name; expected .inter (RecBole atomic), "
            ".json/.jsonl[.gz] (Amazon reviews) or .csv/.tsv/.parquet (generic table)"
        )
    try:
        names = {p.name for p in path.iterdir()}
    except OSError as exc:
        raise DataError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
    from trustrec.data._random_exposure import KUAIREC_FILES, YAHOO_R3_FILES

    matches: dict[str, str] = {}
    inters = sorted(n for n in names if n.endswith(".inter"))
    if inters:
        matches["atomic"] = inters[0]
    ratings = sorted(names & {"u.data", "ratings.dat"})
    if not ratings and {"ratings.csv", "movies.csv"} <= names:
        ratings = ["ratings.csv"]
    if ratings:
        matches["movielens"] = ratings[0]
    if {"train.ascii", "test.ascii"} <= names:
        matches["coat"] = "train.ascii + test.ascii"
    if set(YAHOO_R3_FILES) <= names:
        matches["yahoo-r3"] = YAHOO_R3_FILES[0]
    if set(KUAIREC_FILES) <= names or (path / "data" / KUAIREC_FILES[0]).is_file():
        matches["kuairec"] = KUAIREC_FILES[0]
    if "info" in names and names & {"train", "valid", "test"}:
        matches["bigrec"] = "info/ + " + "/".join(sorted(names & {"train", "valid", "test"}))
    if not matches:
        jsons = sorted(n for n in names if _has_suffix(path / n, _JSON_SUFFIXES))
        if jsons:
            matches["amazon"] = jsons[0]
        tables = sorted(n for n in names if _has_suffix(path / n, _TABLE_SUFFIXES))
        if len(tables) == 1 and not jsons:
            matches["tabular"] = tables[0]
        elif len(tables) > 1 and not jsons:
            raise DataError(f"{path}: holds {len(tables)} tables {tables[:10]}; pass the path of the one to load")
    if len(matches) == 1:
        return next(iter(matches))
    if len(matches) > 1:
        found = ", ".join(f"{fmt} ({why})" for fmt, why in matches.items())
        raise DataError(
            f"{path}: matches several dataset layouts: {found}; choose one with format= "
            f"(--format {' | '.join(matches)}) or pass the file to load"
        )
    raise DataError(
        f"{path}: no known dataset layout (found {sorted(names)[:10]}); supported: RecBole atomic "
        "(NAME.inter/.item/.user), MovieLens raw (u.data or ratings.dat), Coat (train.ascii/test.ascii), "
        "Yahoo! R3 (ydata-ymusic-*.txt), KuaiRec (big_matrix.csv + small_matrix.csv), "
        "BIGRec CSV (info/ + valid/ + test/), Amazon reviews (.json/.jsonl), one CSV/parquet table"
    )


def load_path(
    path: str | Path, *, name: str | None = None, format: str | None = None, columns: dict[str, str] | None = None
) -> Dataset:
    """Load any supported file or folder, detecting its format unless ``format`` is given.

    ``format`` overrides detection (one of FORMATS); ``columns`` maps roles (user, item,
    timestamp, rating) to column names for tables.

    Parameters
    ----------
    path : str or pathlib.Path
        A data file or folder.
    name : str, optional
        The dataset's name; ``None`` lets the loader choose (e.g. from the path).
    format : str, optional
        One of ``FORMATS``; ``None`` uses :func:`detect_format`.
    columns : dict of str to str, optional
        Column names by role (user, item, timestamp, rating); tables (``"tabular"``) only.

    Returns
    -------
    Dataset
        The loaded dataset.

    Raises
    ------
    DataError
        If ``format`` is unknown, the format cannot be detected, ``columns`` is given for a
        format other than ``"tabular"``, a folder does not hold the files its format needs, or
        the loader refuses the data.
    """
    path = Path(path)
    check_path_text(path)
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format {format!r}; expected one of {FORMATS}")
    fmt = format or detect_format(path)
    if columns and fmt != "tabular":
        raise DataError(f"{path}: a column mapping applies to CSV/TSV/parquet tables, not to {fmt!r} data")
    if fmt == "atomic":
        from trustrec.data._atomic import load_atomic

        return load_atomic(path, name=name)
    if fmt == "movielens":
        from trustrec.data._movielens import load_movielens

        return load_movielens(path, name=name)
    if fmt == "coat":
        from trustrec.data._coat import load_coat

        return load_coat(path, name=name or "coat")
    if fmt in ("yahoo-r3", "kuairec"):
        from trustrec.data._random_exposure import load_kuairec, load_yahoo_r3

        loader = load_yahoo_r3 if fmt == "yahoo-r3" else load_kuairec
        return loader(path, name=name or fmt)
    if fmt == "bigrec":
        from trustrec.data._bigrec import load_bigrec

        return load_bigrec(path, name=name)
    if fmt == "amazon":
        from trustrec.data._amazon import load_amazon

        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _has_suffix(p, _JSON_SUFFIXES))
            meta = [p for p in files if "meta" in p.name.lower()]
            reviews = [p for p in files if p not in meta]
            if len(reviews) != 1 or len(meta) > 1:
                raise DataError(
                    f"{path}: expected one review file and at most one meta_* file, found "
                    f"{[p.name for p in files]}; pass the files to load_amazon explicitly"
                )
            return load_amazon(reviews[0], meta[0] if meta else None, name=name or path.name)
        return load_amazon(path, name=name)
    if fmt == "tabular":
        from trustrec.data._tabular import load_tabular

        if path.is_dir():
            tables = sorted(p for p in path.iterdir() if _has_suffix(p, _TABLE_SUFFIXES))
            if len(tables) != 1:
                raise DataError(
                    f"{path}: a folder read as one table must hold exactly one "
                    f".csv/.tsv/.parquet file, found {[p.name for p in tables][:10]}; pass "
                    "the path of the table"
                )
            path = tables[0]
        return load_tabular(path, name=name, columns=columns)
    raise DataError(f"unknown format {fmt!r}; expected one of {FORMATS}")
