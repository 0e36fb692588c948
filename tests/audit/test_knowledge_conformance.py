"""AuditChecks for the knowledge_hallucination audit: a model whose LLM backend always answers
"Comedy", on the attributed dataset (a genre column, no year column)."""

from typing import Any, ClassVar

import numpy as np
import pytest

from tests.audit.test_knowledge_hallucination import FakeLLM
from trustrec.audit._knowledge import KnowledgeHallucinationAudit
from trustrec.models import FitOptions
from trustrec.models.llm import LLMBackend
from trustrec.testing import AuditChecks


class ConstantBackend(LLMBackend):
    def _score_pairs(self, prompts, continuations):
        raise NotImplementedError

    def _generate(self, prompts, max_new_tokens, *, temperature, top_p, seed):
        return [" Comedy" for _ in prompts]


@pytest.fixture(scope="module")
def fitted(attributed):
    ds, split = attributed
    table = np.zeros((ds.n_users, ds.n_items))
    return FakeLLM(table, ConstantBackend()).fit(split, FitOptions(progress=False)), split


class TestKnowledgeHallucination(AuditChecks):
    audit = KnowledgeHallucinationAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "n_items": 20}]
