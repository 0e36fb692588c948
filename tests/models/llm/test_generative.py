"""GenerativeRecommender on the tiny random checkpoint and the toy dataset (seconds per test)."""

from typing import Any, ClassVar

import numpy as np
import pytest

pytest.importorskip("transformers")

from trustrec.data import split_leave_one_out
from trustrec.models import FitOptions, Recommender
from trustrec.models.llm._generative import GenerativeRecommender, causal_lm_loss, collate_examples
from trustrec.testing import RecommenderChecks, toy_dataset

TINY = {
    "model": "tiny-smollm2-random",
    "max_history_tokens": 48,
    "max_train_examples": 16,
    "batch_size": 8,
    "num_beams": 5,
    "learning_rate": 3e-3,
    "epochs": 3,
    "template": {"chat": False},
}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


def _fit(split, **params):
    return GenerativeRecommender(**{**TINY, **params}).fit(split, FitOptions(seed=0, progress=False))


def test_collate_masks_prompt_and_padding():
    batch = collate_examples([([5, 6, 7], [8, 9]), ([1], [2])], pad_id=0, weights=[[1.0, 0.5], [2.0]])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 9], [-100, 2, -100, -100, -100]]
    assert batch["weights"].tolist() == [[0, 0, 0, 1.0, 0.5], [0, 2.0, 0, 0, 0]]


def test_loss_counts_only_answer_tokens_and_takes_weights():
    import torch

    torch.manual_seed(0)
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[-100, -100, 3, 5]])
    ce = torch.nn.functional.cross_entropy(logits[0, 1:3], torch.tensor([3, 5]), reduction="none")
    assert torch.allclose(causal_lm_loss(logits, labels), ce.mean())
    weights = torch.tensor([[0.0, 0.0, 1.0, 3.0]])
    assert torch.allclose(causal_lm_loss(logits, labels, weights), (ce[0] + 3 * ce[1]) / 4)


def test_lora_sft_lowers_training_loss(split):
    model = _fit(split, lora=LORA)
    losses = model.history_["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    trainable = [n for n, p in model.lm_.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)


def test_full_sft_lowers_training_loss(split):
    model = _fit(split)
    assert model.history_["loss"][-1] < model.history_["loss"][0]


def test_constrained_recommendations_are_catalog_items(split):
    model = _fit(split, epochs=1)
    q = split.eval_set("test").queries[:6]
    top = model.recommend(q, 5)
    assert top.items.shape == (6, 5)
    for i in range(6):
        row = top.row(i)
        assert len(row) == 5 and np.all((row >= 0) & (row < 25))  # toy catalog: 25 items
        assert not set(row) & set(q.histories.row(i))
        assert np.all(np.diff(top.scores[i]) <= 1e-12) and np.all(top.scores[i] <= 0)


@pytest.mark.parametrize("lora", [None, LORA])
def test_save_load_round_trip(split, tmp_path, lora):
    model = _fit(split, epochs=1, lora=lora)
    q = split.eval_set("test").queries[:4]
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    loaded = Recommender.load(tmp_path / "m")
    assert type(loaded) is GenerativeRecommender and loaded.config == model.config
    a, b = model.recommend(q, 5), loaded.recommend(q, 5)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    if lora is not None:
        from safetensors.numpy import load_file

        lm_keys = [k for k in load_file(str(tmp_path / "m" / "state.safetensors")) if k.startswith("lm_/")]
        assert lm_keys and all("lora" in key for key in lm_keys)


def test_save_load_keeps_the_assistant(split, tmp_path):
    """D3's assistant is saved with the model: guided decoding after loading equals before."""
    model = _fit(
        split, epochs=0, assistant={"name": "sasrec", "params": {"epochs": 2, "embedding_size": 16}}, guidance=0.4
    )
    q = split.eval_set("test").queries[:4]
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.assistant_probabilities(q), model.assistant_probabilities(q), rtol=1e-6)
    a, b = model.recommend(q, 5), loaded.recommend(q, 5)
    np.testing.assert_array_equal(a.items, b.items)
    assert not np.array_equal(a.items, model.with_decoding(guidance=1.0).recommend(q, 5).items)


@pytest.mark.parametrize("grounding", ["exact", "tfidf"])
def test_unconstrained_grounds_to_catalog_and_counts(split, grounding):
    model = _fit(split, epochs=1, decoding="unconstrained", grounding=grounding, max_new_tokens=6, num_beams=3)
    q = split.eval_set("test").queries[:3]
    top, stats = model.recommend_with_stats(q, 3)
    assert top.items.shape == (3, 3)
    valid = top.items[top.items >= 0]
    assert np.all(valid < 25)
    assert stats["n_generated"] == 9
    assert stats["n_exact"] + stats["n_near_miss"] + stats["n_out_of_catalog"] == 9
    if grounding == "exact":
        assert stats["n_near_miss"] == 0
    np.testing.assert_array_equal(model.recommend(q, 3).items, top.items)


def test_tfidf_grounding_finds_near_miss(split):
    model = _fit(split, epochs=1, decoding="unconstrained")
    ground = model._grounder()
    assert ground("Item 7") == (7, "exact")
    assert ground("item 17!") == (17, "near")
    assert ground("zzzz qqqq")[1] == "none"


class TestGenerativeChecks(RecommenderChecks):
    component = GenerativeRecommender
    configs: ClassVar[list[dict[str, Any]]] = [{**TINY, "epochs": 1, "max_train_examples": 8}]


def test_early_stopping_restores_the_best_epoch(split):
    script = iter([0.5, 0.2, 0.1, 0.9])
    options = FitOptions(seed=0, progress=False, validator=lambda m: next(script), patience=2)
    stopped = GenerativeRecommender(**{**TINY, "epochs": 4, "lora": LORA}).fit(split, options)
    assert stopped.history_["epochs_run"] == 3 and stopped.history_["best_epoch"] == 1
    assert [v["score"] for v in stopped.history_["valid"]] == [0.5, 0.2, 0.1]
    one = _fit(split, epochs=1, lora=LORA)
    q = split.eval_set("test").queries
    a, b = stopped.recommend(q, 3), one.recommend(q, 3)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_bfloat16_is_honoured_in_training_scoring_and_checkpoints(split, tmp_path, lora):
    import torch

    model = _fit(split, dtype="bfloat16", epochs=1, lora=lora)
    assert next(model.lm_.parameters()).dtype == torch.bfloat16
    q = split.eval_set("test").queries[:4]
    before = model.recommend(q, 3)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert next(loaded.lm_.parameters()).dtype == torch.bfloat16
    after = loaded.recommend(q, 3)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_allclose(before.scores, after.scores)


def test_protocol_settings_answer_format_budget_and_zero_shot(split):
    from trustrec.errors import ConfigError

    model = _fit(
        split,
        epochs=0,
        template={"preset": "bigrec"},
        answer_format='"{title}"\n',
        targets_per_user=None,
        max_history_items=2,
    )
    assert model.history_["n_examples"] == 0  # zero-shot: nothing trained
    answers = model.answers()
    assert all(a == f'"{t}"\n' for a, t in zip(answers, model.titles()) if t.strip())
    assert model.read_answer(answers[0]) == model.titles()[0]
    # every prompt shows at most the 2 most recent items, quoted
    q = split.eval_set("test").queries[:2]
    prompt = model._prompts(q)[0]
    last = [model.titles()[i] for i in q.histories.row(0)[-2:]]
    assert all(f'"{t}"' in prompt for t in last) and "### Response:" in prompt
    top = model.recommend(q, 3, exclude_seen=False)
    assert ((top.items >= 0) & (top.items < model.n_items_)).all()
    # a free-text budget below the longest answer is an error, not a silent cut
    short = model.with_decoding(decoding="unconstrained", max_new_tokens=1)
    with pytest.raises(ConfigError, match="max_new_tokens=1 cannot hold the longest"):
        short.recommend(q, 3)
    with pytest.raises(ConfigError, match="not decoding settings"):
        model.with_decoding(learning_rate=1.0)


def test_every_position_examples_with_history_cut(split):
    model = _fit(split, epochs=0, targets_per_user=None, max_history_items=1, max_train_examples=None)
    examples = model.training_examples(split.train_dataset(), np.random.default_rng(0))
    lengths = split.train_dataset().histories().lengths
    assert len(examples) == int(np.maximum(lengths - 1, 0).sum())  # every position after the first


@pytest.mark.parametrize("speedup", [3.0, 0.03])
def test_auto_bfloat16_follows_the_measured_speed(split, monkeypatch, speedup):
    """``autocast="auto"`` and ``cast("auto")`` use bf16 only where it is measured faster (an
    AVX2-only CPU emulates bf16 about 30x slower than float32; AMX runs it faster)."""
    import torch

    import trustrec._device as device

    monkeypatch.setattr(device, "_cpu_bfloat16_speedup", lambda: speedup)
    assert device.bfloat16_is_fast("cpu") is (speedup > 1.1)
    model = _fit(split, epochs=1, autocast="auto", max_train_examples=8)
    assert model.history_["autocast"] == ("bfloat16" if speedup > 1 else "off")
    model.cast("auto")
    assert next(model.lm_.parameters()).dtype == (torch.bfloat16 if speedup > 1 else torch.float32)


def test_bfloat16_speed_is_measured_once():
    import trustrec._device as device

    first = device._cpu_bfloat16_speedup()
    assert first > 0 and device._cpu_bfloat16_speedup() == first
    assert isinstance(device.bfloat16_is_fast("cpu"), bool)
