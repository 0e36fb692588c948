"""LLMs trustrec did not train, served by an OpenAI-compatible endpoint (the local test server,
tests/models/llm/llm_test_server.py, as a real process): ``llm_ranker`` with ``base_url``,
``api_key_env`` and ``max_concurrency``, and ``external_generative`` end to end, through the
audits and the ``trustrec audit --model`` YAML path; bad endpoints and keys are clear errors."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

pytest.importorskip("transformers")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.models.llm.conftest import free_port
from trustrec.audit import audit_class
from trustrec.data import split_leave_one_out
from trustrec.errors import ConfigError, DataWarning
from trustrec.models import ExternalGenerative, FitOptions, Recommender
from trustrec.models.llm import EndpointError, LLMRanker
from trustrec.testing import RecommenderChecks, toy_dataset

OPTS = FitOptions(seed=0, progress=False)
MODEL = "tiny-smollm2-random"
RANKER = {
    "model": MODEL,
    "retriever": {"name": "most_popular"},
    "n_candidates": 4,
    "n_permutations": 2,
    "max_history_tokens": None,
    "max_history_items": 3,
    "template": {"chat": False},
    "timeout_s": 30.0,
}
GENERATIVE = {"model": MODEL, "n_samples": 3, "max_new_tokens": 6, "max_retries": 0, "timeout_s": 30.0}


@pytest.fixture(scope="module")
def split():
    return split_leave_one_out(toy_dataset(), short_users="train")


@pytest.fixture(scope="module")
def generative(split, llm_server):
    return ExternalGenerative(base_url=llm_server, **GENERATIVE).fit(split, OPTS)


@contextlib.contextmanager
def capture_server():
    """A server that records each request's Authorization header and answers HTTP 401."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.headers.get("Authorization"))
            body = b'{"error": {"message": "invalid key"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


# -- (a) llm_ranker: api_key_env and max_concurrency ------------------------------------------------
def test_ranker_endpoint_settings_need_base_url_and_a_set_variable(split, monkeypatch):
    for setting in ({"api_key_env": "MY_KEY"}, {"max_concurrency": 2}):
        with pytest.raises(ConfigError, match=f"{next(iter(setting))} applies to an OpenAI-compatible endpoint"):
            LLMRanker(**{**RANKER, **setting})
    with pytest.raises(ConfigError, match="api_key_env"):
        LLMRanker(**RANKER, base_url="http://127.0.0.1:9", api_key_env="not a name")
    monkeypatch.delenv("TRUSTREC_TEST_UNSET_KEY", raising=False)
    ranker = LLMRanker(**RANKER, base_url="http://127.0.0.1:9", api_key_env="TRUSTREC_TEST_UNSET_KEY")
    with pytest.raises(ConfigError, match="'TRUSTREC_TEST_UNSET_KEY', but it is not set"):
        ranker.fit(split, OPTS)  # before any request


def test_ranker_concurrency_keeps_the_scores_and_the_key_is_never_saved(split, llm_server, monkeypatch, tmp_path):
    monkeypatch.setenv("TRUSTREC_TEST_KEY", "sk-test-secret")
    q = split.eval_set("test").queries[:6]
    endpoint = {**RANKER, "base_url": llm_server, "api_key_env": "TRUSTREC_TEST_KEY", "batch_size": 2}
    parallel = LLMRanker(**endpoint, max_concurrency=4).fit(split, OPTS)
    serial = LLMRanker(**endpoint, max_concurrency=1).fit(split, OPTS)
    assert parallel.backend.config.max_concurrency == 4 and serial.backend.config.max_concurrency == 1
    a, b = parallel.score_candidates(q, 4), serial.score_candidates(q, 4)
    np.testing.assert_array_equal(a.llm, b.llm)
    assert np.isfinite(a.llm).all() and (a.llm < 0).any()  # log-probabilities from the endpoint
    # the key goes to base_url's host (explicit key + api_key_hosts), and is never shown
    assert parallel.backend._authorization() == "sk-test-secret"
    assert parallel.backend.config.api_key_hosts == (llm_server,)
    assert "sk-test-secret" not in repr(parallel) + repr(parallel.backend)
    # save / load: the variable's name travels, the key does not
    parallel.save(tmp_path / "ranker")
    saved = "".join(p.read_text(errors="replace") for p in (tmp_path / "ranker").rglob("*") if p.is_file())
    assert "sk-test-secret" not in saved and "TRUSTREC_TEST_KEY" in saved
    loaded = Recommender.load(tmp_path / "ranker")
    assert loaded.config == parallel.config
    top = parallel.recommend(q, 3)
    again = loaded.recommend(q, 3)
    np.testing.assert_array_equal(top.items, again.items)
    np.testing.assert_allclose(top.scores, again.scores)


def test_the_key_reaches_the_endpoint_only_as_configured(split, monkeypatch):
    monkeypatch.setenv("TRUSTREC_TEST_KEY", "sk-test-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    q = split.eval_set("test").queries[:1]
    with capture_server() as (url, seen):
        ranker = LLMRanker(**RANKER, base_url=url, api_key_env="TRUSTREC_TEST_KEY").fit(split, OPTS)
        with pytest.raises(EndpointError, match="HTTP 401") as info:
            ranker.recommend(q, 3)
        assert seen == ["Bearer sk-test-secret"]
        assert "sk-test-secret" not in str(info.value)
        # without api_key_env, OPENAI_API_KEY goes to api.openai.com only: this host gets no key
        seen.clear()
        with pytest.raises(EndpointError, match="HTTP 401") as info:
            LLMRanker(**RANKER, base_url=url).fit(split, OPTS).recommend(q, 3)
        assert seen == [None] and "sk-openai-secret" not in str(info.value)
        # external_generative follows the same rule
        seen.clear()
        model = ExternalGenerative(base_url=url, api_key_env="TRUSTREC_TEST_KEY", **GENERATIVE).fit(split, OPTS)
        with pytest.raises(EndpointError, match="HTTP 401"):
            model.recommend(q, 3)
        assert seen == ["Bearer sk-test-secret"]


# -- (b) external_generative end to end -----------------------------------------------------------
def test_generative_recommends_what_its_samples_name(generative, split):
    q = split.eval_set("test").queries[:8]
    top, stats = generative.recommend_with_stats(q, 5)
    assert top.items.shape == (8, 5)
    assert stats["n_generated"] == 8 * 3
    assert stats["n_exact"] + stats["n_near_miss"] + stats["n_out_of_catalog"] == stats["n_generated"]
    for i in range(len(q)):
        row = top.row(i)
        assert len(row) <= 3 and not set(row) & set(q.histories.row(i))  # nothing filled in, history out
        shares = top.scores[i][: len(row)]
        assert ((shares > 0) & (shares <= 1)).all() and (np.diff(shares) <= 0).all()
    # the prompt: BIGRec's instruction over the last 10 titles, quoted
    prompt = generative.prompts(q[:1])[0]
    assert "### Instruction:" in prompt and prompt.count('"item ') == min(10, len(q.histories.row(0)))
    assert generative.audit_gap("retraining") and "cannot retrain" in generative.audit_gap("retraining")
    assert generative.audit_gap("queries") is None


def test_generate_titles_and_grounder(generative, split):
    q = split.eval_set("test").queries[:3]
    rows = generative.generate_titles(q, 2)
    assert len(rows) == 3 and all(len(r) == 2 for r in rows)
    for row in rows:
        for text, score in row:
            assert isinstance(text, str) and "\n" not in text
            assert (np.isnan(score) and not text) or score <= 0  # the endpoint's log-probability
    assert rows == generative.generate_titles(q, 2)  # seeded
    ground = generative.grounder("exact")
    assert ground('"item 3"') == (3, "exact") and ground("item 12") == (12, "exact")
    assert ground("no such film") == (-1, "none")
    assert generative.grounder("tfidf")("item 12x")[1] == "near"
    with pytest.raises(ConfigError, match="hidden-state"):
        generative.grounder("hidden_state")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a text encoder"):
        generative.grounder("embedding")


def test_scores_are_nan_when_the_endpoint_cannot_score(split, llm_server):
    model = ExternalGenerative(base_url=llm_server, **{**GENERATIVE, "model": "noecho"}).fit(split, OPTS)
    with pytest.warns(DataWarning, match="cannot score"):
        rows = model.generate_titles(split.eval_set("test").queries[:2], 2)
    assert all(np.isnan(s) for row in rows for _, s in row)
    quiet = ExternalGenerative(base_url=llm_server, **{**GENERATIVE, "score_texts": False}).fit(split, OPTS)
    assert all(np.isnan(s) for row in quiet.generate_titles(split.eval_set("test").queries[:1], 1) for _, s in row)


def test_audits_of_the_served_generative_model(generative, split):
    halluc = audit_class("hallucination")(max_users=8, n_outputs=3, n_boot=0, groundings=("exact", "tfidf")).run(
        generative, split
    )
    assert halluc.verdict.status != "not_applicable", halluc.verdict.reasons
    assert halluc.settings["deployed_setting"] == "unconstrained/tfidf"
    assert "hallucination_rate" in halluc.estimates
    assert any("constrained decoding not measured" in w for w in halluc.warnings)
    outputs = halluc.evidence["outputs"]
    assert len(outputs) == 2 * 8 * 3
    said = outputs["text"].str.strip() != ""
    assert np.isfinite(outputs["score"][said]).all() and (outputs["score"][said] <= 0).all()
    # item_exposure runs on this model through the YAML path below (ml-100k: the tiny random model
    # names no toy title, and the audit cannot draw a Lorenz curve of empty lists)
    poison = audit_class("poisoning")(max_users=8, n_boot=0).run(generative, split)
    assert poison.verdict.status == "not_applicable" and "cannot retrain" in poison.verdict.reasons[0]


def test_save_load_keeps_the_variable_name_only(generative, split, tmp_path):
    generative.save(tmp_path / "g")
    loaded = Recommender.load(tmp_path / "g")
    assert loaded.config == generative.config and loaded.seed_ == generative.seed_
    q = split.eval_set("test").queries[:4]
    np.testing.assert_array_equal(loaded.recommend(q, 3).items, generative.recommend(q, 3).items)


class TestExternalGenerativeChecks(RecommenderChecks):
    """The recommender contract, against the test server (greedy, so batching changes nothing)."""

    component = ExternalGenerative
    configs: ClassVar[list[dict[str, Any]]] = []

    @pytest.fixture(autouse=True)
    def _endpoint(self, llm_server):
        type(self).configs = [{**GENERATIVE, "base_url": llm_server, "temperature": 0.0, "score_texts": False}]

    def test_default_construction_and_repr(self) -> None:
        with pytest.raises(ConfigError, match="base_url"):
            ExternalGenerative()  # the endpoint is the model: there is no default
        assert "ExternalGenerative" in repr(self.make())


# -- (c) through trustrec.runs: the external YAML ---------------------------------------------------
@pytest.mark.parametrize("name", ["llm_ranker", "external_generative"])
def test_audit_external_yaml(name, llm_server, shared_data, tmp_path, monkeypatch):
    from trustrec.runs import audit_external

    monkeypatch.setenv("TRUSTREC_TEST_KEY", "sk-test-secret")
    params = {**(RANKER if name == "llm_ranker" else GENERATIVE), "base_url": llm_server}
    params["api_key_env"] = "TRUSTREC_TEST_KEY"
    config = {
        "dataset": {"name": "ml-100k", "data_dir": str(shared_data)},
        "split": {"method": "leave_one_out"},
        "model": {"name": name, "params": params},
        "seed": 0,
    }
    (tmp_path / "external.yaml").write_text(yaml.safe_dump(config))
    audits = ["item_exposure"] + (["poisoning", "hallucination"] if name == "external_generative" else [])
    overrides: dict[str, dict[str, Any]] = {
        "item_exposure": {"max_users": 10, "n_boot": 0},
        "poisoning": {"max_users": 10, "n_boot": 0},
        "hallucination": {"max_users": 8, "n_outputs": 2, "n_boot": 0, "groundings": ["exact", "tfidf"]},
    }
    index = audit_external(
        tmp_path / "external.yaml",
        tmp_path / "out",
        names=audits,
        params={a: overrides[a] for a in audits},
        progress=False,
        log=lambda _line: None,
    )
    status = {e["name"]: e for e in index["audits"]}
    assert status["item_exposure"]["status"] != "not_applicable", status
    exposure = json.loads((tmp_path / "out" / "item_exposure" / "result.json").read_text())
    assert "exposure_gini" in json.dumps(exposure)
    if name == "external_generative":
        assert status["hallucination"]["status"] != "not_applicable", status
        assert status["poisoning"]["status"] == "not_applicable"
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "sk-test-secret" not in written and "TRUSTREC_TEST_KEY" in written


# -- (d) bad input -----------------------------------------------------------------------------------
def test_endpoint_down_names_the_url(split):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    model = ExternalGenerative(base_url=url, **GENERATIVE).fit(split, OPTS)  # fit asks nothing
    with pytest.raises(EndpointError, match="server is running") as info:
        model.recommend(split.eval_set("test").queries[:2], 3)
    assert f"{url}/v1/completions" in str(info.value)
    ranker = LLMRanker(**RANKER, base_url=url).fit(split, OPTS)
    with pytest.raises(EndpointError, match="server is running") as info:
        ranker.recommend(split.eval_set("test").queries[:1], 3)
    assert f"{url}/v1/completions" in str(info.value)


@pytest.mark.parametrize("mode, message", [("garbage", "not JSON"), ("nochoices", "no 'choices'")])
def test_endpoint_answering_garbage(split, llm_server, mode, message):
    model = ExternalGenerative(base_url=llm_server, **{**GENERATIVE, "model": mode}).fit(split, OPTS)
    with pytest.raises(EndpointError, match=message):
        model.recommend(split.eval_set("test").queries[:2], 3)
    with pytest.raises(EndpointError, match=message):
        model.generate_titles(split.eval_set("test").queries[:2], 1)


def test_bad_generative_config_and_unset_key(split, monkeypatch):
    monkeypatch.delenv("TRUSTREC_TEST_UNSET_KEY", raising=False)
    model = ExternalGenerative(base_url="http://127.0.0.1:9", model=MODEL, api_key_env="TRUSTREC_TEST_UNSET_KEY")
    with pytest.raises(ConfigError, match="'TRUSTREC_TEST_UNSET_KEY', but it is not set"):
        model.fit(split, OPTS)
    with pytest.raises(ConfigError, match="http://"):
        ExternalGenerative(base_url="localhost:8000", model=MODEL)
    with pytest.raises(ConfigError, match="answer_format"):
        ExternalGenerative(base_url="http://h", model=MODEL, answer_format="no slot")
    with pytest.raises(ConfigError, match="preset"):
        ExternalGenerative(base_url="http://h", model=MODEL, template={"preset": "nope"})
    assert json.loads(json.dumps(model.dump_config()))["api_key_env"] == "TRUSTREC_TEST_UNSET_KEY"
