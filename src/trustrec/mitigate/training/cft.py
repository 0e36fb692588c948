"""CFT, counterfactual fine-tuning (arXiv 2410.22809; code itsmeyjt/CFT), as loss terms and an
example builder for :class:`~trustrec.models.training.LLMTrainer`.

Every example is read twice: with the user's history (the factual prompt) and with the history
removed (the counterfactual prompt: the same instruction, no input), both ending in the same
answer. The loss is

    weighted CE(factual logits) + 0.1 * weighted CE(factual logits - counterfactual logits)

on the answer tokens, both normalised by the batch's sum of token weights; the weights fall
linearly over the answer from 1.0 to ``beta`` = 0.25
(:func:`~trustrec.models.training.token_weights.linear_decay_token_weights`). The second term
fits the label from the difference of the two logit sets, the history's causal effect on the
answer; it counts only in training.

Alignment: the paper's code left-pads both prompts to one length so the answers line up at the
right edge (and, without explicit position ids, shifts the answers' positions by the padding).
Here the trainer right-pads every row, so each row's positions start at 0, and
:class:`CounterfactualEffectLoss` pairs the two rows' answer positions by the labels: the k-th
answer token of the factual row with the k-th of the counterfactual row (checked equal).

An example whose history is empty has the same prompt twice: the effect is zero by definition,
so it is kept in the factual term and left out of the counterfactual one, and
:func:`counterfactual_examples` counts such examples.

:class:`CounterfactualGenerativeRecommender` (registered as ``llm_generative_cft``) is the
generative recommender (``llm_generative``: BIGRec-style prompts, constrained decoding,
grounding) trained this way. Its counterfactual prompt is the same prompt with the history
removed: trustrec's template then says the user has no items yet, where the paper's Alpaca
prompt drops its input section; the instruction and the answer are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.errors import DataError
from trustrec.models import register_model
from trustrec.models.llm import GenerativeConfig, GenerativeRecommender
from trustrec.models.training import IGNORE, CausalLMLoss, LossContext, LossTerm, PromptVariant, TrainingExample
from trustrec.models.training.token_weights import linear_decay_token_weights

if TYPE_CHECKING:
    import torch

__all__ = [
    "CFT_BETA",
    "CFT_EFFECT_WEIGHT",
    "CFTConfig",
    "CounterfactualEffectLoss",
    "CounterfactualGenerativeRecommender",
    "cft_losses",
    "counterfactual_examples",
]

CFT_BETA = 0.25
CFT_EFFECT_WEIGHT = 0.1


def counterfactual_examples(
    factual_prompts: Sequence[Sequence[int]],
    counterfactual_prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    *,
    beta: float = CFT_BETA,
) -> tuple[list[TrainingExample], dict[str, int]]:
    """CFT's training examples: per example, the factual row (variant 0) and the counterfactual
    row (variant 1), both with the same answer and its linearly decaying token weights.

    Parameters
    ----------
    factual_prompts, counterfactual_prompts : sequence of sequence of int
        Token ids of each example's prompt with and without the history.
    answers : sequence of sequence of int
        Token ids of each example's answer (its end-of-answer token included).
    beta : float
        The last answer token's weight.

    Returns
    -------
    examples : list of TrainingExample
        One per input, ``meta["empty_history"]`` True where the two prompts are equal.
    counts : dict of str to int
        ``n_examples`` and ``n_empty_history`` (examples whose two prompts coincide).

    Raises
    ------
    DataError
        When the three sequences differ in length, or an answer or a prompt has no token.
    """
    if not len(factual_prompts) == len(counterfactual_prompts) == len(answers):
        raise DataError(
            f"counterfactual_examples: {len(factual_prompts)} factual prompts, {len(counterfactual_prompts)} "
            f"counterfactual prompts and {len(answers)} answers; give one of each per example"
        )
    examples, empty = [], 0
    for i, (factual, counterfactual, answer) in enumerate(zip(factual_prompts, counterfactual_prompts, answers)):
        if not len(answer):
            raise DataError(f"counterfactual_examples: example {i} has an empty answer")
        if not len(factual) or not len(counterfactual):
            raise DataError(f"counterfactual_examples: example {i} has an empty prompt (the instruction is missing)")
        same = list(factual) == list(counterfactual)
        empty += same
        weights = linear_decay_token_weights(len(answer), beta=beta)
        rows = (
            PromptVariant(list(factual), list(answer), weights),
            PromptVariant(list(counterfactual), list(answer), weights),
        )
        examples.append(TrainingExample(rows, meta={"empty_history": same}))
    return examples, {"n_examples": len(examples), "n_empty_history": int(empty)}


@dataclass
class CounterfactualEffectLoss(LossTerm):
    """CFT's second term: weighted cross-entropy of the answer from ``factual logits -
    counterfactual logits`` (module docstring); None outside training or when every example of
    the batch has an empty history.

    Parameters
    ----------
    weight : float
        Factor of the term (CFT: 0.1).
    factual, counterfactual : int
        The variant indices of the two rows of an example.
    """

    weight: float = CFT_EFFECT_WEIGHT
    factual: int = 0
    counterfactual: int = 1

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        import torch
        import torch.nn.functional as F

        if not ctx.model.training:
            return None
        batch = ctx.batch
        examples = [i for i, e in enumerate(ctx.examples) if not e.meta.get("empty_history", False)]
        if not examples:
            return None
        rows = {}
        for role, variant in (("factual", self.factual), ("counterfactual", self.counterfactual)):
            index = torch.full((len(ctx.examples),), -1, dtype=torch.long, device=batch["labels"].device)
            chosen = batch["variant_index"] == variant
            index[batch["example_index"][chosen]] = torch.nonzero(chosen, as_tuple=True)[0]
            wanted = index[examples]
            if (wanted < 0).any():
                raise ValueError(f"CounterfactualEffectLoss: an example has no variant {variant} ({role} row)")
            rows[role] = wanted
        target = batch["labels"][:, 1:]
        logits = ctx.outputs.logits[:, :-1, :]
        f_rows, c_rows = rows["factual"], rows["counterfactual"]
        f_mask, c_mask = target[f_rows] != IGNORE, target[c_rows] != IGNORE
        f_labels, c_labels = target[f_rows][f_mask], target[c_rows][c_mask]
        if f_labels.shape != c_labels.shape or not torch.equal(f_labels, c_labels):
            raise ValueError("CounterfactualEffectLoss: the factual and counterfactual rows have different answers")
        effect = logits[f_rows][f_mask].float() - logits[c_rows][c_mask].float()
        ce = F.cross_entropy(effect, f_labels, reduction="none")
        weights = batch.get("weights")
        w = weights[:, 1:][f_rows][f_mask].float() if weights is not None else torch.ones_like(ce)
        return (ce * w).sum() / w.sum().clamp(min=1e-12)


def cft_losses(effect_weight: float = CFT_EFFECT_WEIGHT) -> list[Any]:
    """CFT's loss terms for :class:`~trustrec.models.training.LLMTrainer`: the weighted causal-LM
    loss of the factual rows and :class:`CounterfactualEffectLoss`.

    Parameters
    ----------
    effect_weight : float
        Weight of the counterfactual term (CFT: 0.1).

    Returns
    -------
    list of LossTerm
        ``[CausalLMLoss(variant=0), CounterfactualEffectLoss(weight=effect_weight)]``.
    """
    return [CausalLMLoss(variant=0), CounterfactualEffectLoss(weight=effect_weight)]


class CFTConfig(GenerativeConfig):
    """Settings of :class:`CounterfactualGenerativeRecommender`: those of ``llm_generative`` plus

    Parameters
    ----------
    cft_beta : float
        The last answer token's weight (CFT: 0.25).
    cft_weight : float
        Weight of the counterfactual term (CFT: 0.1).
    """

    cft_beta: float = Field(CFT_BETA, gt=0, le=1)
    cft_weight: float = Field(CFT_EFFECT_WEIGHT, ge=0)


@register_model
class CounterfactualGenerativeRecommender(GenerativeRecommender):
    """The generative recommender fine-tuned with CFT (module docstring): the same examples as
    ``llm_generative``, each read with and without its history, CFT's token weights and loss.

    Fitted state adds ``cft_counts_`` (``n_examples``, ``n_empty_history``).

    Parameters
    ----------
    config : CFTConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs : object
        The settings (:class:`CFTConfig` fields) as keyword arguments.
    """

    name = "llm_generative_cft"
    config_class = CFTConfig
    config: CFTConfig

    def training_examples(self, train: Dataset, rng: np.random.Generator) -> list[Any]:
        """CFT's pairs of rows per example (:func:`counterfactual_examples`), from the examples of
        :meth:`~trustrec.models.llm.GenerativeRecommender.training_queries`."""
        queries, targets = self.training_queries(train, rng)
        removed = QueryBatch(queries.users, Ragged(np.zeros(len(queries) + 1, np.int64), np.empty(0, np.int64)))
        tok = self.tokenizer_
        factual = tok(self._prompts(queries), add_special_tokens=True)["input_ids"]
        counterfactual = tok(self._prompts(removed), add_special_tokens=True)["input_ids"]
        examples, counts = counterfactual_examples(
            factual, counterfactual, self._answer_ids(targets), beta=self.config.cft_beta
        )
        self.cft_counts_ = counts
        return examples

    def _loss_terms(self) -> list:
        return cft_losses(self.config.cft_weight)
