"""The explainability and cold-start audits pass AuditChecks (gathered by the coverage test in
test_audit_conformance.py)."""

from typing import Any, ClassVar

import pytest

from trustrec.audit._fairness import ColdStartAudit
from trustrec.audit.explainability import ExplanationFaithfulnessAudit
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    return make_model("item_knn").fit(split, FitOptions(progress=False)), split


class TestExplanationFaithfulness(AuditChecks):
    audit = ExplanationFaithfulnessAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 20, "max_users": 40, "n_explained": 2, "steps": [1, 2], "n_random": 2}
    ]


class TestColdStart(AuditChecks):
    audit = ColdStartAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 20, "max_train_interactions": 20, "compare_with": [{"name": "most_popular"}]}
    ]
