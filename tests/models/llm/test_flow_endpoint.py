"""Agents against an OpenAI-compatible endpoint (the local test server as a real process): FLOW plays
the same episodes as the local model when choices are read from likelihoods and its free-text
protocol runs to the end on replies a random model cannot make readable; TriRec's user agent scores
as the local model does; the explanation judge's JSON tool loop never crashes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from trustrec.data import split_leave_one_out
from trustrec.models import FitOptions, make_model
from trustrec.testing import toy_dataset

OPTS = FitOptions(seed=0, progress=False)
FLOW = {
    "model": "tiny-smollm2-random",
    "prior": {"name": "most_popular"},
    "n_candidates": 4,
    "max_rounds": 3,
    "max_history_items": 3,
    "max_history_tokens": None,
    "template": {"chat": False},
    "timeout_s": 30.0,
}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


def test_flow_scored_through_an_endpoint_plays_the_local_episodes(split, llm_server):
    queries = split.eval_set("test").queries[:5]
    remote = make_model("flow", **FLOW, reasons=False, base_url=llm_server).fit(split, OPTS)
    local = make_model("flow", **FLOW, reasons=False).fit(split, OPTS)
    a, b = remote.run_episodes(queries), local.run_episodes(queries)
    assert [[r.item for r in e.rounds] for e in a] == [[r.item for r in e.rounds] for e in b]
    np.testing.assert_allclose(
        [r.margin for e in a for r in e.rounds], [r.margin for e in b for r in e.rounds], atol=1e-3
    )
    assert remote.tokenizer is None  # the endpoint path: no local model was loaded


def test_flow_free_text_protocol_through_an_endpoint_never_crashes(split, llm_server):
    queries = split.eval_set("test").queries[:4]
    flow = make_model("flow", **FLOW, decision="text", reply_tokens=12, base_url=llm_server).fit(split, OPTS)
    top, episodes = flow.recommend_with_episodes(queries, 4)
    prior = flow.candidate_lists(flow._prepare(queries))[0]
    for q, e in enumerate(episodes):
        assert 1 <= len(e.rounds) <= 3
        for r in e.rounds:
            # a random model writes no readable JSON: each round records why and falls back
            assert r.rec_error is not None and r.user_error is not None and not r.accepted
        assert e.rounds[0].item == int(prior[q][0])
        assert top.items[q, 0] == e.final_item


def test_trirec_through_an_endpoint_scores_as_the_local_model(split, llm_server):
    queries = split.eval_set("test").queries[:3]
    params = {"model": "tiny-smollm2-random", "prior": {"name": "most_popular"}, "n_candidates": 4}
    params |= {"promotion": "none", "template": {"chat": False}, "max_history_tokens": None, "timeout_s": 30.0}
    remote = make_model("trirec", **params, base_url=llm_server).fit(split, OPTS).promote(queries)
    local = make_model("trirec", **params).fit(split, OPTS).promote(queries)
    assert [r.listed.tolist() for r in remote] == [r.listed.tolist() for r in local]
    np.testing.assert_allclose(
        np.concatenate([r.scores for r in remote]), np.concatenate([r.scores for r in local]), atol=1e-3
    )


def test_explanation_judge_through_an_endpoint_never_crashes(llm_server):
    import pandas as pd

    from trustrec.audit.explainability import CatalogTools, ExplanationJudge, planted_cases
    from trustrec.models.llm import LLMConnection

    items = pd.DataFrame(
        {
            "item_id": ["1", "2", "3", "4"],
            "title": ["Toy Story", "Heat", "Star Wars", "Casablanca"],
            "year": [1995, 1995, 1977, 1942],
            "class": ["Animation Comedy", "Action Crime", "Action Sci-Fi", "Drama Romance"],
        }
    )
    cases = planted_cases([np.array([1, 2]), np.array([0, 3])], np.array([3, 1]), items)
    backend = LLMConnection(model="tiny-smollm2-random", base_url=llm_server, timeout_s=30.0).build_backend()
    judge = ExplanationJudge(backend=backend, tools=CatalogTools.from_items(items), decision="text", max_steps=1)
    verdicts = judge.judge(cases)
    assert len(verdicts.flagged) == len(cases) and all(e is not None for e in verdicts.errors)
