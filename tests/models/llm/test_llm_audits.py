"""Fairness audits on a real LLM recommender (the tiny random checkpoint): the counterfactual
probe sees the attribute the prompt states; the exposure audits run on its lists."""

import pandas as pd
import pytest

pytest.importorskip("transformers")

from tests.audit.conftest import attributed_frames
from trustrec.audit._fairness import CounterfactualAttributeAudit, ItemExposureAudit
from trustrec.data import Dataset, split_leave_one_out
from trustrec.models import FitOptions
from trustrec.models.llm._ranker import LLMRanker

LLM = {
    "model": "tiny-smollm2-random",
    "n_candidates": 8,
    "n_permutations": 1,
    "max_history_tokens": 48,
    "template": {"chat": False},
    "retriever": {"name": "most_popular"},
}


@pytest.fixture(scope="module")
def fitted():
    inter, users, items = attributed_frames(n_users=40, n_items=20, per_user=6)
    ds = Dataset.from_frame(inter, name="attributed", items=items, users=users)
    split = split_leave_one_out(ds)
    return LLMRanker(**LLM).fit(split, FitOptions(seed=0, progress=False)), split


def test_counterfactual_probe_sees_the_llm_read_attributes(fitted):
    ranker, split = fitted
    res = CounterfactualAttributeAudit(attributes=("gender",), max_users=12, n_boot=20, k=5).run(ranker, split)
    snsr = res.estimates["snsr jaccard@5 [gender]"]
    mean = res.estimates["mean prag_star@5 [gender]"]
    assert mean.value < 1.0  # stating the gender reorders the LLM's lists
    assert snsr.value is not None and snsr.value >= 0
    assert res.settings["n_model_calls"] == 3 * 12


def test_exposure_audit_runs_on_llm_lists(fitted):
    ranker, split = fitted
    res = ItemExposureAudit(max_users=12, n_boot=20, k=5).run(ranker, split)
    assert 0 <= res.estimates["aplt"].value <= 1 and res.settings["n_users"] == 12


@pytest.mark.slow
def test_poisoning_reaches_an_llm_ranker_through_its_retriever():
    """The ranker re-ranks what its retriever proposes, so fake users that push the target into
    item_knn's neighbourhoods push it into the LLM's candidate lists and top-K too."""
    from trustrec.audit._robustness import PoisoningAudit

    inter, users, items = attributed_frames(n_users=60, n_items=30, per_user=6)
    split = split_leave_one_out(Dataset.from_frame(inter, name="attributed", items=items, users=users))
    ranker = LLMRanker(**{**LLM, "retriever": {"name": "item_knn"}}).fit(split, FitOptions(seed=0, progress=False))
    res = PoisoningAudit(attacks=("bandwagon",), budgets=(0.1,), max_users=20, n_boot=20).run(ranker, split)
    assert res.settings["model_spec"]["name"] == "llm_ranker"
    assert res.estimates["target_hr@10 lift [bandwagon @0.1]"].value > 0


@pytest.mark.slow
def test_feedback_loop_runs_an_llm_ranker_and_is_seeded(fitted):
    from trustrec.audit._safety import FeedbackLoopAudit

    ranker, split = fitted
    a = FeedbackLoopAudit(rounds=2, max_users=10, n_boot=10, k=5).run(ranker, split)
    b = FeedbackLoopAudit(rounds=2, max_users=10, n_boot=10, k=5).run(ranker, split)
    assert a.settings["model_spec"]["name"] == "llm_ranker"
    pd.testing.assert_frame_equal(a.evidence["rounds"], b.evidence["rounds"])
