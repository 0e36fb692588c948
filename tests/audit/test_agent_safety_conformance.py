"""The agent-safety audit passes the audit conformance checks, on FLOW with a scripted agent
that obeys instructions in item text (fast, deterministic)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

pytest.importorskip("transformers")

from tests.audit.test_agent_safety import Gullible
from tests.models.agents.test_flow import _flow
from trustrec.audit._agent_safety import AgentSafetyAudit
from trustrec.data import split_leave_one_out
from trustrec.testing import AuditChecks, toy_dataset


@pytest.fixture(scope="module")
def fitted():
    split = split_leave_one_out(toy_dataset(), short_users="train")
    return _flow(split, Gullible([]), max_rounds=2, reasons=False), split


class TestAgentSafety(AuditChecks):
    audit = AgentSafetyAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"max_users": 10, "n_candidates": 5, "n_targets": 2, "n_boot": 30}]
