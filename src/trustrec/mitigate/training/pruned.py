"""Pruned LLM recommenders: PruneRec (arXiv 2507.07064) applied to a fitted LLM recommender, with
the paper's recovery by distillation, as a registered :class:`~trustrec.models.Recommender`.

Fitting (after the base is fitted):

1. **Calibration**: ``n_calibration_users`` training users with at least two interactions; each
   is asked about its history without the last item, and that item's answer text is the answer.
   The texts scored are the base's own prompts (its ``answer_prompts`` over its
   ``answer_candidates``) followed by the answer.
2. **Scores and plan**: :func:`~trustrec.mitigate.training.pruning_criteria.head_importance` (KL under
   cumulative masking, smoothed across layers) and
   :func:`~trustrec.mitigate.training.pruning_criteria.channel_importance` (top-activation counts) on the
   calibration texts; :func:`~trustrec.mitigate.training.pruning_criteria.plan_from_scores` prunes
   ``head_ratio`` of the query heads (evenly per key/value group) and ``channel_ratio`` of the MLP
   channels; :func:`~trustrec.mitigate.training.pruning.apply_plan` builds the smaller model.
3. **Recovery** (``recovery_epochs`` > 0): the pruned model (student) is trained on the
   calibration examples with PruneRec's loss, ``ce_weight * CE + kl_weight * KL(teacher ||
   student)`` on the answer tokens (0.2 and 0.8, as the paper), the unpruned model the teacher,
   through :class:`~trustrec.models.training.LLMTrainer` with
   :class:`~trustrec.models.training.CausalLMLoss` and
   :class:`~trustrec.models.training.DistillationLoss`.
4. **Hidden dimensions** (``hidden_ratio`` > 0): ``hidden_ratio`` of the hidden
   (residual-stream) dimensions are removed from the (recovered) pruned model, the lowest by
   :func:`~trustrec.mitigate.training.pruning_criteria.hidden_importance` (``|gradient x activation|`` of
   the last layer on the calibration texts), through
   :func:`~trustrec.mitigate.training.pruning.prune_hidden`, and recovery runs again.
5. **Whole layers** (``layer_ratio`` > 0): ``layer_ratio`` of the layers are removed from the
   (recovered) pruned model one at a time, each time the layer whose removal gives the lowest
   perplexity on validation texts
   (:func:`~trustrec.mitigate.training.pruning_criteria.layer_removal_order` on the model as it is, then
   :func:`~trustrec.mitigate.training.pruning.drop_layers`), and recovery runs again. The
   validation texts are built as the calibration texts from other training users (a disjoint
   draw of up to ``n_calibration_users``; the calibration texts when no user is left, said in
   ``pruning_info_``).

The pruned recommender answers as the base does, through the smaller model (the base's
``with_language_model``): its lists, and every call an audit makes through its
``answer_backend``, so the audits need no change. The base and its language model are never
modified. Saved: the plan (JSON) and the pruned weights (safetensors, beside the base's state).

PruneRec prunes heads, hidden dimensions and channels in three stages, each recovered; here heads
and channels are one stage (both scored on the unpruned model), then hidden dimensions, then
layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate.training._llm_wrapper import LLMWrapperRecommender
from trustrec.mitigate.training.pruning import PruningPlan, apply_plan, drop_layers, prune_hidden
from trustrec.mitigate.training.pruning_criteria import (
    channel_importance,
    head_importance,
    hidden_importance,
    layer_removal_order,
    plan_from_scores,
)
from trustrec.models import ModelSpec, TopK, has_capability, register_model

__all__ = ["PrunedConfig", "PrunedRecommender"]

_STUDENT = "student/"


class PrunedConfig(Config):
    """Settings of :class:`PrunedRecommender`.

    Parameters
    ----------
    base : ModelSpec
        The LLM recommender pruned: it answers through a local model's likelihood
        (``answer_likelihood``) and can score through another model (``with_language_model``);
        default ``llm_ranker``.
    head_ratio : float
        Share of query heads pruned in every layer, in [0, 1) (evenly per key/value group).
    channel_ratio : float
        Share of MLP channels pruned in every layer, in [0, 1).
    n_calibration_users : int
        Training users whose prompts score the heads and channels and train the recovery.
    hidden_ratio : float
        Share of the hidden dimensions removed after the width stage, in [0, 1) (rounded half up;
        one always stays; default 0: none).
    layer_ratio : float
        Share of the layers removed whole after the width and hidden stages, in [0, 1) (rounded half up to
        whole layers; one always stays; default 0: none).
    recovery_epochs : int
        Epochs of distillation recovery after each stage (0: none; PruneRec uses 3).
    learning_rate : float
        AdamW's learning rate for the recovery.
    ce_weight : float
        Weight of the cross-entropy on the answer tokens (PruneRec: 0.2).
    kl_weight : float
        Weight of ``KL(teacher || student)`` on the answer tokens (PruneRec: 0.8).
    temperature : float
        Distillation temperature.
    batch_size : int
        Texts per forward pass (scores and recovery).
    seed : int
        Seed of the user sample and the recovery's example order.
    """

    base: ModelSpec = Field(default_factory=lambda: ModelSpec(name="llm_ranker"))
    head_ratio: float = Field(1 / 3, ge=0, lt=1)
    channel_ratio: float = Field(0.25, ge=0, lt=1)
    hidden_ratio: float = Field(0.0, ge=0, lt=1)
    layer_ratio: float = Field(0.0, ge=0, lt=1)
    n_calibration_users: PositiveInt = 64
    recovery_epochs: NonNegativeInt = 0
    learning_rate: float = Field(1e-4, gt=0)
    ce_weight: float = Field(0.2, ge=0)
    kl_weight: float = Field(0.8, ge=0)
    temperature: float = Field(1.0, gt=0)
    batch_size: PositiveInt = 8
    seed: int = 0


_NEEDED = frozenset({"llm_backend", "answer_likelihood"})
_PASSED_ON = ("uses_history", "attributes", "candidates", "prompt", "llm_backend", "answer_likelihood")


@register_model
class PrunedRecommender(LLMWrapperRecommender):
    """An LLM recommender answering through a structurally pruned copy of its model (module
    docstring).

    Fitted state: ``student_lm_`` (the pruned causal LM, saved as its tensors), ``pruning_plan_``
    (:meth:`~trustrec.mitigate.training.pruning.PruningPlan.to_dict`), ``pruning_info_``
    (parameter counts, calibration and recovery figures) and ``calibration_users_``.

    Parameters
    ----------
    config : PrunedConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`PrunedConfig` fields) as keyword arguments.
    """

    name = "pruned"
    config: PrunedConfig
    config_class: ClassVar = PrunedConfig
    capabilities = frozenset(_PASSED_ON)
    devices = ("cpu", "cuda", "mps")

    # -- the teacher -----------------------------------------------------------------------------
    def _teacher(self) -> tuple[Any, Any]:
        """The base's local model and tokenizer (checked: the base can answer through another)."""
        base: Any = self.base_  # an LLM recommender: checked below
        missing = sorted(c for c in _NEEDED if not has_capability(base, c))
        if missing:
            raise ConfigError(
                f"pruned: the base {type(base).__name__} lacks the capabilities {missing}; pruning needs an LLM "
                "recommender answering through a local model"
            )
        if not callable(getattr(base, "with_language_model", None)):
            raise ConfigError(
                f"pruned: the base {type(base).__name__} cannot answer through another language model "
                "(no with_language_model); pruning supports llm_ranker"
            )
        backend = base.answer_backend
        if not hasattr(type(backend), "model"):
            raise ConfigError(
                f"pruned: the base answers through {type(backend).__name__}, which has no local model (pruning "
                "needs the weights: use a local backend)"
            )
        return backend.model, backend.tokenizer

    # -- fitting ---------------------------------------------------------------------------------
    def _calibration(self, train: Dataset) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
        """Sampled calibration users, then per part (calibration, validation: a disjoint draw of
        other users, empty when none is left) the prompts (history without its last item) and the
        answer texts (that item)."""
        histories = train.histories()
        eligible = np.flatnonzero(np.diff(histories.indptr) >= 2)
        if len(eligible) < 2:
            raise DataError(
                f"pruned: fewer than 2 training users of '{train.name}' have 2 or more interactions "
                "(calibration asks about a history without its last item)"
            )
        n = self.config.n_calibration_users
        drawn = np.random.default_rng(self.config.seed).permutation(eligible)
        parts = [np.sort(drawn[:n]), np.sort(drawn[n : 2 * n])]
        base: Any = self.base_  # checked by _teacher
        prompts, answers = [], []
        for users in parts:
            rows = [np.asarray(histories.row(int(u))) for u in users]
            queries = QueryBatch.from_histories([r[:-1] for r in rows], users=users)
            prompts.append(
                [p.text for p in base.answer_prompts(queries, base.answer_candidates(queries, 0))] if rows else []
            )
            answers.append(list(base.answer_texts(np.asarray([int(r[-1]) for r in rows], np.int64))) if rows else [])
        return parts[0], prompts, answers

    def _recover(
        self, student: Any, teacher: Any, tokenizer: Any, prompts: list[str], answers: list[str]
    ) -> list[float]:
        """PruneRec's recovery of ``student`` by distillation from ``teacher`` (module docstring, step 3)."""
        from trustrec.models.training import CausalLMLoss, DistillationLoss, LLMTrainer, TrainingExample

        c = self.config
        encode = lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
        examples = [TrainingExample.single(encode(p), encode(a)) for p, a in zip(prompts, answers)]
        if any(not e.variants[0].answer_ids for e in examples):
            raise DataError("pruned: an answer text has no token; recovery needs answer tokens")
        teacher.eval()

        def teacher_logits(batch: dict) -> Any:
            return teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        trainer = LLMTrainer(
            student,
            pad_id=int(pad),
            losses=[
                CausalLMLoss(weight=c.ce_weight),
                DistillationLoss(teacher_logits, temperature=c.temperature, weight=c.kl_weight),
            ],
            learning_rate=c.learning_rate,
            batch_size=c.batch_size,
        )
        loop = trainer.fit(examples, np.random.default_rng(c.seed), c.recovery_epochs)
        return [float(x) for x in loop.losses]

    def _setup(self, train: Dataset) -> None:
        c = self.config
        teacher, tokenizer = self._teacher()
        users, (prompts, valid_prompts), (answers, valid_answers) = self._calibration(train)
        texts = [p + a for p, a in zip(prompts, answers)]
        heads = head_importance(teacher, tokenizer, texts, batch_size=c.batch_size)
        channels = channel_importance(teacher, tokenizer, texts, batch_size=c.batch_size)
        plan = plan_from_scores(teacher.config, heads, channels, head_ratio=c.head_ratio, channel_ratio=c.channel_ratio)
        student = apply_plan(teacher, plan)
        info: dict[str, Any] = {
            "n_calibration_texts": len(texts),
            "recovery_losses": [],
            "removed_hidden": 0,
            "hidden_recovery_losses": [],
            "removed_layers": [],
            "layer_recovery_losses": [],
        }
        if c.recovery_epochs:
            info["recovery_losses"] = self._recover(student, teacher, tokenizer, prompts, answers)
        current = PruningPlan.of(student)
        dims = current.hidden or tuple(range(int(current.hidden_size or student.config.hidden_size)))
        n_drop = min(len(dims) - 1, math.floor(c.hidden_ratio * len(dims) + 0.5))
        if n_drop:
            scores = hidden_importance(student, tokenizer, texts, batch_size=c.batch_size)
            order = np.lexsort((np.arange(len(dims)), -scores))  # best first; ties keep the lower index
            student = prune_hidden(student, [dims[j] for j in order[: len(dims) - n_drop]])
            info["removed_hidden"] = int(n_drop)
            if c.recovery_epochs:
                info["hidden_recovery_losses"] = self._recover(student, teacher, tokenizer, prompts, answers)
        n_layers = len(plan.kept_layers)
        n_remove = min(n_layers - 1, math.floor(c.layer_ratio * n_layers + 0.5))
        if n_remove:
            validation = [p + a for p, a in zip(valid_prompts, valid_answers)] or texts
            info["layer_validation"] = (
                "other training users" if valid_prompts else "the calibration texts (no user left)"
            )
            info["n_validation_texts"] = len(validation)
            removed = layer_removal_order(student, tokenizer, validation, n_remove=n_remove, batch_size=c.batch_size)
            student = drop_layers(student, removed)
            info["removed_layers"] = [int(i) for i in removed]
            if c.recovery_epochs:
                info["layer_recovery_losses"] = self._recover(student, teacher, tokenizer, prompts, answers)
        plan = PruningPlan.of(student)
        kept, total = plan.non_embedding_parameters(teacher.config)
        info.update(
            non_embedding_parameters=int(total), non_embedding_parameters_kept=int(kept), kept_share=kept / total
        )
        student.eval()
        self.student_lm_ = student
        self.pruning_plan_ = plan.to_dict()
        self.pruning_info_ = info
        self.calibration_users_ = np.asarray(users, np.int64)

    # -- the pruned model ------------------------------------------------------------------------
    @property
    def plan(self) -> PruningPlan:
        """The fitted :class:`~trustrec.mitigate.training.pruning.PruningPlan`."""
        self._check_fitted()
        return PruningPlan.from_dict(self.pruning_plan_)

    @property
    def language_model(self) -> Any:
        """The pruned causal LM (torch)."""
        self._check_fitted()
        return self.student_lm_

    def _pruned_base(self) -> Any:
        cached = self.__dict__.get("_answering")
        if cached is None or cached[0] is not self.student_lm_:
            base: Any = self.base_  # checked by _teacher at fit
            cached = (self.student_lm_, base.with_language_model(self.student_lm_))
            self._answering = cached
        return cached[1]

    # -- persistence -----------------------------------------------------------------------------
    def _state(self):
        arrays, values = super()._state()
        values.pop("student_lm_", None)  # a torch module: saved as its tensors below
        for name, tensor in self.student_lm_.state_dict().items():
            arrays[_STUDENT + name] = tensor.detach().cpu().float().numpy()
        return arrays, values

    def _restore(self, arrays, values) -> None:
        import torch

        weights = {k[len(_STUDENT) :]: v for k, v in arrays.items() if k.startswith(_STUDENT)}
        super()._restore({k: v for k, v in arrays.items() if not k.startswith(_STUDENT)}, values)
        teacher, _ = self._teacher()
        student = apply_plan(teacher, PruningPlan.from_dict(self.pruning_plan_))
        expected = student.state_dict()
        if set(weights) != set(expected):
            raise DataError(
                "pruned: the saved weights do not match the saved plan "
                f"({len(set(weights) ^ set(expected))} tensor name(s) differ)"
            )
        bad = [k for k, v in weights.items() if tuple(v.shape) != tuple(expected[k].shape)]
        if bad:
            raise DataError(f"pruned: saved tensors with the wrong shape for the plan: {bad[:3]}")
        dtype = next(teacher.parameters()).dtype
        student.load_state_dict({k: torch.from_numpy(np.array(v)).to(dtype) for k, v in weights.items()})
        student.eval()
        self.student_lm_ = student

    # -- answering -------------------------------------------------------------------------------
    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The base's lists, scored by the pruned model."""
        self._check_fitted()
        return self._pruned_base().recommend(queries, k, exclude_seen=exclude_seen)

    @property
    def backend(self) -> Any:
        """The backend over the pruned model."""
        self._check_fitted()
        return self._pruned_base().backend

    @property
    def answer_backend(self) -> Any:
        return self.backend

    @property
    def tokenizer(self) -> Any:
        return self._pruned_base().tokenizer

    def answer_candidates(self, queries: QueryBatch, n: int) -> np.ndarray:
        return self._pruned_base().answer_candidates(queries, n)

    def answer_prompts(self, queries: QueryBatch, candidates: np.ndarray) -> list:
        return self._pruned_base().answer_prompts(queries, candidates)

    def answer_texts(self, items: Sequence[int] | np.ndarray) -> list[str]:
        return self._pruned_base().answer_texts(items)
