"""Test doubles with real semantics, for testing evaluators and audits in isolation."""

from __future__ import annotations

import numpy as np

from trustrec._config import Config
from trustrec.data import QueryBatch
from trustrec.models import Recommender

__all__ = ["PrecomputedScores"]


class PrecomputedScoresConfig(Config):
    pass


class PrecomputedScores(Recommender):
    """Scores read from a fixed (n_users, n_items) table by the query's user index.

    ``fit`` records the catalog size as any model would; the table is the model's whole
    knowledge, so an evaluator's or audit's own cost and correctness can be measured alone.

    Parameters
    ----------
    table : numpy.ndarray or None
        (n_users, n_items) scores; ``fit`` raises ValueError unless it has one column per catalog
        item.
    """

    name = "precomputed_scores"
    config: PrecomputedScoresConfig
    config_class = PrecomputedScoresConfig

    def __init__(self, table: np.ndarray | None = None):
        super().__init__()
        self._table = table

    def _fit(self, train, options) -> None:
        if self._table is None or self._table.shape[1] != train.n_items:
            raise ValueError("PrecomputedScores needs a table with one column per catalog item")
        self.table_ = self._table

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        return self.table_[np.maximum(queries.users, 0)]
