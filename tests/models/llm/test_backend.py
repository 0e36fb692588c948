"""LocalBackend on the tiny random model: batched == unbatched, padding, truncation, errors."""

import numpy as np
import pytest

from trustrec.errors import ConfigError
from trustrec.models.llm import ContextLengthError, LLMBackend, LocalBackend

pytest.importorskip("torch")

PROMPTS = ["The user watched Heat, Alien and", "Hi", "A much longer prompt about movies: Toy Story (1995), " * 3]
CONTS = [[" Casino", " Toy Story (1995)", " a"], [" there", " friend of mine"], [" Fargo", " {braces} ünïcode"]]


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    b = LocalBackend(str(tiny_checkpoint), batch_size=4)
    _ = b.model  # load once for the module
    return b


def _reference_logprob(backend, prompt, cont):
    """One pair at a time, no padding: the plain definition."""
    import torch

    tok, model = backend.tokenizer, backend.model
    p = tok(prompt, add_special_tokens=False)["input_ids"] or [tok.bos_token_id]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return sum(float(lp[len(p) - 1 + t, c[t]]) for t in range(len(c))), len(c)


def test_is_a_backend_and_lazy(tiny_checkpoint):
    b = LocalBackend(str(tiny_checkpoint))
    assert isinstance(b, LLMBackend)
    assert not b.is_loaded
    assert b.score_continuations([], []) == []
    assert b.generate([], 5) == []
    assert not b.is_loaded
    assert "batch_size" in repr(b)


def test_config_errors(tiny_checkpoint):
    with pytest.raises(ConfigError, match="batch_size"):
        LocalBackend(str(tiny_checkpoint), batch_size=0)
    with pytest.raises(ConfigError, match="btach_size"):
        LocalBackend(str(tiny_checkpoint), btach_size=2)
    with pytest.raises(ConfigError, match="either"):
        LocalBackend(str(tiny_checkpoint), config={"model_name_or_path": "x"})
    b = LocalBackend(config={"model_name_or_path": str(tiny_checkpoint), "batch_size": 3})
    assert b.config.batch_size == 3


def test_batched_scoring_equals_unbatched(backend):
    sums, counts = backend.score_continuations_detailed(PROMPTS, CONTS)
    for i, (p, conts) in enumerate(zip(PROMPTS, CONTS)):
        assert sums[i].shape == (len(conts),) and counts[i].dtype == np.int64
        for j, c in enumerate(conts):
            ref, n = _reference_logprob(backend, p, c)
            assert counts[i][j] == n
            assert sums[i][j] == pytest.approx(ref, abs=1e-4)
            single = backend.score_continuations([p], [[c]])[0][0]
            assert single == pytest.approx(ref, abs=1e-4)
    means = backend.score_continuations(PROMPTS, CONTS, reduction="mean")
    for s, c, m in zip(sums, counts, means):
        np.testing.assert_allclose(m, s / c)
    assert all((s < 0).all() for s in sums)


def test_batch_size_does_not_change_scores(tiny_checkpoint, backend):
    one = LocalBackend(str(tiny_checkpoint), batch_size=1)
    one._model, one._tokenizer = backend.model, backend.tokenizer
    for a, b in zip(one.score_continuations(PROMPTS, CONTS), backend.score_continuations(PROMPTS, CONTS)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_scoring_edge_cases(backend):
    sums, counts = backend.score_continuations_detailed(["Hi", "Yo"], [["", " there"], []])
    assert sums[0][0] == 0.0 and counts[0][0] == 0
    assert counts[0][1] > 0 and sums[1].shape == (0,)
    assert backend.score_continuations(["Hi"], [[""]], reduction="mean")[0][0] == 0.0
    # an empty prompt is conditioned on BOS
    ref, _ = _reference_logprob(backend, "", "hello")
    assert backend.score_continuations([""], [["hello"]])[0][0] == pytest.approx(ref, abs=1e-4)
    with pytest.raises(ValueError, match="2 prompts but 1"):
        backend.score_continuations(["a", "b"], [["x"]])
    with pytest.raises(TypeError, match="one string"):
        backend.score_continuations("a", [["x"]])
    with pytest.raises(ConfigError, match="reduction"):
        backend.score_continuations(["a"], [["x"]], reduction="max")


def test_truncation_left_and_error(tiny_checkpoint, backend):
    left = LocalBackend(str(tiny_checkpoint), max_length=8)
    strict = LocalBackend(str(tiny_checkpoint), max_length=8, truncation="error")
    for b in (left, strict):
        b._model, b._tokenizer = backend.model, backend.tokenizer
    tok = backend.tokenizer
    prompt = "one two three four five six seven eight nine ten"
    cont = " eleven"
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    n_c = len(tok(cont, add_special_tokens=False)["input_ids"])
    kept = tok.decode(p_ids[len(p_ids) - (8 - n_c) :])
    expected = backend.score_continuations([kept], [[cont]])[0][0]
    assert left.score_continuations([prompt], [[cont]])[0][0] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ContextLengthError, match="max_length=8"):
        strict.score_continuations([prompt], [[cont]])
    with pytest.raises(ContextLengthError, match="continuation"):  # never dropped silently
        left.score_continuations(["a"], [[" " + prompt]])
    assert len(left.generate([prompt], 3)) == 1
    with pytest.raises(ContextLengthError, match="prompts\\[0\\]"):
        strict.generate([prompt], 3)


def test_batched_greedy_equals_unbatched(backend):
    prompts = ["Hello", "The user watched Heat, Alien and Casino. Next:", "x"]
    batched = backend.generate(prompts, 6)
    single = [backend.generate([p], 6)[0] for p in prompts]
    assert batched == single
    assert all(isinstance(t, str) for t in batched)
    assert backend.generate(prompts, 6) == batched


def test_generation_left_pads(backend, monkeypatch):
    seen = {}
    original = backend.model.generate

    def spy(*args, **kwargs):
        seen["mask"] = kwargs["attention_mask"].clone()
        return original(*args, **kwargs)

    monkeypatch.setattr(backend.model, "generate", spy)
    backend.generate(["Hello", "a longer prompt with many words"], 2)
    mask = seen["mask"]
    assert (mask[:, -1] == 1).all()  # every prompt ends at the last column
    assert mask[0, 0] == 0  # the short one is padded on the left


def test_sampling_is_seeded_and_stop_strings(backend):
    a = backend.generate(["Hello", "World"], 8, temperature=1.0, top_p=0.9, seed=3)
    b = backend.generate(["Hello", "World"], 8, temperature=1.0, top_p=0.9, seed=3)
    c = backend.generate(["Hello", "World"], 8, temperature=1.0, top_p=0.9, seed=4)
    assert a == b and a != c
    full = backend.generate(["Hello"], 8)[0]
    assert len(full) > 1
    stop = full[1:3]
    assert backend.generate(["Hello"], 8, stop=[stop])[0] == full[: full.find(stop)]
    with pytest.raises(ConfigError, match="max_new_tokens"):
        backend.generate(["a"], 0)
    with pytest.raises(ConfigError, match="top_p"):
        backend.generate(["a"], 2, top_p=0)
    with pytest.raises(ConfigError, match="temperature"):
        backend.generate(["a"], 2, temperature=-1)


def test_chat_template(backend):
    text = backend.apply_chat_template([{"role": "user", "content": "Recommend {a} movie"}])
    assert "Recommend {a} movie" in text and text.rstrip().endswith("assistant")


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_prefix_cache_equals_full_reads(tiny_checkpoint, backend, batch_size):
    """One prompt run once with its KV cache copied per batch == every pair read in full, also
    when a prompt's continuations span several batches and differ in length."""
    prompts = [PROMPTS[2], PROMPTS[0], PROMPTS[2]]
    conts = [
        [" Fargo", " Heat", " The Lord of the Rings: The Return of the King (2003)", " a", " ü"],
        [" Casino"],
        [" x y z", " Fargo"],
    ]
    scores = {}
    for cached in (True, False):
        b = LocalBackend(str(tiny_checkpoint), batch_size=batch_size, prefix_cache=cached)
        b._model, b._tokenizer = backend.model, backend.tokenizer
        scores[cached] = b.score_continuations_detailed(prompts, conts)
    for a, b in zip(scores[True][0], scores[False][0]):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for a, b in zip(scores[True][1], scores[False][1]):
        np.testing.assert_array_equal(a, b)
    ref, _ = _reference_logprob(backend, prompts[0], conts[0][2])
    assert scores[True][0][0][2] == pytest.approx(ref, abs=1e-4)


def test_shared_stems_group_prompts_by_their_common_prefix():
    from trustrec.models.llm._backend import _shared_stems

    a, b, c = (1, 2, 3, 4, 5, 6), (1, 2, 3, 4, 9), (1, 2, 3, 4, 5, 7, 8)
    other = (7, 7, 7, 7)
    groups = {tuple(m): s for s, m in _shared_stems([a, other, b, c], min_stem=3)}
    assert groups == {(a, c, b): 4, (other,): 0}  # sorted: a < c < b
    # a stem never swallows a whole context: each keeps the token that predicts its continuations
    assert _shared_stems([(1, 2, 3), (1, 2, 3, 4)], min_stem=1) == [(2, [(1, 2, 3), (1, 2, 3, 4)])]
    # a shorter stem is not worth it when it saves fewer tokens than the group already does
    long_pair = [(1,) * 10 + (2,), (1,) * 10 + (3,)]
    assert [s for s, _ in _shared_stems([*long_pair, (1, 5)], min_stem=1)] == [10, 0]
    assert [len(m) for _, m in _shared_stems([(1, 2), (3, 4)], min_stem=1)] == [1, 1]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_shared_stems_equal_full_reads(tiny_checkpoint, backend, batch_size):
    """Prompts that share a long stem (one history, several candidate orders; histories edited at
    different positions) score as if each was read in full, single continuations included."""
    stem = "The user watched Heat, Alien, Fargo, Casino and Toy Story. Candidates: "
    prompts = [stem + "Heat, Alien", stem + "Alien, Heat", stem + "Alien, Heat", stem + "Fargo", "Hi", stem]
    conts = [[" Fargo", " Heat (1995)"], [" x"], [" Casino", " a b c"], [" Fargo"], [" there"], [" Alien"]]
    scores = {}
    for cached, min_stem in ((True, 1), (True, 10_000), (False, 1)):
        b = LocalBackend(str(tiny_checkpoint), batch_size=batch_size, prefix_cache=cached, min_shared_prefix=min_stem)
        b._model, b._tokenizer = backend.model, backend.tokenizer
        scores[cached, min_stem] = b.score_continuations(prompts, conts, reduction="sum")
    for key in ((True, 10_000), (False, 1)):
        for x, y in zip(scores[True, 1], scores[key]):
            np.testing.assert_allclose(x, y, atol=1e-4)


@pytest.mark.parametrize("num_beams", [2, 3])
def test_beam_search_scores_equal_hf_sequence_scores(backend, num_beams):
    """beam_search reads each sequence's summed log-probability from the recorded step
    candidates: equal to HF's own ``sequences_scores`` (kept with ``output_scores``)."""
    import torch

    tok, model = backend.tokenizer, backend.model
    rows = backend.beam_search(PROMPTS, num_beams, 6, batch_size=2)
    assert [len(r) for r in rows] == [num_beams] * len(PROMPTS)
    tok.padding_side = "left"
    try:
        enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=True)
    finally:
        tok.padding_side = "right"
    with torch.inference_mode():
        out = model.generate(
            **enc,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            do_sample=False,
            max_new_tokens=6,
            length_penalty=0.0,
            early_stopping="never",
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
    hf = out.sequences_scores.float().numpy().reshape(len(PROMPTS), num_beams)
    ours = np.array([[score for _, score in row] for row in rows])
    np.testing.assert_allclose(ours, np.sort(hf, axis=1)[:, ::-1], rtol=1e-4, atol=1e-4)


def test_beam_step_recorder_refuses_an_unrecorded_token():
    import torch

    from trustrec.models.llm._backend import BeamStepRecorder

    recorder = BeamStepRecorder(prompt_length=2, num_beams=1)
    recorder(torch.tensor([[5, 6]]), torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), -1))
    recorder(torch.tensor([[5, 6, 3]]), torch.log_softmax(torch.tensor([[3.0, 0.0, 0.0, 0.0]]), -1))
    scores = recorder.sequence_scores(torch.tensor([[3, 0]]), eos_id=0, pad_id=0)
    lp1 = torch.log_softmax(torch.tensor([0.0, 1.0, 2.0, 3.0]), -1)[3]
    lp2 = torch.log_softmax(torch.tensor([3.0, 0.0, 0.0, 0.0]), -1)[0]
    assert scores[0] == pytest.approx(float(lp1 + lp2), abs=1e-6)
    with pytest.raises(RuntimeError, match="not among the recorded"):
        recorder.sequence_scores(torch.tensor([[0, 0]]), eos_id=1, pad_id=1)
