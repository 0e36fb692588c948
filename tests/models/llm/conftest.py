import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _no_user_model_folders(tmp_path_factory, monkeypatch):
    """Tests see an empty Hugging Face cache and no TRUSTREC_MODELS: a developer's own downloads
    never change which copy a test resolves (the trustrec cache is per test, see tests/conftest.py)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRUSTREC_MODELS", raising=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The tiny random SmolLM2-architecture checkpoint, built once per session."""
    pytest.importorskip("transformers")
    from trustrec.models.llm import build_tiny_random

    folder = tmp_path_factory.mktemp("tiny") / "tiny-smollm2-random"
    build_tiny_random(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llm_server(tiny_checkpoint, tmp_path_factory):
    """The test server (llm_test_server.py, serving the tiny model as "tiny-smollm2-random") as a
    real uvicorn process on a free port; yields its base URL."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    env = {**os.environ, "TRUSTREC_TEST_SERVER_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(HERE),
                "llm_test_server:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"test server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"test server not ready after 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
