"""The controllability audits and the position-bias audit pass AuditChecks, each on a model it
applies to (plus the not-applicable path for prompt sensitivity and position bias on item_knn)."""

from typing import Any, ClassVar

import pytest

from trustrec.audit.controllability import (
    PlatformRulesAudit,
    PositionBiasAudit,
    PromptSensitivityAudit,
    UserControlAudit,
)
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks

from ._control_doubles import ListOrderRanker, WordingBackend

QUIET = FitOptions(progress=False)


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    return make_model("item_knn").fit(split, QUIET), split


@pytest.fixture(scope="module")
def wording_ranker(attributed):
    from trustrec.models.llm._ranker import LLMRanker

    _ds, split = attributed
    retriever = make_model("most_popular").fit(split, QUIET)
    ranker = LLMRanker.from_fitted(
        retriever,
        split.train_dataset(),
        model="tiny-smollm2-random",
        n_candidates=8,
        n_permutations=2,
        template={"chat": False},
    )
    ranker._backend = WordingBackend()  # a prompt-sensitive LLM stand-in; no model is loaded
    return ranker, split


class TestUserControl(AuditChecks):
    audit = UserControlAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "max_users": 40}]


class TestPlatformRules(AuditChecks):
    audit = PlatformRulesAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "n_blocked": 3, "max_exposure_share": 0.2}]


class TestPromptSensitivity(AuditChecks):
    audit = PromptSensitivityAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "max_users": 20, "k": 5}]

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, wording_ranker):
        return wording_ranker


class TestPromptSensitivityNotApplicable(AuditChecks):  # item_knn reads no prompt: the reason is checked
    audit = PromptSensitivityAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"max_users": 5}]


class TestPositionBias(AuditChecks):
    audit = PositionBiasAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "n_candidates": 5, "max_users": 80}]

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, attributed):
        return ListOrderRanker(prefer_first=True).fit(attributed[1], QUIET), attributed[1]


class TestPositionBiasOfAnLLMRanker(AuditChecks):
    audit = PositionBiasAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "n_candidates": 4, "max_users": 40}]

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, wording_ranker):
        return wording_ranker
