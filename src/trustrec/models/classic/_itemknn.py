"""ItemKNN: item-item cosine similarity on the binary user-item matrix (sparse), pruned to each
item's ``k`` nearest neighbours; a user's score for an item sums its similarity to the history."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import NonNegativeFloat, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model

__all__ = ["ItemKNN", "ItemKNNConfig"]


class ItemKNNConfig(Config):
    """Hyper-parameters of :class:`ItemKNN`.

    Parameters
    ----------
    k : int
        Neighbours kept per item: the ``k`` largest similarities of each item (default 100).
    shrink : float
        Added to the cosine denominator ``sqrt(n_i) sqrt(n_j)``, which damps the similarity of
        items that co-occur rarely (default 0.0: plain cosine).
    normalize_history : bool
        Whether to divide each query's scores by its history length (default False). The ranking
        is unchanged; scores become comparable across users.
    """

    k: PositiveInt = 100  # neighbours kept per item
    shrink: NonNegativeFloat = 0.0  # added to the cosine denominator (damps rare co-occurrence)
    normalize_history: bool = False  # divide by history length (ranking is unchanged; scores comparable)


def user_item_matrix(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """Binary CSR matrix (duplicates count once)."""
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, n_cols))
    m.data[:] = 1.0
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


@register_model
class ItemKNN(Recommender):
    """ItemKNN: item-item cosine similarity on the binary user-item matrix, pruned to each item's
    ``k`` nearest neighbours; a user's score for an item sums its similarity to the history items.

    Parameters
    ----------
    config : ItemKNNConfig, mapping or None
        Hyper-parameters (see :class:`ItemKNNConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "item_knn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig
    capabilities = frozenset({"score", "uses_history"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        inter = train.interactions
        x = user_item_matrix(inter.user, inter.item, train.n_users, train.n_items)
        co = (x.T @ x).tocsr().astype(np.float32)
        co.setdiag(0)
        co.eliminate_zeros()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel()).astype(np.float32)
        co = co.tocoo()
        sim = co.data / (norms[co.row] * norms[co.col] + self.config.shrink + 1e-12)
        # keep the k largest similarities in each column (the neighbours of item `col`)
        order = np.lexsort((-sim, co.col))
        col_sorted = co.col[order]
        counts = np.bincount(col_sorted, minlength=train.n_items)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(len(order)) - starts[col_sorted]
        keep = order[rank < self.config.k]
        s = sp.csr_matrix((sim[keep], (co.row[keep], co.col[keep])), shape=(train.n_items, train.n_items))
        self.sim_indptr_ = s.indptr.astype(np.int64)
        self.sim_indices_ = s.indices.astype(np.int64)
        self.sim_data_ = s.data.astype(np.float32)

    def _similarity(self) -> sp.csr_matrix:
        n = self.n_items_
        return sp.csr_matrix((self.sim_data_, self.sim_indices_, self.sim_indptr_), shape=(n, n))

    def score(self, queries: QueryBatch) -> np.ndarray:
        queries = self._prepare(queries)
        h = queries.histories
        x = user_item_matrix(h.row_ids(), h.values, len(queries), self.n_items_)
        scores = np.asarray((x @ self._similarity()).todense(), dtype=np.float64)
        if self.config.normalize_history:
            scores /= np.maximum(h.lengths, 1)[:, None]
        return scores
