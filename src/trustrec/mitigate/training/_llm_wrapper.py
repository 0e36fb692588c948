"""The shared part of recommenders that change how a fitted LLM recommender's model computes
(steered, pruned): what they leave as the base has it."""

from __future__ import annotations

from typing import Any

from trustrec.mitigate._wrap import WrapperRecommender

__all__ = ["LLMWrapperRecommender"]


class LLMWrapperRecommender(WrapperRecommender):
    """A :class:`~trustrec.mitigate.WrapperRecommender` over an LLM recommender: the prompt
    template, the answer format and the catalog are the base's (read before fitting from the
    base built from its spec); subclasses define how the model's calls change."""

    @property
    def _llm(self) -> Any:
        """The base (fitted, or built from its spec before fitting), read through its LLM
        capabilities (the subclass checks them at fit)."""
        return self._stage_model("base")

    def prompt_template(self) -> Any:
        return self._llm.prompt_template()

    @property
    def answers_from_candidates(self) -> bool:
        return bool(self._llm.answers_from_candidates)

    @property
    def answer_reduction(self) -> str:
        return str(self._llm.answer_reduction)

    @property
    def catalog_(self) -> Any:
        return self._llm.catalog_
