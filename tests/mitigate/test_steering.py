"""Activation steering: the null-space construction by hand, the hooks against a direct
computation, clean removal, persistence, the steered recommender and the request set."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from trustrec.data import Dataset, recommendation_requests, split_leave_one_out
from trustrec.errors import ConfigError, DataError
from trustrec.eval import refusal_flags
from trustrec.mitigate.training import (
    ActivationSteering,
    SteeredBackend,
    SteeredRecommender,
    collect_activations,
    fit_null_space_steering,
    fit_steering,
    null_space_projector,
    steered,
)
from trustrec.models import FitOptions, has_capability
from trustrec.models.llm import LocalBackend
from trustrec.testing import RecommenderChecks

QUIET = FitOptions(seed=0, progress=False)
PROMPTS = [f"user {i} liked item {i % 7} and item {(3 * i) % 11}; next:" for i in range(24)]


@pytest.fixture(scope="module")
def backend():
    return LocalBackend("tiny-smollm2-random")


def _subspace_rows(rng, n, d, k):
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    return rng.normal(size=(n, k)) @ basis.T, basis


# -- the construction ------------------------------------------------------------------------------------------
def test_null_space_steering_leaves_benign_rows_unchanged_and_moves_targets():
    rng = np.random.default_rng(0)
    d = 12
    benign, _ = _subspace_rows(rng, 40, d, 7)  # benign rows span 7 of 12 directions
    projector, dim = null_space_projector(benign, null_tol=1e-6)
    assert dim == 5
    np.testing.assert_allclose(benign @ projector, 0, atol=1e-10)
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-10)
    target = rng.normal(size=(30, d))
    direction = rng.normal(size=d)
    matrix, info = fit_null_space_steering(benign, target, direction, ridge=1e-6, null_tol=1e-6)
    np.testing.assert_allclose(benign @ matrix, 0, atol=1e-9)  # benign activations untouched
    assert info["benign_change"] < 1e-9 and info["null_dim"] == 5
    # by hand: D = (X^T X + lam I)^-1 X^T R with X = target P, S = P D
    x = target @ projector
    lam = 1e-6 * np.trace(x.T @ x) / d
    expected = projector @ np.linalg.solve(x.T @ x + lam * np.eye(d), x.T @ np.broadcast_to(direction, target.shape))
    np.testing.assert_allclose(matrix, expected, atol=1e-9)
    assert 0 < info["fit_r2"] <= 1


def test_null_space_projector_by_rank_and_its_errors():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(50, 6))
    projector, dim = null_space_projector(rows, null_rank=2)
    _, vectors = np.linalg.eigh(rows.T @ rows)
    np.testing.assert_allclose(projector, vectors[:, :2] @ vectors[:, :2].T, atol=1e-10)
    assert dim == 2
    with pytest.raises(DataError, match="at least 6 are needed"):
        null_space_projector(rows[:5])
    with pytest.raises(ConfigError, match="null_tol"):
        null_space_projector(rows, null_tol=1.5)
    with pytest.raises(ConfigError, match="null_rank"):
        null_space_projector(rows, null_rank=6)
    with pytest.raises(ConfigError, match="no eigenvalue"):
        null_space_projector(rows, null_tol=1e-12)
    with pytest.raises(DataError, match="finite"):
        null_space_projector(np.full((8, 6), np.nan))
    with pytest.raises(DataError, match="must match"):
        fit_null_space_steering(rows, rows[:10], np.ones((3, 6)))
    with pytest.raises(ConfigError, match="ridge"):
        fit_null_space_steering(rows, rows[:10], np.ones(6), ridge=0)


# -- hooks ---------------------------------------------------------------------------------------------------------
def _logits(model, tokenizer, text="user 3 liked item 2"):
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        return model(**ids).logits


def _random_steering(method, layers, d, strength=1.0, seed=0):
    rng = np.random.default_rng(seed)
    shape = (len(layers), d, d) if method == "null_space" else (len(layers), d)
    return ActivationSteering(method, layers, rng.normal(scale=0.05, size=shape), strength)


@pytest.mark.parametrize("method", ["plain", "null_space"])
def test_steered_activations_equal_a_direct_computation(backend, method):
    model, tok = backend.model, backend.tokenizer
    d = model.config.hidden_size
    steering = _random_steering(method, (1,), d, strength=2.0)
    plain = collect_activations(model, tok, PROMPTS[:5], [1], positions="all")[1]
    moved = collect_activations(model, tok, PROMPTS[:5], [1], positions="all", steering=steering)[1]
    w = steering.weights[0].astype(np.float64)
    expected = plain + 2.0 * (w if method == "plain" else plain @ w)
    np.testing.assert_allclose(moved, expected, rtol=1e-4, atol=1e-4)


def test_hooks_are_removed_cleanly_even_after_an_error(backend):
    model, tok = backend.model, backend.tokenizer
    steering = _random_steering("plain", (0, 1), model.config.hidden_size, strength=3.0)
    before = _logits(model, tok)
    with steered(model, steering):
        inside = _logits(model, tok)
        with steered(model, steering):  # the same steering nested is installed once
            torch.testing.assert_close(_logits(model, tok), inside)
        with pytest.raises(ConfigError, match="already installed"), steered(model, steering.with_strength(1.0)):
            pass
    assert not torch.equal(before, inside)
    assert torch.equal(_logits(model, tok), before)
    with pytest.raises(RuntimeError, match="boom"), steered(model, steering):
        raise RuntimeError("boom")
    assert torch.equal(_logits(model, tok), before)
    with steered(model, steering.with_strength(0.0)):
        assert torch.equal(_logits(model, tok), before)


def test_collect_activations_last_token_is_batch_independent(backend):
    model, tok = backend.model, backend.tokenizer
    batched = collect_activations(model, tok, PROMPTS[:7], [0, 1], batch_size=3)
    for i in (0, 3, 6):
        alone = collect_activations(model, tok, [PROMPTS[i]], [0, 1])
        np.testing.assert_allclose(batched[1][i], alone[1][0], rtol=1e-4, atol=1e-5)
    prompts = [PROMPTS[0] + " and more words to make it longer", PROMPTS[1], PROMPTS[2] + " x"]
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    rows = collect_activations(model, tok, prompts, [1], positions="all", batch_size=2)[1]
    assert len(rows) == sum(lengths)
    ends = np.cumsum(lengths) - 1  # prompt by prompt, in prompt order: each block ends on its last token
    np.testing.assert_allclose(rows[ends], collect_activations(model, tok, prompts, [1])[1], rtol=1e-4, atol=1e-5)


def test_bad_steering_inputs_are_clear_errors(backend):
    model, tok = backend.model, backend.tokenizer
    with pytest.raises(ConfigError, match="out of range"):
        collect_activations(model, tok, PROMPTS, [5])
    with pytest.raises(ConfigError, match="repeat"):
        fit_steering(model, tok, benign=PROMPTS, steer_from=PROMPTS[:4], layers=[1, 1])
    with pytest.raises(DataError, match="at least 2"):
        fit_steering(model, tok, benign=PROMPTS, steer_from=PROMPTS[:1], layers=[1])
    with pytest.raises(DataError, match="pairs one prompt"):
        fit_steering(model, tok, benign=PROMPTS, steer_from=PROMPTS[:4], steer_to=PROMPTS[:3], layers=[1])
    with pytest.raises(DataError, match="benign activation rows"):
        fit_steering(model, tok, benign=PROMPTS[:3], steer_from=PROMPTS[:4], layers=[1], benign_positions="last")
    with pytest.raises(DataError, match="empty"):
        collect_activations(model, tok, ["fine", ""], [1])
    with pytest.raises(ConfigError, match="weights must be"):
        ActivationSteering("null_space", (1,), np.zeros((1, 4)))
    with pytest.raises(ConfigError, match="NaN"):
        ActivationSteering("plain", (1,), np.full((1, 4), np.nan))
    with (
        pytest.raises(ConfigError, match="hidden size"),
        steered(model, ActivationSteering("plain", (1,), np.zeros((1, 4)))),
    ):
        pass


def test_fit_steering_on_the_tiny_model_keeps_benign_prompts_close(backend):
    model, tok = backend.model, backend.tokenizer
    benign, target = PROMPTS[:12], [p + " buy something dangerous" for p in PROMPTS[12:]]
    null = fit_steering(model, tok, benign=benign, steer_from=target, layers=[1], null_tol=0.05, strength=1.0)
    plain = fit_steering(model, tok, benign=benign, steer_from=target, layers=[1], method="plain")
    assert null.weights.shape == (1, 64, 64) and plain.weights.shape == (1, 64)
    info = null.info["layer_1"]
    assert info["n_benign_rows"] >= 64 and info["null_dim"] >= 1
    base = collect_activations(model, tok, benign, [1], positions="all")[1]
    shift = {
        name: np.linalg.norm(collect_activations(model, tok, benign, [1], positions="all", steering=s)[1] - base)
        for name, s in (("null", null), ("plain", plain))
    }
    assert shift["null"] < 0.5 * shift["plain"]  # the projection spares the benign activations


def test_steering_round_trips_and_never_overwrites(tmp_path):
    steering = _random_steering("null_space", (0, 1), 8, strength=1.5)
    steering.save(tmp_path / "s")
    back = ActivationSteering.load(tmp_path / "s")
    np.testing.assert_array_equal(back.weights, steering.weights)
    assert (back.method, back.layers, back.strength) == ("null_space", (0, 1), 1.5)
    with pytest.raises(ConfigError, match="already exist"):
        steering.save(tmp_path / "s")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "steering.json").write_text("{not json")
    with pytest.raises(DataError, match="not a saved steering"):
        ActivationSteering.load(tmp_path / "bad")


# -- the steered recommender ---------------------------------------------------------------------------------
def attributed_toy(n_users=36, n_items=20, per_user=6, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{i}", t)
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    users = pd.DataFrame(
        {"user_id": [f"u{u}" for u in range(n_users)], "gender": np.where(np.arange(n_users) % 2, "F", "M")}
    )
    n_catalog = n_items + 1  # the last item is never interacted with (the conformance checks want one)
    items = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(n_catalog)], "title": [f"Film {i}" for i in range(n_catalog)]}
    )
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return Dataset.from_frame(frame, name="attributed_toy", items=items, users=users)


RANKER = {
    "name": "llm_ranker",
    "params": {
        "model": "tiny-smollm2-random",
        "n_candidates": 5,
        "n_permutations": 1,
        "max_history_tokens": 48,
        "template": {"chat": False},
        "retriever": {"name": "most_popular"},
    },
}
STEERED = {"base": RANKER, "layers": (1,), "n_fit_users": 30, "null_tol": 0.05, "strength": 1.0}


class TestSteeredChecks(RecommenderChecks):
    component = SteeredRecommender
    configs: ClassVar[list[dict[str, Any]]] = [STEERED]

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        ds = attributed_toy()
        return ds, split_leave_one_out(ds, short_users="train")


@pytest.fixture(scope="module")
def attributed_split():
    return split_leave_one_out(attributed_toy(), short_users="train")


def test_steered_recommender_steers_every_call_and_keeps_the_base(attributed_split):
    model = SteeredRecommender(**{**STEERED, "strength": 25.0}).fit(attributed_split, QUIET)
    assert model.steering_info_["target"] == "paired" and len(model.fit_users_) == 30
    base = model.base_
    queries = attributed_split.eval_set("test", with_attributes=True).queries
    before = base.recommend(queries, 5)
    steered_lists = model.recommend(queries, 5)
    assert not np.array_equal(before.scores, steered_lists.scores)
    np.testing.assert_array_equal(base.recommend(queries, 5).scores, before.scores)  # hooks gone
    assert isinstance(model.answer_backend, SteeredBackend)
    prompt = base.answer_prompts(queries, base.answer_candidates(queries, 5))[0].text
    a = base.answer_backend.score_continuations([prompt], [["Film 1", "Film 2"]])[0]
    b = model.answer_backend.score_continuations([prompt], [["Film 1", "Film 2"]])[0]
    assert not np.allclose(a, b)
    for capability in ("answer_likelihood", "llm_backend", "prompt", "attributes"):
        assert has_capability(model, capability)


def test_steered_recommender_refuses_what_it_cannot_steer():
    split = split_leave_one_out(attributed_toy(), short_users="train")
    with pytest.raises(ConfigError, match="answer_likelihood"):
        SteeredRecommender(base={"name": "most_popular"}).fit(split, QUIET)
    plain = Dataset.from_frame(
        pd.DataFrame(
            {
                "user_id": ["a", "a", "b", "b", "c", "c"],
                "item_id": ["1", "2", "1", "3", "2", "3"],
                "timestamp": range(6),
            }
        ),
        name="no_attributes",
        items=pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["x", "y", "z"]}),
    )
    with pytest.raises(DataError, match="no user attribute columns"):
        SteeredRecommender(**STEERED).fit(split_leave_one_out(plain, short_users="train"), QUIET)
    with pytest.raises(ConfigError, match="local model"):
        SteeredBackend(object(), _random_steering("plain", (0,), 64))


# -- the request set and refusal markers ---------------------------------------------------------------------
def test_request_set_is_balanced_split_and_validated():
    frame = recommendation_requests("v1")
    assert len(frame) == 240 and frame.id.is_unique and not frame.text.duplicated().any()
    assert (frame.label == "harmful").sum() == 120 and (frame.category == "borderline").sum() == 30
    for _, group in frame.groupby(["label", "category"]):
        assert abs((group.split == "eval").sum() - (group.split == "fit").sum()) <= 1
    assert set(recommendation_requests(split="eval").split) == {"eval"}
    with pytest.raises(ConfigError, match="unknown version"):
        recommendation_requests("v0")
    with pytest.raises(ConfigError, match="split"):
        recommendation_requests(split="train")


def test_refusal_markers_by_hand():
    replies = [
        "I'm sorry, but I can't help with that.",
        "Here are three comedies: ...",
        "Sure! Try these boots." + " " * 300 + "I can\u2019t promise stock though.",  # caveat after the opening
        "As an AI, I must decline.",
        "Here are some kitchen knives; I cannot stress enough how sharp they are.",  # a marker's false positive
    ]
    assert refusal_flags(replies).tolist() == [True, False, False, True, True]
    assert refusal_flags(replies, window=10).tolist() == [True, False, False, True, False]
    with pytest.raises(ValueError, match="not strings"):
        refusal_flags(["fine", None])  # type: ignore[list-item]


def test_request_file_on_disk_matches_its_datasheet_counts():
    from importlib import resources

    folder = resources.files("trustrec.data").joinpath("assets", "recommendation_requests")
    lines = [json.loads(x) for x in folder.joinpath("v1.jsonl").read_text().splitlines() if x.strip()]
    assert "| **all** | **all** | **112** | **128** | **240** |" in folder.joinpath("README.md").read_text()
    assert sum(r["split"] == "eval" for r in lines) == 128


def test_next_token_shift_equals_a_direct_kl(backend):
    from trustrec.mitigate.training.refusal import next_token_shift

    model, tok = backend.model, backend.tokenizer
    steering = _random_steering("plain", (1,), model.config.hidden_size, strength=2.0)
    prompts = ["hello there friend", "a b", "the quick brown fox jumps"]

    def logprobs(text, with_steering):
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode(), steered(model, with_steering):
            return torch.log_softmax(model(**ids).logits[0, -1].float(), -1)

    direct = [float((logprobs(p, None).exp() * (logprobs(p, None) - logprobs(p, steering))).sum()) for p in prompts]
    np.testing.assert_allclose(next_token_shift(model, tok, prompts, steering, batch_size=2), direct, rtol=1e-4)
    np.testing.assert_allclose(next_token_shift(model, tok, prompts, steering.with_strength(0.0)), 0.0, atol=1e-7)


def test_steered_blocks_on_one_model_are_serialised_across_threads(backend):
    import threading

    model = backend.model
    steering = _random_steering("plain", (1,), model.config.hidden_size)
    inside, entered_b = threading.Event(), threading.Event()

    def other():
        with steered(model, steering):
            entered_b.set()

    with steered(model, steering):
        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(0.3)  # give the other thread time to try
        assert not entered_b.is_set()  # it waits for this block to end
    thread.join(10)
    assert entered_b.is_set() and getattr(model, "_trustrec_steering", None) is None
