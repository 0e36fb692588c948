"""The fairness_mitigations audit on toy data (leave-one-out)."""

import json

import numpy as np
import pytest

from trustrec.audit import AuditResult, Threshold
from trustrec.audit._mitigations import FairnessMitigationsAudit
from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, make_model
from trustrec.testing import PrecomputedScores, toy_dataset

from ._data import genre_toy

QUIET = FitOptions(progress=False)
SMALL = {"k": 5, "n_boot": 50, "n_candidates": 12, "strengths": (0.0, 0.5, 1.0)}


@pytest.fixture(scope="module")
def genre_run():
    split = split_leave_one_out(genre_toy(), short_users="train")
    return split, make_model("item_knn", k=10).fit(split, QUIET)


def test_result_is_valid_and_complete(genre_run, tmp_path):
    split, model = genre_run
    result = FairnessMitigationsAudit(**SMALL, default_strength=0.5).run(model, split)
    assert result.audit == "fairness_mitigations" and result.dimension == "fairness"
    assert result.verdict.status == "no_threshold" and not result.warnings
    assert set(result.estimates) == {
        "calibrated_ndcg_drop",
        "calibrated_miscalibration_reduction",
        "exposure_ndcg_drop",
        "exposure_aplt_gain",
        "exposure_gini_reduction",
    }
    for name in ("calibrated_ndcg_drop", "calibrated_miscalibration_reduction", "exposure_aplt_gain"):
        e = result.estimates[name]
        assert e.ci_low <= e.value <= e.ci_high and e.n > 0
    assert result.estimates["calibrated_miscalibration_reduction"].value > 0
    assert result.estimates["exposure_aplt_gain"].value >= 0
    assert set(result.evidence) == {"calibration_tradeoff", "exposure_tradeoff"}
    calib = result.evidence["calibration_tradeoff"]
    assert calib["strength"].tolist() == [0.0, 0.5, 1.0] and (calib["method"] == "calibrated").all()
    assert {p.table for p in result.plots} == set(result.evidence) and {p.kind for p in result.plots} == {"line"}
    for p in result.plots:
        assert {p.x, p.y} <= set(result.evidence[p.table].columns)
    assert result.settings["groups"] == {"calibrated": "genre", "exposure": "popularity"}
    assert "miscalibration" in result.summary and "APLT" in result.summary
    json.dumps(result.to_dict())
    loaded = AuditResult.load(result.save(tmp_path / "r"))
    assert loaded.estimates == result.estimates and loaded.plots == result.plots


def test_estimates_are_paired_differences_of_the_curve(genre_run):
    split, model = genre_run
    result = FairnessMitigationsAudit(**SMALL, default_strength=0.5).run(model, split)
    t = result.evidence["exposure_tradeoff"].set_index("strength")
    assert result.estimates["exposure_ndcg_drop"].value == pytest.approx(t.loc[0.0, "ndcg@5"] - t.loc[0.5, "ndcg@5"])
    assert result.estimates["exposure_aplt_gain"].value == pytest.approx(t.loc[0.5, "aplt"] - t.loc[0.0, "aplt"])
    assert result.estimates["exposure_gini_reduction"].value == pytest.approx(
        t.loc[0.0, "exposure_gini"] - t.loc[0.5, "exposure_gini"]
    )


def test_default_strength_and_zero_join_the_sweep(genre_run):
    split, model = genre_run
    result = FairnessMitigationsAudit(**{**SMALL, "strengths": (0.9,)}, default_strength=0.3, curves=("exposure",)).run(
        model, split
    )
    assert result.evidence["exposure_tradeoff"]["strength"].tolist() == [0.0, 0.3, 0.9]
    assert set(result.evidence) == {"exposure_tradeoff"}


def test_same_seed_same_intervals(genre_run):
    split, model = genre_run
    a = FairnessMitigationsAudit(**SMALL, seed=3).run(model, split)
    b = FairnessMitigationsAudit(**SMALL, seed=3).run(model, split)
    assert a.estimates == b.estimates


def test_no_genre_column_skips_calibration_with_a_warning():
    split = split_leave_one_out(toy_dataset(), short_users="train")
    model = make_model("most_popular").fit(split, QUIET)
    result = FairnessMitigationsAudit(**SMALL).run(model, split)
    assert set(result.evidence) == {"exposure_tradeoff"}
    assert len(result.warnings) == 1 and "no item group column" in result.warnings[0]
    only = FairnessMitigationsAudit(**SMALL, curves=("calibrated",)).run(model, split)
    assert only.verdict.status == "not_applicable" and "no item group column" in only.verdict.reasons[0]
    named = FairnessMitigationsAudit(**SMALL, item_group_column="genre", exposure_groups="provider").run(model, split)
    assert named.verdict.status == "not_applicable"
    assert "'genre' not found" in named.verdict.reasons[0] and "'provider' not found" in named.verdict.reasons[0]


def test_thresholds_and_any_model(genre_run):
    split = genre_run[0]
    model = PrecomputedScores(np.tile(np.linspace(1, 0, 25), (30, 1))).fit(split, QUIET)  # not registered
    audit = FairnessMitigationsAudit(
        **SMALL, thresholds=(Threshold(estimate="calibrated_ndcg_drop", op="<=", limit=-1.0),)
    )
    result = audit.run(model, split)
    assert result.verdict.status in ("fail", "warn")


def test_config_errors():
    with pytest.raises(ConfigError, match="strengths"):
        FairnessMitigationsAudit(strengths=(0.1, 2.0))
    with pytest.raises(ConfigError, match="strengths"):
        FairnessMitigationsAudit(strengths=())
    with pytest.raises(ConfigError, match="default_strength"):
        FairnessMitigationsAudit(default_strength=-0.5)
    with pytest.raises(ConfigError, match="curves"):
        FairnessMitigationsAudit(curves=("diversity",))


def test_registered_by_name():
    from trustrec.audit import audit_class

    assert audit_class("fairness_mitigations") is FairnessMitigationsAudit
