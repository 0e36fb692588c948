"""CFT and token weights: the loss by hand on a tiny model, answer alignment, empty histories,
and uniform weights reproducing plain SFT exactly."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustrec.data import split_leave_one_out
from trustrec.errors import DataError
from trustrec.mitigate.training.cft import (
    CounterfactualEffectLoss,
    CounterfactualGenerativeRecommender,
    cft_losses,
    counterfactual_examples,
)
from trustrec.models import FitOptions, make_model
from trustrec.models.llm import load_causal_lm
from trustrec.models.training import CausalLMLoss, LLMTrainer, TrainingExample
from trustrec.models.training.token_weights import (
    linear_decay_token_weights,
    token_weight_scheme,
    uniform_token_weights,
)
from trustrec.testing import RecommenderChecks, toy_dataset


@pytest.fixture(scope="module")
def tiny():
    model, _ = load_causal_lm("tiny-smollm2-random")
    return model


FACTUAL = [[5, 9, 12, 40, 41, 42, 7], [5, 9, 13, 44, 7]]
COUNTERFACTUAL = [[5, 9, 7], [5, 9, 7]]
ANSWERS = [[60, 61, 62, 2], [70, 2]]


def test_linear_decay_and_uniform_weights():
    assert linear_decay_token_weights(4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert linear_decay_token_weights(3, beta=0.5) == pytest.approx([1.0, 0.75, 0.5])
    assert linear_decay_token_weights(1) == [1.0] and linear_decay_token_weights(0) == []
    assert uniform_token_weights(3) == [1.0, 1.0, 1.0]
    assert token_weight_scheme("linear_decay") is linear_decay_token_weights
    with pytest.raises(ValueError, match="beta must be in"):
        linear_decay_token_weights(3, beta=0.0)
    with pytest.raises(ValueError, match="unknown token weight scheme 'cubic'"):
        token_weight_scheme("cubic")


def test_uniform_token_weights_reproduce_plain_sft_exactly(tiny):
    examples = [TrainingExample.single(p, a) for p, a in zip(FACTUAL, ANSWERS)]
    plain = LLMTrainer(tiny, pad_id=0, losses=[CausalLMLoss()])
    uniform = LLMTrainer(tiny, pad_id=0, losses=[CausalLMLoss()], token_weights="uniform")
    decayed = LLMTrainer(tiny, pad_id=0, losses=[CausalLMLoss()], token_weights="linear_decay")
    with torch.no_grad():
        a, b, c = (t.batch_loss(examples) for t in (plain, uniform, decayed))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_critical_token_weights_follow_the_log_probability_gap(tiny):
    import copy

    from trustrec.models.training import critical_token_weights

    reference = copy.deepcopy(tiny)
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(0.05 * torch.randn_like(param))
    examples = [TrainingExample.single(p, a) for p, a in zip(FACTUAL, ANSWERS)]
    weighted = critical_token_weights(tiny, reference, examples, pad_id=0, mix=0.5, batch_size=1)
    for example, (prompt, answer) in zip(weighted, zip(FACTUAL, ANSWERS)):
        with torch.no_grad():
            gap = [
                torch.log_softmax(_answer_logits(m, prompt, answer), -1)[range(len(answer)), answer]
                for m in (tiny, reference)
            ]
        delta = (gap[0] - gap[1]).abs().double().numpy()
        expected = 0.5 + 0.5 * delta / delta.mean()  # the module's formula, by hand
        assert example.variants[0].weights == pytest.approx(expected.tolist(), rel=1e-4)
        assert np.mean(example.variants[0].weights) == pytest.approx(1.0)
    # batching does not change them; the same model as reference, or mix 0, gives uniform weights
    batched = critical_token_weights(tiny, reference, examples, pad_id=0, mix=0.5, batch_size=2)
    for a, b in zip(batched, weighted):
        assert a.variants[0].weights == pytest.approx(b.variants[0].weights, rel=1e-4)
    same = critical_token_weights(tiny, tiny, examples, pad_id=0)
    assert all(e.variants[0].weights == [1.0] * len(a) for e, a in zip(same, ANSWERS))
    flat = critical_token_weights(tiny, reference, examples, pad_id=0, mix=0.0)
    assert all(e.variants[0].weights == pytest.approx([1.0] * len(a)) for e, a in zip(flat, ANSWERS))
    # the trainer keeps a row's own weights: the loss is the weighted one
    trainer = LLMTrainer(tiny, pad_id=0, losses=[CausalLMLoss()], token_weights="uniform")
    with torch.no_grad():
        assert not torch.allclose(trainer.batch_loss(weighted), trainer.batch_loss(examples))
    with pytest.raises(ValueError, match="mix must be in"):
        critical_token_weights(tiny, reference, examples, pad_id=0, mix=1.5)


def _answer_logits(model, prompt, answer):
    """Logits predicting each answer token, from one unpadded forward pass."""
    ids = torch.tensor([list(prompt) + list(answer)])
    logits = model(input_ids=ids).logits[0]
    return logits[len(prompt) - 1 : len(prompt) + len(answer) - 1]


def test_cft_loss_equals_a_hand_computation(tiny):
    examples, counts = counterfactual_examples(FACTUAL, COUNTERFACTUAL, ANSWERS)
    assert counts == {"n_examples": 2, "n_empty_history": 0}
    trainer = LLMTrainer(tiny, pad_id=0, losses=cft_losses())
    tiny.train()
    try:
        with torch.no_grad():
            got = trainer.batch_loss(examples)
            factual_ce, effect_ce, weight_sum = 0.0, 0.0, 0.0
            for f, c, a in zip(FACTUAL, COUNTERFACTUAL, ANSWERS):
                lf, lc = _answer_logits(tiny, f, a), _answer_logits(tiny, c, a)
                w = torch.tensor(linear_decay_token_weights(len(a)))
                target = torch.tensor(a)
                factual_ce += float((F.cross_entropy(lf, target, reduction="none") * w).sum())
                effect_ce += float((F.cross_entropy(lf - lc, target, reduction="none") * w).sum())
                weight_sum += float(w.sum())
        expected = factual_ce / weight_sum + 0.1 * effect_ce / weight_sum
        assert float(got) == pytest.approx(expected, rel=1e-5)
        tiny.eval()  # the counterfactual term counts only in training
        with torch.no_grad():
            assert float(trainer.batch_loss(examples)) == pytest.approx(factual_ce / weight_sum, rel=1e-5)
    finally:
        tiny.eval()


def test_answers_are_aligned_token_for_token_and_mismatches_refused(tiny):
    examples, _ = counterfactual_examples(FACTUAL, COUNTERFACTUAL, ANSWERS)
    trainer = LLMTrainer(tiny, pad_id=0, losses=cft_losses())
    batch = trainer.collate(examples)
    labels = batch["labels"]
    for example in range(2):
        rows = (batch["example_index"] == example).nonzero(as_tuple=True)[0]
        assert batch["variant_index"][rows].tolist() == [0, 1]
        answers = [labels[r][labels[r] != -100].tolist() for r in rows]
        assert answers[0] == answers[1] == ANSWERS[example]
        weights = [batch["weights"][r][labels[r] != -100].tolist() for r in rows]
        assert weights[0] == weights[1] == pytest.approx(linear_decay_token_weights(len(ANSWERS[example])))
    broken = [TrainingExample((examples[0].variants[0], (COUNTERFACTUAL[0], [60, 61, 63, 2])))]
    tiny.train()
    try:
        with pytest.raises(ValueError, match="different answers"):
            trainer.batch_loss(broken)
    finally:
        tiny.eval()


def test_empty_histories_are_counted_and_left_out_of_the_effect_term(tiny):
    factual = [FACTUAL[0], COUNTERFACTUAL[1]]  # the second user has no history: both prompts equal
    examples, counts = counterfactual_examples(factual, COUNTERFACTUAL, ANSWERS)
    assert counts == {"n_examples": 2, "n_empty_history": 1}
    assert [e.meta["empty_history"] for e in examples] == [False, True]
    trainer = LLMTrainer(tiny, pad_id=0, losses=[CounterfactualEffectLoss(weight=1.0)])
    tiny.train()
    try:
        with torch.no_grad():
            both = trainer.batch_loss(examples)
            alone = trainer.batch_loss(examples[:1])
            assert float(both) == pytest.approx(float(alone), rel=1e-5)
            with pytest.raises(ValueError, match="no loss term"):
                trainer.batch_loss(examples[1:])  # only an empty history: the term has nothing to say
    finally:
        tiny.eval()
    with pytest.raises(DataError, match="example 1 has an empty answer"):
        counterfactual_examples(FACTUAL, COUNTERFACTUAL, [ANSWERS[0], []])
    with pytest.raises(DataError, match="one of each"):
        counterfactual_examples(FACTUAL, COUNTERFACTUAL[:1], ANSWERS)


# -- the CFT-trained generative recommender ------------------------------------------------------------

GENERATIVE = {
    "model": "tiny-smollm2-random",
    "template": {"chat": False},
    "max_history_tokens": 48,
    "epochs": 1,
    "max_train_examples": 8,
    "num_beams": 3,
    "max_new_tokens": 8,
    "learning_rate": 1e-3,
}


@pytest.fixture(scope="module")
def toy_split():
    return split_leave_one_out(toy_dataset(), short_users="train")


def test_cft_generative_trains_on_pairs_with_and_without_history(toy_split):
    model = make_model("llm_generative_cft", **GENERATIVE)
    assert isinstance(model, CounterfactualGenerativeRecommender)
    model.fit(toy_split, FitOptions(seed=0, progress=False))
    examples = model.training_examples(toy_split.train_dataset(), np.random.default_rng(0))
    assert len(examples) == 8 and all(len(e.variants) == 2 for e in examples)
    tok = model.tokenizer_
    for e in examples:
        factual, counterfactual = (tok.decode(v.prompt_ids) for v in e.variants)
        assert "(no items yet)" in counterfactual and "(no items yet)" not in factual
        assert e.variants[0].answer_ids == e.variants[1].answer_ids
        assert list(e.variants[0].weights) == pytest.approx(linear_decay_token_weights(len(e.variants[0].answer_ids)))
    assert model.cft_counts_ == {"n_examples": 8, "n_empty_history": 0}
    assert len(model.history_["loss"]) == 1 and np.isfinite(model.history_["loss"][0])
    top = model.recommend(toy_split.eval_set("test").queries, 3)
    assert (top.items < 25).all()


class TestCFTGenerativeChecks(RecommenderChecks):
    component = CounterfactualGenerativeRecommender
    configs: ClassVar[list[dict[str, Any]]] = [GENERATIVE]
