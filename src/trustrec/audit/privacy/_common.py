"""What several privacy audits share: the per-user loss and the accuracy of a model's top-K.

Per-user loss (:func:`next_item_losses`, one function for every model)
    The attack signal is how well the model predicts a user's own sequence. For each of the last
    ``positions`` items ``s[t]`` of a chronological sequence ``s`` (``t >= 1``), the model is asked
    about the prefix ``s[:t]`` as an *anonymous* query (user -1) and the loss is the negative
    log-likelihood of ``s[t]``: for a model with full-catalog ``score``, the log-softmax of the
    scores read as logits, over the items not in the prefix (as the model ranks them; a repeated
    target stays in); for a model with its own answer loss (``sequence_likelihood``: the generative
    LLM recommender), its own mean per-token cross-entropy of
    the target's title (plus the end-of-sequence token) as the answer to the prompt of the prefix,
    exactly the fine-tuning loss. The user's loss is the mean over positions. Queries are
    anonymous so that a model with user embeddings does not give membership away by merely
    having a trained row for the user: what is measured is what the model learnt from the
    sequences (BPR folds an anonymous user in from the history; a model that reads only user ids
    is scored by its item side).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trustrec.data import QueryBatch, Ragged
from trustrec.errors import ConfigError
from trustrec.models import has_capability

if TYPE_CHECKING:
    from trustrec.models import Recommender

__all__ = ["next_item_losses"]


def difference(a: float | None, b: float | None) -> float | None:
    """``a - b``; None (not measured) when either is."""
    return None if a is None or b is None else a - b


# -- per-user loss -----------------------------------------------------------------------------------
def _has_own_loss(model) -> bool:
    """The model gives its own training loss of an answer (``sequence_likelihood``), e.g. a fine-tuned LLM."""
    return has_capability(model, "sequence_likelihood")


def _can_score(model) -> bool:
    return has_capability(model, "score") or _has_own_loss(model)


def _default_positions(model, positions: int | None) -> int:
    if positions is not None:
        return int(positions)
    return int(model.loss_positions) if _has_own_loss(model) else 10


def _prefix_pairs(histories: Ragged, positions: int | None) -> tuple[np.ndarray, Ragged, np.ndarray]:
    """(row of each pair, prefix histories, next items) for the last ``positions`` positions
    ``t >= 1`` of each row (all when None)."""
    lengths = histories.lengths
    n_pos = np.maximum(lengths - 1, 0) if positions is None else np.minimum(np.maximum(lengths - 1, 0), positions)
    rows = np.repeat(np.arange(len(histories)), n_pos)
    first = np.concatenate([[0], np.cumsum(n_pos)[:-1]])
    t = lengths[rows] - n_pos[rows] + (np.arange(len(rows)) - first[rows])  # prefix lengths, >= 1
    starts = histories.indptr[:-1][rows]
    indptr = np.concatenate([[0], np.cumsum(t)])
    offsets = np.arange(indptr[-1]) - np.repeat(indptr[:-1], t)
    prefixes = Ragged(indptr, histories.values[np.repeat(starts, t) + offsets])
    return rows, prefixes, histories.values[starts + t]


def _score_losses(
    model, prefixes: Ragged, targets: np.ndarray, batch_size: int, budget: int = 20_000_000
) -> np.ndarray:
    n_items = model.n_items_
    out = np.full(len(targets), np.nan)
    step = max(1, min(batch_size, budget // max(n_items, 1)))
    for start in range(0, len(targets), step):
        stop = min(start + step, len(targets))
        hist = prefixes.take(np.arange(start, stop))
        tgt = targets[start:stop]
        s = np.asarray(model.score(QueryBatch(np.full(stop - start, -1), hist)), np.float64)
        mask = hist.to_dense_mask(n_items)
        rows = np.arange(stop - start)
        mask[rows, tgt] = False
        s = np.where(mask | np.isnan(s), -np.inf, s)
        top = s.max(1)
        finite = np.isfinite(top)
        safe = np.where(finite, top, 0.0)
        lse = safe + np.log(np.exp(s - safe[:, None]).sum(1))
        ts = s[rows, tgt]
        out[start:stop] = np.where(finite & np.isfinite(ts), lse - ts, np.nan)
    return out


def next_item_losses(
    model: Recommender, histories: Ragged, *, positions: int | None = 10, batch_size: int = 256, base: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``histories`` (chronological sequences), the model's mean next-item negative
    log-likelihood over its last ``positions`` positions (all when None), asked as anonymous
    queries (module docstring), and the number of positions scored. NaN (and 0) for rows shorter
    than 2 or that the model cannot score. Works for any fitted model with ``score`` and for any
    model with its own answer loss (``sequence_likelihood``, e.g. the generative LLM recommender;
    ``base=True`` asks its untuned base model instead).

    Parameters
    ----------
    model : Recommender
        The fitted model.
    histories : Ragged
        Chronological sequences, one per row.
    positions : int or None
        The last positions scored per row; None: all.
    batch_size : int
        Prefixes scored per batch (full-catalog scores).
    base : bool
        Ask the untuned base model of a model with its own answer loss instead.

    Returns
    -------
    losses : ndarray
        (n,) mean next-item negative log-likelihood per row; NaN where none was scored.
    n_scored : ndarray
        (n,) positions scored per row.

    Raises
    ------
    ConfigError
        If the model has neither full-catalog scores nor its own answer loss, ``positions`` is
        below 1, or ``base`` is asked of a model without a base loss.
    NotFittedError
        If ``model`` is not fitted.
    """
    model._check_fitted()
    if not _can_score(model):
        raise ConfigError(
            f"next_item_losses: {type(model).__name__} has neither full-catalog scores nor a "
            "generative likelihood; the loss of a sequence is not defined for it"
        )
    if positions is not None and positions < 1:
        raise ConfigError(f"next_item_losses: positions must be >= 1 or None, got {positions}")
    rows, prefixes, targets = _prefix_pairs(histories, positions)
    if _has_own_loss(model):
        llm: Any = model  # the sequence_likelihood capability: answer_losses is not on Recommender
        pair_loss = llm.answer_losses(QueryBatch(np.full(len(targets), -1), prefixes), targets, base=base)
    elif base:
        raise ConfigError(
            f"next_item_losses: base=True needs a model with its own base (untuned) loss "
            f"(sequence_likelihood); {type(model).__name__} has none"
        )
    else:
        pair_loss = _score_losses(model, prefixes, targets, batch_size)
    ok = ~np.isnan(pair_loss)
    n = np.bincount(rows[ok], minlength=len(histories))
    sums = np.bincount(rows[ok], weights=pair_loss[ok], minlength=len(histories))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sums / np.maximum(n, 1), np.nan), n


def _recommend(model, queries: QueryBatch, k: int, batch_size: int) -> np.ndarray:
    parts = [model.recommend(b, k).items for b in queries.batches(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, k), np.int64)


def _ndcg(model, eval_set, k: int, batch_size: int) -> np.ndarray:
    from trustrec.eval import distinct_counts, hits_matrix, ndcg

    if not len(eval_set):
        return np.empty(0)
    top = _recommend(model, eval_set.queries, k, batch_size)
    return ndcg(hits_matrix(top, eval_set.targets, model.n_items_), distinct_counts(eval_set.targets))


def _sample(users: np.ndarray, n: int | None, rng) -> np.ndarray:
    if n is None or n >= len(users):
        return users
    return np.sort(rng.choice(users, n, replace=False))
