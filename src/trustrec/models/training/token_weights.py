"""Per-answer-token loss weights: one choice of :class:`~trustrec.models.training.LLMTrainer`
(``token_weights``), so any training method can weight the tokens of an answer.

- :func:`uniform_token_weights`: every answer token counts the same (plain SFT; the trainer's
  loss with these weights equals the unweighted loss exactly);
- :func:`linear_decay_token_weights`: CFT's weights (arXiv 2410.22809), falling linearly from 1.0
  on the first answer token to ``beta`` on the last (the end-of-answer token included), so the
  tokens that name the item weigh more than its tail; a one-token answer gets 1.0.

A scheme is a callable ``n_answer_tokens -> n weights``; :func:`token_weight_scheme` resolves a
name (``"uniform"``, ``"linear_decay"``) or checks a callable.

Weights that depend on the tokens themselves are set on the examples before training (the trainer
keeps a variant's own weights): :func:`critical_token_weights`, ToR-style re-weighting of the
critical tokens, those whose log-probability differs most between the model being trained and a
reference. REFERENCES.md names the idea (large ``|Δ log p|`` between a reference and the current
model) without a formula; ours is ``w_t = (1 - mix) + mix * |Δ_t| / mean_answer |Δ|``, so the
weights of an answer average 1 (the loss keeps its scale), ``mix = 0`` is uniform, and an answer on
which the two models agree exactly keeps uniform weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustrec.models.training.llm import TrainingExample

__all__ = [
    "TOKEN_WEIGHT_SCHEMES",
    "critical_token_weights",
    "linear_decay_token_weights",
    "token_weight_scheme",
    "uniform_token_weights",
]


def uniform_token_weights(n: int) -> list[float]:
    """``n`` weights of 1.0.

    Parameters
    ----------
    n : int
        Number of answer tokens (>= 0).

    Returns
    -------
    list of float
        The weights.
    """
    if n < 0:
        raise ValueError(f"uniform_token_weights: n must be >= 0, got {n}")
    return [1.0] * n


def linear_decay_token_weights(n: int, *, beta: float = 0.25) -> list[float]:
    """CFT's weights: ``1 - k * (1 - beta) / (n - 1)`` for the ``k``-th of ``n`` answer tokens
    (from 0), so 1.0 first and ``beta`` last; ``[1.0]`` for a one-token answer (the paper's code
    divides by ``n - 1``, zero there).

    Parameters
    ----------
    n : int
        Number of answer tokens (>= 0).
    beta : float
        The last token's weight, in (0, 1].

    Returns
    -------
    list of float
        The weights.

    Raises
    ------
    ValueError
        When ``n`` is negative or ``beta`` outside (0, 1].
    """
    if n < 0:
        raise ValueError(f"linear_decay_token_weights: n must be >= 0, got {n}")
    if not 0 < beta <= 1:
        raise ValueError(f"linear_decay_token_weights: beta must be in (0, 1], got {beta}")
    step = (1.0 - beta) / (n - 1) if n > 1 else 0.0
    return [1.0 - k * step for k in range(n)]


TOKEN_WEIGHT_SCHEMES: dict[str, Callable[[int], Sequence[float]]] = {
    "uniform": uniform_token_weights,
    "linear_decay": linear_decay_token_weights,
}


def token_weight_scheme(scheme: str | Callable[[int], Sequence[float]]) -> Callable[[int], Sequence[float]]:
    """The weighting callable named by ``scheme`` (a key of :data:`TOKEN_WEIGHT_SCHEMES`), or
    ``scheme`` itself when it is callable.

    Parameters
    ----------
    scheme : str or callable
        A scheme name, or ``n_answer_tokens -> weights``.

    Returns
    -------
    callable
        ``n -> n weights``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    if callable(scheme):
        return scheme
    try:
        return TOKEN_WEIGHT_SCHEMES[scheme]
    except KeyError:
        raise ValueError(
            f"unknown token weight scheme {scheme!r}; known: {sorted(TOKEN_WEIGHT_SCHEMES)} or a callable"
        ) from None


def critical_token_weights(
    model: Any,
    reference: Any,
    examples: Sequence[TrainingExample],
    *,
    pad_id: int,
    mix: float = 0.5,
    batch_size: int = 8,
) -> list[TrainingExample]:
    """ToR-style weights (module docstring): each answer token weighted by how far its
    log-probability under ``model`` is from ``reference``'s, the weights of an answer averaging 1.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The model being trained (its current weights).
    reference : transformers.PreTrainedModel
        The reference (e.g. the model before fine-tuning), on the same tokenizer.
    examples : sequence of TrainingExample
        The examples; every variant (and rejected row) is weighted.
    pad_id : int
        Token id used for padding.
    mix : float
        Share of the weight that follows ``|Δ log p|``, in [0, 1] (0: uniform).
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    list of TrainingExample
        The examples with ``weights`` set on every row (their other fields unchanged).

    Raises
    ------
    ValueError
        When ``mix`` is outside [0, 1] or ``batch_size`` below 1.
    """
    import dataclasses

    import torch

    from trustrec.models.training.objectives import IGNORE, collate_examples, token_logprobs

    if not 0 <= mix <= 1:
        raise ValueError(f"critical_token_weights: mix must be in [0, 1], got {mix}")
    if batch_size < 1:
        raise ValueError(f"critical_token_weights: batch_size must be >= 1, got {batch_size}")
    rows = [v for e in examples for v in (*e.variants, *e.rejected)]
    weights: list[list[float]] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = collate_examples([(v.prompt_ids, v.answer_ids) for v in chunk], pad_id)
            batch = {k: t.to(device) for k, t in batch.items()}
            delta = [
                token_logprobs(
                    m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
                )
                for m in (model, reference)
            ]
            gap = (delta[0] - delta[1]).abs()
            answer = batch["labels"][:, 1:] != IGNORE
            for r in range(len(chunk)):
                g = gap[r][answer[r]].double().cpu().numpy()
                mean = g.mean() if len(g) else 0.0
                weights.append(((1 - mix) + mix * g / mean).tolist() if mean > 0 else [1.0] * len(g))
    out, i = [], 0
    for e in examples:
        n_variants, n_rejected = len(e.variants), len(e.rejected)
        variants = tuple(dataclasses.replace(v, weights=w) for v, w in zip(e.variants, weights[i : i + n_variants]))
        i += n_variants
        rejected = tuple(dataclasses.replace(v, weights=w) for v, w in zip(e.rejected, weights[i : i + n_rejected]))
        i += n_rejected
        out.append(dataclasses.replace(e, variants=variants, rejected=rejected))
    return out
