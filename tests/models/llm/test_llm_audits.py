"""Fairness audits on a real LLM recommender (the tiny random checkpoint): the counterfactual
probe sees the attribute the prompt states; the exposure audits run on its lists."""

import pytest

pytest.importorskip("transformers")

from tests.audit.conftest import attributed_frames
from trustrec.audit._fairness import CounterfactualAttributeAudit, ItemExposureAudit
from trustrec.data import Dataset, split_leave_one_out
from trustrec.models import FitOptions
from trustrec.models.llm._ranker import LLMRanker

LLM = {"model": "tiny-smollm2-random", "n_candidates": 8, "n_permutations": 1, "max_history_tokens": 48,
       "template": {"chat": False}, "retriever": {"name": "most_popular"}}


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
    assert mean.value < 1.0            # stating the gender reorders the LLM's lists
    assert snsr.value is not None and snsr.value >= 0
    assert res.settings["n_model_calls"] == 3 * 12


def test_exposure_audit_runs_on_llm_lists(fitted):
    ranker, split = fitted
    res = ItemExposureAudit(max_users=12, n_boot=20, k=5).run(ranker, split)
    assert 0 <= res.estimates["aplt"].value <= 1 and res.settings["n_users"] == 12
