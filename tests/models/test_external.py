"""Models trustrec did not train (trustrec.models.external): a Python score/rank function, a
precomputed list file and an HTTP endpoint, audited like trustrec's own models; what they cannot
do comes out not applicable with the reason, and broken answers are clear errors."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from trustrec.audit import audit_class
from trustrec.data import make_split
from trustrec.errors import ConfigError, DataError
from trustrec.models import (
    ExternalEndpoint,
    ExternalRanker,
    ExternalScorer,
    ExternalTopKFile,
    FitOptions,
    ModelSpec,
    make_model,
)
from trustrec.models.llm import EndpointError
from trustrec.testing import toy_dataset

USER = "tests.models._external_user_model"
OPTS = FitOptions(seed=0, progress=False)


@pytest.fixture(scope="module")
def split():
    return make_split(toy_dataset(n_users=40, n_items=30, n_inter=500), "leave_one_out")


@pytest.fixture(scope="module")
def native(split):
    return make_model("ease", reg=50.0).fit(split, OPTS)


def _run(name, model, split, **params):
    params = {"n_boot": 0, "min_group_size": 2, **params}
    return audit_class(name)(**params).run(model, split)


def _estimates(result):
    return {k: (v.value if hasattr(v, "value") else v) for k, v in result.estimates.items()}


def _same(a, b):
    ea, eb = _estimates(a), _estimates(b)
    assert ea.keys() == eb.keys() and ea
    for key in ea:
        np.testing.assert_allclose(ea[key], eb[key], equal_nan=True, err_msg=key)


# -- Python score / rank functions ----------------------------------------------------------------------
def test_scorer_audits_equal_the_native_model(split, native):
    adapter = ExternalScorer(score=f"{USER}:score", fit=f"{USER}:fit").fit(split, OPTS)
    assert adapter.item_ids_ == native.item_ids_
    for name in ("item_exposure", "user_fairness", "history_perturbation"):
        mine, theirs = _run(name, adapter, split), _run(name, native, split)
        assert mine.verdict.status != "not_applicable", mine.verdict.reasons
        _same(mine, theirs)


def test_ranker_lists_equal_the_native_model(split, native):
    adapter = ExternalRanker(rank=f"{USER}:rank", fit=f"{USER}:fit").fit(split, OPTS)
    queries = split.eval_set("test").queries
    np.testing.assert_array_equal(adapter.recommend(queries, 5).items, native.recommend(queries, 5).items)
    _same(_run("item_exposure", adapter, split), _run("item_exposure", native, split))
    assert _run("history_perturbation", adapter, split, max_users=10).verdict.status != "not_applicable"


def test_retraining_needs_a_fit_function(split):
    with_fit = ExternalScorer(score=f"{USER}:score", fit=f"{USER}:fit").fit(split, OPTS)
    spec = ModelSpec(name=with_fit.name, params=with_fit.dump_config())
    assert spec.build().fit(split, OPTS).state_ is not None  # how retraining audits rebuild it
    result = _run("poisoning", with_fit, split, budgets=(0.05,), attacks=("random",))
    assert result.verdict.status != "not_applicable", result.verdict.reasons
    without = ExternalScorer(score=f"{USER}:popular_scores").fit(split, OPTS)
    assert without.state_ is None
    for name in ("poisoning", "membership_inference", "unlearning", "feedback_loop"):
        result = _run(name, without, split)
        assert result.verdict.status == "not_applicable", name
        assert "give fit=" in " ".join(result.verdict.reasons), result.verdict.reasons
    # a model_spec given to the audit retrains that instead
    ok = _run("poisoning", without, split, budgets=(0.05,), attacks=("random",), model_spec={"name": "most_popular"})
    assert ok.verdict.status != "not_applicable"


def test_python_adapter_errors(split):
    def fitted(fn, cls=ExternalScorer, key="score"):
        return cls(**{key: f"{USER}:{fn}"}).fit(split, OPTS)

    queries = split.eval_set("test").queries
    with pytest.raises(DataError, match=r"returned shape \(\d+, 3\), expected"):
        fitted("wrong_shape").recommend(queries, 5)
    with pytest.raises(DataError, match=r"NaN scores \(first: query 0, item"):
        fitted("nan_scores").recommend(queries, 5)
    with pytest.raises(DataError, match="'no-such-item' is not in the catalog"):
        fitted("out_of_catalog", ExternalRanker, "rank").recommend(queries, 5)
    with pytest.raises(DataError, match="listed twice"):
        fitted("repeated", ExternalRanker, "rank").recommend(queries, 5)
    with pytest.raises(ConfigError, match=r"cannot import module 'no_such_pkg\.mod'"):
        ExternalScorer(score="no_such_pkg.mod:score").fit(split, OPTS)
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        ExternalScorer(score=f"{USER}:missing").fit(split, OPTS)
    with pytest.raises(ConfigError, match="not a function"):
        ExternalScorer(score=f"{USER}:NOT_CALLABLE").fit(split, OPTS)
    with pytest.raises(ConfigError, match=r"import path 'package\.module:function'"):
        ExternalScorer(score="just_a_name")
    with pytest.raises(ConfigError, match="not saved by trustrec"):
        fitted("popular_scores").save(split.dataset.name + "-never-written")


# -- a precomputed list file ----------------------------------------------------------------------------
def _write_lists(native, split, path, k=10, fmt="csv"):
    queries = split.eval_set("test").queries
    top = native.recommend(queries, k)
    rows = [
        {"user_id": native.user_ids_[u], "item_id": native.item_ids_[i], "rank": r + 1, "score": float(s)}
        for u, items, scores in zip(queries.users, top.items, top.scores)
        for r, (i, s) in enumerate(zip(items, scores))
        if i >= 0
    ]
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return frame


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_list_file_audits(split, native, tmp_path, fmt):
    path = tmp_path / f"lists.{fmt}"
    _write_lists(native, split, path, fmt=fmt)
    adapter = ExternalTopKFile(path=str(path), parts=("test",)).fit(split, OPTS)
    assert adapter.missing_users_ == 0
    _same(_run("item_exposure", adapter, split), _run("item_exposure", native, split))
    _same(_run("user_fairness", adapter, split), _run("user_fairness", native, split))
    for name in ("history_perturbation", "poisoning"):
        result = _run(name, adapter, split)
        assert result.verdict.status == "not_applicable"
        assert "a precomputed list file cannot" in " ".join(result.verdict.reasons)
    # a query it was not written for is an error, never a silent answer
    queries = split.eval_set("test").queries
    edited = queries.with_histories(queries.histories.take(np.roll(np.arange(len(queries)), 1)))
    with pytest.raises(DataError, match="cannot answer new queries"):
        adapter.recommend(edited, 5)


def test_list_file_checks(split, native, tmp_path):
    good = _write_lists(native, split, tmp_path / "good.csv")

    def fit(frame, **kw):
        path = tmp_path / "bad.csv"
        frame.to_csv(path, index=False)
        return ExternalTopKFile(path=str(path), parts=("test",), **kw).fit(split, OPTS)

    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) \['rank'\]"):
        fit(good.drop(columns="rank"))
    bad = good.copy()
    bad.loc[3, "item_id"] = "zzz"
    with pytest.raises(DataError, match=r"bad.csv: row 4 .*item id unknown .*'zzz'"):
        fit(bad)
    bad = good.copy()
    bad.loc[5, "user_id"] = "nobody"
    with pytest.raises(DataError, match=r"row 6 .*user id unknown .*'nobody'"):
        fit(bad)
    with pytest.raises(DataError, match=r"row \d+ .*listed twice"):
        fit(pd.concat([good, good.iloc[[0]].assign(rank=99)]))
    bad = good.astype({"rank": float})
    bad.loc[2, "rank"] = 1.5
    with pytest.raises(DataError, match=r"row 3 .*rank is not a positive integer"):
        fit(bad)
    bad = good.copy()
    bad.loc[1, "score"] = np.nan
    with pytest.raises(DataError, match=r"row 2 .*score is NaN"):
        fit(bad, score_column="score")
    some = good[good.user_id != good.user_id.iloc[0]]
    with pytest.raises(DataError, match=r"1 of \d+ evaluation users have no list"):
        fit(some)
    with pytest.warns(UserWarning, match="empty lists"):
        adapter = fit(some, missing="empty")
    assert adapter.missing_users_ == 1
    with pytest.raises(DataError, match="no such list file"):
        ExternalTopKFile(path=str(tmp_path / "absent.csv")).fit(split, OPTS)


# -- an HTTP endpoint ----------------------------------------------------------------------------------
class _Service:
    """A real HTTP server on 127.0.0.1 answering the JSON contract from a fitted model; ``mode``
    breaks it on purpose."""

    def __init__(self, model):
        self.model, self.mode, self.calls = model, "ok", 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.calls += 1
                status, payload, headers = service.answer(body, self.headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client timed out on purpose
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/recommend"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, body, headers):
        mode = self.mode
        if mode == "500":
            return 500, b"boom", {}
        if mode.startswith("429") and self.calls <= 1:
            return 429, b"slow down", {"Retry-After": "0"}
        if mode == "slow":
            time.sleep(1.0)
        if mode == "garbage":
            return 200, b"<html>not json</html>", {}
        if mode == "redirect":
            return 307, b"", {"Location": self.url + "/elsewhere"}
        if mode == "huge":
            return 200, b"[" + b"0," * 600 + b"0]", {}
        if mode == "auth" and headers.get("Authorization") != "Bearer s3cret":
            return 401, b"no key", {}
        qs = body["queries"]
        top = self.model.recommend_raw([q["history"] for q in qs], body["k"], users=[q["user_id"] for q in qs])
        results = [
            {"items": top.row(i), "scores": [float(s) for s in top.scores[i][: len(top.row(i))]]}
            for i in range(len(qs))
        ]
        if mode == "unknown_id":
            results[0]["items"][0] = "not-an-item"
        if mode == "nan":
            results[0]["scores"][0] = float("nan")
        if mode == "nokey":
            return 200, {"answers": results}, {}
        return 200, {"results": results}, {}


@pytest.fixture(scope="module")
def service(native):
    svc = _Service(native)
    yield svc
    svc.server.shutdown()


def test_endpoint_audits_equal_the_native_model(split, native, service):
    service.mode = "ok"
    adapter = ExternalEndpoint(url=service.url, batch_size=7, max_concurrency=3).fit(split, OPTS)
    for name in ("item_exposure", "history_perturbation"):
        _same(_run(name, adapter, split), _run(name, native, split))
    result = _run("poisoning", adapter, split)
    assert result.verdict.status == "not_applicable" and "cannot retrain" in result.verdict.reasons[0]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("unknown_id", "'not-an-item' is not in the catalog"),
        ("nan", "NaN score for item"),
        ("garbage", "returned HTTP 200 but not JSON"),
        ("nokey", "without a 'results' list"),
        ("500", "returned HTTP 500"),
        ("redirect", r"answered with a redirect \(HTTP 307 to .*/elsewhere\); redirects are not followed"),
        ("huge", "answered with more than max_response_bytes=1,000 bytes"),
        ("slow", "no answer within timeout_s=0.2 s"),
    ],
)
def test_endpoint_errors(split, service, mode, message):
    service.mode = mode
    adapter = ExternalEndpoint(url=service.url, timeout_s=0.2, max_retries=1, backoff_s=0, max_response_bytes=1000).fit(
        split, OPTS
    )
    calls = service.calls
    with pytest.raises(EndpointError, match=message) as info:
        adapter.recommend(split.eval_set("test").queries[:3], 5)
    assert service.url in str(info.value)
    if mode == "redirect":
        assert service.calls == calls + 1  # not followed (a followed one would POST again)


def test_endpoint_retries_and_api_key(split, service, monkeypatch):
    service.mode, service.calls = "429", 0
    adapter = ExternalEndpoint(url=service.url, max_retries=2, backoff_s=0).fit(split, OPTS)
    assert adapter.recommend(split.eval_set("test").queries[:3], 5).items.shape == (3, 5)
    assert service.calls == 2
    service.mode = "auth"
    monkeypatch.setenv("MY_REC_KEY", "s3cret")
    keyed = ExternalEndpoint(url=service.url, api_key_env="MY_REC_KEY").fit(split, OPTS)
    assert keyed.recommend(split.eval_set("test").queries[:2], 3).items.shape == (2, 3)
    monkeypatch.delenv("MY_REC_KEY")
    with pytest.raises(ConfigError, match=r"'MY_REC_KEY'.*not set"):
        ExternalEndpoint(url=service.url, api_key_env="MY_REC_KEY").fit(split, OPTS)
    renamed = ExternalEndpoint(url=service.url, fields={"results": "answers"}).fit(split, OPTS)
    service.mode = "nokey"
    assert renamed.recommend(split.eval_set("test").queries[:2], 3).items.shape == (2, 3)
    with pytest.raises(ConfigError, match="unknown role"):
        ExternalEndpoint(url=service.url, fields={"itemz": "x"})
