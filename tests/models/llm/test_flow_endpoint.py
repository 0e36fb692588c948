"""FLOW against an OpenAI-compatible endpoint (the local test server as a real process): the same
episodes as the local model when choices are read from likelihoods, and the free-text protocol
runs to the end on replies a random model cannot make readable."""

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
