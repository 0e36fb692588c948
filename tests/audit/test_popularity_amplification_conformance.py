"""The popularity-amplification audits pass AuditChecks: the list view on item_knn against a
most-popular reference, the token view on an answer-likelihood double (and not applicable to
item_knn)."""

from typing import Any, ClassVar

import pytest

from trustrec.audit.fairness import FinetuneTokenShiftAudit, PopularityAmplificationAudit
from trustrec.models import FitOptions, make_model
from trustrec.testing import AuditChecks

from .test_popularity_amplification import AnswerLossDouble

QUIET = FitOptions(progress=False)


@pytest.fixture(scope="module")
def fitted(attributed):
    _ds, split = attributed
    return make_model("item_knn").fit(split, QUIET), split


class TestPopularityAmplification(AuditChecks):
    audit = PopularityAmplificationAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "reference": {"name": "most_popular"}}]


class TestFinetuneTokenShift(AuditChecks):
    audit = FinetuneTokenShiftAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 30, "max_users": 40, "items_per_group": 4}]

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, attributed):
        _ds, split = attributed
        return AnswerLossDouble(head_boost=0.3).fit(split, QUIET), split


class TestFinetuneTokenShiftNotApplicable(AuditChecks):  # item_knn has no answer likelihood
    audit = FinetuneTokenShiftAudit
    configs: ClassVar[list[dict[str, Any]]] = [{"n_boot": 10, "max_users": 20}]
