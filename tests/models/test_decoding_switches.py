"""Decoding switches of the trie-constrained beam search, checked against brute force and HF.

* ``length_penalty``: 0 = D3's summed log-probability (arXiv 2406.14900), 1 = BIGRec's mean
  over the generated tokens (arXiv 2308.08434);
* D3's text-free assistant (``assistant``, ``guidance``): tokens score
  ``g * log p_LLM + (1 - g) * log p_assist``.

Every brute force below is written independently of the search: teacher-forced log-probs of
each whole title, and assistant masses summed over items with plain Python loops.
"""

import math

import numpy as np
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
FLOOR = 1e-10  # D3's "+ 1e-10" on every allowed token's mass (row scaled to sum 1)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    pytest.importorskip("transformers")
    from trustrec.models.llm import build_tiny_random, load_causal_lm

    folder = tmp_path_factory.mktemp("tiny-switches") / "tiny-smollm2-random"
    build_tiny_random(folder)
    return load_causal_lm(folder, progress=False)


@pytest.fixture(scope="module")
def trie(lm):
    from trustrec.models.llm import TitleTrie

    return TitleTrie(TITLES, lm[1])


@pytest.fixture(scope="module")
def assistant():
    """Uneven per-prompt item probabilities, unnormalised, with exact zeros (items 3 and 9 of
    prompt 0) so the floor matters, and mass on the empty and duplicate titles."""
    rng = np.random.default_rng(7)
    probs = rng.gamma(0.5, size=(len(PROMPTS), len(TITLES))) * 3.0
    probs[0, [3, 9]] = 0.0
    return probs


@pytest.fixture(scope="module")
def exclude():
    out = np.zeros((len(PROMPTS), len(TITLES)), dtype=bool)
    out[0, [0, 1, 2]] = True  # the whole "Star" branch
    out[1, [5, 4]] = True  # Heat closes its leaf (duplicate 7 resolves to 5)
    out[2, 7] = True  # only the duplicate: the Heat leaf stays open but loses item 7's mass
    return out


def teacher_forced(model, tokenizer, prompt, seq):
    """Per generated token of ``seq``, its log-prob under the model given the prompt."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + list(seq)])
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    target = ids[0, 1:]
    return logp[torch.arange(len(target)), target][len(prompt_ids) - 1 :].double().numpy()


def leaf_open(trie, leaf, excluded_row):
    return excluded_row is None or not excluded_row[trie.item_at(leaf)]


def brute_assist(trie, prefix, probs_row, excluded_row=None):
    """{token: p_assist} after ``prefix`` by looping over items: the mass through a token is the
    (row-scaled) probability of the non-excluded items whose sequence starts with prefix+token,
    leaves whose resolving item is excluded count for nothing and are not allowed."""
    scaled = probs_row / probs_row.sum()
    mass: dict[int, float] = {}
    for leaf, seq in trie.sequences.items():
        if list(seq[: len(prefix)]) != list(prefix) or len(seq) == len(prefix):
            continue
        if not leaf_open(trie, leaf, excluded_row):
            continue
        tok = seq[len(prefix)]
        items = [i for i in trie.items_at(leaf) if excluded_row is None or not excluded_row[i]]
        mass[tok] = mass.get(tok, 0.0) + sum(scaled[i] for i in items)
    total = sum(m + FLOOR for m in mass.values())
    return {t: (m + FLOOR) / total for t, m in mass.items()}


def brute_scores(model, tok, trie, p, lp=0.0, g=1.0, probs=None, excluded=None):
    """Every open title's score: sum over steps of g*logp_LLM + (1-g)*log p_assist, divided by
    (generated tokens) ** lp; sorted best first as (item, score)."""
    row = None if excluded is None else excluded[p]
    scored = []
    for leaf, seq in trie.sequences.items():
        if not leaf_open(trie, leaf, row):
            continue
        llm = teacher_forced(model, tok, PROMPTS[p], seq)
        total = 0.0
        for s, token in enumerate(seq):
            step = g * llm[s]
            if g < 1:
                step += (1 - g) * math.log(brute_assist(trie, seq[:s], probs[p], row)[token])
            total += step
        scored.append((trie.item_at(leaf), total / len(seq) ** lp))
    scored.sort(key=lambda s: -s[1])
    return scored


def assert_same(ours, expected, atol=1e-4):
    assert [i for i, _ in ours] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in expected], atol=atol, rtol=0)


# -- (a) the default call is unchanged ----------------------------------------------------------
def test_default_is_plain_summed_logprob_bit_for_bit(lm, trie):
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    default = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=4, top_k=4)
    explicit = constrained_beam_search(
        model, tok, PROMPTS, trie, num_beams=4, top_k=4, length_penalty=0.0, assistant=None, guidance=1.0
    )
    assert default == explicit
    mean = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=4, top_k=4, length_penalty=1.0)
    assert default != mean  # the switch does something


@pytest.mark.parametrize(
    ("prompt", "num_beams", "length_penalty"),
    [
        (PROMPTS[0], 3, 0.0),
        (PROMPTS[0], 5, 0.0),
        (PROMPTS[0], 3, 1.0),
        (PROMPTS[0], 5, 1.0),
        # the stopping rule decides these two: HF's early_stopping=False bound (current length)
        # stops before the longer "Toy Story 2" (item 4) overtakes "Toy Story" on the mean
        ("Hi", 4, 1.0),
        ("watch", 2, 1.0),
    ],
)
def test_equals_hf_generate_with_length_penalty(lm, trie, prompt, num_beams, length_penalty):
    """HF beam search with length_penalty=lp and early_stopping="never" (the stopping bound the
    search follows); lp=0 is the default call, so this also pins it to HF."""
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    ids = tok(prompt, return_tensors="pt")
    plen = ids["input_ids"].shape[1]
    out = model.generate(
        **ids,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        prefix_allowed_tokens_fn=lambda b, seq: trie.allowed_tokens(seq[plen:].tolist()) or [trie.end_id],
        length_penalty=length_penalty,
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
        if items and score > -1e7:  # off-trie filler beams carry -1e9 (divided by a length)
            hf.append((items[0], score))
    kwargs = {} if length_penalty == 0.0 else {"length_penalty": length_penalty}
    ours = constrained_beam_search(model, tok, [prompt], trie, num_beams=num_beams, top_k=num_beams, **kwargs)[0]
    assert len(hf) == num_beams
    assert_same(ours, hf)
    if prompt != PROMPTS[0]:
        assert 4 in [i for i, _ in ours]


# -- (b) exhaustive search == brute force, sum and mean -----------------------------------------
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_exhaustive_equals_brute_force_sum_and_mean(lm, trie, length_penalty):
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    k = trie.n_sequences
    results = constrained_beam_search(
        model, tok, PROMPTS, trie, num_beams=k, top_k=k, batch_size=2, length_penalty=length_penalty
    )
    for p, res in enumerate(results):
        assert_same(res, brute_scores(model, tok, trie, p, lp=length_penalty))
    if length_penalty:  # the mean reorders: otherwise this test could not tell the two apart
        sums = brute_scores(model, tok, trie, 0)
        assert [i for i, _ in sums] != [i for i, _ in results[0]]


# -- (c) the assistant's token distribution == brute force over items --------------------------
def test_assistant_token_logprobs_equal_brute_force(trie, assistant, exclude):
    from trustrec.models.llm._constrained import assistant_token_logprobs

    def tokens_of(item):
        return next(seq for leaf, seq in trie.sequences.items() if trie.item_at(leaf) == item)

    # the root, "Star" (Wars | Trek), "Star Trek" (end | II), "Toy Story" (end | " 2")
    prefixes = [(), tokens_of(0)[:1], tokens_of(2)[:-2], tokens_of(3)[:-1]]
    assert all(len(trie.allowed[trie.walk(prefix)]) >= 2 for prefix in prefixes)
    for prefix in prefixes:
        node = trie.walk(prefix)
        for p in range(len(PROMPTS)):
            for excl in (None, exclude):
                row = None if excl is None else excl[p : p + 1]
                [(tokens, logp)] = assistant_token_logprobs(trie, [node], assistant[p : p + 1], row)
                expected = brute_assist(trie, prefix, assistant[p], None if excl is None else excl[p])
                assert tokens.tolist() == sorted(expected)
                np.testing.assert_allclose(np.exp(logp), [expected[t] for t in tokens.tolist()], rtol=1e-9)
                if len(tokens):
                    assert math.isclose(np.exp(logp).sum(), 1.0, rel_tol=1e-12)


def test_assistant_token_logprobs_are_batched_per_query(trie, assistant):
    """Several queries at once (different nodes and rows) give each query's own answer; an
    item's exclusion shifts its branch's mass; the scale of a row does not matter."""
    from trustrec.models.llm._constrained import assistant_token_logprobs

    deep = trie.walk(trie.sequences[max(trie.sequences, key=lambda leaf: len(trie.sequences[leaf]))][:2])
    nodes = [0, deep, 0]
    batch = assistant_token_logprobs(trie, nodes, assistant, None)
    for q, node in enumerate(nodes):
        [(tokens, logp)] = assistant_token_logprobs(trie, [node], assistant[q : q + 1] * 1000.0)
        np.testing.assert_array_equal(batch[q][0], tokens)
        np.testing.assert_allclose(batch[q][1], logp, rtol=1e-9)
    leaf = next(iter(trie.sequences))
    assert [len(t) for t, _ in assistant_token_logprobs(trie, [leaf], assistant[:1])] == [0]


# -- (d) guidance < 1, exhaustive == brute force of the mixed scores ----------------------------
@pytest.mark.parametrize(("guidance", "length_penalty"), [(0.5, 0.0), (0.2, 1.0)])
@pytest.mark.parametrize("with_exclude", [False, True])
def test_guided_exhaustive_equals_brute_force(lm, trie, assistant, exclude, guidance, length_penalty, with_exclude):
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    k = trie.n_sequences
    excl = exclude if with_exclude else None
    results = constrained_beam_search(
        model,
        tok,
        PROMPTS,
        trie,
        num_beams=k,
        top_k=k - 3 if with_exclude else k,
        batch_size=2,
        exclude=excl,
        length_penalty=length_penalty,
        assistant=assistant,
        guidance=guidance,
    )
    for p, res in enumerate(results):
        expected = brute_scores(model, tok, trie, p, lp=length_penalty, g=guidance, probs=assistant, excluded=excl)
        assert_same(res, expected[: len(res)])
    plain = constrained_beam_search(model, tok, PROMPTS, trie, num_beams=k, top_k=k)
    assert [i for i, _ in plain[0]] != [i for i, _ in results[0]] or with_exclude  # the assistant moves items


def test_guided_beam_search_is_a_beam_search(lm, trie, assistant):
    """Narrow beams: results are distinct catalog items, sorted, scored as brute force says."""
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    results = constrained_beam_search(
        model, tok, PROMPTS, trie, num_beams=3, top_k=3, assistant=assistant, guidance=0.4, batch_size=3
    )
    for p, res in enumerate(results):
        assert len({i for i, _ in res}) == 3 and [s for _, s in res] == sorted((s for _, s in res), reverse=True)
        truth = dict(brute_scores(model, tok, trie, p, g=0.4, probs=assistant))
        for item, score in res:
            assert score == pytest.approx(truth[item], abs=1e-4)


# -- (e) guidance = 1 is the plain search --------------------------------------------------------
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_guidance_one_equals_no_assistant(lm, trie, assistant, exclude, length_penalty):
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    kwargs = {"num_beams": 4, "top_k": 4, "exclude": exclude, "length_penalty": length_penalty}
    plain = constrained_beam_search(model, tok, PROMPTS, trie, **kwargs)
    assert constrained_beam_search(model, tok, PROMPTS, trie, assistant=assistant, guidance=1.0, **kwargs) == plain
    assert constrained_beam_search(model, tok, PROMPTS, trie, assistant=assistant, guidance=0.5, **kwargs) != plain


def test_backend_passes_the_switches_through(lm, trie, assistant):
    from trustrec.models.llm import LocalBackend
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    backend = LocalBackend.from_model(model, tok)  # the loaded tiny model, no second load
    kwargs = {"num_beams": 3, "top_k": 3, "length_penalty": 1.0, "assistant": assistant, "guidance": 0.3}
    assert backend.constrained_beam_search(PROMPTS, trie, **kwargs) == constrained_beam_search(
        model, tok, PROMPTS, trie, **kwargs
    )


# -- (f) bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"guidance": 0.0}, "guidance"),
        ({"guidance": 1.5}, "guidance"),
        ({"guidance": -0.1}, "guidance"),
        ({"guidance": float("nan")}, "guidance"),
        ({"guidance": "0.5"}, "guidance"),
        ({"length_penalty": float("inf")}, "length_penalty"),
        ({"length_penalty": float("nan")}, "length_penalty"),
        ({"length_penalty": None}, "length_penalty"),
        ({"assistant": np.ones((2, len(TITLES)))}, "assistant"),
        ({"assistant": np.ones((len(PROMPTS), len(TITLES) + 1))}, "assistant"),
        ({"assistant": np.full((len(PROMPTS), len(TITLES)), -0.1)}, "assistant"),
        ({"assistant": np.full((len(PROMPTS), len(TITLES)), np.nan)}, "assistant"),
        ({"assistant": np.full((len(PROMPTS), len(TITLES)), np.inf)}, "assistant"),
        ({"assistant": np.full((len(PROMPTS), len(TITLES)), -1.0), "guidance": 1.0}, "assistant"),
    ],
)
def test_bad_inputs_name_the_argument(lm, trie, kwargs, name):
    from trustrec.models.llm._constrained import constrained_beam_search

    model, tok = lm
    with pytest.raises(ValueError, match=name):
        constrained_beam_search(model, tok, PROMPTS, trie, num_beams=2, top_k=2, **kwargs)


def test_assistant_token_logprobs_bad_inputs(trie, assistant):
    from trustrec.models.llm._constrained import assistant_token_logprobs

    with pytest.raises(ValueError, match="item_probs"):
        assistant_token_logprobs(trie, [0], assistant)  # 3 rows for 1 query
    with pytest.raises(ValueError, match="item_probs"):
        assistant_token_logprobs(trie, [0], -assistant[:1])
    with pytest.raises(ValueError, match="node_ids"):
        assistant_token_logprobs(trie, [trie.n_nodes], assistant[:1])
    with pytest.raises(ValueError, match="exclude"):
        assistant_token_logprobs(trie, [0], assistant[:1], np.zeros((2, len(TITLES)), dtype=bool))
