"""EASE (Steck, WWW 2019): a closed-form item-item linear model with a zero diagonal,
B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1. Strong and fast for catalogs up to ~30k items."""

from __future__ import annotations

import numpy as np
from pydantic import PositiveFloat

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models.classic._itemknn import user_item_matrix

__all__ = ["EASE", "EASEConfig"]

MAX_ITEMS = 40_000


class EASEConfig(Config):
    """Hyper-parameters of :class:`EASE`.

    Parameters
    ----------
    reg : float
        L2 regularisation ``lambda`` added to the diagonal of the item-item Gram matrix
        ``X^T X`` before it is inverted (default 250.0; must be positive).
    """

    reg: PositiveFloat = 250.0


@register_model
class EASE(Recommender):
    """EASE (Steck, WWW 2019): a closed-form item-item linear model with a zero diagonal.

    ``B = I - P diag(1/diag(P))`` with ``P = (X^T X + reg I)^-1``; a query's scores are its
    binary history row times ``B``. Fitting needs a dense ``n_items x n_items`` matrix and raises
    :class:`~trustrec.errors.ConfigError` above 40,000 items.

    Parameters
    ----------
    config : EASEConfig, mapping or None
        Hyper-parameters (see :class:`EASEConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "ease"
    config_class = EASEConfig
    config: EASEConfig
    capabilities = frozenset({"score", "uses_history"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        import torch

        if train.n_items > MAX_ITEMS:
            raise ConfigError(
                f"EASE needs a dense {train.n_items}^2 matrix; above {MAX_ITEMS} items "
                "use item_knn or filter the catalog (k_core)"
            )
        inter = train.interactions
        x = user_item_matrix(inter.user, inter.item, train.n_users, train.n_items)
        gram = torch.from_numpy((x.T @ x).toarray().astype(np.float64))
        gram.diagonal().add_(self.config.reg)
        p = torch.linalg.inv(gram)
        b = -p / p.diagonal()[None, :]
        b.diagonal().zero_()
        self.weights_ = b.to(torch.float32).numpy()

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        h = queries.histories
        x = user_item_matrix(h.row_ids(), h.values, len(queries), self.n_items_)
        return np.asarray(x @ self.weights_, dtype=np.float64)
