"""Controllability audits and the position-bias audit, on models built to have (or lack) the
property each one measures."""

import numpy as np
import pytest

from trustrec.audit import audit_class, available_audits
from trustrec.audit.controllability import (
    PlatformRulesAudit,
    PositionBiasAudit,
    PromptSensitivityAudit,
    UserControlAudit,
    constraint_requests,
    equal_rate_test,
    load_paraphrases,
    uniform_position_test,
    wilson_interval,
)
from trustrec.errors import ConfigError
from trustrec.mitigate import ControlCatalog, parse_constraint
from trustrec.models import FitOptions, make_model

from ._control_doubles import ContentBackend, FirstSlotBackend, ListOrderRanker, WordingBackend

QUIET = FitOptions(progress=False)


@pytest.fixture(scope="module")
def knn(attributed):
    _ds, split = attributed
    return make_model("item_knn").fit(split, QUIET), split


def test_registered_with_their_dimensions():
    audits = available_audits()
    assert {
        n: audits[n].dimension for n in ("user_control", "platform_rules", "prompt_sensitivity", "position_bias")
    } == {
        "user_control": "controllability",
        "platform_rules": "controllability",
        "prompt_sensitivity": "controllability",
        "position_bias": "fairness",
    }
    assert audit_class("position_bias") is PositionBiasAudit


# -- user control ---------------------------------------------------------------------------------------------------
def test_generated_requests_parse_back_into_what_was_meant(attributed):
    ds, split = attributed
    catalog = ControlCatalog.from_items(ds.items)
    queries = split.eval_set("test").queries
    requests = constraint_requests(catalog, queries.histories, seed=0)
    assert set(requests) == {"exclude_genre", "include_genre", "year_before", "year_after", "similar", "different"}
    assert all(t is None for t in requests["year_before"])  # no year column: not asked
    for kind in ("exclude_genre", "include_genre", "similar", "different"):
        texts = [t for t in requests[kind] if t is not None]
        assert len(texts) > 0.9 * len(queries)
        kinds = {type(c).__name__ for t in texts for c in parse_constraint(t, catalog).constraints}
        assert (
            kinds
            == {
                "exclude_genre": {"ExcludeGroups"},
                "include_genre": {"IncludeGroups"},
                "similar": {"SimilarTo"},
                "different": {"Different"},
            }[kind]
        )
    # "no <g>" names a genre of the user's history that is not their most frequent one
    row = 0
    history_genres = ds.items["genre"].iloc[queries.histories.row(row)].str.split("|").explode()
    excluded = requests["exclude_genre"][row][3:]
    assert excluded.lower() in {g.lower() for g in history_genres}


def test_filtering_satisfies_every_request_where_the_model_alone_does_not(knn):
    model, split = knn
    res = UserControlAudit(n_boot=50, max_users=80).run(model, split)
    e = res.estimates
    assert res.verdict.status == "pass"  # filtered conditions >= 0.95
    assert e["satisfaction@10 [filtered]"].value == 1.0 and e["satisfaction@10 [post_filtered]"].value == 1.0
    assert e["satisfaction@10 [unconstrained]"].value < 0.8
    assert "satisfaction@10 [prompted]" not in e  # item_knn reads no prompt
    assert e["unsatisfiable_share"].value == 0 and e["understood_share"].value == 1
    # accuracy on compatible targets: filtering drops only incompatible items, so the target can only move up
    assert e["ndcg@10 retained [filtered]"].value >= 1.0
    assert set(res.evidence["cost"].condition) == {"uncontrolled", "filtered", "post_filtered"}
    assert any("year column" in w for w in res.warnings)
    table = res.evidence["satisfaction"]
    assert set(table.kind) == {"exclude_genre", "include_genre", "similar", "different"}


def test_unsatisfiable_and_vague_requests_are_counted_not_raised(knn):
    model, split = knn
    res = UserControlAudit(
        kinds=(), texts=("only horror, no horror", "old films please", "no comedy"), n_boot=20, max_users=30
    ).run(model, split)
    e = res.estimates
    assert e["unsatisfiable_share"].value == pytest.approx(1 / 3)
    assert e["understood_share"].value == pytest.approx(2 / 3)  # "old films please" only
    assert any("no item satisfies" in w and "only horror, no horror" in w for w in res.warnings)
    assert any("not fully understood" in w for w in res.warnings)
    assert e["satisfaction@10 [filtered, no comedy]"].value == 1.0
    assert e["satisfaction@10 [filtered, only horror, no horror]"].value is None  # nothing to measure
    requests = res.evidence["requests"]
    assert requests[requests.kind == "only horror, no horror"].unsatisfiable.all()


def test_user_control_without_enforcement_measures_the_model_alone(knn):
    model, split = knn
    res = UserControlAudit(modes=(), kinds=("exclude_genre",), n_boot=20, max_users=30).run(model, split)
    assert res.settings["conditions"] == ["unconstrained"]
    assert res.verdict.status == "no_threshold"  # nothing controlled to judge
    assert res.evidence["cost"].condition.tolist() == ["uncontrolled"]


def test_user_control_not_applicable_without_item_columns():
    from trustrec.data import split_leave_one_out
    from trustrec.testing import toy_dataset

    split = split_leave_one_out(toy_dataset(), short_users="train")
    model = make_model("most_popular").fit(split, QUIET)
    res = UserControlAudit().run(model, split)
    assert res.verdict.status == "not_applicable" and "group" in res.verdict.reasons[0]
    with pytest.raises(ConfigError, match="at least one request"):
        UserControlAudit(kinds=())


@pytest.mark.realdata
def test_user_control_on_ml100k(ml100k):
    from trustrec.data import split_leave_one_out

    split = split_leave_one_out(ml100k)
    model = make_model("most_popular").fit(split, QUIET)
    res = UserControlAudit(n_boot=100, max_users=100).run(model, split)
    e = res.estimates
    assert e["understood_share"].value == 1.0
    assert {"year_before", "year_after"} <= set(res.evidence["satisfaction"].kind)
    assert e["satisfaction@10 [filtered]"].value == 1.0
    assert e["satisfaction@10 [unconstrained, year_before]"].value < 0.5  # most-popular films are recent


# -- platform rules -------------------------------------------------------------------------------------------------
def test_platform_rules_removes_every_violation_at_a_measured_cost(knn):
    model, split = knn
    res = PlatformRulesAudit(n_blocked=3, max_exposure_share=0.25, n_boot=50).run(model, split)
    e = res.estimates
    assert e["violation_share [base]"].value > 0.1
    assert e["violation_share [enforced]"].value == 0 and res.verdict.status == "pass"
    assert e["lists_with_blocked [enforced]"].value == 0
    assert e["ndcg@10 change"].value <= 0 and e["ndcg@10 change"].ci_low <= e["ndcg@10 change"].ci_high
    exposure = res.evidence["exposure"]
    assert (exposure.enforced <= res.settings["cap"]).all()
    assert (exposure[exposure.blocked].enforced == 0).all()
    assert len(res.settings["blocked_items"]) == 3


def test_platform_rules_reports_unknown_blocked_ids(knn):
    model, split = knn
    res = PlatformRulesAudit(blocked_items=("i0", "no-such-item"), max_exposure_share=None, n_boot=10).run(model, split)
    assert any("not in the catalog" in w and "no-such-item" in w for w in res.warnings)
    assert res.settings["n_blocked_in_catalog"] == 1
    none = PlatformRulesAudit(n_blocked=0, max_exposure_share=None).run(model, split)
    assert none.verdict.status == "not_applicable"


# -- position bias: the statistics ----------------------------------------------------------------------------------
def test_uniformity_and_equal_rate_tests():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 5, 500)
    skewed = np.where(rng.random(500) < 0.5, 0, uniform)
    assert uniform_position_test(uniform, 5)[1] > 0.01 and uniform_position_test(skewed, 5)[1] < 1e-6
    few = np.array([0, 0, 0, 0, 0, 0, 1])  # expected 0.7 per cell: Monte Carlo
    _stat, p, method = uniform_position_test(few, 10, n_resamples=999)
    assert method == "monte_carlo" and p < 0.01
    pos = np.tile(np.arange(4), 100)
    assert equal_rate_test(pos, pos == 0, 4)[1] < 1e-6
    flat = rng.random(400) < 0.3
    _s, p, method = equal_rate_test(pos, flat, 4)
    assert method == "chi2" and p > 0.01
    small = equal_rate_test(np.arange(8) % 4, np.array([1, 0, 0, 0, 1, 0, 0, 0], bool), 4, n_resamples=999)
    assert small[2] == "permutation" and 0 < small[1] <= 1
    lo, hi = wilson_interval(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0 and hi[2] == pytest.approx(1) and lo[1] < 0.5 < hi[1]
    assert hi[0] == pytest.approx(0.2775, abs=1e-3)  # the textbook 0/10 Wilson bound


# -- position bias: the audit ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def listers(attributed):
    _ds, split = attributed
    first = ListOrderRanker(prefer_first=True).fit(split, QUIET)
    blind = ListOrderRanker(prefer_first=False).fit(split, QUIET)
    return first, blind, split


def test_position_bias_detects_a_ranker_that_prefers_the_first_slot(listers):
    first, _, split = listers
    res = PositionBiasAudit(n_candidates=5, n_boot=100).run(first, split)
    e = res.estimates
    assert res.verdict.status == "fail"
    assert e["top1_listed_first [single order]"].value == 1.0
    assert e["top1_position_tv [single order]"].value == pytest.approx(0.8)
    assert e["top1_position_tv [single order]"].p_value < 1e-6
    assert e["target_top1_spread [single order]"].p_value < 1e-6
    curve = res.evidence["curve"]
    single = curve[curve.condition == "single order"].set_index("position").rate
    assert single[1] == 1.0 and single[2:].max() < 0.5
    # the mitigation: every cyclic shift (no n_permutations of its own -> the list length), 5x the calls
    assert res.settings["n_orders"] == 5
    assert e["model_calls [averaged]"].value == 5 * e["model_calls [single order]"].value
    assert e["top1_position_tv [averaged]"].value < 0.2
    assert e["kendall_tau across orders"].value < 1


def test_position_bias_passes_a_position_blind_ranker(listers):
    _, blind, split = listers
    res = PositionBiasAudit(n_candidates=5, n_boot=100).run(blind, split)
    e = res.estimates
    assert res.verdict.status == "pass", res.verdict.reasons
    assert e["top1_position_tv [single order]"].p_value > 0.05
    assert e["target_top1_spread [single order]"].p_value > 0.05
    assert e["kendall_tau across orders"].value == pytest.approx(1.0)  # order never matters
    assert e["top1_listed_first [single order]"].value < 0.4


def test_position_bias_lists_the_target_uniformly_among_unseen_negatives(listers):
    first, _, split = listers
    res = PositionBiasAudit(n_candidates=4, negatives="random", n_boot=10).run(first, split)
    per_user = res.evidence["per_user"]
    counts = per_user.target_position.value_counts()
    assert counts.max() - counts.min() <= 1  # stratified positions
    assert res.settings["negatives"] == "random"


def test_position_bias_with_fewer_users_than_positions_does_not_crash(listers):
    first, _, split = listers
    res = PositionBiasAudit(n_candidates=6, max_users=3, n_boot=20).run(first, split)
    curve = res.evidence["curve"]
    assert curve[curve.condition == "single order"].rate.isna().sum() == 3  # positions nobody got
    assert res.estimates["top1_position_tv [single order]"].p_value is not None
    with pytest.raises(ValueError, match="outcomes"):
        equal_rate_test(np.arange(3), np.ones(4, bool), 3)


def test_position_bias_not_applicable_to_a_scorer(knn):
    model, split = knn
    res = PositionBiasAudit().run(model, split)
    assert res.verdict.status == "not_applicable" and "candidate order" in res.verdict.reasons[0]


def _fake_ranker(split, backend, **params):
    from trustrec.models.llm._ranker import LLMRanker

    retriever = make_model("most_popular").fit(split, QUIET)
    ranker = LLMRanker.from_fitted(
        retriever, split.train_dataset(), **{"model": "tiny-smollm2-random", "template": {"chat": False}, **params}
    )
    ranker._backend = backend  # no model is loaded: the backend is the whole LLM
    return ranker


@pytest.fixture(scope="module")
def fake_llm_ranker(attributed):
    return _fake_ranker(attributed[1], FirstSlotBackend(), n_permutations=3), attributed[1]


def test_position_bias_of_an_llm_ranker_through_its_prompts(fake_llm_ranker):
    ranker, split = fake_llm_ranker
    backend = ranker._backend
    before = backend.n_prompts
    res = PositionBiasAudit(n_candidates=6, max_users=60, n_boot=50).run(ranker, split)
    e = res.estimates
    assert res.settings["n_orders"] == 3 and res.settings["score_scale"] == "llm scores"
    assert backend.n_prompts - before == 60 * 3 == e["model_calls [averaged]"].value
    assert res.verdict.status == "fail"
    assert e["top1_listed_first [single order]"].value == 1.0
    # three evenly spaced shifts of six: each candidate is shown at 3 of the 6 positions, so the
    # first slot's advantage shrinks but is not gone
    assert e["top1_position_tv [averaged]"].value < e["top1_position_tv [single order]"].value


# -- prompt sensitivity ---------------------------------------------------------------------------------------------
def test_shipped_paraphrases_keep_the_default_slots():
    from trustrec.models.llm._prompts import PromptTemplate, template_slots
    from trustrec.models.llm._ranker import RANKER_TEMPLATE

    for kind, default in (("ranker", RANKER_TEMPLATE["user"]), ("generative", PromptTemplate().user)):
        paraphrases = load_paraphrases(kind)
        assert len(paraphrases) >= 5 and len({p["name"] for p in paraphrases}) == len(paraphrases)
        for p in paraphrases:
            assert template_slots(p["user"]) == template_slots(default), (kind, p["name"])
            assert p["user"] != default and "data" in p["system"] and "instruction" in p["system"]
            PromptTemplate.from_dict({k: v for k, v in p.items() if k != "name"})


def test_prompt_sensitivity_not_applicable_without_a_prompt(knn):
    model, split = knn
    res = PromptSensitivityAudit().run(model, split)
    assert res.verdict.status == "not_applicable" and "reads no prompt" in res.verdict.reasons[0]
    with pytest.raises(ConfigError, match="unknown field"):
        PromptSensitivityAudit(paraphrases=({"name": "x", "usr": "typo"},))


def test_position_bias_passes_an_llm_ranker_that_reads_only_the_candidates(attributed):
    ranker = _fake_ranker(attributed[1], ContentBackend(), n_permutations=2)
    res = PositionBiasAudit(n_candidates=5, n_boot=50).run(ranker, attributed[1])
    assert res.verdict.status == "pass", res.verdict.reasons
    assert res.estimates["kendall_tau across orders"].value == pytest.approx(1.0)


def test_prompt_sensitivity_separates_a_wording_sensitive_llm_from_an_insensitive_one(attributed):
    split = attributed[1]
    audit = PromptSensitivityAudit(max_users=40, n_boot=50, k=5)
    sensitive = audit.run(_fake_ranker(split, WordingBackend(), n_candidates=10, n_permutations=1), split)
    stable = audit.run(_fake_ranker(split, ContentBackend(), n_candidates=10, n_permutations=1), split)
    s, t = sensitive.estimates, stable.estimates
    assert len(sensitive.settings["templates"]) == 6 and sensitive.settings["n_model_calls"] == 5 * 40
    assert t["jaccard@5 to default"].value == 1.0 and t["rbo to default"].value == pytest.approx(1.0)
    assert t["ndcg@5 spread"].value == 0.0 and t["top1_agreement"].value == 1.0
    assert stable.verdict.status == "pass"
    # a new ranking of the same 10 candidates per template: the top 5 of 10 overlap by chance only
    assert s["jaccard@5 to default"].value < 0.6 and s["top1_agreement"].value < 0.3
    assert s["jaccard@5 pairwise"].ci_high < t["jaccard@5 pairwise"].value
    assert not sensitive.warnings
    fixed = PromptSensitivityAudit(max_users=10, n_boot=20, k=10).run(
        _fake_ranker(split, WordingBackend(), n_candidates=10, n_permutations=1), split
    )
    assert fixed.estimates["jaccard@10 to default"].value == 1.0  # the same 10 candidates ...
    assert any("1 by construction" in w for w in fixed.warnings)  # ... and the audit says so
    table = sensitive.evidence["per_template"]
    assert table.template.tolist() == ["default", "reworded", "question_first", "terse", "descriptive", "formal"]
    assert table.jaccard_to_default.iloc[0] == 1.0


def test_identical_paraphrases_give_identical_lists_and_a_bad_one_is_refused(attributed):
    from trustrec.models.llm._ranker import RANKER_TEMPLATE

    split = attributed[1]
    ranker = _fake_ranker(split, WordingBackend(), n_candidates=10, n_permutations=1)
    same = ({"name": "same", "user": RANKER_TEMPLATE["user"], "system": RANKER_TEMPLATE["system"]},)
    res = PromptSensitivityAudit(paraphrases=same, max_users=20, n_boot=20, k=5).run(ranker, split)
    assert res.estimates["jaccard@5 to default"].value == 1.0
    assert res.estimates["ndcg@5 spread"].value == 0.0
    assert any("only 1 paraphrases" in w for w in res.warnings)
    assert ranker.config.template == {"chat": False}  # the audited model is untouched
    missing = ({"name": "no_history", "user": "Candidates:\n{candidates}\nPick one."},)
    with pytest.raises(ConfigError, match="say the same things"):
        PromptSensitivityAudit(paraphrases=missing, max_users=4).run(ranker, split)


def test_user_control_on_an_llm_ranker_prompts_and_filters(attributed):
    split = attributed[1]
    ranker = _fake_ranker(split, ContentBackend(), n_candidates=10, n_permutations=1)
    res = UserControlAudit(
        kinds=("exclude_genre", "different"), modes=("candidates",), max_users=30, n_boot=20, k=5
    ).run(ranker, split)
    e = res.estimates
    assert res.settings["reads_prompt"] and "satisfaction@5 [prompted]" in e
    assert e["satisfaction@5 [filtered]"].value == 1.0 > e["satisfaction@5 [prompted]"].value
    assert set(res.evidence["cost"].condition) == {"prompted", "filtered"}


# -- the real (tiny, random) LLM: slow on a shared CPU --------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ranker(attributed):
    pytest.importorskip("transformers")
    from trustrec.models.llm._ranker import LLMRanker

    _ds, split = attributed
    retriever = make_model("most_popular").fit(split, QUIET)
    return LLMRanker.from_fitted(
        retriever,
        split.train_dataset(),
        model="tiny-smollm2-random",
        n_candidates=8,
        n_permutations=2,
        max_history_tokens=48,
        template={"chat": False},
    ), split


@pytest.mark.slow
def test_controllability_audits_on_a_real_llm_ranker(tiny_ranker):
    ranker, split = tiny_ranker
    res = PromptSensitivityAudit(max_users=12, n_boot=50, k=5).run(ranker, split)
    e = res.estimates
    assert res.settings["templates"][0] == "default" and res.settings["n_model_calls"] == 5 * 12
    assert 0 <= e["jaccard@5 to default"].value <= 1 and 0 <= e["rbo to default"].value <= 1
    assert e["ndcg@5 spread"].ci_low <= e["ndcg@5 spread"].value <= e["ndcg@5 spread"].ci_high + 1e-12
    control = UserControlAudit(kinds=("exclude_genre",), modes=("candidates",), max_users=8, n_boot=20, k=5).run(
        ranker, split
    )
    assert control.estimates["satisfaction@5 [filtered]"].value == 1.0
    bias = PositionBiasAudit(n_candidates=4, max_users=16, n_boot=20).run(ranker, split)
    assert bias.settings["n_orders"] == 2 and bias.estimates["model_calls [averaged]"].value == 32


@pytest.mark.slow
def test_controllability_audits_on_a_generative_llm(attributed):
    pytest.importorskip("transformers")
    from trustrec.models.llm._generative import GenerativeRecommender

    split = attributed[1]
    model = GenerativeRecommender(
        model="tiny-smollm2-random",
        max_history_tokens=32,
        max_train_examples=8,
        epochs=1,
        num_beams=5,
        template={"chat": False},
    ).fit(split, QUIET)
    sens = PromptSensitivityAudit(max_users=6, n_boot=20, k=3).run(model, split)
    assert sens.settings["templates"] == ["default", "reworded", "question_first", "terse", "descriptive", "formal"]
    control = UserControlAudit(kinds=("exclude_genre",), modes=("candidates",), max_users=6, n_boot=20, k=3).run(
        model, split
    )
    assert control.estimates["satisfaction@3 [filtered]"].value == 1.0  # decoding stays inside the allowed set
    assert not PositionBiasAudit().run(model, split).estimates  # no candidate list to order
