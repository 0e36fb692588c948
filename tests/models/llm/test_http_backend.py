"""OpenAIBackend against a real local server process (tests/models/llm/llm_test_server.py under uvicorn)."""

import time

import numpy as np
import pytest

from tests.models.llm.conftest import free_port
from trustrec.errors import ConfigError, TrustrecError
from trustrec.models.llm import EndpointError, LLMBackend, LocalBackend, OpenAIBackend

pytest.importorskip("torch")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

MODEL = "tiny-smollm2-random"
PROMPTS = ["The user watched Heat, Alien and", "Hi", "A much longer prompt about movies: Toy Story (1995)," * 3]
CONTS = [[" Casino", " Toy Story (1995)", " a"], [" there", " friend of mine"], [" Fargo", " the end"]]


@pytest.fixture(scope="module")
def server(llm_server):
    return llm_server


@pytest.fixture(scope="module")
def local(tiny_checkpoint):
    return LocalBackend(str(tiny_checkpoint), batch_size=8)


def _http(url, model=MODEL, **kwargs):
    kwargs = {"timeout_s": 30.0, "max_retries": 0, "backoff_s": 0.01, **kwargs}
    return OpenAIBackend(url, model=model, **kwargs)


def test_config_and_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    b = OpenAIBackend("http://localhost:8000/v1/", model="m")
    assert isinstance(b, LLMBackend)
    assert b.completions_url == "http://localhost:8000/v1/completions"
    assert b.config.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(b) and "timeout_s" in repr(b)
    monkeypatch.delenv("OPENAI_API_KEY")
    assert OpenAIBackend("http://h", model="m").config.api_key.get_secret_value() == ""
    with pytest.raises(ConfigError, match="max_retries"):
        OpenAIBackend("http://h", model="m", max_retries=-1)
    with pytest.raises(ConfigError, match="timout_s"):
        OpenAIBackend("http://h", model="m", timout_s=1)
    with pytest.raises(ConfigError, match="http://"):
        OpenAIBackend("localhost:8000", model="m")
    with pytest.raises(ConfigError, match="either"):
        OpenAIBackend("http://h", config={"base_url": "http://h", "model": "m"})
    assert b.generate([], 3) == [] and b.score_continuations([], []) == []  # no request made


def test_generation_equals_local_greedy(server, local):
    prompts = ["The user watched Heat, Alien and", "Hi", "", "Movies: Toy Story (1995), Fargo (1996),"]
    expected = local.generate(prompts, 12)
    with _http(server, batch_size=3) as b:
        assert b.generate(prompts, 12) == expected
        assert b.generate(prompts, 12, stop=["e"]) == local.generate(prompts, 12, stop=["e"])


def test_sampled_generation_is_forwarded(server, local):
    with _http(server) as b:
        got = b.generate(["Hi", "The user"], 8, temperature=0.9, top_p=0.8, seed=7)
    assert got == local.generate(["Hi", "The user"], 8, temperature=0.9, top_p=0.8, seed=7)


def test_scoring_equals_local(server, local):
    expected_sums, expected_counts = local.score_continuations_detailed(PROMPTS, CONTS)
    with _http(server, batch_size=2) as b:
        sums, counts = b.score_continuations_detailed(PROMPTS, CONTS)
        means = b.score_continuations(PROMPTS, CONTS, reduction="mean")
    for s, c, es, ec, m in zip(sums, counts, expected_sums, expected_counts, means):
        np.testing.assert_allclose(s, es, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(c, ec)
        np.testing.assert_allclose(m, es / ec, atol=1e-4, rtol=0)


def test_choices_are_matched_by_index(server, local):
    prompts = ["Hi", "The user watched", "Fargo"]
    with _http(server, model="reversed") as b:
        assert b.generate(prompts, 6) == local.generate(prompts, 6)
        sums = b.score_continuations(prompts, [[" a"], [" Heat"], [" is"]])
    expected = local.score_continuations(prompts, [[" a"], [" Heat"], [" is"]])
    np.testing.assert_allclose(np.concatenate(sums), np.concatenate(expected), atol=1e-4)


def test_retries_after_transient_errors(server, local):
    with _http(server, model="flaky:2:gen", max_retries=2) as b:
        assert b.generate(["Hi"], 5) == local.generate(["Hi"], 5)
    with _http(server, model="ratelimit:1:rl", max_retries=1) as b:
        assert b.generate(["Hi"], 5) == local.generate(["Hi"], 5)
    with (
        _http(server, model="flaky:3:few", max_retries=2) as b,  # 3 failures > 2 retries
        pytest.raises(EndpointError, match=r"after 3 attempt\(s\).*HTTP 500"),
    ):
        b.generate(["Hi"], 5)


def test_no_retry_on_client_error(server):
    with _http(server, model="badrequest", max_retries=5, backoff_s=2.0) as b:
        start = time.monotonic()
        with pytest.raises(EndpointError, match="HTTP 400") as info:
            b.generate(["Hi"], 5)
    assert time.monotonic() - start < 1.5
    assert server in str(info.value) and "max_tokens is too large" in str(info.value)


def test_timeout_names_the_url(server):
    with (
        _http(server, model="slow:3", timeout_s=0.5, max_retries=1) as b,
        pytest.raises(EndpointError, match=r"timeout_s=0.5") as info,
    ):
        b.generate(["Hi"], 2)
    assert b.completions_url in str(info.value) and "2 attempt" in str(info.value)


def test_down_endpoint_fails_fast():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with _http(url, max_retries=2) as b, pytest.raises(EndpointError, match="server is running") as info:
        b.generate(["Hi"], 2)
    assert time.monotonic() - start < 5
    assert f"{url}/v1/completions" in str(info.value)
    assert isinstance(info.value, TrustrecError)


@pytest.mark.parametrize(
    "mode, message", [("garbage", "not JSON"), ("nochoices", "no 'choices'"), ("fewchoices", "2 choices for 3 prompts")]
)
def test_garbage_responses(server, mode, message):
    with _http(server, model=mode) as b:
        with pytest.raises(EndpointError, match=message):
            b.generate(["a", "b", "c"], 2)
        with pytest.raises(EndpointError, match=message):
            b.score_continuations(["a", "b", "c"], [[" x"], [" y"], [" z"]])


def test_scoring_needs_echo_logprobs(server):
    with _http(server, model="noecho") as b:
        assert len(b.generate(["Hi"], 2)) == 1  # generation still works
        with pytest.raises(EndpointError, match=r"echo=true with logprobs.*vLLM"):
            b.score_continuations(["Hi"], [[" there"]])


def test_scoring_errors_on_merged_boundary_and_empty_prompt(server):
    with _http(server) as b:
        with pytest.raises(EndpointError, match="merged"):
            b.score_continuations(["The user watched Hea"], [["t"]])  # "Heat" is one token
        with pytest.raises(EndpointError, match="non-empty prompt"):
            b.score_continuations([""], [[" Heat"]])


def test_concurrent_requests_keep_the_order_of_the_prompts(server, local):
    """max_concurrency sends several batches at once (the server sees them overlap) and the
    answers come back in the prompts' order, equal to one batch after another."""
    prompts = [f"{p} ({i})" for i in range(3) for p in PROMPTS]
    answers = {}
    for concurrency in (1, 4):
        slow = f"slow:0.3:concurrency-{concurrency}"  # waits before answering, so concurrent requests overlap
        backend = _http(server, model=slow, batch_size=2, max_concurrency=concurrency)
        generated = backend.generate(prompts, max_new_tokens=4)
        sums, counts = backend.score_continuations_detailed(PROMPTS, CONTS)
        answers[concurrency] = (generated, np.concatenate(sums), np.concatenate(counts))
        in_flight = httpx.get(f"{server}/stats", params={"key": slow}, timeout=10).json()["max_inflight"]
        assert in_flight == 1 if concurrency == 1 else 2 <= in_flight <= concurrency
    assert answers[1][0] == answers[4][0] == local.generate(prompts, max_new_tokens=4)
    np.testing.assert_array_equal(answers[1][1], answers[4][1])
    np.testing.assert_array_equal(answers[1][2], answers[4][2])
    with pytest.raises(ConfigError, match="max_concurrency"):
        OpenAIBackend("http://localhost:8000", model="m", max_concurrency=0)
