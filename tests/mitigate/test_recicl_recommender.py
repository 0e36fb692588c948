"""The RecICL recommender (``llm_recicl``): trained on in-context examples with the Yes-logit
loss, asked through the same prompts; labels by rating or by sampled unobserved items; its lists
re-rank the retriever's candidates by the Yes logit; conformance."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from trustrec.data import Dataset, split_leave_one_out
from trustrec.errors import DataError
from trustrec.mitigate.training.recicl import (
    RecICLRecommender,
    recicl_prompt,
    shared_prefix_yes_logits,
    yes_logits,
)
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import RecommenderChecks, toy_dataset

QUIET = FitOptions(seed=0, progress=False)
RECICL = {
    "model": "tiny-smollm2-random",
    "epochs": 2,
    "max_train_examples": 16,
    "learning_rate": 3e-3,
    "batch_size": 4,
    "max_titles": 3,
    "n_candidates": 5,
    "noun": "film",
}


def rated_toy(n_users=12, n_items=15, per_user=7, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{i}", t, float(rng.integers(1, 6)))
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": [f"Film {i}" for i in range(n_items)]})
    return Dataset.from_frame(frame, name="rated_toy", items=items)


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(rated_toy(), short_users="train")


@pytest.fixture(scope="module")
def fitted(split):
    return make_model("llm_recicl", **RECICL).fit(split, QUIET)


def test_training_examples_are_recicl_prompts_labelled_by_rating(split, fitted):
    assert isinstance(fitted, RecICLRecommender)
    train = split.train_dataset()
    log = fitted.label_log(train, np.random.default_rng(0))
    frame = train.interactions.to_frame()
    assert len(log) == len(frame) and log["label"].sum() == (frame["rating"] >= 4).sum()
    counts = fitted.recicl_counts_
    assert counts["n_examples"] == 16 and 0 < counts["n_positive"] < 16
    assert counts["n_without_demonstrations"] <= counts["n_fewer_than_k"] <= 16
    examples = fitted.training_examples(train, np.random.default_rng(1))
    assert {e.meta["label"] for e in examples} == {True, False}
    yes = fitted.tokenizer_(" Yes", add_special_tokens=False)["input_ids"][0]
    assert all(e.variants[0].answer_ids == [yes] for e in examples)
    assert all(fitted.tokenizer_.decode(e.variants[0].prompt_ids).endswith("#Answer:") for e in examples)
    losses = fitted.history_["loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_predict_reads_demonstrations_from_the_given_log(fitted):
    log = pd.DataFrame(
        {"user": [0, 0, 0, 1], "item": [1, 2, 3, 4], "timestamp": [1, 2, 3, 1], "label": [True, False, True, True]}
    )
    events = pd.DataFrame({"user": [0, 0, 1], "item": [5, 6, 7], "timestamp": [3, 9, 2]})
    scores = fitted.predict(events, log)
    titles = fitted.titles()
    expected_prompts = [
        recicl_prompt([1, 2, 3], [1, 2, 3], [True, False, True], 5, 3, titles, k=4, max_titles=3, noun="film"),
        recicl_prompt([1, 2, 3], [1, 2, 3], [True, False, True], 6, 9, titles, k=4, max_titles=3, noun="film"),
        recicl_prompt([4], [1], [True], 7, 2, titles, k=4, max_titles=3, noun="film"),
    ]
    assert [p.n_demonstrations for p in expected_prompts] == [2, 3, 1]  # only strictly earlier events
    direct = yes_logits(fitted.lm_, fitted.tokenizer_, [p.text for p in expected_prompts])
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-5)
    with pytest.raises(DataError, match="no column"):
        fitted.predict(events.drop(columns="timestamp"), log)
    with pytest.raises(DataError, match="outside the catalog"):
        fitted.predict(events.assign(item=[5, 6, 99]), log)
    with pytest.raises(DataError, match="must be True/False"):
        fitted.predict(events, log.assign(label=[1.0, np.nan, 0.0, 1.0]))
    np.testing.assert_allclose(fitted.predict(events, log.assign(label=[1, 0, 1, 1])), scores, rtol=1e-6)


def test_shared_prefix_logits_equal_the_plain_forward(fitted):
    titles = fitted.titles()
    stem = recicl_prompt([1, 2, 3], [1, 2, 3], [True, False, True], 5, 9, titles, k=4).text
    groups = [
        [stem.replace("Film 5", f"Film {i}") for i in (5, 6, 10, 11, 12)],  # one stem, other titles
        [stem],  # a group of one: its prompt keeps one token of its own
        ["#Question: short", "A different start and a longer prompt #Answer:"],  # nothing shared
        [],
    ]
    shared = shared_prefix_yes_logits(fitted.lm_, fitted.tokenizer_, groups, batch_size=2)
    assert [len(v) for v in shared] == [5, 1, 2, 0]
    for values, prompts in zip(shared, groups):
        if prompts:
            plain = yes_logits(fitted.lm_, fitted.tokenizer_, prompts)
            np.testing.assert_allclose(values, plain, rtol=1e-4, atol=1e-4)
    with pytest.raises(DataError, match="empty prompt"):
        shared_prefix_yes_logits(fitted.lm_, fitted.tokenizer_, [["fine", ""]])


def test_recommend_reranks_the_retriever_candidates_by_the_yes_logit(split, fitted):
    queries = split.eval_set("test").queries
    top = fitted.recommend(queries, 3)
    candidates = fitted.retriever_.recommend(queries, 5)
    for q in range(len(queries)):
        history = queries.histories.rows()[q]
        heads = candidates.items[q][candidates.items[q] >= 0]
        labels = fitted._known_labels(np.full(len(history), queries.users[q]), history)
        log = pd.DataFrame({"user": 0, "item": history, "timestamp": np.arange(len(history)), "label": labels})
        events = pd.DataFrame({"user": 0, "item": heads, "timestamp": len(history)})
        scores = fitted.predict(events, log)
        order = heads[np.argsort(-scores, kind="stable")][:3]
        np.testing.assert_array_equal(top.items[q][: len(order)], order)
        np.testing.assert_allclose(top.scores[q][: len(order)], np.sort(scores)[::-1][:3], rtol=1e-5, atol=1e-5)
    # training labels reach the history: a rated-low item is a No in the demonstrations
    user, item = int(queries.users[0]), int(queries.histories.rows()[0][0])
    train = split.train_dataset().interactions.to_frame()
    rating = train.loc[(train.user == user) & (train.item == item), "rating"].iloc[0]
    assert fitted._known_labels(np.array([user]), np.array([item]))[0] == (rating >= 4)
    assert fitted._known_labels(np.array([-1]), np.array([item]))[0]  # anonymous: counts as liked


def test_more_than_n_candidates_continue_in_the_retriever_order(split, fitted):
    queries = split.eval_set("test").queries
    top = fitted.recommend(queries, 8)
    retrieved = fitted.retriever_.recommend(queries, 8)
    np.testing.assert_array_equal(top.items[:, 5:], retrieved.items[:, 5:])
    assert set(top.items[0, :5]) == set(retrieved.items[0, :5])
    assert (np.diff(top.scores, axis=1) <= 0).all()


def test_labels_without_ratings(tmp_path):
    unrated = split_leave_one_out(toy_dataset(), short_users="train")
    with pytest.raises(DataError, match="needs ratings"):
        make_model("llm_recicl", **RECICL).fit(unrated, QUIET)
    model = make_model("llm_recicl", **{**RECICL, "labels": "interaction", "epochs": 0})
    model.fit(unrated, QUIET)
    train = unrated.train_dataset()
    log = model.label_log(train, np.random.default_rng(0))
    positives, negatives = log[log.label], log[~log.label]
    assert len(positives) == len(negatives) == train.n_interactions
    seen = set(zip(positives.user, positives.item))
    assert not any((u, i) in seen for u, i in zip(negatives.user, negatives.item))
    assert (model.history_["epochs_run"], model.history_["n_examples"]) == (0, 0)  # the base LLM, untrained
    assert len(model.label_keys_) == len(log)
    model.save(tmp_path / "recicl")
    loaded = Recommender.load(tmp_path / "recicl")
    queries = unrated.eval_set("test").queries
    np.testing.assert_array_equal(loaded.recommend(queries, 4).items, model.recommend(queries, 4).items)
    np.testing.assert_array_equal(loaded.label_values_, model.label_values_)


class TestRecICLChecks(RecommenderChecks):
    component = RecICLRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {**RECICL, "labels": "interaction", "epochs": 1, "max_train_examples": 8}
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llm_recicl", "llm_generative_cft"])
def test_the_audits_run_on_recicl_and_cft_models_unchanged(split, fitted, name):
    from tests.mitigate.test_cft import GENERATIVE
    from trustrec.runs import audit_model, audit_plan

    generative = {**GENERATIVE, "max_new_tokens": 32}  # free text must hold the longest title
    model = fitted if name == "llm_recicl" else make_model(name, **generative).fit(split, QUIET)
    measured = ["item_exposure", "popularity_amplification", "text_attack", "platform_rules"]
    plan = audit_plan(names=[*measured, "membership_inference"])
    entries, results = audit_model(model, split, plan, progress=False, log=lambda *_: None)
    status = {e["name"]: e["status"] for e in entries}
    assert all(status[n] not in ("not_applicable", "error") for n in measured), status
    # an audit the model cannot answer says why instead of guessing
    mia = next(r for r in results if r.audit == "membership_inference")
    if name == "llm_recicl":
        assert mia.verdict.status == "not_applicable" and "RecICLRecommender" in mia.verdict.reasons[0]
