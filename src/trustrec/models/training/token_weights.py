"""Per-answer-token loss weights: one choice of :class:`~trustrec.models.training.LLMTrainer`
(``token_weights``), so any training method can weight the tokens of an answer.

- :func:`uniform_token_weights`: every answer token counts the same (plain SFT; the trainer's
  loss with these weights equals the unweighted loss exactly);
- :func:`linear_decay_token_weights`: CFT's weights (arXiv 2410.22809), falling linearly from 1.0
  on the first answer token to ``beta`` on the last (the end-of-answer token included), so the
  tokens that name the item weigh more than its tail; a one-token answer gets 1.0.

A scheme is a callable ``n_answer_tokens -> n weights``; :func:`token_weight_scheme` resolves a
name (``"uniform"``, ``"linear_decay"``) or checks a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["TOKEN_WEIGHT_SCHEMES", "linear_decay_token_weights", "token_weight_scheme", "uniform_token_weights"]


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
