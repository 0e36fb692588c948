"""What every agent recommender shares: a prior recommender that retrieves the candidates, the
LLM backend its agents run on (built on first use, never saved), and how they see items and
histories (:class:`~trustrec.models.agents.AgentView`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustrec.data import Dataset, QueryBatch
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._compose import ComposedRecommender
from trustrec.models.agents._prompting import AgentView
from trustrec.models.llm._prompts import PromptCatalog, PromptTemplate, ReadsItemText

__all__ = ["AgentRecommender"]


class AgentRecommender(ReadsItemText, ComposedRecommender):
    """Base of the agent recommenders: one composed stage, ``prior``; a config that is an
    :class:`~trustrec.models.llm.LLMConnection` with ``n_candidates``, ``max_history_items``,
    ``max_history_tokens``, ``max_reason_chars`` and ``prompt_template()``."""

    stages = ("prior",)
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
