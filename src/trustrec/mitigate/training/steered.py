"""Steered LLM recommenders: any fitted LLM recommender that answers through a local model
(the ``answer_likelihood`` capability over a :class:`~trustrec.models.llm.LocalBackend`), with an
:class:`~trustrec.mitigate.training.steering.ActivationSteering` active on every model call it
makes: its own lists, and every call an audit makes through its ``answer_backend`` / ``backend``
(a :class:`SteeredBackend`). The base's weights never change; the hooks live only for a call.

Goal ``neutral_attributes`` (fairness; the FaiRLLM probe of ``counterfactual_attributes``
measures it): fitted on training users, the prompt that states each user's own attributes is
steered toward the same prompt without them (paired targets), and the neutral prompts are the
benign set NullSteer leaves unchanged. So a query that states no attribute is answered (near)
exactly as before, and one that states an attribute is pulled toward the neutral answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveInt

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.mitigate.training._llm_wrapper import LLMWrapperRecommender
from trustrec.mitigate.training.steering import ActivationSteering, fit_steering, steered
from trustrec.models import ModelSpec, TopK, has_capability, register_model
from trustrec.models.llm import LLMBackend

__all__ = ["SteeredBackend", "SteeredConfig", "SteeredRecommender"]


class SteeredBackend(LLMBackend):
    """A local backend whose every model call runs with ``steering`` installed.

    Parameters
    ----------
    inner : LocalBackend
        The backend steered (it must expose its torch ``model``).
    steering : ActivationSteering
        The steering installed for each call.

    Raises
    ------
    ConfigError
        When ``inner`` has no local model (an OpenAI-compatible endpoint has no activations).
    """

    def __init__(self, inner: Any, steering: ActivationSteering):
        if not hasattr(type(inner), "model"):
            raise ConfigError(
                f"SteeredBackend: {type(inner).__name__} has no local model to steer (activation steering needs "
                "the weights: use a LocalBackend, not an endpoint)"
            )
        self.inner, self.steering = inner, steering

    def __repr__(self) -> str:
        return f"SteeredBackend({self.inner!r}, method={self.steering.method!r}, strength={self.steering.strength})"

    def _steer(self):
        return steered(self.inner.model, self.steering)

    def __getattr__(self, name: str) -> Any:  # tokenizer, model, max_length ... of the inner backend
        if name in ("inner", "steering"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _score_pairs(self, prompts, continuations):
        with self._steer():
            return self.inner._score_pairs(prompts, continuations)

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        with self._steer():
            return self.inner._generate(prompts, max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)

    def beam_search(self, *args: Any, **kwargs: Any) -> Any:
        with self._steer():
            return self.inner.beam_search(*args, **kwargs)

    def constrained_beam_search(self, *args: Any, **kwargs: Any) -> Any:
        with self._steer():
            return self.inner.constrained_beam_search(*args, **kwargs)

    def sample_constrained(self, *args: Any, **kwargs: Any) -> Any:
        with self._steer():
            return self.inner.sample_constrained(*args, **kwargs)

    def apply_chat_template(self, messages: Any, *, add_generation_prompt: bool = True) -> str:
        return self.inner.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)


class SteeredConfig(Config):
    """Settings of :class:`SteeredRecommender`.

    Parameters
    ----------
    base : ModelSpec
        The LLM recommender steered (it needs the ``answer_likelihood`` capability over a local
        model); default ``llm_ranker``.
    goal : {"neutral_attributes"}
        What the steering is fitted for (module docstring).
    method : {"null_space", "plain"}
        NullSteer or plain (difference-of-means) steering.
    layers : tuple of int or None
        Decoder layers steered; None: the middle layer.
    strength : float
        Steering strength (0: the base's answers exactly).
    ridge : float
        NullSteer's relative ridge (:func:`~trustrec.mitigate.training.steering.fit_null_space_steering`).
    null_tol : float
        NullSteer's relative eigenvalue threshold of the benign null space.
    null_rank : int or None
        NullSteer's null-space dimension, overriding ``null_tol``.
    attributes : tuple of str or None
        User attribute columns stated in the fitting prompts; None: every user attribute column.
    n_fit_users : int
        Training users whose prompts fit the steering (sampled with ``seed``).
    batch_size : int
        Prompts per forward pass while fitting.
    seed : int
        Seed of the user sample.
    """

    base: ModelSpec = Field(default_factory=lambda: ModelSpec(name="llm_ranker"))
    goal: Literal["neutral_attributes"] = "neutral_attributes"
    method: Literal["null_space", "plain"] = "null_space"
    layers: tuple[int, ...] | None = None
    strength: float = 1.0
    ridge: float = Field(1e-2, gt=0)
    null_tol: float = Field(1e-2, gt=0, lt=1)
    null_rank: PositiveInt | None = None
    attributes: tuple[str, ...] | None = None
    n_fit_users: PositiveInt = 200
    batch_size: PositiveInt = 8
    seed: int = 0


_STEERABLE = frozenset({"uses_history", "attributes", "candidates", "prompt", "llm_backend", "answer_likelihood"})


@register_model
class SteeredRecommender(LLMWrapperRecommender):
    """An LLM recommender with activation steering on every model call (module docstring).

    Fitted state: ``steering_weights_`` and ``steering_layers_`` (the
    :class:`~trustrec.mitigate.training.steering.ActivationSteering`), ``steering_info_`` (what the
    fit measured) and ``fit_users_`` (the training users the fit read).

    Parameters
    ----------
    config : SteeredConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs
        The settings (:class:`SteeredConfig` fields) as keyword arguments.
    """

    name = "steered"
    config: SteeredConfig
    config_class: ClassVar = SteeredConfig
    capabilities = _STEERABLE
    devices = ("cpu", "cuda", "mps")

    # -- fitting ---------------------------------------------------------------------------------
    def _local_backend(self):
        base = self.base_
        if not has_capability(base, "answer_likelihood"):
            raise ConfigError(
                f"steered: the base {type(base).__name__} does not answer through an LLM's likelihood "
                "(no 'answer_likelihood' capability); steering needs an LLM recommender"
            )
        missing = sorted(c for c in _STEERABLE if not has_capability(base, c))
        if missing:
            raise ConfigError(f"steered: the base {type(base).__name__} lacks the capabilities {missing}")
        backend = base.answer_backend
        if not hasattr(type(backend), "model"):
            raise ConfigError(
                f"steered: the base answers through {type(backend).__name__}, which has no local model "
                "(activation steering needs the weights: use a local backend)"
            )
        return backend

    def _fit_queries(self, train: Dataset) -> tuple[QueryBatch, QueryBatch]:
        users = train.users.drop(columns=["user_id"], errors="ignore")
        cols = list(self.config.attributes) if self.config.attributes is not None else list(users.columns)
        unknown = [c for c in cols if c not in users.columns]
        if unknown or not cols:
            raise DataError(
                f"steered: the dataset '{train.name}' has no user attribute columns {unknown or ''} to neutralise "
                f"(user columns: {list(users.columns)})"
            )
        histories = train.histories()
        has_history = np.flatnonzero(np.diff(histories.indptr) > 0)
        if len(has_history) < 2:
            raise DataError(f"steered: fewer than 2 training users of '{train.name}' have a history")
        rng = np.random.default_rng(self.config.seed)
        n = min(self.config.n_fit_users, len(has_history))
        chosen = np.sort(rng.choice(has_history, n, replace=False))
        attrs = users.iloc[chosen][cols].astype(str).reset_index(drop=True)
        stated = QueryBatch(chosen, histories.take(chosen), attrs)
        return stated, stated.with_attributes(None)

    def _setup(self, train: Dataset) -> None:
        backend = self._local_backend()
        model, tokenizer = backend.model, backend.tokenizer
        stated, neutral = self._fit_queries(train)
        candidates = self._llm.answer_candidates(neutral, 0)
        stated_prompts = [p.text for p in self._llm.answer_prompts(stated, candidates)]
        neutral_prompts = [p.text for p in self._llm.answer_prompts(neutral, candidates)]
        c = self.config
        n_layers = int(getattr(model.config, "num_hidden_layers", 0)) or 1
        layers = c.layers if c.layers is not None else (n_layers // 2,)
        steering = fit_steering(
            model,
            tokenizer,
            benign=neutral_prompts,
            steer_from=stated_prompts,
            steer_to=neutral_prompts,
            layers=layers,
            method=c.method,
            strength=c.strength,
            ridge=c.ridge,
            null_tol=c.null_tol,
            null_rank=c.null_rank,
            batch_size=c.batch_size,
        )
        self.steering_weights_ = np.asarray(steering.weights)
        self.steering_layers_ = np.asarray(steering.layers, np.int64)
        self.steering_info_ = dict(steering.info)
        self.fit_users_ = np.asarray(stated.users, np.int64)

    @property
    def steering(self) -> ActivationSteering:
        """The fitted steering at the configured strength."""
        self._check_fitted()
        return ActivationSteering(
            self.config.method,
            tuple(int(i) for i in self.steering_layers_),
            self.steering_weights_,
            self.config.strength,
            self.steering_info_,
        )

    def with_strength(self, strength: float) -> SteeredRecommender:
        """A fitted copy answering with the same steering at another strength (the steering's
        matrices do not depend on the strength, so nothing is refitted; the base is shared).

        Raises
        ------
        ConfigError
            When ``strength`` is not finite.
        """
        import copy
        import math

        self._check_fitted()
        if not math.isfinite(strength):
            raise ConfigError(f"steered: strength must be finite, got {strength}")
        other = copy.copy(self)
        other.config = self.config.model_copy(update={"strength": float(strength)})
        return other

    def _steer(self):
        return steered(self._local_backend().model, self.steering)

    # -- answering -------------------------------------------------------------------------------
    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """The base's lists, with the steering active."""
        self._check_fitted()
        with self._steer():
            return self.base_.recommend(queries, k, exclude_seen=exclude_seen)

    @property
    def backend(self) -> SteeredBackend:
        """The base's backend, steered on every call."""
        return SteeredBackend(self._local_backend(), self.steering)

    @property
    def tokenizer(self) -> Any:
        return self._llm.tokenizer

    @property
    def answer_backend(self) -> SteeredBackend:
        return self.backend

    def answer_candidates(self, queries: QueryBatch, n: int) -> np.ndarray:
        with self._steer():  # a generator's own candidates come from the (steered) model
            return self._llm.answer_candidates(queries, n)

    def answer_prompts(self, queries: QueryBatch, candidates: np.ndarray) -> list:
        return self._llm.answer_prompts(queries, candidates)

    def answer_texts(self, items: Sequence[int] | np.ndarray) -> list[str]:
        return self._llm.answer_texts(items)
