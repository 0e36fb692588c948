"""What several controllability audits share: top-K lists in batches, their accuracy, whether a
model reads the prompt, a copy of a model with another config, and the item catalog for constraints.
"""

from __future__ import annotations

import numpy as np

from trustrec.audit._base import AuditInputs
from trustrec.data import QueryBatch, Ragged


# -- shared helpers ------------------------------------------------------------------------------------------
def _recommend(model, queries: QueryBatch, k: int, batch_size: int, *, exclude_seen: bool = True) -> np.ndarray:
    parts = [model.recommend(b, k, exclude_seen=exclude_seen).items for b in queries.batches(batch_size)]
    if not parts:
        return np.empty((0, k), np.int64)
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1) for p in parts])


def _unique_counts(targets: Ragged, n_items: int) -> np.ndarray:
    keys = np.unique(targets.row_ids() * n_items + targets.values)
    return np.bincount(keys // n_items, minlength=len(targets))


def _accuracy(top: np.ndarray, targets: Ragged, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row NDCG and HR of ``top`` against ``targets`` (NaN for a row with no target)."""
    from trustrec.eval import hit_rate, hits_matrix, ndcg

    hits = hits_matrix(top, targets, n_items)
    n_rel = _unique_counts(targets, n_items)
    return ndcg(hits, n_rel), hit_rate(hits, n_rel)


def _reads_prompt(model) -> bool:
    """Whether ``model`` builds its prompt from the ``template`` of its config: it declares the
    ``prompt`` capability (a model with a template of another kind, e.g. FLOW's agent texts,
    does not, and a paraphrased template would never reach it)."""
    config = getattr(model, "config", None)
    return (
        "prompt" in getattr(model, "capabilities", frozenset()) and "template" in type(config).model_fields
        if config is not None
        else False
    )


def _with_config(model, **changes):
    """A shallow copy of a fitted ``model`` (fitted state and backend shared, not copied) whose
    config has ``changes``; the model itself is unchanged."""
    import copy

    clone = copy.copy(model)
    clone.config = type(model.config).model_validate({**model.config.model_dump(), **changes})
    return clone


def _fixed_set_warning(model, k: int, what: str) -> list[str]:
    """A ranker that re-orders only its retriever's ``n_candidates`` shows the same top-K set
    whatever it reads when ``k >= n_candidates``."""
    n = getattr(getattr(model, "config", None), "n_candidates", None)
    if isinstance(n, int) and k >= n and callable(getattr(model, "score_candidates", None)):
        return [
            (
                f"the model re-orders only its retriever's {n} candidates and k={k} >= {n}: the top-{k} set is "
                f"the same whatever the prompt says, so {what}; use k < n_candidates"
            )
        ]
    return []


def _item_catalog(inputs: AuditInputs, control, group_column: str | None, year_column: str | None):
    """The catalog ``control`` (a ``control`` arm's object, :mod:`trustrec._arms`) states
    constraints over, for the audited dataset's items."""
    ds = inputs.dataset
    return control.catalog(ds.items, n_items=ds.n_items, group_column=group_column, year_column=year_column)
