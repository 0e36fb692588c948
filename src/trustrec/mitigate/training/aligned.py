"""The generative recommender aligned to list-level rewards (issue 22): static Best-of-N
alignment, BLADE, RISER, plain GRPO and DPO, each on top of the same supervised (SFT) base.

:class:`AlignedGenerativeRecommender` (registered as ``llm_generative_aligned``) is the generative
recommender (``llm_generative``: BIGRec-style prompts, constrained decoding) fitted in two
stages:

1. **SFT**: the generative recommender's own fine-tuning, or, with ``start_from``, the fitted
   state of a saved ``llm_generative`` model (so every method starts from one SFT model; its
   settings must match, and it must have been fitted on the same catalog).
2. **Alignment** on ``alignment.users`` training users, each asked about its training history
   without its last item (the held-out item the rewards read), for ``alignment.epochs`` passes,
   through :class:`~trustrec.models.training.LLMTrainer` with one loss term:

   - ``"bon"`` (static Best-of-N alignment): before training, ``N`` lists per user are sampled
     from the SFT model (the reference); the loss is :class:`BestOfNTargetLoss` on those fixed
     lists with :func:`bon_weights` (``F`` the CDF of the same rewards);
   - ``"blade"``: the same reference rewards are BLADE's prior (:class:`BladeTarget`); each step
     samples ``N`` fresh lists from the current policy, whose rewards update ``F``;
   - ``"riser"``: each step samples ``N`` single items per user from the current policy
     (de-duplicated), rewarded as one-item lists; :class:`RiserLoss` routes learnable groups to
     the capped group-relative policy loss and non-learnable ones to DPO pairs (held-out item
     over the sampled ones) against the frozen SFT model;
   - ``"grpo"``: RISER without the pairwise conversion (non-learnable groups give nothing);
   - ``"dpo"``: one pair per user, the held-out item over the first sampled item of the SFT
     model that differs from it, with :class:`~trustrec.models.training.PairwisePreferenceLoss`
     against the frozen SFT model.

**What a list is.** The generative recommender writes one title per answer and ranks by beam
search. A sampled list is ``list_length`` titles drawn from the model's distribution over
catalog titles (trie-constrained sampling, :func:`sample_items`), duplicates dropped (the list
keeps its first occurrence, the rest is padding). Its log-likelihood is the sum of its titles'
log-likelihoods: the Plackett-Luce likelihood of the list without the renormalisation after each
draw, which sampling with replacement makes exact up to the dropped duplicates. Lists are
rewarded by :class:`ListReward` (:meth:`ListReward.from_dataset`), the evaluator's own metrics.
Sampling excludes nothing: a history item in a list simply earns no accuracy.

**Best-of-N at inference** (:func:`best_of_n_lists`) samples ``N`` lists per evaluation user and
keeps the best by the reward against the user's test items: the oracle upper bound that BoN
alignment distils, not a deployable recommender; its cost is ``N * list_length`` sampled titles
per user.

Fitted state adds ``alignment_``: the method, the users aligned, the loss per epoch, per step the
mean rollout reward, the effective supervision (``bon``, ``blade``) or the share of non-learnable
groups and the pairs used (``riser``, ``grpo``), the number of titles sampled and the seconds the
stage took.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, PositiveFloat, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate.training.alignment import (
    BestOfNTargetLoss,
    BladeTarget,
    ListReward,
    ListRewardConfig,
    RiserLoss,
    best_of_n,
    bon_weights,
)
from trustrec.models import FitOptions, register_model
from trustrec.models.llm import GenerativeConfig, GenerativeRecommender
from trustrec.models.training import LossTerm

__all__ = [
    "ALIGNMENT_METHODS",
    "AlignedConfig",
    "AlignedGenerativeRecommender",
    "AlignmentConfig",
    "best_of_n_lists",
    "sample_items",
    "sample_lists",
]

ALIGNMENT_METHODS = ("bon", "blade", "riser", "grpo", "dpo")

#: Settings a saved SFT base must share with the aligned model: they decide what it learned and
#: the prompts it learned on.
_SHARED_WITH_BASE = ("model", "template", "lora", "max_history_items", "max_history_tokens", "answer_format")


class AlignmentConfig(Config):
    """The alignment stage of :class:`AlignedGenerativeRecommender` (module docstring).

    Parameters
    ----------
    method : {"bon", "blade", "riser", "grpo", "dpo"}
        The alignment (default ``"blade"``).
    users : int
        Training users aligned on (default 64; fewer when fewer have two interactions).
    epochs : int
        Passes over them (default 1).
    learning_rate : float
        Adam's learning rate (default 1e-5).
    batch_size : int
        Users per update (default 4).
    n_rollouts : int
        N: lists (``bon``, ``blade``) or items (``riser``, ``grpo``, ``dpo``) sampled per user
        and step (default 4, at least 2).
    list_length : int
        Titles per sampled list (default 10).
    temperature : float
        Sampling temperature (default 1.0).
    reward : ListRewardConfig
        The list reward's weights (default: NDCG@10 alone).
    popularity_groups : int
        Groups of the reward's fairness term (default 5).
    prior_strength : float or None
        BLADE's prior pseudo-count (default None: the number of reference rewards).
    cap : float
        RISER / GRPO's per-token log-ratio cap (default 0.2).
    beta : float
        DPO's inverse temperature, in RISER's pairs and in ``dpo`` (default 0.1).
    """

    method: Literal["bon", "blade", "riser", "grpo", "dpo"] = "blade"
    users: PositiveInt = 64
    epochs: PositiveInt = 1
    learning_rate: PositiveFloat = 1e-5
    batch_size: PositiveInt = 4
    n_rollouts: int = Field(4, ge=2)
    list_length: PositiveInt = 10
    temperature: PositiveFloat = 1.0
    reward: ListRewardConfig = Field(default_factory=ListRewardConfig)
    popularity_groups: int = Field(5, ge=2)
    prior_strength: float | None = Field(None, ge=0)
    cap: PositiveFloat = 0.2
    beta: PositiveFloat = 0.1


class AlignedConfig(GenerativeConfig):
    """Settings of :class:`AlignedGenerativeRecommender`: those of ``llm_generative`` (the SFT
    stage and decoding) plus

    Parameters
    ----------
    alignment : AlignmentConfig
        The alignment stage.
    start_from : str or None
        Folder of a saved ``llm_generative`` model fitted on the same catalog, whose fitted state
        is the SFT stage (default None: fine-tune here first).
    """

    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig)
    start_from: str | None = None


def sample_items(
    model: GenerativeRecommender, queries: QueryBatch, n: int, *, temperature: float = 1.0, seed: int = 0
) -> np.ndarray:
    """``n`` catalog items per query drawn from a fitted generative recommender's distribution
    over titles (trie-constrained sampling through its backend; seeded).

    Parameters
    ----------
    model : GenerativeRecommender
        A fitted generative recommender with a local backend.
    queries : QueryBatch
        The queries.
    n : int
        Items per query.
    temperature : float
        Sampling temperature.
    seed : int
        The sampling seed (the same seed gives the same items).

    Returns
    -------
    numpy.ndarray of int
        ``(n_queries, n)`` sampled items, -1 where a sample did not end on a title.
    """
    queries, _ = queries.restrict(model.n_users_, model.n_items_)
    prompts = [p.text for p in model.answer_prompts(queries)]
    out = np.full((len(queries), n), -1, dtype=np.int64)
    if not prompts:
        return out
    lm = model.lm_
    was_training = lm.training
    lm.eval()  # no dropout while sampling, also in the middle of a training step
    try:
        rows = model.backend.sample_constrained(
            prompts,
            model.trie_,
            n,
            temperature=temperature,
            seed=seed,
            batch_size=model.config.inference_batch_size,
        )
    finally:
        lm.train(was_training)
    for r, row in enumerate(rows):
        out[r, : len(row)] = [int(item) for _, item in row]
    return out


def sample_lists(
    model: GenerativeRecommender,
    queries: QueryBatch,
    n_lists: int,
    length: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """``n_lists`` recommendation lists per query, each ``length`` titles sampled from the model
    (:func:`sample_items`) with repeats dropped (module docstring).

    Parameters
    ----------
    model : GenerativeRecommender
        A fitted generative recommender.
    queries : QueryBatch
        The queries.
    n_lists : int
        Lists per query.
    length : int
        Titles drawn per list.
    temperature : float
        Sampling temperature.
    seed : int
        The sampling seed.

    Returns
    -------
    numpy.ndarray of int
        ``(n_queries, n_lists, length)`` items, each list's distinct items first, -1 padding.
    """
    if n_lists < 1 or length < 1:
        raise ConfigError(f"sample_lists: n_lists and length must be >= 1; got {n_lists}, {length}")
    items = sample_items(model, queries, n_lists * length, temperature=temperature, seed=seed)
    lists = items.reshape(len(items), n_lists, length)
    return _distinct_first(lists)


def _distinct_first(lists: np.ndarray) -> np.ndarray:
    """Each list (last axis) with its repeats and -1 entries moved to the end as -1."""
    ordered = np.sort(lists, axis=-1, kind="stable")
    first = np.ones(lists.shape, dtype=bool)
    first[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    first &= ordered >= 0
    # Position of each kept item's first occurrence in the original order.
    position = np.argsort(lists, axis=-1, kind="stable")
    keep = np.zeros(lists.shape, dtype=bool)
    np.put_along_axis(keep, position, first, axis=-1)
    rank = np.where(keep, np.arange(lists.shape[-1]), lists.shape[-1])
    order = np.argsort(rank, axis=-1, kind="stable")
    return np.where(np.take_along_axis(keep, order, -1), np.take_along_axis(lists, order, -1), -1)


def best_of_n_lists(
    model: GenerativeRecommender,
    queries: QueryBatch,
    targets: Ragged | Sequence[npt.ArrayLike],
    reward: ListReward,
    n_lists: int,
    length: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Best-of-N at inference: per query, the sampled list with the highest reward against the
    query's target items (an oracle upper bound; module docstring).

    Parameters
    ----------
    model : GenerativeRecommender
        A fitted generative recommender.
    queries : QueryBatch
        The queries.
    targets : Ragged or array_like of int
        Each query's target items.
    reward : ListReward
        The list reward.
    n_lists : int
        N (at least 2).
    length : int
        Titles drawn per list.
    temperature : float
        Sampling temperature.
    seed : int
        The sampling seed.

    Returns
    -------
    lists : numpy.ndarray of int
        ``(n_queries, length)`` the best list per query (-1 padding).
    cost : dict
        ``titles_sampled`` (``n_queries * N * length``), ``per_user`` titles and ``seconds``.
    """
    if n_lists < 2:
        raise ConfigError(f"best_of_n_lists: N must be >= 2; got {n_lists}")
    rows = targets.rows() if isinstance(targets, Ragged) else [np.atleast_1d(t) for t in targets]
    if len(rows) != len(queries):
        raise DataError(f"best_of_n_lists: {len(rows)} target rows for {len(queries)} queries")
    start = time.perf_counter()
    lists = sample_lists(model, queries, n_lists, length, temperature=temperature, seed=seed)
    flat = lists.reshape(-1, length)
    rewards = reward(flat, [rows[q] for q in np.repeat(np.arange(len(rows)), n_lists)])
    best, _ = best_of_n(lists, rewards.reshape(len(rows), n_lists))
    cost = {
        "titles_sampled": int(lists.size),
        "per_user": n_lists * length,
        "seconds": time.perf_counter() - start,
    }
    return best, cost


@register_model
class AlignedGenerativeRecommender(GenerativeRecommender):
    """The generative recommender after SFT and list-level alignment (module docstring).

    Fitted state adds ``alignment_`` (the stage's record).

    Parameters
    ----------
    config : AlignedConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs : object
        The settings (:class:`AlignedConfig` fields) as keyword arguments.
    """

    name = "llm_generative_aligned"
    config_class = AlignedConfig
    config: AlignedConfig

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        import torch

        if self.config.start_from is None:
            super()._fit(train, options)
        else:
            self._adopt(GenerativeRecommender.load(self.config.start_from), train)
            torch.manual_seed(options.seed)
        self.alignment_ = self._align(train, options)

    def _adopt(self, base: Any, train: Dataset) -> None:
        """Take over a saved SFT model's fitted state (checked to fit this model and data)."""
        where = f"{type(self).__name__}: start_from={self.config.start_from!r}"
        mine, theirs = self.config.model_dump(), base.config.model_dump()
        shared = (*_SHARED_WITH_BASE, *self.sub_models.values())  # sub-models travel with the base
        differ = [name for name in shared if mine[name] != theirs.get(name)]
        if differ:
            raise ConfigError(f"{where} was fitted with other settings: {', '.join(differ)}")
        if not np.array_equal(np.asarray(base.item_ids_), np.asarray(self.item_ids_)):
            raise DataError(f"{where} was fitted on another catalog ({base.n_items_} items, not {train.n_items})")
        skip = {"n_users_", "n_items_", "item_ids_", "user_ids_"}
        for key, value in vars(base).items():
            if key.endswith("_") and key not in skip:
                setattr(self, key, value)

    def _align(self, train: Dataset, options: FitOptions) -> dict[str, Any]:
        from trustrec.models.training import (
            Callback,
            LLMTrainer,
            PairwisePreferenceLoss,
            PromptVariant,
            TrainingExample,
            progress_from,
        )

        a = self.config.alignment
        start = time.perf_counter()
        rng = np.random.default_rng(options.seed)
        queries, targets = self.training_queries(train, rng, targets_per_user=1, limit=a.users)
        if not len(queries):
            raise DataError(f"{type(self).__name__}.fit: no user has two training interactions to align on")
        reward = ListReward.from_dataset(a.reward, train, popularity_groups=a.popularity_groups)
        prompt_ids = self.tokenizer_(self._prompts(queries), add_special_tokens=True)["input_ids"]
        answers = self._answer_ids(targets)
        examples = [
            TrainingExample((PromptVariant(list(p), a_),), meta={"index": i})
            for i, (p, a_) in enumerate(zip(prompt_ids, answers, strict=True))
        ]
        record: dict[str, Any] = {"method": a.method, "users": len(examples), "titles_sampled": 0}
        step = [0]

        drawn: dict[int, np.ndarray] = {}  # this update's samples, by example index

        def draw_for(batch: list[TrainingExample], n: int, seed: int) -> None:
            """``n`` samples for every example of ``batch`` in one batched call."""
            index = [e.meta["index"] for e in batch]
            record["titles_sampled"] += n * len(index)
            items = sample_items(self, queries[index], n, temperature=a.temperature, seed=seed)
            drawn.clear()
            drawn.update(zip(index, items, strict=True))

        step_rewards: list[list[float]] = []

        def list_rewards(example: TrainingExample, lists: np.ndarray) -> np.ndarray:
            values = reward(lists, [[int(targets[example.meta["index"]])]] * len(lists))
            while len(step_rewards) <= step[0]:
                step_rewards.append([])
            step_rewards[step[0]].append(float(values.mean()))
            return values

        # The reference (SFT) model's lists: static BoN's rollouts and BLADE's prior.
        reference_lists: dict[int, np.ndarray] = {}
        if a.method in ("bon", "blade", "dpo"):
            n = a.n_rollouts * (a.list_length if a.method != "dpo" else 1)
            draw_for(examples, n, options.seed)
            for index, items in drawn.items():
                reference_lists[index] = _distinct_first(items.reshape(a.n_rollouts, -1))
        frozen = None
        if a.method in ("riser", "grpo", "dpo"):
            frozen = copy.deepcopy(self.lm_).eval()
            for parameter in frozen.parameters():
                parameter.requires_grad_(False)

        def reference(batch: dict) -> Any:
            assert frozen is not None
            return frozen(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        def as_answers(lists: np.ndarray) -> list[list[list[int]]]:
            return [self._answer_ids(row[row >= 0]) for row in lists]

        term: Any
        if a.method in ("bon", "blade"):
            current: dict[int, np.ndarray] = {}
            prior = np.concatenate(
                [reward(lists, [[int(targets[i])]] * len(lists)) for i, lists in sorted(reference_lists.items())]
            )
            record["reference_reward"] = float(prior.mean())

            def lists_of(example: TrainingExample) -> list:
                index = example.meta["index"]
                if a.method == "bon":
                    lists = reference_lists[index]
                else:
                    lists = _distinct_first(drawn[index].reshape(a.n_rollouts, -1))
                current[index] = lists
                return as_answers(lists)

            target = (
                partial(bon_weights, reference=prior, n=a.n_rollouts)
                if a.method == "bon"
                else BladeTarget(prior, a.n_rollouts, a.prior_strength).weights
            )
            term = BestOfNTargetLoss(
                sample=lists_of,
                reward=lambda e, _: list_rewards(e, current[e.meta["index"]]),
                target=target,
            )
        elif a.method in ("riser", "grpo"):

            def items_of(example: TrainingExample) -> list:
                items = drawn[example.meta["index"]]
                items = items[items >= 0]
                return list(zip(self._answer_ids(items), items.tolist(), strict=True))

            term = RiserLoss(
                sample=items_of,
                reward=lambda e, items: list_rewards(e, np.asarray(items, dtype=np.int64)[:, None]),
                reference=reference,
                cap=a.cap,
                beta=a.beta,
                pairwise=a.method == "riser",
            )
        else:
            paired = []
            for example in examples:
                index = example.meta["index"]
                sampled = reference_lists[index][:, 0]
                rejected = sampled[(sampled >= 0) & (sampled != targets[index])]
                if len(rejected):
                    variant = example.variants[0]
                    paired.append(
                        TrainingExample(
                            (variant,),
                            rejected=(PromptVariant(variant.prompt_ids, self._answer_ids(rejected[:1])[0]),),
                            meta=example.meta,
                        )
                    )
            record["users_without_pair"] = len(examples) - len(paired)
            if not paired:
                raise DataError(f"{type(self).__name__}.fit: every sampled item was the held-out one; no DPO pair")
            examples = paired
            term = PairwisePreferenceLoss(reference=reference, beta=a.beta)

        if a.method in ("blade", "riser", "grpo"):  # on-policy: each update samples its users at once
            n_update = a.n_rollouts * (a.list_length if a.method == "blade" else 1)
            term = _SampledFirst(
                term, lambda batch: draw_for(batch, n_update, options.seed + 1_000_003 * (step[0] + 1))
            )
        trainer = LLMTrainer(
            self.lm_,
            pad_id=self._pad_id(),
            losses=[term],
            learning_rate=a.learning_rate,
            batch_size=a.batch_size,
            skip_empty=True,  # a batch whose rollouts all carry no signal (GRPO) is no update
        )
        bar = progress_from(
            options,
            f"{type(self).__name__} ({a.method})",
            unit="batch",
            steps_per_epoch=trainer.n_batches(len(examples)),
            leave=True,
        )

        class _CountSteps(Callback):  # rollout seeds differ per step
            def on_step_end(self, loop: Any) -> None:
                step[0] += 1

        loop = trainer.fit(examples, rng, a.epochs, [bar, _CountSteps()])
        self.lm_.eval()
        record["loss"] = [loss if np.isfinite(loss) else None for loss in loop.losses]
        record["skipped_updates"] = trainer.skipped_batches
        record["reward"] = [float(np.mean(r)) if r else None for r in step_rewards]
        record["steps"] = step[0]
        term = term.inner if isinstance(term, _SampledFirst) else term
        if isinstance(term, BestOfNTargetLoss):
            record["supervision"] = term.supervision
        if isinstance(term, RiserLoss):
            record["non_learnable_share"] = [s["non_learnable_share"] for s in term.stats]
            record["pairs"] = [s["pairs"] for s in term.stats]
        record["seconds"] = time.perf_counter() - start
        return record


class _SampledFirst(LossTerm):
    """A rollout loss term whose batch's rollouts are drawn in one call before it runs."""

    def __init__(self, inner: LossTerm, draw: Callable[[list], None]):
        self.inner, self.draw = inner, draw

    def compute(self, ctx: Any) -> Any:
        self.draw(ctx.examples)
        return self.inner(ctx)
