"""The text_attack audit passes AuditChecks: on item_knn (it reads no text: not applicable, with the
reason) and on an LLM ranker whose language model is a deterministic stand-in."""

from typing import Any, ClassVar

import numpy as np
import pytest

from trustrec.audit._text_attacks import TextAttackAudit
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks


class _LengthBackend:
    def score_continuations(self, prompts, continuations, reduction="mean"):
        return [np.array([len(t) % 13 / 13.0 for t in conts]) for conts in continuations]


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    model = make_model(
        "llm_ranker", retriever={"name": "most_popular"}, n_candidates=8, n_permutations=1, template={"chat": False}
    ).fit(split, FitOptions(progress=False))
    model._backend = _LengthBackend()
    return model, split


class TestTextAttack(AuditChecks):
    audit = TextAttackAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 20, "max_users": 30, "n_targets": 3, "n_candidates": 8, "attacks": ["promotional", "injection"]}
    ]
