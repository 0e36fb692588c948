"""List-level alignment pieces: rewards equal the evaluator's metrics, Best-of-N, the static and
BLADE targets against hand computations, RISER's routing, advantages and per-token cap, and the
preference pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustrec.data import Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.eval import hit_rate, hits_matrix, intra_list_diversity, ndcg, novelty
from trustrec.mitigate.training import (
    BladeTarget,
    ListReward,
    ListRewardConfig,
    best_of_n,
    bon_weights,
    capped_policy_loss,
    effective_supervision,
    first_occurrences,
    group_advantages,
    midpoint_cdf,
    preference_pairs,
    route_groups,
    weighted_nll,
)
from trustrec.models.training import preference_loss


def test_reward_terms_equal_the_evaluator_and_a_hand_computation():
    rng = np.random.default_rng(0)
    n_items = 12
    lists = np.array([[0, 1, 2, 3], [4, 5, -1, -1], [6, 7, 8, 9]])
    targets = [[2], [11], [6, 9]]
    membership = np.zeros((n_items, 2))
    membership[:6, 0] = 1
    membership[6:, 1] = 1
    vectors = rng.normal(size=(n_items, 3))
    counts = rng.integers(1, 20, size=n_items)
    reward = ListReward(
        ListRewardConfig(k=4, accuracy=1.0, fairness=0.5, diversity=0.25, novelty=0.25),
        n_items=n_items,
        membership=membership,
        item_vectors=vectors,
        item_user_counts=counts,
        n_users=20,
    )
    parts = reward.components(lists, targets)
    truth = Ragged.from_rows([np.array(t) for t in targets])
    hits = hits_matrix(lists, truth, n_items)
    np.testing.assert_allclose(parts["accuracy"], ndcg(hits, truth.lengths))
    assert parts["accuracy"][0] == pytest.approx(1 / np.log2(4)) and parts["accuracy"][1] == 0
    # list 0: all group 0 against 50/50 shares -> TV 0.5; list 2: all group 1 -> TV 0.5; list 1 too
    np.testing.assert_allclose(parts["fairness"], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(parts["diversity"], intra_list_diversity(lists, vectors))
    np.testing.assert_allclose(parts["novelty"], novelty(lists, counts, 20) / np.log2(20))
    total = reward(lists, targets)
    expected = parts["accuracy"] + 0.5 * parts["fairness"] + 0.25 * parts["diversity"] + 0.25 * parts["novelty"]
    np.testing.assert_allclose(total, expected)
    # a balanced list is perfectly fair; hit@K is the other accuracy term
    balanced = ListReward(ListRewardConfig(k=2, accuracy=0, fairness=1), n_items=n_items, membership=membership)
    assert balanced(np.array([[0, 6]]), [[0]])[0] == pytest.approx(1.0)
    hit = ListReward(ListRewardConfig(k=4, accuracy_metric="hit"), n_items=n_items)
    np.testing.assert_allclose(hit(lists, targets), hit_rate(hits, truth.lengths))


def test_reward_refuses_bad_settings_and_inputs():
    with pytest.raises(ConfigError, match="sum to zero"):
        ListReward({"accuracy": 0}, n_items=3)
    with pytest.raises(ConfigError, match="membership"):
        ListReward(ListRewardConfig(fairness=1), n_items=3)
    with pytest.raises(ConfigError, match="n_users"):
        ListReward(ListRewardConfig(novelty=1), n_items=3, item_user_counts=[1, 1, 1], n_users=1)
    reward = ListReward(n_items=3)
    with pytest.raises(DataError, match="outside"):
        reward(np.array([[0, 3]]), [[0]])
    with pytest.raises(DataError, match="target rows"):
        reward(np.array([[0, 1]]), [[0], [1]])
    with pytest.raises(DataError, match="target_shares"):
        ListReward(ListRewardConfig(fairness=1), n_items=2, membership=np.eye(2), target_shares=[0.5, 0.6])


def test_best_of_n_picks_the_first_best_sample():
    samples = np.arange(2 * 3 * 2).reshape(2, 3, 2)
    chosen, index = best_of_n(samples, [[0.1, 0.5, 0.5], [0.0, 0.0, 0.0]])
    assert index.tolist() == [1, 0] and chosen.tolist() == [[2, 3], [6, 7]]
    with pytest.raises(ConfigError, match="N >= 2"):
        best_of_n(samples[:, :1], [[0.1], [0.2]])
    with pytest.raises(DataError, match="finite"):
        best_of_n(samples, [[np.nan, 0, 0], [0, 0, 0]])


def test_static_and_blade_targets_equal_hand_computations():
    reference = [0.0, 0.0, 0.5, 1.0]
    # midpoint CDF: F(0) = (0 + 2/2)/4 = .25, F(.5) = (2 + .5)/4 = .625, F(1) = (3 + .5)/4 = .875, F(2) = 1
    np.testing.assert_allclose(midpoint_cdf(reference, [0.0, 0.5, 1.0, 2.0, -1.0]), [0.25, 0.625, 0.875, 1.0, 0.0])
    w = bon_weights([[0.0, 1.0], [2.0, 3.0]], reference, n=3)
    np.testing.assert_allclose(w[0], np.array([0.25**2, 0.875**2]) / (0.25**2 + 0.875**2))
    np.testing.assert_allclose(w[1], [0.5, 0.5])  # above the reference's range: no preference left
    assert effective_supervision(w)[1] == 0 and effective_supervision(w)[0] > 0.3

    blade = BladeTarget(reference, n=3, prior_strength=4)
    current = np.array([[2.0, 3.0]])
    # F_now over {2, 3}: F(2) = .25, F(3) = .75; prior F = 1 at both; fused: (4*1 + 2*F_now) / 6
    f = (4 * 1.0 + 2 * np.array([0.25, 0.75])) / 6
    np.testing.assert_allclose(blade.cdf(current, [2.0, 3.0]), f)
    np.testing.assert_allclose(blade.weights(current)[0], f**2 / (f**2).sum())
    assert effective_supervision(blade.weights(current))[0] > 0  # the signal does not vanish
    np.testing.assert_allclose(BladeTarget(reference, n=3, prior_strength=0).cdf([1.0], [1.0]), [0.5])
    with pytest.raises(ConfigError, match="N must be"):
        bon_weights([[0.0, 1.0]], reference, n=1)
    with pytest.raises(DataError, match="reference"):
        BladeTarget([], n=2)


def test_weighted_nll_is_the_weighted_sum():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -4.0]], requires_grad=True)
    loss = weighted_nll(logp, [[0.25, 0.75], [1.0, 0.0]])
    assert loss.item() == pytest.approx(-((-0.25 - 1.5) + (-0.5)) / 2)
    loss.backward()
    np.testing.assert_allclose(logp.grad.numpy(), [[-0.125, -0.375], [-0.5, 0.0]])


def test_rollouts_are_deduplicated_and_groups_routed():
    items = np.array([[3, 1, 3, -1, 1], [2, 2, 2, 2, 2]])
    np.testing.assert_array_equal(
        first_occurrences(items), [[True, True, False, False, False], [True, False, False, False, False]]
    )
    rewards = np.array([[1.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.3, 0.3, 0.3, 0.3, 0.3]])
    valid = np.ones_like(rewards, dtype=bool)
    valid[0, 2:] = False
    assert route_groups(rewards, valid).tolist() == [True, False, False]
    adv = group_advantages(rewards, valid)
    np.testing.assert_allclose(adv[0, :2], [1.0, -1.0], atol=1e-5)  # mean .5, std .5
    assert (adv[0, 2:] == 0).all() and (adv[1:] == 0).all()


def test_capped_policy_loss_stops_gradients_beyond_the_cap():
    old = torch.zeros(2, 3)
    new = torch.tensor([[0.1, 0.5, -0.5], [0.1, 0.5, -0.5]], requires_grad=True)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    loss = capped_policy_loss(new, old, adv, mask, cap=0.2)
    loss.backward()
    g = new.grad.numpy()
    # positive advantage: a token already raised past +cap gives no gradient; one lowered past -cap still does
    assert g[0, 0] < 0 and g[0, 1] == 0 and g[0, 2] < 0
    # negative advantage: a token lowered past -cap gives none; one raised past +cap still does
    assert g[1, 0] > 0 and g[1, 1] > 0 and g[1, 2] == 0
    r = np.exp([0.1, 0.5, -0.5])
    row0 = -np.mean([r[0], np.exp(0.2), r[2]])
    row1 = np.mean([r[0], r[1], np.exp(-0.2)])
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    with pytest.raises(ConfigError, match="cap"):
        capped_policy_loss(new, old, adv, mask, cap=0)


def test_preference_pairs_and_the_dpo_loss():
    pairs = preference_pairs([5, 7], [[5, 1, 1, 2], [3, -1, 7, 4]])
    assert pairs.tolist() == [[0, 5, 1], [0, 5, 2], [1, 7, 3], [1, 7, 4]]
    chosen, rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    ref_c, ref_r = torch.tensor([-1.5, -2.0]), torch.tensor([-2.5, -1.5])
    by_hand = -np.mean(np.log(1 / (1 + np.exp(-0.1 * np.array([(0.5) - (-0.5), 0.0 - 0.5])))))
    assert preference_loss(chosen, rejected, ref_c, ref_r, beta=0.1).item() == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(DataError, match="do not match"):
        preference_pairs([1], [[1, 2], [3, 4]])


# -- the loss terms on the tiny random model ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from trustrec.models.llm import load_causal_lm

    return load_causal_lm("tiny-smollm2-random")


def _setup(tiny):
    from trustrec.models.training import PromptVariant, TrainingExample

    model, tok = tiny

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    eos = tok.eos_token_id
    examples = [
        TrainingExample((PromptVariant(enc(f"Watched {h}. Next:"), [*enc(" " + t), eos]),))
        for h, t in [("Alien", "Heat"), ("Casino", "Fargo")]
    ]
    answers = {"Heat": [*enc(" Heat"), eos], "Fargo": [*enc(" Fargo"), eos], "Babe": [*enc(" Babe"), eos]}
    return model, tok, examples, answers


def _sequence_logp(model, prompt, answers):
    from trustrec.models.training import collate_examples, sequence_logprobs

    batch = collate_examples([(list(prompt), a) for a in answers], 0)
    return sequence_logprobs(
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch["labels"]
    )


def test_best_of_n_target_loss_equals_the_weighted_nll_by_hand(tiny):
    from functools import partial

    from trustrec.mitigate.training import BestOfNTargetLoss
    from trustrec.models.training import LLMTrainer

    model, tok, examples, answers = _setup(tiny)
    rollouts = [answers["Heat"], answers["Babe"], answers["Fargo"]]
    rewards = {0: [1.0, 0.0, 0.0], 1: [0.0, 0.0, 1.0]}
    reference = [0.0, 0.0, 0.0, 1.0]
    term = BestOfNTargetLoss(
        sample=lambda e: rollouts,
        reward=lambda e, r: rewards[examples.index(e)],
        target=partial(bon_weights, reference=reference, n=4),
    )
    trainer = LLMTrainer(model, pad_id=tok.eos_token_id, losses=[term])
    got = float(trainer.batch_loss(examples))
    with torch.no_grad():
        logp = torch.stack([_sequence_logp(model, e.variants[0].prompt_ids, rollouts) for e in examples])
    weights = bon_weights(np.array([rewards[0], rewards[1]]), reference, 4)
    assert got == pytest.approx(float(-(torch.as_tensor(weights, dtype=logp.dtype) * logp).sum(1).mean()), rel=1e-4)
    assert term.supervision == [pytest.approx(float(effective_supervision(weights).mean()))]
    blade = BestOfNTargetLoss(
        sample=lambda e: rollouts,
        reward=lambda e, r: rewards[examples.index(e)],
        target=BladeTarget(reference, n=4).weights,
    )
    LLMTrainer(model, pad_id=tok.eos_token_id, losses=[blade]).batch_loss(examples)
    assert len(blade.supervision) == 1 and blade.supervision[0] > 0
    uneven = BestOfNTargetLoss(
        sample=lambda e: rollouts[: 1 + examples.index(e)], reward=lambda e, r: [0.0] * len(r), target=lambda r: r
    )
    with pytest.raises(DataError, match="same, positive number"):
        LLMTrainer(model, pad_id=tok.eos_token_id, losses=[uneven]).batch_loss(examples)


def test_riser_loss_routes_groups_to_the_policy_or_the_pairwise_loss(tiny):
    from trustrec.mitigate.training import RiserLoss
    from trustrec.models.training import LLMTrainer, preference_loss

    model, tok, examples, answers = _setup(tiny)
    sampled = [(answers["Babe"], 2), (answers["Heat"], 0), (answers["Babe"], 2)]  # a duplicate of item 2
    seen = []

    def reward(example, items):
        seen.append(list(items))
        return [1.0 if i == 0 else 0.0 for i in items]

    learnable = RiserLoss(sample=lambda e: sampled, reward=reward)
    loss = LLMTrainer(model, pad_id=tok.eos_token_id, losses=[learnable]).batch_loss(examples)
    assert np.isfinite(float(loss)) and learnable.stats == [{"non_learnable_share": 0.0, "pairs": 0.0}]
    assert seen[0] == [2, 0, 2]
    # ratio 1 at the first update: the capped loss is -mean(A) = 0 over the two distinct rollouts
    assert float(loss) == pytest.approx(0.0, abs=1e-6)

    flat = RiserLoss(sample=lambda e: sampled, reward=lambda e, items: [0.0] * len(items), beta=0.5)
    got = float(LLMTrainer(model, pad_id=tok.eos_token_id, losses=[flat]).batch_loss(examples))
    assert flat.stats == [{"non_learnable_share": 1.0, "pairs": 3.0}]  # Babe for both, Heat for Fargo's user
    with torch.no_grad():
        parts = []
        for e in examples:
            chosen = list(e.variants[0].answer_ids)
            rejected = [a for a in (answers["Babe"], answers["Heat"]) if a != chosen]
            logp = _sequence_logp(model, e.variants[0].prompt_ids, [chosen, *rejected])
            parts.append(float(preference_loss(logp[:1].expand(len(rejected)), logp[1:], beta=0.5)))
    assert got == pytest.approx(np.mean(parts), rel=1e-4)
