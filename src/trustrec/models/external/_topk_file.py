"""Ranked lists your own system wrote to a file (CSV, parquet or JSON lines), as a trustrec model.

One row per (user, item) with a ``rank`` (1 = best) or a ``score`` (higher = better) column; ids
are the dataset's raw ids. The file is read and checked in full when the model is fitted: missing
columns, ids the dataset does not know, repeated items or ranks, NaN scores, ranks that are not
positive integers are each a :class:`~trustrec.errors.DataError` naming the file, the row and the
id. Users of the evaluation parts without a list are counted (``missing_users_``) and, with
``missing="error"`` (the default), refused.

A file cannot answer a query it was not written for: the lists answer exactly the evaluation
queries of the split the model was fitted on (each user with the history that split gives it).
Any other query (another user, an edited history, a candidate list) is a DataError, and the audits
that ask such queries or retrain the model come out not applicable (``audit_gap``), with the
reason. Audits that read only the lists (item exposure, user fairness, calibration, cold start,
popularity amplification) run.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, model_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch, Split
from trustrec.errors import ConfigError, DataError, DataWarning
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.external._common import RefusesToSave, lists_to_topk

__all__ = ["ExternalTopKFile", "ExternalTopKFileConfig", "read_topk_file"]

_NO_QUERIES = (
    "a precomputed list file cannot answer new queries (other users, edited histories, candidate "
    "lists): it holds only the lists your system wrote for the evaluation users"
)


class ExternalTopKFileConfig(Config):
    """Settings of :class:`ExternalTopKFile`.

    Parameters
    ----------
    path : str
        The list file (``.csv``, ``.parquet`` or ``.jsonl``/``.json`` lines).
    format : {"auto", "csv", "parquet", "jsonl"}
        The file's format; ``"auto"``: from its suffix.
    user_column, item_column : str
        Columns of the raw user and item ids (default ``user_id``, ``item_id``).
    rank_column : str or None
        Column of the 1-based rank (1 = best); None: order by ``score_column``.
    score_column : str or None
        Column of the score (higher = better); at least one of rank and score is needed.
    missing : {"error", "empty"}
        Evaluation users without a list: refuse (default), or give them an empty list (counted
        in ``missing_users_`` and warned about).
    parts : tuple of str
        The evaluation parts whose queries the lists answer (default both ``valid`` and ``test``).
    max_rows : int
        Largest number of rows read (a guard against a wrong file).
    """

    path: str = Field(min_length=1)
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    user_column: str = "user_id"
    item_column: str = "item_id"
    rank_column: str | None = "rank"
    score_column: str | None = None
    missing: Literal["error", "empty"] = "error"
    parts: tuple[Literal["valid", "test"], ...] = ("valid", "test")
    max_rows: PositiveInt = 50_000_000

    @model_validator(mode="after")
    def _rank_or_score(self):
        if self.rank_column is None and self.score_column is None:
            raise ValueError("give rank_column or score_column (or both): the lists need an order")
        return self


def read_topk_file(config: ExternalTopKFileConfig, train: Dataset) -> pd.DataFrame:
    """Read and check a list file against ``train``'s ids.

    Parameters
    ----------
    config : ExternalTopKFileConfig
        Where the file is and how its columns are named.
    train : Dataset
        The data whose raw user and item ids the file must use.

    Returns
    -------
    pandas.DataFrame
        Columns ``user`` and ``item`` (indices), ``score`` (float; minus the rank when the
        file has only ranks) and ``row`` (the file row, 1-based, header excluded), each user's
        rows best first.

    Raises
    ------
    DataError
        When the file is missing or unreadable, or a column, id, rank or score is bad (the
        message names the file, the row and the id).
    """
    path = Path(config.path)
    if not path.is_file():
        raise DataError(f"{path}: no such list file (ExternalTopKFile path)")
    fmt: str = config.format
    if fmt == "auto":
        fmt = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower(), "")
        if not fmt:
            raise ConfigError(f"{path}: cannot tell the format from the suffix; set format to csv, parquet or jsonl")
    id_columns = {config.user_column: str, config.item_column: str}
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=id_columns, keep_default_na=False, na_values={c: [] for c in id_columns})
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=id_columns)
    except Exception as exc:  # noqa: BLE001 - every reader error means the same: not a readable list file
        raise DataError(f"{path}: not a readable {fmt} list file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if len(frame) > config.max_rows:
        raise DataError(f"{path}: {len(frame)} rows, more than max_rows={config.max_rows}")
    wanted = [config.user_column, config.item_column, config.rank_column, config.score_column]
    missing = [c for c in wanted if c is not None and c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the file has {list(frame.columns)}")
    line = np.arange(len(frame)) + 1  # 1-based data row (header excluded)

    def fail(mask: np.ndarray, problem: str, column: str) -> None:
        first = int(np.flatnonzero(mask)[0])
        raise DataError(
            f"{path}: row {line[first]} (and {int(mask.sum()) - 1} more): {problem} "
            f"({column} = {frame[column].iloc[first]!r})"
        )

    users = frame[config.user_column].astype(str).to_numpy()
    items = frame[config.item_column].astype(str).to_numpy()
    user_idx = pd.Index([str(u) for u in train.user_ids]).get_indexer(users)
    item_idx = pd.Index([str(i) for i in train.item_ids]).get_indexer(items)
    if (user_idx < 0).any():
        fail(user_idx < 0, f"user id unknown to dataset {train.name!r}", config.user_column)
    if (item_idx < 0).any():
        fail(item_idx < 0, f"item id unknown to dataset {train.name!r}", config.item_column)
    key = user_idx.astype(np.int64) * train.n_items + item_idx
    dup = pd.Series(key).duplicated(keep="first").to_numpy()
    if dup.any():
        fail(dup, "the same (user, item) is listed twice", config.item_column)
    score = np.zeros(len(frame))
    if config.score_column is not None:
        score = pd.to_numeric(frame[config.score_column], errors="coerce").to_numpy(np.float64)
        if np.isnan(score).any():
            fail(np.isnan(score), "score is NaN or not a number", config.score_column)
    order_key = -score
    if config.rank_column is not None:
        rank = pd.to_numeric(frame[config.rank_column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(rank) | (rank < 1) | (rank != np.round(rank))
        if bad.any():
            fail(bad, "rank is not a positive integer", config.rank_column)
        same = pd.Series(user_idx.astype(np.int64) * (int(rank.max()) + 1) + rank.astype(np.int64)).duplicated()
        if same.any():
            fail(same.to_numpy(), "two items of one user share this rank", config.rank_column)
        order_key = rank
        if config.score_column is None:
            score = -rank
    out = pd.DataFrame({"user": user_idx, "item": item_idx, "score": score, "row": line, "_key": order_key})
    out = out.sort_values(["user", "_key"], kind="stable").drop(columns="_key").reset_index(drop=True)
    if config.rank_column is not None and config.score_column is not None:
        increasing = (out.groupby("user")["score"].diff() > 0).to_numpy()
        if increasing.any():
            first = int(np.flatnonzero(increasing)[0])
            raise DataError(
                f"{path}: row {out['row'].iloc[first]}: score increases with rank for user "
                f"{train.user_ids[out['user'].iloc[first]]!r}; ranks and scores disagree"
            )
    return out


def _history_digests(batch: QueryBatch) -> list[str]:
    h = batch.histories
    return [
        hashlib.sha256(np.ascontiguousarray(h.values[a:b], np.int64).tobytes()).hexdigest()[:24]
        for a, b in zip(h.indptr[:-1], h.indptr[1:])
    ]


@register_model
class ExternalTopKFile(RefusesToSave, Recommender):
    """Ranked lists from a file your system wrote, audited by every audit that reads only lists.

    Fit it on a :class:`~trustrec.data.Split` (the split the lists were made for): it records the
    evaluation queries (user and history) of ``parts`` and answers exactly those.

    Parameters
    ----------
    config : ExternalTopKFileConfig, mapping or None
        The settings; None: from the keyword arguments.
    **kwargs
        The settings as keyword arguments (``path``, column names, ``missing`` ...).
    """

    name = "external_topk_file"
    config_class = ExternalTopKFileConfig
    config: ExternalTopKFileConfig
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def fit(self, data: Dataset | Split, options: FitOptions | None = None) -> Recommender:
        """Read and check the file, and record the evaluation queries of ``data`` it answers.

        Parameters
        ----------
        data : Split or Dataset
            The split the lists were made for (a Dataset: each user's full history is the query).
        options : FitOptions or None
            Unused beyond the device check.

        Returns
        -------
        ExternalTopKFile
            self.
        """
        super().fit(data, options)
        if isinstance(data, Split):
            batches = [data.eval_set(p).queries for p in self.config.parts]
        else:
            batches = [QueryBatch(np.arange(data.n_users), data.interactions.by_user(data.n_users))]
        expected: dict[int, set[str]] = {}
        for batch in batches:
            for u, digest in zip(batch.users.tolist(), _history_digests(batch)):
                expected.setdefault(int(u), set()).add(digest)
        self.expected_ = expected
        listed = set(self.lists_)
        absent = sorted(u for u in expected if u not in listed)
        self.missing_users_ = len(absent)
        if absent:
            ids = [self.user_ids_[u] for u in absent[:10]]
            message = (
                f"{self.config.path}: {len(absent)} of {len(expected)} evaluation users have no list "
                f"(user ids {ids}{' ...' if len(absent) > 10 else ''})"
            )
            if self.config.missing == "error":
                raise DataError(message + "; write their lists, or set missing='empty' to audit them with empty lists")
            warnings.warn(message + "; they get empty lists (missing='empty')", DataWarning, stacklevel=2)
        return self

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        table = read_topk_file(self.config, train)
        bounds = np.flatnonzero(np.diff(table["user"].to_numpy(), prepend=-1, append=-1))
        ids, scores = table["item"].to_numpy(), table["score"].to_numpy()
        self.lists_ = {int(table["user"].iloc[a]): (ids[a:b], scores[a:b]) for a, b in itertools.pairwise(bounds)}
        self.n_listed_users_ = len(self.lists_)

    def audit_gap(self, need: str) -> str | None:
        if need == "queries":
            return _NO_QUERIES
        if need == "retraining":
            return "a precomputed list file cannot be retrained on other data (poisoned, forgotten users ...)"
        return None

    def _unsaved_reason(self) -> str:
        return f"nothing to save; the list file {self.config.path} is the model"

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The file's lists of the queried users, cut to ``k``.

        Parameters
        ----------
        queries : QueryBatch
            Evaluation queries of the fitted split (user and history as the split gives them).
        k : int
            Items per list.
        exclude_seen : bool
            Whether history items are removed from the lists.

        Returns
        -------
        TopK
            The lists (empty for users without one when ``missing="empty"``).

        Raises
        ------
        DataError
            For a query the file cannot answer (an unknown or anonymous user, a history other
            than the split's, a candidate list).
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        if queries.candidates is not None:
            raise DataError(f"{self.name}: {_NO_QUERIES}; this query has a candidate list")
        empty = (np.empty(0, np.int64), np.empty(0))
        lists, scores = [], []
        for q, (u, digest) in enumerate(zip(queries.users.tolist(), _history_digests(queries))):
            if digest not in self.expected_.get(u, set()):
                who = "an anonymous user" if u < 0 else f"user {self.user_ids_[u]!r}"
                raise DataError(
                    f"{self.name}: query {q} ({who}) is not an evaluation query of the split the lists "
                    f"were fitted on; {_NO_QUERIES}"
                )
            ids, s = self.lists_.get(u, empty)
            lists.append([self.item_ids_[i] for i in ids])
            scores.append(s)
        who = f"{self.name} ({self.config.path})"
        return lists_to_topk(lists, scores, pd.Index(self.item_ids_), queries, k, exclude_seen, who)
