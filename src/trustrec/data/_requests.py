"""The shipped sets of requests to a conversational recommender (harmful, benign and borderline
benign), versioned under ``trustrec/data/assets/recommendation_requests/`` with a datasheet
(``README.md`` there). A version is never edited: a change is a new file."""

from __future__ import annotations

import json
from importlib import resources

import pandas as pd

from trustrec.errors import ConfigError, DataError

__all__ = ["REQUEST_COLUMNS", "recommendation_requests"]

REQUEST_COLUMNS: tuple[str, ...] = ("id", "label", "category", "domain", "text", "split")
_LABELS = frozenset({"harmful", "benign"})
_SPLITS = frozenset({"fit", "eval"})


def recommendation_requests(version: str = "v1", *, split: str | None = None) -> pd.DataFrame:
    """The request set ``version``: one row per request with ``id``, ``label`` (``harmful`` /
    ``benign``), ``category`` (``borderline`` for benign requests that sound edgy), ``domain``,
    ``text`` and ``split`` (``fit``: for fitting a mitigation; ``eval``: held out).

    Parameters
    ----------
    version : str
        The file version (``v1``).
    split : {"fit", "eval"} or None
        Only that split; None: both.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ConfigError
        For an unknown version or split.
    DataError
        When the file is malformed (a missing field, an unknown label or split, a repeated id).
    """
    if split is not None and split not in _SPLITS:
        raise ConfigError(f"recommendation_requests: split must be one of {sorted(_SPLITS)} or None, got {split!r}")
    folder = resources.files("trustrec.data") / "assets" / "recommendation_requests"
    available = sorted(p.name[: -len(".jsonl")] for p in folder.iterdir() if p.name.endswith(".jsonl"))
    if version not in available:
        raise ConfigError(f"recommendation_requests: unknown version {version!r}; shipped: {available}")
    rows = []
    for n, line in enumerate(folder.joinpath(f"{version}.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"recommendation_requests {version}: line {n} is not JSON ({err})") from err
        missing = [c for c in REQUEST_COLUMNS if not isinstance(row.get(c), str) or not row.get(c)]
        if missing or row["label"] not in _LABELS or row["split"] not in _SPLITS:
            raise DataError(
                f"recommendation_requests {version}: line {n} has a missing or invalid {missing or 'label/split'}"
            )
        rows.append({c: row[c] for c in REQUEST_COLUMNS})
    frame = pd.DataFrame(rows, columns=list(REQUEST_COLUMNS))
    repeated = frame.id[frame.id.duplicated()].tolist()
    if repeated:
        raise DataError(f"recommendation_requests {version}: repeated ids {repeated[:5]}")
    if split is not None:
        frame = frame[frame.split == split].reset_index(drop=True)
    return frame
