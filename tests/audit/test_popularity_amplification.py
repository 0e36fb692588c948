"""Popularity amplification (list level) and the fine-tuning token shift (Δlog p), on models built
to amplify popularity (or not)."""

import numpy as np
import pytest

from trustrec._config import Config
from trustrec.audit import available_audits
from trustrec.audit.fairness import FinetuneTokenShiftAudit, PopularityAmplificationAudit
from trustrec.eval import popularity_groups
from trustrec.models import FitOptions, Recommender, make_model, register_model

QUIET = FitOptions(progress=False)


class _UniformConfig(Config):
    seed: int = 0


@register_model
class UniformScores(Recommender):
    """Uniform random scores, fixed by (user, item): a reference blind to popularity."""

    name = "uniform_scores_test"
    config_class = _UniformConfig
    capabilities = frozenset({"score"})

    def _fit(self, train, options):
        self.table_ = np.random.default_rng(self.config.seed).random((train.n_users, train.n_items))

    def score(self, queries):
        return self.table_[np.maximum(queries.users, 0)]


class _ShiftConfig(Config):
    head_boost: float = 0.0


class AnswerLossDouble(Recommender):
    """``answer_losses`` of a made-up LM: the base loss depends on (user, item) only; the fine-tuned
    loss is the same, lowered by ``head_boost`` nats per token for the head popularity group."""

    name = ""
    config_class = _ShiftConfig
    capabilities = frozenset({"sequence_likelihood"})
    loss_positions = 1

    def _fit(self, train, options):
        pop = np.bincount(train.interactions.item, minlength=train.n_items)
        self.head_ = popularity_groups(pop, 5) == 0

    def answer_losses(self, queries, targets, *, base=False):
        targets = np.asarray(targets)
        loss = 2.0 + 0.01 * targets + 0.001 * np.maximum(queries.users, 0)
        return loss if base else loss - self.config.head_boost * self.head_[targets]


def test_popularity_groups_by_hand():
    # total 20; mass before each item (sorted): 0, 10, 15, 18, 19, 20 -> floor(5 * m / 20) capped at 4
    assert popularity_groups([10, 5, 3, 1, 1, 0], 5).tolist() == [0, 2, 3, 4, 4, 4]
    # unsorted input, total 7: sorted items 1, 2 (ties by lower index), 0, 3 have mass before 0, 3, 6, 7
    # -> floor(2 * m / 7) = 0, 0, 1, 2 (capped at 1)
    assert popularity_groups([1, 3, 3, 0], 2).tolist() == [1, 0, 0, 1]
    # a tie across the boundary is broken by the lower index: mass before 0, 2 of total 4
    assert popularity_groups([2, 2], 2).tolist() == [0, 1]
    # equal item counts: 10 items, 5 groups of 2, most popular first
    assert popularity_groups(np.arange(1, 11), 5, "items").tolist() == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    # no interaction at all: equal item counts
    assert popularity_groups(np.zeros(4), 2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        popularity_groups([1, 2], 0)
    with pytest.raises(ValueError):
        popularity_groups([1, 2], 2, "mass")


def test_both_audits_are_registered_fairness_audits():
    fairness = available_audits("fairness")
    assert fairness["popularity_amplification"] is PopularityAmplificationAudit
    assert fairness["finetune_token_shift"] is FinetuneTokenShiftAudit


def test_most_popular_against_a_uniform_reference_is_flagged(attributed):
    _ds, split = attributed
    model = make_model("most_popular").fit(split, QUIET)
    res = PopularityAmplificationAudit(reference={"name": "uniform_scores_test"}, n_boot=100).run(model, split)
    e = res.estimates
    assert res.verdict.status == "fail"
    assert any("head_share_increase" in r for r in res.verdict.reasons)
    assert e["head_share_audited"].value > e["head_share_reference"].value + 0.05
    assert e["head_share_increase"].ci_low > 0.05
    assert e["gini_increase"].value > 0 and e["popularity_lift_audited"].value > e["popularity_lift_reference"].value
    table = res.evidence["group_shares"]
    assert set(table.source) == {"data", "reference", "audited"} and len(table) == 15
    for _, rows in table.groupby("source"):
        assert rows.share.sum() == pytest.approx(1.0)
    # equal interaction mass: the catalog's interaction share is about a fifth per group
    assert np.allclose(table.interaction_share.iloc[:5], 0.2, atol=0.1)
    assert res.settings["baseline"] == "reference" and res.settings["reference_model"] == "uniform_scores_test"


def test_a_model_equal_to_its_reference_is_not_flagged(attributed):
    _ds, split = attributed
    model = make_model("most_popular").fit(split, QUIET)
    res = PopularityAmplificationAudit(reference={"name": "most_popular"}, n_boot=50).run(model, split)
    assert res.verdict.status == "pass"
    assert res.estimates["head_share_increase"].value == 0.0
    assert res.estimates["head_share_increase"].ci_low == 0.0 == res.estimates["head_share_increase"].ci_high
    assert res.estimates["gini_increase"].value == 0.0


def test_without_a_reference_the_training_data_is_the_baseline(attributed):
    _ds, split = attributed
    model = make_model("most_popular").fit(split, QUIET)
    res = PopularityAmplificationAudit(n_boot=30, group_rule="items").run(model, split)
    assert res.settings["baseline"] == "data" and "reference" not in set(res.evidence["group_shares"].source)
    e = res.estimates
    assert e["head_share_increase"].value == pytest.approx(e["head_share_over_data"].value)
    assert res.verdict.status in ("pass", "warn", "fail")  # judged against the profiles
    assert any("no reference model" in w for w in res.warnings)


def test_token_shift_of_a_model_against_itself_is_exactly_zero(attributed):
    _ds, split = attributed
    model = AnswerLossDouble().fit(split, QUIET)
    res = FinetuneTokenShiftAudit(n_boot=50, max_users=60, items_per_group=5).run(model, split)
    assert res.verdict.status == "pass"
    deltas = [e.value for k, e in res.estimates.items() if k.startswith("delta_logp_") and e.value is not None]
    assert deltas and all(d == 0.0 for d in deltas)
    assert res.estimates["head_minus_tail_catalog"].value == 0.0
    assert (res.evidence["per_pair"].delta_logp == 0).all()
    catalog = res.evidence["groups"].query("sample == 'catalog'")
    assert len(catalog) == 5 and (catalog.n > 0).all()  # every group represented


def test_token_shift_flags_fine_tuning_that_raises_only_head_titles(attributed):
    _ds, split = attributed
    model = AnswerLossDouble(head_boost=0.5).fit(split, QUIET)
    res = FinetuneTokenShiftAudit(n_boot=50, max_users=60, items_per_group=5).run(model, split)
    e = res.estimates
    assert res.verdict.status == "fail"
    assert e["delta_logp_catalog_g1"].value == pytest.approx(0.5)
    assert e["delta_logp_catalog_g5"].value == 0.0
    assert e["head_minus_tail_catalog"].value == pytest.approx(0.5)
    assert e["head_minus_tail_catalog"].p_value < 0.05


def test_token_shift_not_applicable_without_the_capability(attributed):
    _ds, split = attributed
    res = FinetuneTokenShiftAudit(n_boot=10).run(make_model("most_popular").fit(split, QUIET), split)
    assert res.verdict.status == "not_applicable" and not res.estimates
    assert "sequence_likelihood" in res.verdict.reasons[0]
