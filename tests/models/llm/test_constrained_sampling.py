"""Trie-constrained sampling: the sampled titles follow the model's distribution over catalog
titles (exact probabilities computed by hand on a tiny model), greedy and a tiny nucleus take
the most likely path, the same seed gives the same samples."""

from __future__ import annotations

import numpy as np
import pytest

from trustrec.models.llm import LocalBackend, TitleTrie, load_causal_lm

TITLES = ["Heat", "Alien", "Toy Story", "Fargo", "Babe", "Alien 3"]
PROMPT = "I watched Heat and"


@pytest.fixture(scope="module")
def backend():
    model, tok = load_causal_lm("tiny-smollm2-random")
    return LocalBackend.from_model(model, tok)


def exact_title_probabilities(backend, trie, temperature=1.0):
    """p(item) = prod over its tokens of softmax(logits / T) restricted to the allowed tokens."""
    import torch

    tok, model = backend.tokenizer, backend.model
    prompt = tok(PROMPT, add_special_tokens=True)["input_ids"]
    out = {}
    for leaf, seq in trie.sequences.items():
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + list(seq[:-1])])).logits[0, len(prompt) - 1 :]
        p, node = 1.0, 0
        for step, token in enumerate(seq):
            allowed = trie.allowed[node]
            probs = torch.softmax(logits[step, allowed].double() / temperature, -1)
            p *= float(probs[list(allowed).index(token)])
            node = trie.child(node, token)
        out[trie.items_at(leaf)[0]] = p
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_samples_follow_the_models_distribution_over_titles(backend, temperature):
    trie = TitleTrie(TITLES, backend.tokenizer)
    exact = exact_title_probabilities(backend, trie, temperature)
    assert sum(exact.values()) == pytest.approx(1.0)
    n = 1500
    rows = backend.sample_constrained([PROMPT], trie, n, temperature=temperature, seed=0)[0]
    items = np.array([item for _, item in rows])
    assert (items >= 0).all()
    for item, p in exact.items():
        # 4.5 binomial standard errors: a wrong distribution fails, sampling noise does not
        assert abs((items == item).mean() - p) < 4.5 * np.sqrt(p * (1 - p) / n) + 1e-3, (item, p)
    ids, item = rows[0]
    assert ids[-1] == trie.end_id and tuple(ids) == trie.sequences[trie.walk(ids)]


def test_greedy_and_a_tiny_nucleus_take_the_most_likely_path(backend):
    import torch

    trie = TitleTrie(TITLES, backend.tokenizer)
    tok, model = backend.tokenizer, backend.model
    prompt = tok(PROMPT, add_special_tokens=True)["input_ids"]
    path, node = [], 0
    while not path or path[-1] != trie.end_id:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + path])).logits[0, -1]
        allowed = trie.allowed[node]
        token = int(allowed[int(torch.argmax(logits[allowed]))])
        path.append(token)
        node = trie.child(node, token)
    greedy = backend.sample_constrained([PROMPT, "Hi"], trie, 3, temperature=0.0)
    assert all(ids == path for ids, _ in greedy[0])
    assert len({tuple(ids) for ids, _ in greedy[1]}) == 1
    nucleus = backend.sample_constrained([PROMPT], trie, 3, top_p=1e-6, seed=4)[0]
    assert all(ids == path for ids, _ in nucleus)


def test_the_same_seed_gives_the_same_samples_and_others_differ(backend):
    trie = TitleTrie(TITLES, backend.tokenizer)
    prompts = [PROMPT, "Hi", "A user watched"]
    a = backend.sample_constrained(prompts, trie, 5, seed=11, batch_size=2)
    assert a == backend.sample_constrained(prompts, trie, 5, seed=11, batch_size=2)
    assert a != backend.sample_constrained(prompts, trie, 5, seed=12, batch_size=2)
    assert [len(row) for row in a] == [5, 5, 5]
