"""MostPopular: the item's number of training interactions, the same for everyone."""

from __future__ import annotations

import numpy as np

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model

__all__ = ["MostPopular", "MostPopularConfig"]


class MostPopularConfig(Config):
    """Hyper-parameters of :class:`MostPopular`: there are none."""


@register_model
class MostPopular(Recommender):
    """MostPopular: every user's score for an item is its number of training interactions.

    Parameters
    ----------
    config : MostPopularConfig, mapping or None
        Hyper-parameters (there are none); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "most_popular"
    config_class = MostPopularConfig
    config: MostPopularConfig
    capabilities = frozenset({"score"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self.item_counts_ = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        return np.broadcast_to(self.item_counts_, (len(queries), self.n_items_)).copy()
