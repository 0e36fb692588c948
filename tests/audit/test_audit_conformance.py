"""Every registered audit passes AuditChecks on a small model with user and item attributes."""

from typing import Any, ClassVar

import pytest

from trustrec.audit import available_audits
from trustrec.audit._factuality import HallucinationAudit
from trustrec.audit._fairness import (
    CalibrationAudit,
    CounterfactualAttributeAudit,
    ItemExposureAudit,
    UserFairnessAudit,
)
from trustrec.audit._mitigations import FairnessMitigationsAudit
from trustrec.audit._robustness import HistoryPerturbationAudit, PoisoningAudit
from trustrec.audit._safety import FeedbackLoopAudit
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    return make_model("item_knn").fit(split, FitOptions(progress=False)), split


class TestUserFairness(AuditChecks):
    audit = UserFairnessAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30}]


class TestItemExposure(AuditChecks):
    audit = ItemExposureAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30}]


class TestCalibration(AuditChecks):
    audit = CalibrationAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30}]


class TestCounterfactual(AuditChecks):
    audit = CounterfactualAttributeAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "max_users": 50}]


class TestFairnessMitigations(AuditChecks):
    audit = FairnessMitigationsAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "strengths": [0.0, 0.5, 0.9], "n_candidates": 20}]


class TestHallucination(AuditChecks):  # not applicable to item_knn: the reason is checked
    audit = HallucinationAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"max_users": 5}]


class TestHistoryPerturbation(AuditChecks):
    audit = HistoryPerturbationAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 20, "budgets": [0.2, 0.5], "perturbations": ["delete", "substitute"], "max_users": 60}
    ]


class TestPoisoning(AuditChecks):
    audit = PoisoningAudit
    configs: ClassVar[list[dict[str, Any]]] = [
        {"n_boot": 20, "attacks": ["random", "sequential"], "budgets": [0.05], "max_users": 80}
    ]


class TestFeedbackLoop(AuditChecks):
    audit = FeedbackLoopAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 20, "rounds": 2, "max_users": 80}]


def _conformance_classes():
    """AuditChecks subclasses in this file and in every ``tests/audit/test_*conformance*.py``."""
    import importlib
    from pathlib import Path

    modules = [
        importlib.import_module(f"tests.audit.{p.stem}")
        for p in sorted(Path(__file__).parent.glob("test_*conformance*.py"))
    ]
    return {
        c
        for m in modules
        for c in vars(m).values()
        if isinstance(c, type) and issubclass(c, AuditChecks) and c is not AuditChecks
    }


def test_every_registered_audit_has_a_conformance_class():
    tested = {c.audit for c in _conformance_classes()}
    missing = sorted(name for name, cls in available_audits().items() if cls not in tested)
    assert not missing, f"audits without a conformance class: {missing}"
