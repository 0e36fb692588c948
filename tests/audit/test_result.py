"""Verdicts against thresholds and the AuditResult contract."""

import pandas as pd
import pytest

from trustrec.audit import AuditResult, Estimate, Plot, Threshold, judge
from trustrec.errors import DataError


def test_judge_pass_warn_fail():
    t = [Threshold(estimate="ratio", op=">=", limit=0.8)]
    assert judge({"ratio": Estimate(0.9, 0.85, 0.95)}, t).status == "pass"
    assert judge({"ratio": Estimate(0.7, 0.6, 0.85)}, t).status == "warn"  # CI reaches the limit
    assert judge({"ratio": Estimate(0.7, 0.6, 0.75)}, t).status == "fail"
    assert judge({"ratio": Estimate(0.7)}, t).status == "fail"  # no CI: the value decides
    not_sig = judge({"ratio": Estimate(0.7, 0.6, 0.75, p_value=0.3)}, t)
    assert not_sig.status == "warn" and "not significant" in not_sig.reasons[0]
    missing = judge({}, t)
    assert missing.status == "pass" and "not measured" in missing.reasons[0]
    assert judge({"x": Estimate(1.0)}, []).status == "no_threshold"
    upper = [Threshold(estimate="lift", op="<=", limit=1.0)]
    assert judge({"lift": Estimate(1.2, 1.1, 1.3)}, upper).status == "fail"
    assert judge({"lift": Estimate(1.2, 0.9, 1.3)}, upper).status == "warn"


def test_result_validates_dimension_and_plots():
    with pytest.raises(DataError, match="dimension"):
        AuditResult("x", "beauty", {})
    with pytest.raises(DataError, match="evidence"):
        AuditResult("x", "fairness", {}, plots=(Plot("bar", "missing", "a", "b", "t"),))
    r = AuditResult(
        "x",
        "fairness",
        {"a": Estimate(float("nan"))},
        evidence={"t": pd.DataFrame({"a": [1]})},
        plots=(Plot("bar", "t", "a", "a", "t"),),
    )
    assert r.estimates["a"].value is None and r.to_dict()["evidence"]["t"]["n_rows"] == 1
    na = AuditResult.not_applicable("x", "privacy", "no reason at all")
    assert na.verdict.status == "not_applicable" and "no reason" in na.summary
