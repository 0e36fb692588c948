"""RecICL: the prompt builder never shows the query item or the future, demonstrations are the
most recent earlier interactions, the Yes-logit scorer equals a direct forward pass, the loss is
BCE on that logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trustrec.errors import DataError
from trustrec.mitigate.training.recicl import (
    YesLogitLoss,
    liked_by_rating,
    recicl_example,
    recicl_prompt,
    yes_logits,
    yes_token_id,
)
from trustrec.models.llm import load_causal_lm
from trustrec.models.training import LLMTrainer

TITLES = [f"Film {i}" for i in range(30)]


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny-smollm2-random")


def test_the_prompt_never_shows_the_query_item_or_a_later_interaction():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 15))
        items = rng.integers(0, 30, n)
        times = rng.integers(0, 20, n).astype(float)  # ties and repeats on purpose
        labels = rng.random(n) < 0.6
        query_item, query_time = int(rng.integers(0, 30)), float(rng.integers(0, 20))
        prompt = recicl_prompt(items, times, labels, query_item, query_time, TITLES, k=4, max_titles=3)
        allowed = {int(i) for i, t in zip(items, times) if t < query_time and i != query_item}
        assert set(prompt.shown_items) <= allowed
        assert query_item not in prompt.demonstration_items and len(prompt.demonstration_items) <= 4
        earlier = sorted((t, j) for j, (i, t) in enumerate(zip(items, times)) if t < query_time and i != query_item)
        expected = [int(items[j]) for _, j in earlier][-4:]
        assert list(prompt.demonstration_items) == expected
        assert prompt.n_demonstrations == len(expected) == prompt.text.count("#Answer: ")
        assert (
            prompt.text.endswith("#Answer:") and f'titled "{TITLES[query_item]}"' in prompt.text.split("#Example")[-1]
        )


def test_demonstrations_carry_their_labels_and_the_titles_liked_before_them():
    items, times, labels = [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [True, False, True, True, False, True]
    prompt = recicl_prompt(items, times, labels, 9, 6.0, TITLES, k=2)  # item 6 is not before time 6
    assert prompt.demonstration_items == (4, 5) and prompt.n_demonstrations == 2
    first, second, query = prompt.text.split("#Example ")[1:]
    assert '"Film 1", "Film 3"' in first and 'titled "Film 4"' in first and first.rstrip().endswith("Yes")
    assert '"Film 1", "Film 3", "Film 4"' in second and second.rstrip().endswith("No")
    assert '"Film 1", "Film 3", "Film 4". ' in query and "Film 6" not in prompt.text
    alone = recicl_prompt([], [], [], 7, 1.0, TITLES)
    assert alone.n_demonstrations == 0 and "none yet" in alone.text


def test_bad_input_is_named():
    with pytest.raises(DataError, match="one of each"):
        recicl_prompt([1, 2], [1.0], [True, True], 3, 5.0, TITLES)
    with pytest.raises(DataError, match="item 99 has no title"):
        recicl_prompt([99], [1.0], [True], 3, 5.0, TITLES)
    with pytest.raises(DataError, match="finite"):
        recicl_prompt([1], [float("nan")], [True], 3, 5.0, TITLES)
    assert liked_by_rating([5, 4, 3.5, 1]).tolist() == [True, True, False, False]
    with pytest.raises(DataError, match="without ratings"):
        liked_by_rating([4.0, np.nan])


def test_yes_logits_equal_a_direct_forward_pass(tiny):
    model, tokenizer = tiny
    prompts = [
        recicl_prompt([1, 2, 3], [1, 2, 3], [True, False, True], 5, 9.0, TITLES).text,
        recicl_prompt([4], [1], [True], 6, 2.0, TITLES).text,
        recicl_prompt([], [], [], 7, 1.0, TITLES).text,
    ]
    got = yes_logits(model, tokenizer, prompts, batch_size=2)
    yes = yes_token_id(tokenizer)
    with torch.no_grad():
        direct = [
            float(
                model(input_ids=tokenizer(p, add_special_tokens=False, return_tensors="pt")["input_ids"]).logits[
                    0, -1, yes
                ]
            )
            for p in prompts
        ]
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-5)


def test_yes_logit_loss_is_bce_on_the_raw_logit(tiny):
    model, tokenizer = tiny
    cases = [
        (recicl_prompt([1, 2, 3], [1, 2, 3], [True, False, True], 5, 9.0, TITLES), True),
        (recicl_prompt([4, 8], [1, 2], [True, True], 6, 3.0, TITLES), False),
    ]
    examples = [recicl_example(p, tokenizer, label) for p, label in cases]
    assert [e.meta["n_demonstrations"] for e in examples] == [3, 2]
    trainer = LLMTrainer(model, pad_id=0, losses=[YesLogitLoss(yes_token_id(tokenizer))])
    with torch.no_grad():
        got = float(trainer.batch_loss(examples))
    logits = torch.tensor(yes_logits(model, tokenizer, [p.text for p, _ in cases]))
    expected = float(F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0])))
    assert got == pytest.approx(expected, rel=1e-4)
