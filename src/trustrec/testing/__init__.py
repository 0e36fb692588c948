"""Conformance suites shipped with the library: a component's test class sets a few class
attributes and inherits dozens of checks (see STYLE.md §2)."""

from trustrec.testing._audit_checks import AuditChecks
from trustrec.testing._doubles import PrecomputedScores
from trustrec.testing._recommender_checks import RecommenderChecks, toy_dataset

__all__ = ["AuditChecks", "PrecomputedScores", "RecommenderChecks", "toy_dataset"]
