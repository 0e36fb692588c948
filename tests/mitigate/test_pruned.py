"""The pruned LLM recommender: the pruned model answers exactly as the masked unpruned one, the
base is untouched, recovery by distillation trains, save/load keeps the weights, conformance."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from tests.mitigate.test_steering import QUIET, RANKER, attributed_toy
from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError
from trustrec.mitigate.training import PrunedRecommender, PruningPlan, masked_forward
from trustrec.models import Recommender, has_capability, make_model
from trustrec.models.training import distillation_loss
from trustrec.testing import RecommenderChecks

PRUNED = {"base": RANKER, "head_ratio": 0.5, "channel_ratio": 0.25, "n_calibration_users": 12, "batch_size": 4}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(attributed_toy(), short_users="train")


@pytest.fixture(scope="module")
def ranker(split):
    return make_model(RANKER["name"], **RANKER["params"]).fit(split, QUIET)


def _scores(model, queries):
    prompts = [p.text for p in model.answer_prompts(queries, model.answer_candidates(queries, 5))]
    return np.asarray(model.answer_backend.score_continuations(prompts[:4], [["Film 1", "Film 2 and more"]] * 4))


def test_pruned_model_answers_as_the_masked_base_and_leaves_the_base_alone(split, ranker):
    queries = split.eval_set("test").queries
    teacher = ranker.answer_backend.model
    before_weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_lists = ranker.recommend(queries, 5)
    model = PrunedRecommender.from_fitted(ranker, split, **{k: v for k, v in PRUNED.items() if k != "base"})
    plan = model.plan
    assert all(len(q) == 2 for q in plan.query_heads) and all(len(c) == 96 for c in plan.channels)
    assert model.pruning_info_["kept_share"] < 1 and model.pruning_info_["recovery_losses"] == []
    assert model.language_model.config.num_hidden_layers == 2 and model.language_model is not teacher
    with masked_forward(teacher, plan):
        masked = _scores(ranker, queries)
    np.testing.assert_allclose(_scores(model, queries), masked, rtol=1e-4, atol=1e-5)
    assert not np.allclose(_scores(ranker, queries), masked)  # pruning changed the answers
    top = model.recommend(queries, 5)
    assert top.items.shape == (len(queries), 5) and (top.items >= 0).all()
    for name, value in teacher.state_dict().items():
        torch.testing.assert_close(value, before_weights[name])
    np.testing.assert_array_equal(ranker.recommend(queries, 5).items, before_lists.items)
    for capability in ("answer_likelihood", "llm_backend", "prompt"):
        assert has_capability(model, capability)


def test_recovery_by_distillation_lowers_the_loss_and_survives_save_and_load(split, ranker, tmp_path):
    params = {k: v for k, v in PRUNED.items() if k != "base"}
    plain = PrunedRecommender.from_fitted(ranker, split, **params)
    # distillation alone (no cross-entropy), so the measure below is what recovery optimises
    distilled = {"recovery_epochs": 4, "learning_rate": 3e-3, "ce_weight": 0.0, "kl_weight": 1.0}
    recovered = PrunedRecommender.from_fitted(ranker, split, **params, **distilled)
    losses = recovered.pruning_info_["recovery_losses"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert PruningPlan.from_dict(recovered.pruning_plan_) == plain.plan  # recovery changes weights, not the plan

    # the student moved toward the teacher: KL on the answer tokens of the calibration texts fell
    tok, teacher = ranker.tokenizer, ranker.answer_backend.model
    _, (prompts, _), (answers, _) = plain._calibration(split.train_dataset())
    kl = np.zeros(2)
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
            ids = tok(prompt + answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
            labels = ids.clone()
            labels[:, :n_prompt] = -100
            target = teacher(input_ids=ids).logits
            for j, m in enumerate((plain, recovered)):
                kl[j] += float(distillation_loss(m.language_model(input_ids=ids).logits, target, labels))
    assert kl[1] < 0.8 * kl[0], kl

    queries = split.eval_set("test").queries
    recovered.save(tmp_path / "pruned")
    loaded = Recommender.load(tmp_path / "pruned")
    np.testing.assert_allclose(_scores(loaded, queries), _scores(recovered, queries), rtol=1e-5, atol=1e-6)
    assert not np.allclose(_scores(loaded, queries), _scores(plain, queries))


def test_layer_stage_removes_the_layer_validation_perplexity_spares_and_round_trips(split, ranker, tmp_path):
    params = {k: v for k, v in PRUNED.items() if k != "base"}
    width = PrunedRecommender.from_fitted(ranker, split, **params)
    deeper = PrunedRecommender.from_fitted(ranker, split, **params, layer_ratio=0.5)
    info = deeper.pruning_info_
    assert deeper.language_model.config.num_hidden_layers == 1 and len(info["removed_layers"]) == 1
    assert info["layer_validation"] == "other training users" and info["n_validation_texts"] > 0
    assert deeper.plan.kept_layers == tuple(i for i in (0, 1) if i not in info["removed_layers"])
    assert deeper.plan.query_heads == width.plan.query_heads  # the width stage is the same
    assert info["kept_share"] < width.pruning_info_["kept_share"]
    # the removed layer is the one whose removal gives the lower validation NLL, applied for real
    from trustrec.mitigate.training import drop_layers

    _, (_, valid_prompts), (_, valid_answers) = deeper._calibration(split.train_dataset())
    texts = [p + a for p, a in zip(valid_prompts, valid_answers)]
    tok = ranker.tokenizer
    nll = {}
    with torch.no_grad():
        for layer in (0, 1):
            model = drop_layers(width.language_model, [layer])
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            logits, valid = model(**enc).logits[:, :-1], enc["attention_mask"][:, 1:].bool()
            nll[layer] = float(torch.nn.functional.cross_entropy(logits[valid], enc["input_ids"][:, 1:][valid]))
    assert info["removed_layers"] == [min(nll, key=nll.get)]
    with masked_forward(ranker.answer_backend.model, deeper.plan):
        masked = _scores(ranker, split.eval_set("test").queries)
    np.testing.assert_allclose(_scores(deeper, split.eval_set("test").queries), masked, rtol=1e-4, atol=1e-5)
    deeper.save(tmp_path / "deeper")
    loaded = Recommender.load(tmp_path / "deeper")
    assert loaded.plan == deeper.plan
    np.testing.assert_allclose(_scores(loaded, split.eval_set("test").queries), masked, rtol=1e-4, atol=1e-5)
    recovered = PrunedRecommender.from_fitted(ranker, split, **params, layer_ratio=0.5, recovery_epochs=1)
    assert len(recovered.pruning_info_["layer_recovery_losses"]) == 1


def test_hidden_stage_keeps_the_highest_scoring_dimensions_and_round_trips(split, ranker, tmp_path):
    from trustrec.mitigate.training import hidden_importance, prune_hidden

    params = {k: v for k, v in PRUNED.items() if k != "base"}
    width = PrunedRecommender.from_fitted(ranker, split, **params)
    slim = PrunedRecommender.from_fitted(ranker, split, **params, hidden_ratio=0.25)
    assert slim.pruning_info_["removed_hidden"] == 16 and len(slim.plan.hidden) == 48
    assert (
        slim.plan.channels == width.plan.channels
        and slim.pruning_info_["kept_share"] < 0.8 * width.pruning_info_["kept_share"]
    )
    _, (prompts, _), (answers, _) = slim._calibration(split.train_dataset())
    scores = hidden_importance(width.language_model, ranker.tokenizer, [p + a for p, a in zip(prompts, answers)])
    assert set(slim.plan.hidden) == set(np.argsort(-scores, kind="stable")[:48].tolist())
    expected = prune_hidden(width.language_model, slim.plan.hidden)
    queries = split.eval_set("test").queries
    np.testing.assert_allclose(
        _scores(slim, queries), _scores(ranker.with_language_model(expected), queries), rtol=1e-5, atol=1e-6
    )
    slim.save(tmp_path / "slim")
    loaded = Recommender.load(tmp_path / "slim")
    assert loaded.plan == slim.plan
    np.testing.assert_allclose(_scores(loaded, queries), _scores(slim, queries), rtol=1e-5, atol=1e-6)


def test_pruned_refuses_what_it_cannot_prune(split):
    with pytest.raises(ConfigError, match="answer_likelihood"):
        PrunedRecommender(base={"name": "most_popular"}).fit(split, QUIET)
    with pytest.raises(ConfigError, match="head_ratio"):
        PrunedRecommender(head_ratio=1.0)
    with pytest.raises(ConfigError, match="layer_ratio"):
        PrunedRecommender(layer_ratio=1.0)


def test_ranker_with_another_language_model_is_a_copy(split, ranker):
    queries = split.eval_set("test").queries
    before = _scores(ranker, queries)
    teacher = ranker.answer_backend.model
    plan = PruningPlan.full(teacher.config)
    from trustrec.mitigate.training import apply_plan

    same = ranker.with_language_model(apply_plan(teacher, plan))  # the full plan: the same model, copied
    np.testing.assert_allclose(_scores(same, queries), before, rtol=1e-5, atol=1e-6)
    assert same.answer_backend.model is not teacher and ranker.answer_backend.model is teacher
    assert same.answer_backend.config.batch_size == ranker.answer_backend.config.batch_size
    endpoint = make_model("llm_ranker", base_url="http://127.0.0.1:9/v1", model="x", retriever={"name": "most_popular"})
    endpoint = endpoint.fit(split, QUIET)
    with pytest.raises(ConfigError, match="not a local model"):
        endpoint.with_language_model(teacher)


class TestPrunedChecks(RecommenderChecks):
    component = PrunedRecommender
    configs: ClassVar[list[dict[str, Any]]] = [PRUNED]

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = attributed_toy()
        return ds, split_leave_one_out(ds, short_users="train")
