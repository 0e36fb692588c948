"""The aligned generative recommender (``llm_generative_aligned``): list sampling and Best-of-N
at inference, the shared-prompt log-likelihoods the list loss reads, every method on a tiny model
from a saved SFT model, its checks of that model, persistence, conformance."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.eval import hits_matrix, ndcg, popularity_groups
from trustrec.mitigate.training import (
    ALIGNMENT_METHODS,
    AlignedGenerativeRecommender,
    BestOfNTargetLoss,
    ListReward,
    RiserLoss,
    best_of_n_lists,
    sample_items,
    sample_lists,
)
from trustrec.mitigate.training.aligned import _distinct_first
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import RecommenderChecks

from .test_recicl_recommender import rated_toy

QUIET = FitOptions(seed=0, progress=False)
SFT = {"model": "tiny-smollm2-random", "epochs": 1, "max_train_examples": 16, "batch_size": 4, "learning_rate": 3e-3}
ALIGN = {"users": 6, "n_rollouts": 3, "list_length": 3, "batch_size": 2, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(rated_toy(), short_users="train")


@pytest.fixture(scope="module")
def sft(split, tmp_path_factory):
    model = make_model("llm_generative", **SFT).fit(split, QUIET)
    folder = tmp_path_factory.mktemp("sft") / "model"
    model.save(folder)
    return model, folder


def aligned(folder, method: str, **alignment: Any) -> AlignedGenerativeRecommender:
    return make_model(
        "llm_generative_aligned", **SFT, start_from=str(folder), alignment={**ALIGN, "method": method, **alignment}
    )


def test_lists_keep_each_items_first_draw_and_pad_the_rest():
    drawn = np.array([[[4, 2, 4, -1, 7, 2]], [[1, 1, 1, 1, 1, 1]]])
    np.testing.assert_array_equal(_distinct_first(drawn), [[[4, 2, 7, -1, -1, -1]], [[1, -1, -1, -1, -1, -1]]])


def test_sampling_is_seeded_and_stays_in_the_catalog(split, sft):
    model, _ = sft
    queries = split.eval_set("test").queries[:4]
    a = sample_items(model, queries, 5, seed=3)
    np.testing.assert_array_equal(a, sample_items(model, queries, 5, seed=3))
    assert a.shape == (4, 5) and ((a >= 0) & (a < model.n_items_)).all()
    lists = sample_lists(model, queries, 2, 3, seed=3)
    assert lists.shape == (4, 2, 3)
    for row in lists.reshape(-1, 3):
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept) and (row[len(kept) :] == -1).all()
    # the lists are the same draws, cut into lists
    np.testing.assert_array_equal(lists, _distinct_first(sample_items(model, queries, 6, seed=3).reshape(4, 2, 3)))


def test_best_of_n_keeps_the_sampled_list_with_the_highest_reward(split, sft):
    model, _ = sft
    test = split.eval_set("test")
    queries, targets = test.queries[:5], test.targets.take(np.arange(5))
    reward = ListReward.from_dataset(None, split.train_dataset())
    best, cost = best_of_n_lists(model, queries, targets, reward, 3, 4, seed=1)
    lists = sample_lists(model, queries, 3, 4, seed=1)
    rows = targets.rows()
    for q in range(5):
        values = reward(lists[q], [rows[q]] * 3)
        np.testing.assert_array_equal(best[q], lists[q][int(np.argmax(values))])
    assert cost["titles_sampled"] == 5 * 3 * 4 and cost["per_user"] == 12
    with pytest.raises(ConfigError, match="N must be >= 2"):
        best_of_n_lists(model, queries, targets, reward, 1, 4)
    with pytest.raises(DataError, match="target rows"):
        best_of_n_lists(model, queries, targets.take(np.arange(2)), reward, 2, 4)


def test_the_reward_from_a_dataset_reads_the_evaluators_inputs(split):
    train = split.train_dataset()
    reward = ListReward.from_dataset({"fairness": 1.0, "novelty": 1.0}, train, popularity_groups=3)
    groups = popularity_groups(np.bincount(train.interactions.item, minlength=train.n_items), 3)
    np.testing.assert_array_equal(reward.membership.argmax(1), groups)
    users_per_item = [
        len(set(train.interactions.user[train.interactions.item == i].tolist())) for i in range(train.n_items)
    ]
    np.testing.assert_array_equal(reward.item_user_counts, users_per_item)
    lists = np.array([[0, 1, 2], [3, -1, -1]])
    parts = reward.components(lists, [[1], [9]])
    np.testing.assert_allclose(parts["accuracy"], ndcg(hits_matrix(lists, _ragged([[1], [9]]), train.n_items), [1, 1]))
    with pytest.raises(ConfigError, match="no group column"):
        ListReward.from_dataset({"diversity": 1.0}, train)


def _ragged(rows):
    from trustrec.data import Ragged

    return Ragged.from_rows(rows)


def test_list_rollouts_are_scored_as_the_sum_of_their_titles():
    import torch

    from trustrec.models.llm import load_causal_lm
    from trustrec.models.training import LLMTrainer, PromptVariant, TrainingExample, token_logprobs
    from trustrec.models.training.llm import collate_examples

    model, _ = load_causal_lm("tiny-smollm2-random")
    prompt, titles = [5, 17, 99, 3], [[7, 8, 2], [11, 2], [12, 13, 14, 2]]
    lists = [[titles[0], titles[1]], [titles[2]]]
    term = BestOfNTargetLoss(
        sample=lambda e: lists, reward=lambda e, r: [1.0, 0.0], target=lambda r: np.array([[0.25, 0.75]])
    )
    trainer = LLMTrainer(model, pad_id=0, losses=[term], batch_size=1)
    example = TrainingExample((PromptVariant(prompt, titles[0]),))
    from trustrec.models.training import LossContext

    batch = trainer.to_device(collate_examples([(prompt, titles[0])], 0))
    loss = term.compute(LossContext(trainer, [example], batch, None))
    with torch.no_grad():
        rows = collate_examples([(prompt, t) for t in titles], 0)
        per_title = token_logprobs(
            model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"]).logits, rows["labels"]
        ).sum(1)
    expected = -(0.25 * (per_title[0] + per_title[1]) + 0.75 * per_title[2])
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert term.supervision == [pytest.approx(0.25)]


def test_shared_prompt_log_likelihoods_equal_row_by_row_scoring():
    import torch

    from trustrec.models.llm import load_causal_lm
    from trustrec.models.training import shared_prompt_logprobs, token_logprobs
    from trustrec.models.training.llm import collate_examples

    model, _ = load_causal_lm("tiny-smollm2-random")
    prompt, answers = [5, 17, 99, 3, 42, 8], [[7, 8, 9], [11], [12, 13, 14, 15, 2]]
    shared = shared_prompt_logprobs(model, prompt, answers, 0)
    batch = collate_examples([(prompt, a) for a in answers], 0)
    plain = token_logprobs(
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
    ).sum(1)
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)
    shared.sum().backward()
    first = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    plain.sum().backward()
    for a, b in zip(first, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="at least one token"):
        shared_prompt_logprobs(model, prompt, [[]], 0)


def test_grpo_drops_groups_without_signal_and_riser_turns_them_into_pairs():
    from trustrec.models.llm import load_causal_lm
    from trustrec.models.training import LLMTrainer, PromptVariant, TrainingExample

    model, _ = load_causal_lm("tiny-smollm2-random")
    example = TrainingExample((PromptVariant([5, 6, 7], [9, 2]),))
    rollouts = [([10, 2], 1), ([11, 2], 2), ([10, 2], 1)]  # no rollout is the held-out item
    for pairwise, pairs in ((True, 2.0), (False, 0.0)):
        term = RiserLoss(sample=lambda e: rollouts, reward=lambda e, items: [0.0] * len(items), pairwise=pairwise)
        trainer = LLMTrainer(model, pad_id=0, losses=[term], batch_size=1)
        from trustrec.models.training import LossContext

        value = term.compute(LossContext(trainer, [example], {}, None))
        assert term.stats == [{"non_learnable_share": 1.0, "pairs": pairs}]  # the duplicate is dropped
        assert (value is None) == (not pairwise)


@pytest.mark.parametrize("method", ALIGNMENT_METHODS)
def test_every_method_aligns_the_saved_sft_model(split, sft, method):
    base, folder = sft
    model = aligned(folder, method, reward={"k": 3, "fairness": 0.5}).fit(split, QUIET)
    record = model.alignment_
    assert record["method"] == method and record["steps"] == 3 and np.isfinite(record["loss"]).all()
    assert record["titles_sampled"] > 0 and record["seconds"] > 0
    if method in ("bon", "blade"):
        assert len(record["supervision"]) == 3 and all(0 <= s < 1 for s in record["supervision"])
        assert len(record["reward"]) == 3 and record["reference_reward"] > 0
    if method in ("riser", "grpo"):
        assert len(record["non_learnable_share"]) == 3
    # it started from the SFT model and moved away from it
    import torch

    before = dict(base.lm_.named_parameters())
    moved = [not torch.equal(p, before[n]) for n, p in model.lm_.named_parameters()]
    assert any(moved)
    assert model.history_ == base.history_  # the SFT stage is the saved one
    top = model.recommend(split.eval_set("test").queries[:3], 4).items
    assert top.shape == (3, 4) and (top >= 0).all()


def test_the_same_seed_gives_the_same_aligned_model(split, sft):
    _, folder = sft
    a = aligned(folder, "blade").fit(split, QUIET)
    b = aligned(folder, "blade").fit(split, QUIET)
    assert a.alignment_["reward"] == b.alignment_["reward"]
    queries = split.eval_set("test").queries[:4]
    np.testing.assert_array_equal(a.recommend(queries, 4).items, b.recommend(queries, 4).items)


def test_saved_and_loaded_it_recommends_the_same(split, sft, tmp_path):
    _, folder = sft
    model = aligned(folder, "dpo").fit(split, QUIET)
    loaded = Recommender.load(model.save(tmp_path / "aligned"))
    assert loaded.alignment_ == model.alignment_
    queries = split.eval_set("test").queries[:4]
    np.testing.assert_array_equal(loaded.recommend(queries, 4).items, model.recommend(queries, 4).items)


def test_a_base_that_does_not_fit_is_refused(split, sft, tmp_path):
    _, folder = sft
    with pytest.raises(ConfigError, match="other settings: lora"):
        make_model("llm_generative_aligned", **SFT, lora={"r": 4}, start_from=str(folder)).fit(split, QUIET)
    other = split_leave_one_out(rated_toy(n_items=18, seed=1), short_users="train")
    with pytest.raises(DataError, match="another catalog"):
        aligned(folder, "dpo").fit(other, QUIET)
    make_model("most_popular").fit(split, QUIET).save(tmp_path / "popular")
    with pytest.raises(DataError, match="holds a MostPopular, not a GenerativeRecommender"):
        aligned(tmp_path / "popular", "dpo").fit(split, QUIET)
    with pytest.raises(ConfigError):
        aligned(folder, "blade", n_rollouts=1)
    with pytest.raises(ConfigError, match="sum to zero"):
        aligned(folder, "blade", reward={"accuracy": 0.0})


def test_no_user_with_two_interactions_is_a_clear_error(split, sft):
    import pandas as pd

    from trustrec.data import Dataset

    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["i0", "i1"], "timestamp": [0, 1]})
    items = pd.DataFrame({"item_id": ["i0", "i1"], "title": ["Film 0", "Film 1"]})
    single = Dataset.from_frame(frame, name="single", items=items)
    with pytest.raises(DataError, match="no user has two training interactions"):
        make_model("llm_generative_aligned", **{**SFT, "epochs": 0}, alignment={**ALIGN, "method": "dpo"}).fit(
            single, QUIET
        )


class TestAlignedChecks(RecommenderChecks):
    component = AlignedGenerativeRecommender
    configs: ClassVar[list[dict[str, Any]]] = [
        {**SFT, "max_train_examples": 8, "alignment": {**ALIGN, "users": 4, "method": "riser"}}
    ]


def test_batches_without_a_learning_signal_are_skipped_not_trained():
    import torch

    from trustrec.models.llm import load_causal_lm
    from trustrec.models.training import LLMTrainer, LossTerm, PromptVariant, TrainingExample

    class NoSignal(LossTerm):
        def compute(self, ctx):
            return None

    model, _ = load_causal_lm("tiny-smollm2-random")
    before = {n: p.clone() for n, p in model.named_parameters()}
    examples = [TrainingExample((PromptVariant([5, 6, 7], [9, 2]),)) for _ in range(4)]
    trainer = LLMTrainer(model, pad_id=0, losses=[NoSignal()], batch_size=2, skip_empty=True)
    assert np.isnan(trainer.train_epoch(examples, np.random.default_rng(0)))
    assert trainer.skipped_batches == 2
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="no loss term contributed"):
        LLMTrainer(model, pad_id=0, losses=[NoSignal()], batch_size=2).train_epoch(examples, np.random.default_rng(0))
