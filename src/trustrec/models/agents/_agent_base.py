"""What every agent recommender shares: its settings (:class:`AgentConfig`), a prior recommender
that retrieves the candidates, the LLM backend its agents run on (built on first use, never
saved), and how they see items and histories (:class:`~trustrec.models.agents.AgentView`)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._compose import ComposedRecommender
from trustrec.models._registry import ModelSpec, available_models, model_class
from trustrec.models.agents._prompting import AgentView, Decision, fill
from trustrec.models.llm._connection import LLMConnection
from trustrec.models.llm._prompts import PromptCatalog, PromptTemplate, ReadsItemText

__all__ = ["AgentConfig", "AgentRecommender"]


class AgentConfig(LLMConnection):
    """Settings every agent recommender has, next to the
    :class:`~trustrec.models.llm.LLMConnection` settings that choose the LLM its agents run on.
    A subclass names its prompt texts' class (``prompts_class``) and each text's slots
    (``prompt_slots``), and may change the defaults.

    Parameters
    ----------
    prior : ModelSpec
        The recommender that retrieves candidates for queries without their own (default
        ``sasrec``); not an agent recommender.
    n_candidates : int
        Candidates per query without its own list (default 20).
    decision : {"scored", "text"}
        How the agents' answers are read (default ``"scored"``).
    temperature : float
        Sampling temperature of generated text (default 0.0: greedy, repeatable).
    max_history_items : int or None
        Most recent history items shown (default 20; None: all).
    max_history_tokens : int or None
        Token budget of the history block (default 256; None: none; not applied with an
        endpoint).
    max_reason_chars : int
        Character budget of a model-written text as another agent reads it (default 200).
    reply_tokens : int
        Token budget of a JSON reply (default 64).
    prompts : dict
        Fields replacing those of ``prompts_class`` (default none).
    template : dict
        :class:`~trustrec.models.llm.PromptTemplate` fields that show items and wrap prompts
        (``item_fields``, ``injection_guard``, ``max_item_chars``, ``chat``; default none); its
        ``system`` and ``user`` fields are not used (the agents' texts are ``prompts``).
    """

    prompts_class: ClassVar[type[Config]]
    prompt_slots: ClassVar[dict[str, tuple[str, ...]]]

    prior: ModelSpec = Field(default_factory=lambda: ModelSpec(name="sasrec"))
    n_candidates: PositiveInt = 20
    decision: Decision = "scored"
    temperature: float = Field(0.0, ge=0)
    max_history_items: PositiveInt | None = 20
    max_history_tokens: PositiveInt | None = 256
    max_reason_chars: PositiveInt = 200
    reply_tokens: PositiveInt = 64
    prompts: dict[str, str] = Field(default_factory=dict)
    template: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_agent_settings(self):
        if self.prior.name not in available_models():
            raise ValueError(f"prior: unknown model {self.prior.name!r}; known: {available_models()}")
        if issubclass(model_class(self.prior.name), AgentRecommender):
            # its agents would run inside this one's on every query: nested LLM episodes
            raise ValueError(f"prior: an agent recommender ({self.prior.name}) cannot be another agent's prior")
        texts = self.agent_prompts()
        for field, slots in self.prompt_slots.items():
            fill(getattr(texts, field), **dict.fromkeys(slots, ""))  # an unknown slot raises ConfigError
        self.prompt_template()
        return self

    def agent_prompts(self) -> Any:
        """The agents' texts: ``prompts_class`` defaults with ``prompts`` applied."""
        return self.prompts_class(**self.prompts)

    def prompt_template(self) -> PromptTemplate:
        """The item template (defaults with ``template`` applied)."""
        return PromptTemplate.from_dict(self.template)


class AgentRecommender(ReadsItemText, ComposedRecommender):
    """Base of the agent recommenders: one composed stage, ``prior``, and an
    :class:`AgentConfig`."""

    stages = ("prior",)
    config: AgentConfig
    prior_: Recommender
    devices = ("cpu", "cuda", "mps")
    # not "prompt": the agents' texts are their own prompt configs, not a PromptTemplate, so
    # paraphrasing a PromptTemplate (the prompt-sensitivity audit) would not reach them
    capabilities = frozenset({"uses_history", "stochastic_training", "text", "candidates", "llm_backend"})

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Dataset, options: FitOptions) -> None:
        from trustrec._device import resolve_device

        if self.config.base_url:
            self.config.endpoint_settings(self.name)  # an unset api_key_env fails before any training
        self.llm_device_ = str(resolve_device(options.device))
        self.seed_ = int(options.seed)
        vars(self).pop("_backend", None)
        super()._fit(train, options)

    def _setup(self, train: Dataset) -> None:
        self.catalog_ = PromptCatalog.from_items(train.items, self.config.prompt_template().item_fields).columns
        if not hasattr(self, "seed_"):  # from_fitted: no FitOptions
            self.seed_ = 0
        if not hasattr(self, "llm_device_"):
            self.llm_device_ = "cpu"

    def _prompt_template(self) -> PromptTemplate:
        return self.config.prompt_template()

    # -- the language model ------------------------------------------------------------------------
    @property
    def backend(self) -> Any:
        """The :class:`~trustrec.models.llm.LLMBackend` the agents run on (built on first use,
        not saved)."""
        if getattr(self, "_backend", None) is None:
            self._backend = self.config.build_backend(getattr(self, "llm_device_", "cpu"), owner=self.name)
        return self._backend

    @property
    def tokenizer(self) -> Any:
        """The backend's tokenizer, or None (an OpenAI-compatible endpoint has none)."""
        return getattr(self.backend, "tokenizer", None)

    def _view(self) -> AgentView:
        c = self.config
        return AgentView(
            PromptCatalog(self.catalog_),
            c.prompt_template(),
            self.tokenizer,
            c.max_history_items,
            c.max_history_tokens,
            c.max_reason_chars,
        )

    def candidate_lists(
        self, queries: QueryBatch, *, exclude_seen: bool = True
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per query, its candidates in the prior's order and as listed to the agents (a shuffle
        seeded by the fit seed, the user and the candidate set, so an episode does not depend on
        the batch it runs in).

        Parameters
        ----------
        queries : QueryBatch
            Prepared queries.
        exclude_seen : bool
            Whether history items are dropped from the candidates (default True).

        Returns
        -------
        tuple of (list of numpy.ndarray, list of numpy.ndarray)
            Prior orders and listed orders.
        """
        width = self.config.n_candidates
        if queries.candidates is not None and len(queries):
            width = max(width, int(queries.candidates.lengths.max(initial=0)))
        retrieved = self.prior_.recommend(queries, width, exclude_seen=exclude_seen).items
        prior_orders = [row[row >= 0].astype(np.int64) for row in retrieved]
        listed = []
        for user, order in zip(queries.users.tolist(), prior_orders, strict=True):
            rng = np.random.default_rng([self.seed_, max(int(user), -1) + 1, *sorted(order.tolist())])
            listed.append(order[rng.permutation(len(order))])
        return prior_orders, listed
