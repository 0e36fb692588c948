"""AutoMR: the prompt history a selection chooses (hand cases), the target distribution (by hand
and against a brute-force annotation with the tiny model), the retriever's fit, and the
recommender contract."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("transformers")

from tests.models.llm.test_encoder_models import CharTrigramEncoder
from trustrec.data import QueryBatch, Ragged, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.models import FitOptions, make_model
from trustrec.models.agents import (
    MemoryExamples,
    MemoryRanker,
    fit_memory_retriever,
    retrieval_targets,
    select_history,
)
from trustrec.models.llm import _text_items
from trustrec.models.llm._prompts import PromptCatalog, build_prompt, special_strings
from trustrec.testing import RecommenderChecks, toy_dataset

OPTS = FitOptions(seed=0, progress=False)
TINY = {
    "model": "tiny-smollm2-random",
    "retriever": {"name": "most_popular"},
    "encoder": "char-trigrams",
    "n_candidates": 5,
    "n_permutations": 1,
    "n_recent": 3,
    "n_memory": 2,
    "max_memory": 6,
    "max_history_tokens": 96,
    "epochs": 20,
    "template": {"chat": False},
}


@pytest.fixture(autouse=True)
def trigram_encoder(monkeypatch):
    monkeypatch.setattr(_text_items, "load_text_encoder", lambda name, **kw: CharTrigramEncoder(str(name)))


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(n_users=24, n_inter=480), short_users="train")


# -- which history the prompt shows ---------------------------------------------------------------
def _select(rows, selection, **kw):
    out = select_history(Ragged.from_rows(rows), n_recent=3, n_memory=2, max_memory=4, selection=selection, **kw)
    return [out.values[out.indptr[i] : out.indptr[i + 1]].tolist() for i in range(len(rows))]


def test_recent_selection_is_the_recent_only_prompt_at_the_same_budget():
    assert _select([list(range(10)), [7, 8], []], "recent") == [[5, 6, 7, 8, 9], [7, 8], []]


def test_semantic_and_learned_selection_rank_memory_by_the_retriever_score():
    # items 0..9 in 3-d; the recent items 7, 8, 9 all point along axis 0
    vectors = np.zeros((10, 3))
    vectors[[7, 8, 9], 0] = 1.0
    vectors[3] = [0.9, 0.1, 0.0]  # close to the recent items
    vectors[4] = [0.0, 1.0, 0.0]
    vectors[5] = [0.6, 0.0, 0.8]
    vectors[6] = [0.0, 0.0, 1.0]
    vectors[0] = [1.0, 0.0, 0.0]  # outside the memory (max_memory=4: items 3..6 only)
    history = [list(range(10))]
    assert _select(history, "semantic", item_vectors=vectors) == [[3, 5, 7, 8, 9]]
    # W maps the recent direction onto axis 2: items 6 (1.0) and 5 (0.8) win
    w = np.zeros((3, 3))
    w[0, 2] = 1.0
    assert _select(history, "learned", item_vectors=vectors, projection=w) == [[5, 6, 7, 8, 9]]
    with pytest.raises(ConfigError, match="needs item_vectors"):
        _select(history, "learned", item_vectors=vectors)
    with pytest.raises(DataError, match="outside the 5 item embeddings"):
        _select(history, "semantic", item_vectors=vectors[:5])


def test_random_selection_is_seeded_and_does_not_depend_on_the_batch():
    rows = [list(range(10)), list(range(20, 32)), list(range(10))]
    a = _select(rows, "random", seed=3)
    assert a[0] == a[2] and a == _select(rows, "random", seed=3)
    assert a[1] == _select([rows[1]], "random", seed=3)[0]
    for row, chosen in zip(rows, a):
        assert chosen[-3:] == row[-3:] and len(chosen) == 5 and set(chosen[:2]) <= set(row[-7:-3])
    draws = {tuple(_select(rows[:1], "random", seed=s)[0][:2]) for s in range(20)}
    assert len(draws) > 2  # the seed moves the draw


# -- the target distribution --------------------------------------------------------------------
def test_retrieval_targets_by_hand():
    base = np.array([2.0, 1.0, 5.0])
    losses = np.array([[1.5, 2.0, 9.0], [0.5, 0.0, 0.0], [7.0, 7.0, 7.0]])
    mask = np.array([[True, True, False], [True, True, True], [False, False, False]])
    q = retrieval_targets(base, losses, mask, temperature=0.5)
    e1, e2 = math.exp((2.0 - 1.5) / 0.5), math.exp((2.0 - 2.0) / 0.5)
    np.testing.assert_allclose(q[0], [e1 / (e1 + e2), e2 / (e1 + e2), 0.0])
    np.testing.assert_allclose(
        q[1], [math.exp(1) / (math.exp(1) + 2 * math.exp(2))] + [math.exp(2) / (math.exp(1) + 2 * math.exp(2))] * 2
    )
    np.testing.assert_array_equal(q[2], 0.0)
    with pytest.raises(ConfigError, match="temperature"):
        retrieval_targets(base, losses, mask, temperature=0.0)


def test_annotation_equals_a_brute_force_computation(split):
    model = make_model("automr", **{**TINY, "selection": "semantic", "temperature": 1.0}).fit(split, OPTS)
    histories = split.train_dataset().histories()
    users = [u for u in range(split.dataset.n_users) if histories.indptr[u + 1] - histories.indptr[u] >= 7][:3]
    rows = [np.asarray(histories.values[histories.indptr[u] : histories.indptr[u + 1]]) for u in users]
    queries = QueryBatch.from_histories([r[:-1] for r in rows], users=np.array(users))
    answers = np.array([int(r[-1]) for r in rows])
    got = model.memory_targets((queries, answers))
    assert len(got) == 3

    c, backend, tok = model.config, model.backend, model.tokenizer
    template, catalog = c.prompt_template(), PromptCatalog(model.catalog_)
    for q, (row, answer) in enumerate(zip(rows, answers)):
        context = row[:-1]
        recent, memory = context[-3:], context[:-3][-6:]
        np.testing.assert_array_equal(got.memory_items[q][: len(memory)], memory)
        listed = [int(i) for i in model.retriever_.recommend(queries[q : q + 1], c.n_candidates).items[0] if i >= 0]
        if answer not in listed:
            listed = [*listed, int(answer)] if len(listed) < c.n_candidates else [*listed[:-1], int(answer)]
        text = catalog.texts(template, remove=special_strings(tok), indices=[int(answer)])[0]

        def loss(shown, q=q, listed=listed, text=text):
            query = dataclasses.replace(queries.query(q), history=np.asarray(shown))
            prompt = build_prompt(query, catalog, template, tok, max_history_tokens=96, candidates=listed).text
            return -float(backend.score_continuations([prompt], [[text]], reduction="mean")[0][0])

        base = loss(recent)
        gains = [base - loss(np.concatenate([[m], recent])) for m in memory]
        weights = [math.exp(g) for g in gains]
        expected = [w / sum(weights) for w in weights]
        assert got.base_losses[q] == pytest.approx(base, abs=1e-4)
        np.testing.assert_allclose(got.targets[q][: len(memory)], expected, atol=1e-4)
        assert got.targets[q][len(memory) :].sum() == 0


def test_memory_targets_refuses_bad_answers(split):
    model = make_model("automr", **{**TINY, "selection": "recent"}).fit(split, OPTS)
    queries = split.eval_set("test").queries[:2]
    with pytest.raises(DataError, match="one answer per query"):
        model.memory_targets((queries, np.array([0])))
    with pytest.raises(DataError, match="item index in the catalog"):
        model.memory_targets((queries, np.array([0, 10_000])))


# -- the retriever -------------------------------------------------------------------------------
def test_the_retriever_learns_targets_the_semantic_score_misses():
    rng = np.random.default_rng(0)
    d, n, m = 8, 64, 6
    vectors = rng.normal(size=(200, d))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hidden = rng.normal(size=(d, d))
    recent = rng.normal(size=(n, d))
    recent /= np.linalg.norm(recent, axis=1, keepdims=True)
    items = np.stack([rng.choice(200, m, replace=False) for _ in range(n)])
    logits = np.einsum("nd,de,nme->nm", recent, hidden, vectors[items]) * 3
    targets = np.exp(logits - logits.max(1, keepdims=True))
    targets /= targets.sum(1, keepdims=True)
    examples = MemoryExamples(recent, items, np.zeros(n), np.zeros((n, m)), targets)
    w, kl = fit_memory_retriever(examples, vectors, epochs=300, learning_rate=0.05, weight_decay=0.0)
    semantic = np.einsum("nd,nmd->nm", recent, vectors[items])
    log_p0 = semantic - np.log(np.exp(semantic).sum(1, keepdims=True))
    kl_identity = float((targets * (np.log(targets) - log_p0)).sum(1).mean())
    assert kl[-1] < 0.25 * kl_identity
    learned = np.einsum("nd,de,nme->nm", recent, w, vectors[items]).argmax(1)
    assert (learned == targets.argmax(1)).mean() > (semantic.argmax(1) == targets.argmax(1)).mean() + 0.3
    with pytest.raises(DataError, match="no training example"):
        fit_memory_retriever(
            MemoryExamples(np.zeros((0, d)), np.zeros((0, 2), int), np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2))),
            vectors,
        )


def test_fit_trains_the_retriever_and_the_prompt_shows_its_choice(split):
    model = make_model("automr", **{**TINY, "train_users": 8}).fit(split, OPTS)
    info = model.memory_training_
    assert info["n_examples"] == 8 and len(info["kl"]) == 20 and info["kl"][-1] <= info["kl"][0]
    assert not np.allclose(model.projection_, np.eye(model.projection_.shape[0]))
    queries = split.eval_set("test").queries[:4]
    shown = model.prompt_histories(queries)
    for q in range(4):
        row = shown.values[shown.indptr[q] : shown.indptr[q + 1]]
        history = np.asarray(queries.histories.values[queries.histories.indptr[q] : queries.histories.indptr[q + 1]])
        assert len(row) == min(len(history), 5) and row[-3:].tolist() == history[-3:].tolist()
        prompt = model.answer_prompts(queries[q : q + 1], model.answer_candidates(queries[q : q + 1], 5))[0]
        assert prompt.n_history == len(row)


def test_short_histories_are_refused_with_the_setting_to_change(split):
    with pytest.raises(DataError, match="lower n_recent"):
        make_model("automr", **{**TINY, "n_recent": 60}).fit(split, OPTS)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="max_history_items"):
        make_model("automr", max_history_items=20)
    with pytest.raises(ConfigError, match="its own retriever"):
        make_model("automr", retriever={"name": "automr"})
    with pytest.raises(ConfigError, match="selection"):
        make_model("automr", selection="oldest")


class TestMemoryRankerChecks(RecommenderChecks):
    component = MemoryRanker
    configs: ClassVar[list[dict[str, Any]]] = [{**TINY, "train_users": 6, "epochs": 5}]


def test_compose_over_a_fitted_retriever_trains_the_memory(split):
    from trustrec.models import compose

    retriever = make_model("most_popular").fit(split, OPTS)
    params = {k: v for k, v in TINY.items() if k != "retriever"}
    composed = compose("automr", split, retriever=retriever, **params, train_users=4)
    fitted = make_model("automr", **TINY, train_users=4).fit(split, OPTS)
    assert composed.retriever_ is retriever and composed.memory_training_["n_examples"] == 4
    np.testing.assert_allclose(composed.projection_, fitted.projection_)  # seed 0 either way
    queries = split.eval_set("test").queries[:3]
    np.testing.assert_array_equal(composed.recommend(queries, 5).items, fitted.recommend(queries, 5).items)
