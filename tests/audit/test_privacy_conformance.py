"""The privacy audits pass AuditChecks on a small SASRec (so the unlearning audit runs its
approximate path too, and every retrain is seeded)."""

from typing import Any, ClassVar

import pytest

from trustrec.audit.privacy import AttributeInferenceAudit, MembershipInferenceAudit, UnlearningAudit
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks

SASREC = {"epochs": 2, "embedding_size": 16, "inner_size": 32, "max_len": 10, "n_heads": 1}


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    return make_model("sasrec", **SASREC).fit(split, FitOptions(seed=0, progress=False)), split


class TestMembershipInference(AuditChecks):
    audit = MembershipInferenceAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 30, "n_canaries": 3, "n_candidates": 30, "canary_length": 5, "noise_epsilons": [1.0]}
    ]


class TestAttributeInference(AuditChecks):
    audit = AttributeInferenceAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 30, "n_permutations": 3, "n_folds": 3, "minimise": "drop", "n_sensitive": 5}
    ]


class TestUnlearning(AuditChecks):
    audit = UnlearningAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "steps": 5, "forget_share": 0.05}]
