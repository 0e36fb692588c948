"""Fairness audits on data built to have (or not have) the property each audit measures."""

import numpy as np
import pandas as pd
import pytest

from trustrec._config import Config
from trustrec.audit import AuditInputs, AuditResult, audit_class, available_audits
from trustrec.audit._fairness import (
    CalibrationAudit,
    CounterfactualAttributeAudit,
    ItemExposureAudit,
    UserFairnessAudit,
)
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import PrecomputedScores, toy_dataset

QUIET = FitOptions(progress=False)


def oracle_table(split, hit_users: np.ndarray, seed=0) -> np.ndarray:
    """Random scores, with each test target scored highest for the users in ``hit_users``."""
    ds = split.dataset
    rng = np.random.default_rng(seed)
    table = rng.random((ds.n_users, ds.n_items))
    test = split.eval_set("test")
    users = test.queries.users
    for row, u in enumerate(users):
        if hit_users[u]:
            table[u, test.targets.row(row)] = 10.0
    return table


def test_user_fairness_flags_a_model_unfair_by_construction(attributed):
    ds, split = attributed
    female = (ds.users["gender"] == "F").to_numpy()
    unfair = PrecomputedScores(oracle_table(split, female)).fit(split, QUIET)
    fair = PrecomputedScores(oracle_table(split, np.ones(ds.n_users, bool))).fit(split, QUIET)
    audit = UserFairnessAudit(groupings=("gender",), n_boot=200)
    bad, good = audit.run(unfair, split), audit.run(fair, split)
    assert bad.verdict.status == "fail"
    assert any("ndcg@10 ratio [gender]" in r for r in bad.verdict.reasons)
    ratio = bad.estimates["ndcg@10 ratio [gender]"]
    assert ratio.value < 0.2 and ratio.p_value < 0.001
    assert good.verdict.status == "pass"
    assert good.estimates["ndcg@10 ratio [gender]"].value == pytest.approx(1.0)
    # two users have no gender: counted, reported, kept out of the comparison
    table = bad.evidence["groups_gender"].set_index("group")
    assert table.loc["(missing)", "n_users"] == 2
    assert any("2 of" in w and "no value" in w for w in bad.warnings)


def test_user_fairness_matches_manual_group_means(attributed):
    ds, split = attributed
    model = make_model("item_knn").fit(split, QUIET)
    result = UserFairnessAudit(groupings=("occupation", "activity"), n_boot=50).run(model, split)
    per_user = AuditInputs(model, split).evaluation.per_user
    occupation = ds.users["occupation"].to_numpy()[per_user["user"]]
    manual = per_user.groupby(occupation)["ndcg@10"].mean()
    got = result.evidence["groups_occupation"].set_index("group")["mean"]
    pd.testing.assert_series_equal(got.sort_index(), manual.sort_index(), check_names=False)
    activity = result.evidence["groups_activity"].set_index("group")
    assert activity.loc["active", "n_users"] == int(np.ceil(0.2 * ds.n_users))


def test_small_groups_warn_and_get_no_ci(attributed):
    _ds, split = attributed
    model = make_model("most_popular").fit(split, QUIET)
    result = UserFairnessAudit(groupings=("age",), min_group_size=40, n_boot=50).run(model, split)
    table = result.evidence["groups_age"]
    small = table[table.too_small]
    assert len(small) and small.ci_low.isna().all()
    assert any("under 40 users" in w for w in result.warnings)


def test_item_exposure_sees_most_popular_concentrate(attributed):
    _ds, split = attributed
    pop = ItemExposureAudit(n_boot=50).run(make_model("most_popular").fit(split, QUIET), split)
    knn = ItemExposureAudit(n_boot=50).run(make_model("item_knn").fit(split, QUIET), split)
    assert pop.estimates["exposure_gini"].value > knn.estimates["exposure_gini"].value
    assert pop.estimates["aplt"].value <= knn.estimates["aplt"].value
    assert pop.estimates["popularity_lift"].value > knn.estimates["popularity_lift"].value
    lorenz = pop.evidence["lorenz"]
    assert lorenz.item_share.iloc[0] == 0 and lorenz.exposure_share.iloc[-1] == pytest.approx(1)
    shares = pop.evidence["group_exposure"]
    assert set(shares.grouping) == {"popularity", "genre"}
    for _, g in shares.groupby("grouping"):
        assert g.exposure_share.sum() == pytest.approx(1) and g.catalog_share.sum() == pytest.approx(1)


def test_item_exposure_of_only_empty_lists_is_not_applicable(attributed):
    _ds, split = attributed
    ds = split.dataset
    nothing = PrecomputedScores(np.full((ds.n_users, ds.n_items), np.nan)).fit(split, QUIET)
    result = ItemExposureAudit(n_boot=20).run(nothing, split)
    assert result.verdict.status == "not_applicable"
    assert "recommended no item to any of the" in result.verdict.reasons[0] and not result.estimates


def test_item_exposure_manual_aplt_and_lift(attributed):
    ds, split = attributed
    model = make_model("most_popular").fit(split, QUIET)
    result = ItemExposureAudit(n_boot=0).run(model, split)
    top = AuditInputs(model, split).topk
    pop = np.bincount(split.train.item, minlength=ds.n_items)
    head = np.argsort(-pop, kind="stable")[: int(np.ceil(0.2 * ds.n_items))]
    assert result.estimates["aplt"].value == pytest.approx((~np.isin(top, head)).mean())
    hist = split.eval_set("test").queries.histories
    prof = np.array([pop[hist.row(i)].mean() for i in range(len(hist))])
    rec = pop[top].mean(1)
    assert result.estimates["popularity_lift"].value == pytest.approx((rec.mean() - prof.mean()) / prof.mean())


def test_calibration_applies_only_with_item_groups(attributed):
    _ds, split = attributed
    model = make_model("item_knn").fit(split, QUIET)
    res = CalibrationAudit(n_boot=50).run(model, split)
    assert res.verdict.status == "no_threshold" and res.estimates["miscalibration"].value > 0
    assert res.evidence["by_genre"].profile_share.sum() == pytest.approx(1, abs=1e-6)
    toy = toy_dataset()
    from trustrec.data import split_leave_one_out

    toy_split = split_leave_one_out(toy, short_users="train")
    na = CalibrationAudit().run(make_model("most_popular").fit(toy_split, QUIET), toy_split)
    assert na.verdict.status == "not_applicable" and "no item group column" in na.verdict.reasons[0]


class _AttributeConfig(Config):
    shift: float = 5.0


class AttributeShift(Recommender):
    """Popularity scores, but a query stating gender F or an age band boosts the last items: a
    model that reads query attributes."""

    name = "attribute_shift_test"
    config_class = _AttributeConfig
    capabilities = frozenset({"score", "attributes"})

    def _fit(self, train, options):
        self.pop_ = np.bincount(train.interactions.item, minlength=train.n_items).astype(float)

    def score(self, queries):
        scores = np.tile(self.pop_, (len(queries), 1))
        if queries.attributes is not None:
            boost = np.zeros(len(queries))
            for col in queries.attributes.columns:
                boost += (queries.attributes[col].astype(str) == "F").to_numpy()
            scores[:, -10:] += self.config.shift * boost[:, None] * self.pop_.max()
        return scores


def test_counterfactual_probe_not_applicable_to_models_that_cannot_read_attributes(attributed):
    _ds, split = attributed
    res = CounterfactualAttributeAudit(n_boot=50).run(make_model("item_knn").fit(split, QUIET), split)
    assert res.verdict.status == "not_applicable" and not res.estimates
    assert "does not read the query's user attributes" in res.verdict.reasons[0]
    # the probe itself, forced on such a model through the capability, measures nothing: zero by construction
    blind = AttributeShift(shift=0.0).fit(split, QUIET)
    zero = CounterfactualAttributeAudit(n_boot=50).run(blind, split)
    snsr = {k: e.value for k, e in zero.estimates.items() if k.startswith("snsr")}
    assert set(zero.settings["probed_values"]) == {"gender", "age", "occupation"}
    assert snsr and all(v == 0 for v in snsr.values())
    assert zero.verdict.status == "pass"


def test_reads_query_attributes_follows_capability_template_and_wrappers(attributed):
    from types import SimpleNamespace

    from trustrec.audit._fairness import reads_query_attributes

    _, split = attributed
    shift = AttributeShift().fit(split, QUIET)
    assert reads_query_attributes(shift) and not reads_query_attributes(make_model("item_knn").fit(split, QUIET))
    wrapper = SimpleNamespace(capabilities=frozenset({"uses_history", "candidates"}), base_=shift)  # a re-ranker
    assert reads_query_attributes(wrapper)

    class _Template:
        attribute_keys = ()

    class _NoProfile(AttributeShift):
        capabilities = AttributeShift.capabilities | {"prompt"}

        def prompt_template(self):
            return _Template()

    assert not reads_query_attributes(_NoProfile())


def test_counterfactual_probe_flags_a_model_that_reads_attributes(attributed):
    _ds, split = attributed
    res = CounterfactualAttributeAudit(attributes=("gender",), n_boot=50).run(AttributeShift().fit(split, QUIET), split)
    sims = res.evidence["similarity"].set_index(["value", "similarity"])["mean"]
    assert sims[("M", "jaccard")] == 1.0 and sims[("F", "jaccard")] < 0.5
    assert res.estimates["snsr jaccard@10 [gender]"].value == pytest.approx(1 - sims[("F", "jaccard")])
    assert res.verdict.status == "fail"
    with pytest.raises(ConfigError, match="not a user column"):
        CounterfactualAttributeAudit(attributes=("religion",)).run(AttributeShift().fit(split, QUIET), split)
    custom = CounterfactualAttributeAudit(attributes=("religion",), values={"religion": ["F", "none"]}, n_boot=0).run(
        AttributeShift().fit(split, QUIET), split
    )
    assert custom.estimates["snsr jaccard@10 [religion]"].value > 0


def test_registry_and_result_round_trip(attributed, tmp_path):
    names = available_audits("fairness")
    assert {"user_fairness", "item_exposure", "calibration", "counterfactual_attributes"} <= set(names)
    with pytest.raises(ConfigError, match=r"did you mean|Did you mean"):
        audit_class("user_fairnes")
    _ds, split = attributed
    res = ItemExposureAudit(n_boot=20).run(make_model("most_popular").fit(split, QUIET), split)
    back = AuditResult.load(res.save(tmp_path / "r"))
    assert back.estimates == res.estimates and back.verdict == res.verdict and back.plots == res.plots
    pd.testing.assert_frame_equal(back.evidence["lorenz"], res.evidence["lorenz"])
    assert back.settings["audit"] == "item_exposure" and back.settings["config"]["n_boot"] == 20


def test_audits_are_repeatable_and_validate_config(attributed):
    _ds, split = attributed
    model = make_model("item_knn").fit(split, QUIET)
    a = UserFairnessAudit(n_boot=50, seed=3).run(model, split)
    b = UserFairnessAudit(n_boot=50, seed=3).run(model, split)
    assert a.estimates == b.estimates
    with pytest.raises(ConfigError, match="min_ratio"):
        UserFairnessAudit(min_ratio=2)
    with pytest.raises(ConfigError, match="not found"):
        UserFairnessAudit(groupings=("religion",)).run(model, split)
