"""LLMRanker on the tiny random checkpoint: orders, position-bias report, fusion, few-shot, HTTP."""

from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("transformers")

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.models import FitOptions, make_model
from trustrec.models.llm._ranker import LLMRanker, cyclic_orders, position_bias
from trustrec.testing import RecommenderChecks, toy_dataset

LLM = {
    "model": "tiny-smollm2-random",
    "n_candidates": 5,
    "n_permutations": 2,
    "max_history_tokens": 48,
    "template": {"chat": False},
}
TINY = {**LLM, "retriever": {"name": "most_popular"}}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


@pytest.fixture(scope="module")
def ranker(split):
    return LLMRanker(**TINY).fit(split, FitOptions(seed=0, progress=False))


def test_cyclic_orders_by_hand():
    orders = cyclic_orders(np.array([4, 3, 0]), 2, 4)
    assert orders[0].tolist() == [[0, 1, 2, 3], [2, 3, 0, 1]]  # shift round(1 * 4 / 2) = 2
    assert orders[1].tolist() == [[0, 1, 2, -1], [2, 0, 1, -1]]  # shift round(1.5) = 2
    assert (orders[2] == -1).all()
    full = cyclic_orders(np.array([3]), 3, 3)[0]
    assert sorted(full[:, 0].tolist()) == [0, 1, 2]  # every candidate listed first once


def test_position_bias_by_hand():
    # one query, 2 candidates, 2 orders; the first-listed candidate gets +1
    base = np.array([0.0, -0.5])
    positions = np.array([[[0, 1], [1, 0]]])
    scores = base[None, None, :] + (positions == 0)
    valid = np.array([[True, True]])
    out = position_bias(scores, positions, valid)
    # candidate 0: scores 1, 0 -> deviations +0.5 (pos 0), -0.5 (pos 1); candidate 1 likewise
    assert out["position_effect"] == pytest.approx([0.5, -0.5])
    assert out["top1_first_listed"] == 1.0 and out["top1_first_listed_chance"] == 0.5
    assert out["top1_agreement"] == 0.0
    assert out["kendall_tau"] == pytest.approx(-1.0)


def test_kendall_tau_matches_scipy():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 3, 7))
    valid = np.ones((6, 7), dtype=bool)
    positions = np.tile(np.arange(7), (6, 3, 1))
    ours = position_bias(scores, positions, valid)["kendall_tau"]
    ref = np.mean([kendalltau(scores[q, a], scores[q, b])[0] for q in range(6) for a, b in ((0, 1), (0, 2), (1, 2))])
    assert ours == pytest.approx(ref)


def test_reranks_exactly_the_retrievers_candidates(ranker, split):
    q = split.eval_set("test").queries
    top, stats = ranker.recommend_with_stats(q, 8)
    retrieved = ranker.retriever_.recommend(q, 8)
    for i in range(len(q)):
        assert sorted(top.items[i, :5]) == sorted(retrieved.items[i, :5])  # the head is re-ordered
        np.testing.assert_array_equal(top.items[i, 5:], retrieved.items[i, 5:])  # the tail is kept
    assert (np.diff(top.scores, axis=1) <= 0).all()
    assert stats["n_scored"] == 5 * 2 * len(q) and len(stats["position_effect"]) == 5


def test_permutation_averaging_removes_input_order(ranker, split):
    """With every cyclic shift shown, averaged scores do not depend on the order the retriever gave."""
    q = split.eval_set("test").queries
    head = ranker.retriever_.recommend(q, 4).items
    full = ranker.set_params(n_permutations=4, n_candidates=4)
    full.__dict__.update({k: v for k, v in vars(ranker).items() if k.endswith("_")})
    full._backend = ranker.backend
    n = (head >= 0).sum(1)
    a = full._llm_scores(q, head, n).mean(1)
    b = full._llm_scores(q, head[:, ::-1].copy(), n).mean(1)[:, ::-1]
    np.testing.assert_allclose(a, b, atol=1e-4)
    one = full.set_params(n_permutations=1)
    one._backend, one.catalog_ = ranker.backend, ranker.catalog_
    c = one._llm_scores(q, head, n)[:, 0]
    d = one._llm_scores(q, head[:, ::-1].copy(), n)[:, 0, ::-1]
    assert not np.allclose(c, d, atol=1e-4)  # a single order does depend on it (the bias averaged out)


def test_retriever_weight_one_gives_the_retriever_order(ranker, split):
    q = split.eval_set("test").queries
    fused = ranker.set_params(retriever_weight=1.0)
    fused.__dict__.update({k: v for k, v in vars(ranker).items() if k.endswith("_")})
    fused._backend = ranker.backend
    np.testing.assert_array_equal(fused.recommend(q, 5).items, ranker.retriever_.recommend(q, 5).items)
    scored = ranker.score_candidates(q, 5)  # one LLM pass, any weight afterwards
    np.testing.assert_array_equal(ranker.rank(scored, 5, retriever_weight=1.0).items, fused.recommend(q, 5).items)
    np.testing.assert_array_equal(ranker.rank(scored, 5).items, ranker.recommend(q, 5).items)
    with pytest.raises(ConfigError, match="retriever_weight"):
        ranker.rank(scored, 5, retriever_weight=2.0)


def test_few_shot_prompt_holds_examples_from_the_users_history(ranker, split):
    from trustrec.models.llm._ranker import _examples

    assert _examples(np.array([4, 5, 6, 7]), 2, 2) == [([4, 5], 6), ([5, 6], 7)]
    assert _examples(np.array([4]), 3, 2) == []
    few = ranker.set_params(n_shots=2, template={"chat": False})
    few.__dict__.update({k: v for k, v in vars(ranker).items() if k.endswith("_")})
    seen = {}
    backend = ranker.backend

    class Spy:
        tokenizer = backend.tokenizer

        def score_continuations(self, prompts, conts, reduction):
            seen["prompts"] = prompts
            return backend.score_continuations(prompts, conts, reduction=reduction)

    few._backend = Spy()
    q = split.eval_set("test").queries
    few.recommend(q[:1], 3)
    hist = [int(i) for i in q.query(0).history]
    titles = split.train_dataset().items["title"]
    assert "Earlier choices of this user" in seen["prompts"][0]
    assert f"-> {titles.iloc[hist[-1]]}" in seen["prompts"][0]


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="sasrek"):
        LLMRanker(retriever={"name": "sasrek"})
    with pytest.raises(ConfigError, match="own retriever"):
        LLMRanker(retriever={"name": "llm_ranker"})
    with pytest.raises(ConfigError, match="retriever_weight"):
        LLMRanker(retriever_weight=1.5)


def test_from_fitted_reuses_the_retriever(split):
    retriever = make_model("most_popular").fit(split, FitOptions(progress=False))
    ranker = LLMRanker.from_fitted(retriever, split.train_dataset(), **LLM)
    assert ranker.retriever_ is retriever and ranker.config.retriever.name == "most_popular"
    assert ranker.recommend(split.eval_set("test").queries, 3).items.shape[1] == 3
    with pytest.raises(ConfigError, match="not fitted"):
        LLMRanker.from_fitted(make_model("most_popular"), split.train_dataset())


def test_http_backend_gives_the_same_ranking(ranker, split, llm_server):
    remote = LLMRanker.from_fitted(
        ranker.retriever_,
        split.train_dataset(),
        **{**LLM, "base_url": llm_server, "max_history_tokens": None, "max_history_items": 3},
    )
    local = LLMRanker.from_fitted(
        ranker.retriever_, split.train_dataset(), **{**LLM, "max_history_tokens": None, "max_history_items": 3}
    )
    q = split.eval_set("test").queries[:4]
    a, b = remote.recommend(q, 5), local.recommend(q, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)


class TestRankerChecks(RecommenderChecks):
    component = LLMRanker
    configs: ClassVar[list[dict[str, Any]]] = [TINY]


def test_ranker_dtype_reaches_its_local_backend_and_is_refused_for_an_endpoint():
    import torch

    from trustrec.errors import ConfigError
    from trustrec.models.llm import LLMRanker

    ranker = LLMRanker(model="tiny-smollm2-random", dtype="bfloat16", retriever={"name": "most_popular"})
    assert ranker.backend.config.dtype == "bfloat16" and next(ranker.backend.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="dtype='bfloat16' applies to a local model"):
        LLMRanker(base_url="http://127.0.0.1:9/v1", dtype="bfloat16")
