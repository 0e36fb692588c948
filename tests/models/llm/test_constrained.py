"""Constrained beam search over a title trie: catalog items only, exact vs brute force and HF."""

import pytest

torch = pytest.importorskip("torch")

TITLES = [
    "Star Wars",
    "Star Trek",
    "Star Trek II",
    "Toy Story",
    "Toy Story 2",
    "Heat",
    "",
    "Heat",
    "Casino",
    "Fargo",
    "Alien",
    "Aliens",
    "Babe",
]
PROMPTS = ["User watched: Heat, Fargo. Next:", "Recommend a movie:", "Hi"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    pytest.importorskip("transformers")
    from trustrec.models.llm import build_tiny_random, load_causal_lm

    folder = tmp_path_factory.mktemp("tiny-constrained") / "tiny-smollm2-random"
    build_tiny_random(folder)
    return load_causal_lm(folder, progress=False)


@pytest.fixture(scope="module")
def trie(lm):
    from trustrec.models.llm import TitleTrie

    return TitleTrie(TITLES, lm[1])


def brute_force(model, tokenizer, prompt, trie, k):
    prompt_ids = tokenizer(prompt)["input_ids"]
    scored = []
    with torch.inference_mode():
        for leaf, seq in trie.sequences.items():
            ids = torch.tensor([prompt_ids + list(seq)])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            target = ids[0, 1:]
            total = logp[torch.arange(len(target)), target][len(prompt_ids) - 1 :].sum().item()
            scored.append((trie.item_at(leaf), total))
    scored.sort(key=lambda s: -s[1])
    return scored[:k]


def test_trie_structure(trie):
    assert trie.empty_items == [6] and trie.n_empty == 1
    assert trie.duplicate_groups == [[5, 7]] and trie.n_duplicates == 1
    assert trie.n_sequences == len(TITLES) - 2
    for leaf, seq in trie.sequences.items():
        assert seq[-1] == trie.end_id and trie.items_of(seq) == trie.items_at(leaf)
    assert trie.items_of(trie.sequences[next(iter(trie.sequences))][:-1]) == []
    assert trie.allowed_tokens([10**9]) == []


def test_results_are_catalog_items(lm, trie):
    model, tok = lm
    from trustrec.models.llm import constrained_beam_search

    results = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=4, top_k=4)
    assert len(results) == len(PROMPTS)
    for res in results:
        items = [i for i, _ in res]
        assert len(res) == 4 and len(set(items)) == 4
        assert all(0 <= i < len(TITLES) and TITLES[i] for i in items)
        assert 7 not in items and 6 not in items  # duplicate resolves to 5; empty never
        assert [s for _, s in res] == sorted((s for _, s in res), reverse=True)


@pytest.mark.parametrize("k", [5, 11])
def test_equals_brute_force(lm, trie, k):
    from trustrec.models.llm import constrained_beam_search

    model, tok = lm
    results = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=trie.n_sequences, top_k=k)
    for prompt, res in zip(PROMPTS, results):
        expected = brute_force(model, tok, prompt, trie, k)
        assert [i for i, _ in res] == [i for i, _ in expected]
        for (_, a), (_, b) in zip(res, expected):
            assert a == pytest.approx(b, abs=1e-4)


@pytest.mark.parametrize("num_beams", [3, 5])
def test_equals_hf_generate(lm, trie, num_beams):
    """HF settings that rank by summed log-prob: length_penalty=0.0, early_stopping="never",
    do_sample=False, eos/pad = the trie's end marker, max_new_tokens = longest sequence.
    HF refuses an empty allowed list, so off-trie filler beams (score -inf / -1e9) get the end
    marker; they are dropped when mapping to items."""
    from trustrec.models.llm import constrained_beam_search

    model, tok = lm
    prompt = PROMPTS[0]
    ids = tok(prompt, return_tensors="pt")
    plen = ids["input_ids"].shape[1]
    out = model.generate(
        **ids,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        prefix_allowed_tokens_fn=lambda b, seq: trie.allowed_tokens(seq[plen:].tolist()) or [trie.end_id],
        length_penalty=0.0,
        early_stopping="never",
        max_new_tokens=trie.max_length,
        eos_token_id=trie.end_id,
        pad_token_id=trie.end_id,
        output_scores=True,
        return_dict_in_generate=True,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    hf = []
    for seq, score in zip(out.sequences, out.sequences_scores.tolist()):
        gen = seq[plen:].tolist()
        gen = gen[: gen.index(trie.end_id) + 1] if trie.end_id in gen else gen
        items = trie.items_of(gen)
        if items and score > -1e8:
            hf.append((items[0], score))
    ours = constrained_beam_search(model, tok, [prompt], trie, num_beams=num_beams, top_k=num_beams)[0]
    assert len(hf) == num_beams
    assert [i for i, _ in ours] == [i for i, _ in hf]
    for (_, a), (_, b) in zip(ours, hf):
        assert a == pytest.approx(b, abs=1e-4)


def test_batched_equals_unbatched(lm, trie):
    from trustrec.models.llm import constrained_beam_search

    model, tok = lm
    batched = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=5, top_k=5, batch_size=3)
    single = [constrained_beam_search(model, tok, [p], trie, num_beams=5, top_k=5, batch_size=1)[0] for p in PROMPTS]
    for b, s in zip(batched, single):
        assert [i for i, _ in b] == [i for i, _ in s]
        for (_, x), (_, y) in zip(b, s):
            assert x == pytest.approx(y, abs=1e-4)


def test_bad_arguments(lm, trie):
    from trustrec.models.llm import TitleTrie, constrained_beam_search

    model, tok = lm
    with pytest.raises(ValueError):
        constrained_beam_search(model, tok, PROMPTS, trie, num_beams=2, top_k=3)
    empty = TitleTrie(["", "  "], tok)
    assert empty.n_empty == 2 and constrained_beam_search(model, tok, ["x"], empty) == [[]]


@pytest.mark.parametrize("num_beams", [3, 11])
def test_exclusion_equals_the_trie_of_the_remaining_titles(lm, trie, num_beams):
    """Excluding items inside the search == searching a trie built without them (per prompt)."""
    import numpy as np

    from trustrec.models.llm import TitleTrie, constrained_beam_search

    model, tok = lm
    exclude = np.zeros((len(PROMPTS), len(TITLES)), dtype=bool)
    exclude[0, [0, 1, 2]] = True  # every "Star ..." title: the whole branch closes
    exclude[1, [5, 3]] = True  # Heat (and with it its duplicate 7, which resolves to 5)
    exclude[2, :] = True  # nothing left
    exclude[2, 9] = False
    results = constrained_beam_search(
        model, tok, PROMPTS, trie, num_beams=num_beams, top_k=min(num_beams, 3), exclude=exclude
    )
    for p, res in enumerate(results):
        kept = [t if not exclude[p, i] and not (i == 7 and exclude[p, 5]) else "" for i, t in enumerate(TITLES)]
        reference = constrained_beam_search(
            model, tok, [PROMPTS[p]], TitleTrie(kept, tok), num_beams=num_beams, top_k=min(num_beams, 3)
        )[0]
        assert [i for i, _ in res] == [i for i, _ in reference]
        np.testing.assert_allclose([s for _, s in res], [s for _, s in reference], atol=1e-4)
        assert not any(exclude[p, i] for i, _ in res)
    assert [i for i, _ in results[2]] == [9]
    with pytest.raises(ValueError, match="exclude must be"):
        constrained_beam_search(model, tok, PROMPTS, trie, exclude=exclude[:1])
