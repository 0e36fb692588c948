"""The LLM trainer: examples with any number of prompt variants, per-token loss weights and
composable loss terms.

A :class:`TrainingExample` holds one or more :class:`PromptVariant` rows (``prompt_ids``,
``answer_ids``, optional per-answer-token ``weights``), e.g. the same target with and without
the history, and optionally ``rejected`` rows (one per variant, the dispreferred answers for
preference terms) and free ``meta`` for the caller's reward function. :class:`LLMTrainer`
shuffles the examples with the caller's generator, batches ``batch_size`` examples at a time
(every variant of an example lands in the same batch), runs one forward pass over the variant
rows and sums its loss terms, each a callable ``term(ctx) -> scalar`` on a
:class:`LossContext` (the batch, the model's outputs, a lazily computed forward pass over the
rejected rows):

- :class:`CausalLMLoss`: next-token cross-entropy on the answer tokens (:func:`causal_lm_loss`,
  weighted by the per-token weights when an example has them);
- :class:`PairwisePreferenceLoss`: DPO (``-log sigmoid(beta * ((c - c_ref) - (r - r_ref)))``)
  or a hinge margin (``max(0, margin - (c - r))``) on sequence log-likelihoods of the chosen and
  rejected answers (:func:`sequence_logprobs`, :func:`preference_loss`);
- :class:`DistillationLoss`: ``T^2 KL(teacher || student)`` on the answer tokens, the teacher's
  logits given by the caller (:func:`distillation_loss`);
- :class:`ListRewardLoss`: REINFORCE on rollouts sampled per example by the caller's sampler and
  scored by the caller's list-level reward function (:func:`reinforce_loss`).

Each term has a ``weight``. The plain functions under the terms (:func:`collate_examples`,
:func:`causal_lm_loss`, :data:`IGNORE` ...) are in :mod:`~trustrec.models.training.objectives`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from trustrec.models.training.objectives import (
    IGNORE,
    causal_lm_loss,
    collate_examples,
    distillation_loss,
    preference_loss,
    reinforce_loss,
    sequence_logprobs,
)

if TYPE_CHECKING:
    import torch

    from trustrec.models.training.loop import EpochLoop

__all__ = [
    "CausalLMLoss",
    "DistillationLoss",
    "LLMTrainer",
    "ListRewardLoss",
    "LossContext",
    "LossTerm",
    "PairwisePreferenceLoss",
    "PromptVariant",
    "TrainingExample",
]


# -- examples ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptVariant:
    """One row: the prompt's token ids, the answer's token ids and optional per-answer-token
    loss weights.

    Parameters
    ----------
    prompt_ids : sequence of int
        The prompt's token ids.
    answer_ids : sequence of int
        The answer's token ids (the trained-on tokens).
    weights : sequence of float or None
        One loss weight per answer token; None: all equal.

    Raises
    ------
    ValueError
        When ``weights`` does not have one entry per answer token.
    """

    prompt_ids: Sequence[int]
    answer_ids: Sequence[int]
    weights: Sequence[float] | None = None

    def __post_init__(self):
        if self.weights is not None and len(self.weights) != len(self.answer_ids):
            raise ValueError(f"PromptVariant: {len(self.answer_ids)} answer tokens but {len(self.weights)} weights")


@dataclass(frozen=True)
class TrainingExample:
    """Any number of prompt variants of one example, optionally one rejected row per variant
    (preference terms) and caller data in ``meta`` (reward functions read it).

    Parameters
    ----------
    variants : tuple of PromptVariant
        At least one row (tuples are turned into :class:`PromptVariant`).
    rejected : tuple of PromptVariant
        None, or one dispreferred row per variant.
    meta : dict
        Free data for the caller (e.g. reward functions).

    Raises
    ------
    ValueError
        When there is no variant, or ``rejected`` is given with another length than ``variants``.
    """

    variants: tuple[PromptVariant, ...]
    rejected: tuple[PromptVariant, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "variants", tuple(_variant(v) for v in self.variants))
        object.__setattr__(self, "rejected", tuple(_variant(v) for v in self.rejected))
        if not self.variants:
            raise ValueError("TrainingExample: give at least one prompt variant")
        if self.rejected and len(self.rejected) != len(self.variants):
            raise ValueError(
                f"TrainingExample: {len(self.variants)} variants but {len(self.rejected)} rejected rows "
                "(give one rejected row per variant)"
            )

    @classmethod
    def single(cls, prompt_ids, answer_ids, weights=None, **meta) -> TrainingExample:
        return cls((PromptVariant(list(prompt_ids), list(answer_ids), weights),), meta=meta)


def _variant(v) -> PromptVariant:
    return v if isinstance(v, PromptVariant) else PromptVariant(*v)


def _as_example(e) -> TrainingExample:
    if isinstance(e, TrainingExample):
        return e
    return TrainingExample.single(*e)  # a (prompt_ids, answer_ids[, weights]) pair


def _collate_rows(rows: Sequence[PromptVariant], pad_id: int):
    weighted = any(r.weights is not None for r in rows)
    weights = (
        [list(r.weights) if r.weights is not None else [1.0] * len(r.answer_ids) for r in rows] if weighted else None
    )
    return collate_examples([(r.prompt_ids, r.answer_ids) for r in rows], pad_id, weights)


# -- loss terms ----------------------------------------------------------------------------------------
class LossContext:
    """What a loss term sees for one batch: ``examples``, ``batch`` (the collated variant rows
    on the device, plus ``example_index``: the example of each row), ``outputs`` (the model's
    forward pass over them), ``rejected_batch`` / ``rejected_outputs`` (computed on first use),
    ``model`` and ``trainer``.

    Parameters
    ----------
    trainer : LLMTrainer
        The trainer running the batch (its ``model`` becomes ``model``).
    examples : list of TrainingExample
        The batch's examples.
    batch : dict
        The collated variant rows, on the device.
    outputs : object or None
        The model's forward pass over ``batch`` (with ``logits``); None: run on first use (terms
        that score their own rows, such as rollouts, never pay for it).
    """

    def __init__(self, trainer: LLMTrainer, examples: list[TrainingExample], batch: dict, outputs: Any = None):
        self.trainer, self.model, self.examples, self.batch = trainer, trainer.model, examples, batch
        self._outputs = outputs
        self._rejected = None

    @property
    def outputs(self) -> Any:
        """The model's forward pass over ``batch`` (run on first use)."""
        if self._outputs is None:
            self._outputs = self.trainer.forward(self.batch)
        return self._outputs

    def _forward_rejected(self):
        if self._rejected is None:
            rows = [r for e in self.examples for r in e.rejected]
            if len(rows) != sum(len(e.variants) for e in self.examples):
                raise ValueError("a preference loss needs one rejected row per prompt variant in every example")
            batch = self.trainer.to_device(_collate_rows(rows, self.trainer.pad_id))
            self._rejected = (batch, self.trainer.forward(batch))
        return self._rejected

    @property
    def rejected_batch(self) -> dict:
        return self._forward_rejected()[0]

    @property
    def rejected_outputs(self):
        return self._forward_rejected()[1]


class LossTerm:
    """A weighted loss term: ``weight * self.compute(ctx)``; None means no contribution."""

    weight: float = 1.0

    def __call__(self, ctx: LossContext):
        value = self.compute(ctx)
        if value is None:
            return None
        return value if self.weight == 1.0 else self.weight * value

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        raise NotImplementedError


@dataclass
class CausalLMLoss(LossTerm):
    """Causal-LM cross-entropy on the answer tokens (per-token weighted when rows carry weights).

    Parameters
    ----------
    weight : float
        Factor of the term in the summed loss.
    variant : int or None
        Only the rows of this prompt variant (e.g. 0, the factual prompt of a counterfactual
        pair); None: every row.
    """

    weight: float = 1.0
    variant: int | None = None

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        labels, weights = ctx.batch["labels"], ctx.batch.get("weights")
        if self.variant is not None:
            rows = ctx.batch["variant_index"] == self.variant
            labels = labels.masked_fill(~rows[:, None], IGNORE)
        return causal_lm_loss(ctx.outputs.logits, labels, weights)


@dataclass
class PairwisePreferenceLoss(LossTerm):
    """Preference of each variant's answer over its rejected row (see :func:`preference_loss`).
    ``reference`` (optional) maps a batch to reference logits (e.g. a frozen copy of the model);
    ``average`` uses mean instead of summed token log-probabilities.

    Parameters
    ----------
    kind : {"dpo", "margin"}
        Which preference loss.
    beta : float
        DPO's inverse temperature.
    margin : float
        The hinge's margin.
    reference : callable or None
        Maps a batch to reference logits; None: no reference.
    average : bool
        Whether to average the token log-probabilities instead of summing them.
    weight : float
        Factor of the term in the summed loss.
    """

    kind: Literal["dpo", "margin"] = "dpo"
    beta: float = 0.1
    margin: float = 1.0
    reference: Callable[[dict], Any] | None = None
    average: bool = False
    weight: float = 1.0

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        import torch

        chosen = sequence_logprobs(ctx.outputs.logits, ctx.batch["labels"], average=self.average)
        rejected = sequence_logprobs(ctx.rejected_outputs.logits, ctx.rejected_batch["labels"], average=self.average)
        ref_c = ref_r = None
        if self.reference is not None:
            with torch.no_grad():
                ref_c = sequence_logprobs(self.reference(ctx.batch), ctx.batch["labels"], average=self.average)
                ref_r = sequence_logprobs(
                    self.reference(ctx.rejected_batch), ctx.rejected_batch["labels"], average=self.average
                )
        return preference_loss(chosen, rejected, ref_c, ref_r, kind=self.kind, beta=self.beta, margin=self.margin)


@dataclass
class DistillationLoss(LossTerm):
    """KL to a teacher: ``teacher(batch)`` returns the teacher's logits for the batch's rows
    (same vocabulary); see :func:`distillation_loss`.

    Parameters
    ----------
    teacher : callable
        Maps a batch to the teacher's logits for its rows (computed without gradients).
    temperature : float
        Softening temperature.
    weight : float
        Factor of the term in the summed loss.
    """

    teacher: Callable[[dict], Any]
    temperature: float = 1.0
    weight: float = 1.0

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        import torch

        with torch.no_grad():
            teacher = self.teacher(ctx.batch)
        return distillation_loss(ctx.outputs.logits, teacher, ctx.batch["labels"], temperature=self.temperature)


@dataclass
class ListRewardLoss(LossTerm):
    """REINFORCE with a list-level reward supplied by the caller: for each example,
    ``sample(example) -> list of answer token-id sequences`` (e.g.
    :meth:`~trustrec.models.training.RolloutSampler.sample_ids`), ``reward(example, rollouts) ->
    one float per rollout`` (e.g. a trustrec metric of the list the rollouts name); the loss is
    :func:`reinforce_loss` of the rollouts' log-likelihoods given the example's first prompt
    variant, averaged over the examples.

    Parameters
    ----------
    sample : callable
        Maps an example to its rollouts, answer token-id sequences.
    reward : callable
        Maps an example and its rollouts to one reward per rollout.
    baseline : {"mean", "none"}
        Baseline of :func:`reinforce_loss`.
    weight : float
        Factor of the term in the summed loss.
    """

    sample: Callable[[TrainingExample], list]
    reward: Callable[[TrainingExample, list], Sequence[float]]
    baseline: Literal["mean", "none"] = "mean"
    weight: float = 1.0

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        trainer, terms = ctx.trainer, []
        for example in ctx.examples:
            rollouts = [list(r) for r in self.sample(example)]
            if not rollouts:
                continue
            rewards = np.asarray(self.reward(example, rollouts), dtype=np.float64)
            if rewards.shape != (len(rollouts),):
                raise ValueError(f"ListRewardLoss: reward gave shape {rewards.shape} for {len(rollouts)} rollouts")
            prompt = example.variants[0].prompt_ids
            batch = trainer.to_device(collate_examples([(prompt, r) for r in rollouts], trainer.pad_id))
            logp = sequence_logprobs(trainer.forward(batch).logits, batch["labels"])
            terms.append(reinforce_loss(logp, rewards, baseline=self.baseline))
        if not terms:
            return None
        return cast("torch.Tensor", sum(terms) / len(terms))  # terms is not empty: a tensor


# -- the trainer ---------------------------------------------------------------------------------------
class LLMTrainer:
    """Trains ``model`` (a causal LM taking ``input_ids`` and ``attention_mask``) on
    :class:`TrainingExample` objects (or ``(prompt_ids, answer_ids[, weights])`` tuples) with
    AdamW over its trainable parameters and the sum of ``losses`` (default: causal LM only).

    :meth:`train_epoch` runs one epoch: the examples in ``rng.permutation`` order, split into
    ``ceil(n / batch_size)`` near-equal batches (``np.array_split``); it returns the mean batch
    loss weighted by the batch's number of examples. :meth:`fit` runs it under an
    :class:`~trustrec.models.training.EpochLoop` with the given callbacks.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM called with ``input_ids`` and ``attention_mask``, whose output has ``logits``.
    pad_id : int
        Token id used for padding.
    losses : sequence of callable or None
        Loss terms summed per batch; None: ``[CausalLMLoss()]``.
    learning_rate : float
        AdamW's learning rate (unused when ``optimizer`` is given).
    batch_size : int
        Examples per batch (at least 1).
    optimizer : torch.optim.Optimizer or None
        Optimizer to use; None: AdamW over the model's trainable parameters.
    loss_fn : callable or None
        Maps a collated batch to its loss, instead of ``losses``.
    autocast : {"bfloat16"} or None
        Run forward and loss under ``torch.autocast`` in this dtype (weights and optimizer stay
        in their own dtype); None (default): no autocast.
    length_bucketing : bool
        Batch examples of similar length together (less padding): the shuffled examples are cut
        into pools of 50 batches, each pool sorted by length and split into batches, and the
        batches shuffled (default False: batches in plain shuffled order).
    warmup_steps : int
        Optimizer steps over which the learning rate rises linearly from 0 (default 0).
    total_steps : int or None
        With a value, the learning rate falls linearly to 0 at this step after the warm-up (the
        Hugging Face "linear" schedule); None (default): constant after the warm-up.
    token_weights : str, callable or None
        Per-answer-token weights for rows that carry none: a scheme of
        :mod:`~trustrec.models.training.token_weights` (``"uniform"``, ``"linear_decay"``) or
        ``n_answer_tokens -> weights``; None (default): unweighted.
    skip_empty : bool
        A batch to which no loss term contributes is skipped (no update; counted in
        ``skipped_batches``, the epoch loss averages the other batches, NaN when none) instead of
        raising (default False): rollout terms whose batch carried no learning signal.

    Raises
    ------
    ValueError
        When ``batch_size`` is less than 1, ``warmup_steps`` negative, or ``autocast`` or
        ``token_weights`` unknown.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        pad_id: int,
        losses: Sequence[Callable] | None = None,
        learning_rate: float = 2e-4,
        batch_size: int = 8,
        optimizer: torch.optim.Optimizer | None = None,
        loss_fn: Callable | None = None,
        autocast: str | None = None,
        length_bucketing: bool = False,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        token_weights: str | Callable[[int], Sequence[float]] | None = None,
        skip_empty: bool = False,
    ):
        import torch

        from trustrec.models.training.token_weights import token_weight_scheme

        if batch_size < 1:
            raise ValueError(f"LLMTrainer: batch_size must be >= 1, got {batch_size}")
        if autocast not in (None, "bfloat16"):
            raise ValueError(f"LLMTrainer: autocast must be None or 'bfloat16', got {autocast!r}")
        if warmup_steps < 0:
            raise ValueError(f"LLMTrainer: warmup_steps must be >= 0, got {warmup_steps}")
        self.autocast, self.length_bucketing = autocast, bool(length_bucketing)
        self.skip_empty, self.skipped_batches = bool(skip_empty), 0
        self.token_weights = None if token_weights is None else token_weight_scheme(token_weights)
        self.model, self.pad_id, self.batch_size = model, int(pad_id), int(batch_size)
        self.losses = list(losses) if losses is not None else [CausalLMLoss()]
        self.loss_fn = loss_fn
        self.optimizer = (
            optimizer
            if optimizer is not None
            else torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
        )
        self.scheduler = None
        if warmup_steps or total_steps:

            def factor(step: int) -> float:
                if step < warmup_steps:
                    return (step + 1) / warmup_steps
                if total_steps is None:
                    return 1.0
                return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def to_device(self, batch: dict) -> dict:
        device = self.device
        return {k: v.to(device) for k, v in batch.items()}

    def forward(self, batch: dict) -> Any:
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def collate(self, examples: Sequence[TrainingExample]) -> dict:
        """The variant rows of ``examples`` (in order) collated, with ``example_index`` and
        ``variant_index`` (each row's example and its place among that example's variants); rows
        without weights get the trainer's ``token_weights`` when it has a scheme."""
        import dataclasses

        import torch

        rows = [v for e in examples for v in e.variants]
        if self.token_weights is not None:
            rows = [
                v
                if v.weights is not None
                else dataclasses.replace(v, weights=list(self.token_weights(len(v.answer_ids))))
                for v in rows
            ]
        batch = _collate_rows(rows, self.pad_id)
        batch["example_index"] = torch.tensor([i for i, e in enumerate(examples) for _ in e.variants], dtype=torch.long)
        batch["variant_index"] = torch.tensor([j for e in examples for j in range(len(e.variants))], dtype=torch.long)
        return batch

    def batch_loss(self, examples: Sequence[TrainingExample], batch: dict | None = None) -> torch.Tensor | None:
        """The summed loss terms of one batch of examples (``loss_fn(batch)`` instead when the
        trainer was given one); None when no term contributed and ``skip_empty`` is set."""
        examples = [_as_example(e) for e in examples]
        if batch is None:
            batch = self.to_device(self.collate(examples))
        with self._autocast():
            return self._loss(examples, batch)

    def _autocast(self):
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _loss(self, examples: list[TrainingExample], batch: dict) -> torch.Tensor | None:
        if self.loss_fn is not None:
            return self.loss_fn(batch)
        ctx = LossContext(self, examples, batch)
        total = None
        for term in self.losses:
            value = term(ctx)
            if value is not None:
                total = value if total is None else total + value
        if total is None and not self.skip_empty:
            raise ValueError("LLMTrainer: no loss term contributed to the batch")
        return total

    def n_batches(self, n_examples: int) -> int:
        return max(1, math.ceil(n_examples / self.batch_size))

    def batch_order(self, examples: Sequence[TrainingExample], rng: np.random.Generator) -> list[np.ndarray]:
        """The example indices of each batch of one epoch, in training order (see the class
        docstring: plain shuffled batches, or length-bucketed ones)."""
        order = rng.permutation(len(examples))
        n_batches = self.n_batches(len(examples))
        if not self.length_bucketing:
            return list(np.array_split(order, n_batches))
        lengths = np.array([max(len(v.prompt_ids) + len(v.answer_ids) for v in e.variants) for e in examples])
        pool = 50 * self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(np.array_split(chunk, max(1, math.ceil(len(chunk) / self.batch_size))))
        return [batches[i] for i in rng.permutation(len(batches))]

    def train_epoch(
        self, examples: Sequence, rng: np.random.Generator, on_step: Callable[[], None] | None = None
    ) -> float:
        examples = [_as_example(e) for e in examples]
        if not examples:
            raise ValueError("LLMTrainer.train_epoch: no training example")
        self.model.train()
        total, count = 0.0, 0
        for idx in self.batch_order(examples, rng):
            chosen = [examples[i] for i in idx]
            loss = self.batch_loss(chosen)
            if loss is None:  # no term had a signal (skip_empty): no update
                self.skipped_batches += 1
                if on_step is not None:
                    on_step()
                continue
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if on_step is not None:
                on_step()
        return total / count if count else float("nan")

    def fit(self, examples: Sequence, rng: np.random.Generator, epochs: int, callbacks: Sequence = ()) -> EpochLoop:
        """Runs ``epochs`` epochs under an :class:`EpochLoop` with ``callbacks``; returns the loop."""
        from trustrec.models.training.loop import EpochLoop

        examples = [_as_example(e) for e in examples]
        loop: EpochLoop
        loop = EpochLoop(lambda epoch: self.train_epoch(examples, rng, on_step=loop.step), epochs, callbacks)
        return loop.run()
