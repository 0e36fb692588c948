"""MostPopular: the item's number of training interactions, the same for everyone."""

from __future__ import annotations

import numpy as np

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model

__all__ = ["MostPopular", "MostPopularConfig"]


class MostPopularConfig(Config):
    pass


@register_model
class MostPopular(Recommender):
    name = "most_popular"
    config_class = MostPopularConfig
    config: MostPopularConfig
    capabilities = frozenset({"score"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self.item_counts_ = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        return np.broadcast_to(self.item_counts_, (len(queries), self.n_items_)).copy()
