"""The plain functions under the LLM trainer's loss terms, each unit-tested on small tensors:
right-padded batches (:func:`collate_examples`), next-token cross-entropy on the answer tokens
(:func:`causal_lm_loss`), per-token and per-sequence log-likelihoods (:func:`token_logprobs`,
:func:`sequence_logprobs`), pairwise preference (:func:`preference_loss`), distillation
(:func:`distillation_loss`) and REINFORCE (:func:`reinforce_loss`). :data:`IGNORE` is the label
of tokens that are not trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast

import numpy.typing as npt

if TYPE_CHECKING:
    import torch

__all__ = [
    "IGNORE",
    "causal_lm_loss",
    "collate_examples",
    "distillation_loss",
    "preference_loss",
    "reinforce_loss",
    "sequence_logprobs",
    "token_logprobs",
]

IGNORE = -100


def collate_examples(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_id: int,
    weights: Sequence[Sequence[float]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded batch from ``(prompt_ids, answer_ids)`` pairs: ``input_ids``,
    ``attention_mask``, ``labels`` (-100 on prompt and padding) and, with ``weights`` (one
    sequence per example, one weight per answer token), ``weights`` (0 off the answer).

    Parameters
    ----------
    examples : sequence of (sequence of int, sequence of int)
        ``(prompt_ids, answer_ids)`` pairs, one per row.
    pad_id : int
        Token id used for padding.
    weights : sequence of sequence of float, optional
        Per example, one loss weight per answer token.

    Returns
    -------
    dict of str to torch.Tensor
        ``input_ids``, ``attention_mask`` and ``labels`` of shape (n_examples, longest row),
        and ``weights`` when given.

    Raises
    ------
    ValueError
        When an example's weights do not match its number of answer tokens.
    """
    import torch

    length = max(len(p) + len(a) for p, a in examples)
    n = len(examples)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    labels = torch.full((n, length), IGNORE, dtype=torch.long)
    w = torch.zeros((n, length), dtype=torch.float32) if weights is not None else None
    for row, (prompt, answer) in enumerate(examples):
        seq = list(prompt) + list(answer)
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        labels[row, len(prompt) : len(seq)] = torch.tensor(list(answer), dtype=torch.long)
        if w is not None:
            assert weights is not None  # w exists only when weights were given
            if len(weights[row]) != len(answer):
                raise ValueError(
                    f"collate_examples: example {row} has {len(answer)} answer tokens but {len(weights[row])} weights"
                )
            w[row, len(prompt) : len(seq)] = torch.as_tensor(weights[row], dtype=torch.float32)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if w is not None:
        batch["weights"] = w
    return batch


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy on positions whose label is not -100 (logits at ``t`` predict the
    label at ``t + 1``). Without ``weights``: the mean over those tokens (the standard loss).
    With ``weights`` (same shape as ``labels``): ``sum(w * ce) / sum(w)`` over those tokens.

    Parameters
    ----------
    logits : torch.Tensor
        (batch, length, vocabulary) model outputs.
    labels : torch.Tensor
        (batch, length) target token ids, -100 where not trained on.
    weights : torch.Tensor, optional
        (batch, length) per-token loss weights.

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    import torch.nn.functional as F

    logits = logits[:, :-1, :].float()
    target = labels[:, 1:]
    ce = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(target.shape)
    valid = (target != IGNORE).float()
    if weights is None:
        return (ce * valid).sum() / valid.sum().clamp(min=1.0)
    w = weights[:, 1:].float() * valid
    return (ce * w).sum() / w.sum().clamp(min=1e-12)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per position, the next-token log-probability of the label (0 where the label is -100):
    column ``t`` is ``log p(labels[t + 1] | ... t)``.

    Parameters
    ----------
    logits : torch.Tensor
        (batch, length, vocabulary) model outputs.
    labels : torch.Tensor
        (batch, length) target token ids, -100 outside the answer.

    Returns
    -------
    torch.Tensor
        (batch, length - 1) log-probabilities, 0 off the answer.
    """
    import torch

    logp = torch.log_softmax(logits[:, :-1, :].float(), dim=-1)
    target = labels[:, 1:]
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * (target != IGNORE)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, *, average: bool = False) -> torch.Tensor:
    """Per row, the log-likelihood of its answer (the tokens whose label is not -100): the sum of
    the next-token log-probabilities (:func:`token_logprobs`), or their mean with ``average``.

    Parameters
    ----------
    logits : torch.Tensor
        (batch, length, vocabulary) model outputs.
    labels : torch.Tensor
        (batch, length) target token ids, -100 outside the answer.
    average : bool
        Whether to average the token log-probabilities instead of summing them.

    Returns
    -------
    torch.Tensor
        (batch,) log-likelihood of each row's answer.
    """
    total = token_logprobs(logits, labels).sum(1)
    n = (labels[:, 1:] != IGNORE).sum(1).clamp(min=1)
    return total / n if average else total


def preference_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None = None,
    ref_rejected: torch.Tensor | None = None,
    *,
    kind: str = "dpo",
    beta: float = 0.1,
    margin: float = 1.0,
) -> torch.Tensor:
    """Mean pairwise preference loss on sequence log-likelihoods: ``kind="dpo"`` is
    ``-log sigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))`` (references 0
    when not given), ``kind="margin"`` is ``max(0, margin - (chosen - rejected))``.

    Parameters
    ----------
    chosen, rejected : torch.Tensor
        Sequence log-likelihoods of the preferred and the dispreferred answers.
    ref_chosen, ref_rejected : torch.Tensor, optional
        The same under a reference model (``kind="dpo"`` only).
    kind : {"dpo", "margin"}
        Which loss.
    beta : float
        DPO's inverse temperature.
    margin : float
        The hinge's margin.

    Returns
    -------
    torch.Tensor
        The scalar mean loss.

    Raises
    ------
    ValueError
        When ``kind`` is neither ``"dpo"`` nor ``"margin"``.
    """
    import torch.nn.functional as F

    if kind == "dpo":
        diff = chosen - rejected
        if ref_chosen is not None:
            diff = diff - (ref_chosen - cast("torch.Tensor", ref_rejected))  # given together with ref_chosen
        return -F.logsigmoid(beta * diff).mean()
    if kind == "margin":
        return (margin - (chosen - rejected)).clamp(min=0).mean()
    raise ValueError(f"preference_loss: kind must be 'dpo' or 'margin', got {kind!r}")


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` summed over the vocabulary and
    averaged over the answer positions (those predicting a label that is not -100).

    Parameters
    ----------
    student_logits, teacher_logits : torch.Tensor
        (batch, length, vocabulary) logits of the student and the teacher.
    labels : torch.Tensor
        (batch, length) target token ids, -100 outside the answer.
    temperature : float
        Softening temperature ``T``.

    Returns
    -------
    torch.Tensor
        The scalar loss.
    """
    import torch

    s = torch.log_softmax(student_logits[:, :-1, :].float() / temperature, dim=-1)
    t = torch.log_softmax(teacher_logits[:, :-1, :].float() / temperature, dim=-1)
    valid = (labels[:, 1:] != IGNORE).float()
    kl = (t.exp() * (t - s)).sum(-1)
    return (kl * valid).sum() / valid.sum().clamp(min=1.0) * temperature**2


def reinforce_loss(
    logprobs: torch.Tensor, rewards: npt.ArrayLike | torch.Tensor, *, baseline: Literal["mean", "none"] = "mean"
) -> torch.Tensor:
    """REINFORCE on a group of rollouts of one query: ``-mean((r - b) * logp)`` with ``b`` the
    group's mean reward (``baseline="mean"``) or 0.

    Parameters
    ----------
    logprobs : torch.Tensor
        (n_rollouts,) log-likelihood of each rollout.
    rewards : array_like
        One reward per rollout.
    baseline : {"mean", "none"}
        Subtract the group's mean reward, or nothing.

    Returns
    -------
    torch.Tensor
        The scalar loss.

    Raises
    ------
    ValueError
        When ``baseline`` is neither ``"mean"`` nor ``"none"``.
    """
    import torch

    rewards = torch.as_tensor(rewards, dtype=logprobs.dtype, device=logprobs.device)
    if baseline == "mean":
        adv = rewards - rewards.mean()
    elif baseline == "none":
        adv = rewards
    else:
        raise ValueError(f"reinforce_loss: baseline must be 'mean' or 'none', got {baseline!r}")
    return -(adv.detach() * logprobs).mean()
