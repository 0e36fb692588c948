"""Python functions of the user's own recommender, named by import path, as trustrec models.

Two conventions, two models (capabilities are declared per class, so each is honest):

- ``external_scorer``: ``score(state, queries) -> (len(queries), len(queries.item_ids))`` array of
  scores over the whole catalog (columns in the order of ``queries.item_ids``; higher is better;
  ``-inf`` for an item it must never recommend; NaN is an error). Full-ranking audits apply.
- ``external_ranker``: ``rank(state, queries) -> lists`` one list of raw item ids per query, best
  first (at least ``queries.k`` of them), or a pair ``(lists, scores)`` with scores aligned and
  never increasing.

``queries`` is an :class:`~trustrec.models.external.ExternalQueries` in raw ids. ``fit`` (optional)
is ``fit(train: Dataset, seed: int) -> state``: called by ``Recommender.fit`` and whenever an audit
retrains the model (poisoning, membership inference, unlearning, feedback loop), its result is the
``state`` handed to ``score`` / ``rank``. Without ``fit``, ``state`` is None and retraining audits
are not applicable. Functions are named by import path (``"package.module:function"``), so the
model pickles by its config and works on Ray workers where the module is importable.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, PositiveInt, field_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.external._common import (
    ExternalQueries,
    RefusesToSave,
    check_import_path,
    import_function,
    lists_to_topk,
)

__all__ = ["ExternalRanker", "ExternalRankerConfig", "ExternalScorer", "ExternalScorerConfig"]


class _PythonConfig(Config):
    fit: str | None = None
    python_path: tuple[str, ...] = ()
    batch_size: PositiveInt = 256

    @field_validator("fit")
    @classmethod
    def _fit_path(cls, value):
        return None if value is None else check_import_path(value, "fit")


class ExternalScorerConfig(_PythonConfig):
    """Settings of :class:`ExternalScorer`.

    Parameters
    ----------
    score : str
        Import path of ``score(state, queries) -> (n_queries, n_items)`` scores.
    fit : str or None
        Import path of ``fit(train: Dataset, seed: int) -> state``; None: nothing to fit (the
        state is None) and retraining audits do not apply.
    python_path : tuple of str
        Folders put on ``sys.path`` before importing (absolute, so workers find them too).
    batch_size : int
        Queries per call of the score function.
    """

    score: str = Field(min_length=1)

    @field_validator("score")
    @classmethod
    def _score_path(cls, value):
        return check_import_path(value, "score")


class ExternalRankerConfig(_PythonConfig):
    """Settings of :class:`ExternalRanker`.

    Parameters
    ----------
    rank : str
        Import path of ``rank(state, queries) -> lists`` (or ``(lists, scores)``) in raw ids.
    fit : str or None
        Import path of ``fit(train: Dataset, seed: int) -> state``; None: nothing to fit.
    python_path : tuple of str
        Folders put on ``sys.path`` before importing.
    batch_size : int
        Queries per call of the rank function.
    """

    rank: str = Field(min_length=1)

    @field_validator("rank")
    @classmethod
    def _rank_path(cls, value):
        return check_import_path(value, "rank")


class _PythonAdapter(RefusesToSave, Recommender):
    """Shared by the scorer and the ranker: imports, the user's fit, the retraining gap."""

    _answer_key: ClassVar[str] = ""
    config: _PythonConfig

    def _function(self, key: str):
        # looked up by import path each time (a dict lookup once imported): the model holds no
        # function objects, so it pickles by path and fit adds only fitted state
        return import_function(getattr(self.config, key), f"{self.name}: {key}", self.config.python_path)

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self._function(self._answer_key)  # a wrong path fails at fit, not in the middle of an audit
        self.state_ = None
        if self.config.fit is not None:
            self.state_ = self._function("fit")(train, options.seed)
        self.item_index_ = pd.Index(self.item_ids_)

    def audit_gap(self, need: str) -> str | None:
        if need == "retraining" and self.config.fit is None:
            return (
                f"{self.name} has no fit function, so trustrec cannot retrain it on other data; give "
                "fit='package.module:fit' (fit(train: Dataset, seed: int) -> state) to run retraining audits"
            )
        return None

    def _unsaved_reason(self) -> str:
        return (
            "the fitted state belongs to your fit function and is not saved by trustrec; "
            "save it yourself, or audit the model directly (`trustrec audit --model external.yaml`)"
        )

    def _raw(self, queries: QueryBatch, k: int, exclude_seen: bool) -> ExternalQueries:
        return ExternalQueries.from_batch(queries, self.item_ids_, self.user_ids_, k=k, exclude_seen=exclude_seen)


@register_model
class ExternalScorer(_PythonAdapter):
    """Your recommender's Python score function as a full-ranking trustrec model.

    ``score(state, queries)`` returns one row of scores per query over the catalog
    ``queries.item_ids`` (see the module docstring for the contract); trustrec ranks, removes
    history items and candidates' outsiders, and audits it like its own models.

    Parameters
    ----------
    config : ExternalScorerConfig, mapping or None
        The settings; None: from the keyword arguments.
    **kwargs
        The settings as keyword arguments (``score``, ``fit``, ``python_path``, ``batch_size``).
    """

    name = "external_scorer"
    config_class = ExternalScorerConfig
    config: ExternalScorerConfig
    capabilities = frozenset({"score", "uses_history", "candidates"})
    _answer_key = "score"

    def score(self, queries: QueryBatch) -> np.ndarray:
        """(n_queries, n_items) scores from the user's score function, batch by batch.

        Parameters
        ----------
        queries : QueryBatch
            The queries (restricted to the fit-time catalog).

        Returns
        -------
        numpy.ndarray
            float64 scores; -inf where the function gave -inf.

        Raises
        ------
        DataError
            When the function returns another shape, non-numbers or NaN.
        """
        queries = self._prepare(queries)
        fn, path = self._function("score"), self.config.score
        out = np.empty((len(queries), self.n_items_))
        for start in range(0, len(queries), self.config.batch_size):
            batch = queries[start : start + self.config.batch_size]
            try:
                s = np.asarray(fn(self.state_, self._raw(batch, 0, True)), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, DataError):
                    raise
                raise DataError(f"{self.name}: score function {path!r} returned no numeric array ({exc})") from None
            if s.shape != (len(batch), self.n_items_):
                raise DataError(
                    f"{self.name}: score function {path!r} returned shape {s.shape}, expected "
                    f"(n_queries, n_items) = ({len(batch)}, {self.n_items_}): one row per query, one column per "
                    "item of queries.item_ids"
                )
            if np.isnan(s).any():
                q, i = np.argwhere(np.isnan(s))[0]
                raise DataError(
                    f"{self.name}: score function {path!r} returned {int(np.isnan(s).sum())} NaN scores (first: "
                    f"query {start + q}, item {self.item_ids_[i]!r}); return -inf for items never to recommend"
                )
            out[start : start + len(batch)] = s
        return out


@register_model
class ExternalRanker(_PythonAdapter):
    """Your recommender's Python ranking function (ranked lists of raw item ids) as a trustrec model.

    It has no full-catalog scores, so audits that need them do not apply; every audit that asks
    for lists (fairness of exposure, perturbed histories, candidate lists ...) does.

    Parameters
    ----------
    config : ExternalRankerConfig, mapping or None
        The settings; None: from the keyword arguments.
    **kwargs
        The settings as keyword arguments (``rank``, ``fit``, ``python_path``, ``batch_size``).
    """

    name = "external_ranker"
    config_class = ExternalRankerConfig
    config: ExternalRankerConfig
    capabilities = frozenset({"uses_history", "candidates"})
    _answer_key = "rank"

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The rank function's lists, checked (catalog ids, no repeats, sane scores) and cut to ``k``.

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Items per list.
        exclude_seen : bool
            Whether history items are removed.

        Returns
        -------
        TopK
            The ranked items and scores.

        Raises
        ------
        DataError
            When a list is malformed (see :func:`~trustrec.models.external.lists_to_topk`).
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        fn, who = self._function("rank"), f"{self.name}: rank function {self.config.rank!r}"
        parts = []
        for start in range(0, len(queries), self.config.batch_size):
            batch = queries[start : start + self.config.batch_size]
            answer = fn(self.state_, self._raw(batch, k, exclude_seen))
            lists, scores = answer if isinstance(answer, tuple) and len(answer) == 2 else (answer, None)
            parts.append(lists_to_topk(lists, scores, self.item_index_, batch, k, exclude_seen, who))
        return TopK.concat(parts) if parts else TopK(np.empty((0, k)), np.empty((0, k)))
