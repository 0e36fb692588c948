"""A tiny real run (ItemKNN on ml-100k, a few seconds) and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import pytest

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "other-key-0123456789abcdef"


@pytest.fixture(scope="session")
def run_dir(shared_data, tmp_path_factory):
    from trustrec.runs import run_experiment

    out = tmp_path_factory.mktemp("serve_runs")
    config = {
        "name": "knn-ml100k",
        "dataset": {"name": "ml-100k", "data_dir": str(shared_data)},
        "split": {"method": "leave_one_out"},
        "model": {"name": "item_knn", "params": {}},
        "eval": {"metrics": ["ndcg@10"], "n_boot": 10},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUSTREC_CACHE", str(tmp_path_factory.mktemp("serve_cache")))
        return run_experiment(config, out, progress=False, log=lambda *_: None).path


@pytest.fixture(scope="session")
def service(run_dir):
    from trustrec.serve import RecommendationService

    return RecommendationService.from_run(run_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(service, **settings):
    """A real uvicorn server on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    import uvicorn

    from trustrec.serve import ServeSettings, create_app

    settings.setdefault("api_keys", (KEY, OTHER_KEY))
    port = free_port()
    app = create_app(service, ServeSettings(port=port, **settings))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def base_url(service):
    with live_server(service, rate_limit=0) as url:
        yield url


@pytest.fixture
def client(base_url):
    import httpx

    with httpx.Client(base_url=base_url, headers={"X-API-Key": KEY}, timeout=30) as c:
        yield c
