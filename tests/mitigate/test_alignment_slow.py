"""Each list-level alignment method takes a few training steps on the real SmolLM2 with
trie-constrained rollouts over ml-100k titles (slow)."""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_static_bon_blade_riser_and_dpo_train_for_a_few_steps(shared_data):
    import torch

    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.mitigate.training import BestOfNTargetLoss, BladeTarget, RiserLoss, bon_weights
    from trustrec.models.llm import LocalBackend, TitleTrie, load_causal_lm
    from trustrec.models.training import (
        LLMTrainer,
        PairwisePreferenceLoss,
        PromptVariant,
        RolloutSampler,
        TrainingExample,
    )

    torch.manual_seed(0)
    split = split_leave_one_out(load_dataset("ml-100k", data_dir=shared_data))
    titles = split.dataset.items["title"].astype(str).tolist()
    model, tok = load_causal_lm("smollm2-135m-instruct")
    eos = tok.eos_token_id

    def enc(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    queries = split.eval_set("valid").queries[:2]
    targets = split.eval_set("valid").targets
    examples, wanted = [], []
    for q in range(len(queries)):
        history = ", ".join(titles[i] for i in queries.histories.row(q)[-5:])
        prompt = f"A user watched {history}. The next movie they watched:"
        target = int(targets.row(q)[0])
        wanted.append(target)
        rejected = int((target + 1) % len(titles))
        examples.append(
            TrainingExample(
                (PromptVariant(enc(prompt), [*enc(" " + titles[target]), eos]),),
                rejected=(PromptVariant(enc(prompt), [*enc(" " + titles[rejected]), eos]),),
                meta={"prompt": prompt, "target": target},
            )
        )
    backend = LocalBackend.from_model(model, tok)
    sampler = RolloutSampler(backend, n=3, temperature=1.0, seed=0, trie=TitleTrie(titles, tok, prefix=" "))

    def rollouts(example):
        return [
            ([*r.token_ids, eos] if r.token_ids[-1:] != (eos,) else list(r.token_ids), r.item)
            for r in sampler.sample([example.meta["prompt"]])[0]
        ]

    title_index = {t: i for i, t in enumerate(titles)}

    def items_of(answers):
        return [title_index.get(tok.decode(ids, skip_special_tokens=True).strip(), -1) for ids in answers]

    def hit(example, items):
        return [1.0 if i == example.meta["target"] else 0.1 * (i >= 0) for i in items]

    reference_model = copy.deepcopy(model).eval()

    def reference(batch):
        return reference_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    reference_rewards = [r for e in examples for r in hit(e, [item for _, item in rollouts(e)])]
    static = BestOfNTargetLoss(
        sample=lambda e: [ids for ids, _ in rollouts(e)],
        reward=lambda e, rs: hit(e, items_of(rs)),
        target=partial(bon_weights, reference=reference_rewards, n=3),
    )
    blade = BestOfNTargetLoss(
        sample=lambda e: [ids for ids, _ in rollouts(e)],
        reward=lambda e, rs: hit(e, items_of(rs)),
        target=BladeTarget(reference_rewards, n=3).weights,
    )
    riser = RiserLoss(sample=rollouts, reward=hit, reference=reference)
    dpo = PairwisePreferenceLoss(reference=reference)
    for term in (static, blade, riser, dpo):
        trainer = LLMTrainer(model, pad_id=eos, losses=[term], batch_size=1, learning_rate=1e-5)
        loss = trainer.train_epoch(examples, np.random.default_rng(0))  # two steps: one per example
        assert np.isfinite(loss), (type(term).__name__, loss)
    assert len(static.supervision) == len(blade.supervision) == 2
    assert len(riser.stats) == 2 and all(0 <= s["non_learnable_share"] <= 1 for s in riser.stats)
