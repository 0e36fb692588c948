"""What several robustness audits share: the top-K lists of a query batch, the item indices of an
attack's raw ``target_items`` (poisoning, text attacks) and the full-ranking rank of target items
(:func:`target_ranks`: poisoning, text attacks on text-encoder scorers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = ["target_item_indices", "target_ranks"]


def _recommend(model, queries, k: int, batch_size: int) -> np.ndarray:
    parts = [model.recommend(b, k).items for b in queries.batches(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, k), np.int64)


def target_item_indices(dataset: Dataset, raw_ids: Sequence[str], who: str) -> np.ndarray:
    """Item indices of the raw ``target_items`` of an attack audit.

    Parameters
    ----------
    dataset : Dataset
        The dataset whose catalog the ids are looked up in.
    raw_ids : sequence of str
        Raw item ids.
    who : str
        The audit's name, for the error message.

    Returns
    -------
    ndarray
        The item indices, in the order of ``raw_ids``.

    Raises
    ------
    ConfigError
        If an id is not an item of ``dataset`` (the message names them).
    """
    idx = np.asarray(dataset.item_index(list(raw_ids), missing="ignore"), np.int64)
    unknown = [t for t, i in zip(raw_ids, idx) if i < 0]
    if unknown:
        raise ConfigError(
            f"{who}: target_items {unknown} are not items of dataset '{dataset.name}' "
            f"(e.g. {list(dataset.item_ids[:3])}); give raw item ids"
        )
    return idx


def target_ranks(
    model: Recommender, queries: QueryBatch, targets: npt.ArrayLike, *, batch_size: int = 512, depth: int = 100
) -> np.ndarray:
    """(n_queries, n_targets) 1-based rank of each target in the model's full ranking of the
    catalog with the history masked (ties broken by the lower item index, as
    :func:`trustrec.models.topk_from_scores`); NaN where the target is in the history.
    Models without full-ranking scores are ranked from their top-``depth`` list: absent targets
    get ``depth + 1`` (censored).

    Parameters
    ----------
    model : Recommender
        The fitted model.
    queries : QueryBatch
        The queries.
    targets : array_like of int
        Item indices of the targets.
    batch_size : int
        Queries ranked per batch.
    depth : int
        Length of the top list read for models without full-ranking scores.

    Returns
    -------
    ndarray
        (n_queries, n_targets) float ranks.
    """
    from trustrec.models import exclusion_mask

    targets = np.atleast_1d(np.asarray(targets, np.int64))
    out = []
    for batch in queries.batches(batch_size):
        if "score" in model.capabilities and batch.candidates is None:
            prepared = model._prepare(batch)
            s = np.asarray(model.score(prepared), np.float64)
            s = np.where(np.isnan(s), -np.inf, s)
            mask = exclusion_mask(prepared, model.n_items_, True)
            assert mask is not None  # exclude_seen=True: always a mask
            s[mask] = -np.inf
            ts = s[:, targets]  # (b, t)
            higher = (s[:, None, :] > ts[:, :, None]).sum(2)
            ties = (
                (s[:, None, :] == ts[:, :, None]) & (np.arange(s.shape[1])[None, None, :] < targets[None, :, None])
            ).sum(2)
            r = (1 + higher + ties).astype(np.float64)
            r[mask[:, targets]] = np.nan
        else:
            top = model.recommend(batch, depth).items
            hit = top[:, :, None] == targets[None, None, :]
            r = np.where(hit.any(1), hit.argmax(1) + 1, depth + 1).astype(np.float64)
            r[batch.histories.to_dense_mask(model.n_items_)[:, targets]] = np.nan
        out.append(r)
    return np.concatenate(out) if out else np.empty((0, len(targets)))
