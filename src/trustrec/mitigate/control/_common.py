"""What the control wrappers share: their base config and compacting filtered lists."""

from __future__ import annotations

import numpy as np
from pydantic import Field, PositiveInt

from trustrec._config import Config
from trustrec.models import ModelSpec, TopK


def _compact(items: np.ndarray, scores: np.ndarray, keep: np.ndarray, k: int) -> TopK:
    """Keep the ``keep`` entries of each row in order, padding (-1, -inf) after them, first k."""
    keep = keep & (items >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")
    items = np.take_along_axis(np.where(keep, items, -1), order, 1)[:, :k]
    scores = np.take_along_axis(np.where(keep, scores, -np.inf), order, 1)[:, :k]
    if items.shape[1] < k:
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return TopK(items, scores)


# -- wrappers ------------------------------------------------------------------------------------------------
class _WrapperConfig(Config):
    """Settings shared by the control wrappers.

    Parameters
    ----------
    base : ModelSpec
        The recommender to wrap (registered name + params; built and fitted by ``fit``, or
        taken as is by ``from_fitted``); default ``item_knn``.
    n_candidates : int
        How many of the base's top items are read (positive; default 100).
    """

    base: ModelSpec = Field(default_factory=lambda: ModelSpec(name="item_knn"))
    n_candidates: PositiveInt = 100
