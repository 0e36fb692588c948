"""OpenAIBackend against misbehaving endpoints: real HTTP servers on 127.0.0.1, each in a thread."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trustrec.models.llm import EndpointError, OpenAIBackend

pytest.importorskip("httpx")


def _logprobs_body(prompts: list[str], bad=None) -> dict:
    """A legacy echo+logprobs answer: one token per character, each -0.5 (``bad`` replaces the last)."""
    choices = []
    for k, text in enumerate(prompts):
        values = [None] + [-0.5] * (len(text) - 1)
        if bad is not None:
            values[-1] = bad
        choices.append(
            {
                "index": k,
                "text": text,
                "logprobs": {"tokens": list(text), "token_logprobs": values, "text_offset": list(range(len(text)))},
            }
        )
    return {"choices": choices}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.seen.append(dict(self.headers))
        mode = self.server.mode
        if mode == "drip":  # headers at once, then one byte per 0.2 s, for ever
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                while not self.server.stopping.is_set():
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if mode == "drip-headers":  # the status line and headers themselves trickle
            try:
                for ch in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10000:
                    if self.server.stopping.is_set():
                        return
                    self.wfile.write(bytes([ch]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if mode == "huge":
            payload = b'{"choices": [{"index": 0, "text": "' + b"x" * (3 << 20) + b'"}]}'
        elif mode == "huge-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(64):
                    chunk = b"x" * 65536
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        elif mode == "nested":
            payload = b"[" * 200000 + b"]" * 200000
        elif mode in ("nan", "positive", "inf", "string"):
            bad = {"nan": float("nan"), "positive": 0.7, "inf": float("-inf"), "string": "x"}[mode]
            payload = json.dumps(_logprobs_body(body["prompt"], bad)).encode()  # NaN/-Infinity literals
        else:  # "ok": a well-formed answer to generation and scoring
            if body.get("echo"):
                payload = json.dumps(_logprobs_body(body["prompt"])).encode()
            else:
                payload = json.dumps(
                    {"choices": [{"index": k, "text": " ok"} for k in range(len(body["prompt"]))]}
                ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(payload)


@pytest.fixture
def serve():
    servers = []

    def start(mode: str) -> tuple[str, ThreadingHTTPServer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.mode, server.seen, server.stopping = mode, [], threading.Event()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", server

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def _backend(url, **kwargs):
    return OpenAIBackend(url, model="m", **{"max_retries": 0, "backoff_s": 0.0, "timeout_s": 5.0, **kwargs})


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])
def test_slow_drip_endpoint_hits_the_total_deadline(serve, mode):
    url, _ = serve(mode)
    with _backend(url, deadline_s=1.5, max_retries=2) as b:
        start = time.monotonic()
        with pytest.raises(EndpointError, match=r"deadline_s=1.5") as info:
            b.generate(["Hi"], 2)
    assert time.monotonic() - start < 4.0  # one deadline: an overrun is not retried
    assert f"{url}/v1/completions" in str(info.value)


@pytest.mark.parametrize("mode, shown", [("nan", "nan"), ("positive", "0.7"), ("inf", "-inf"), ("string", "'x'")])
def test_impossible_logprobs_are_refused_naming_endpoint_and_field(serve, mode, shown):
    url, _ = serve(mode)
    with _backend(url) as b, pytest.raises(EndpointError) as info:
        b.score_continuations(["The user watched", "Hi"], [[" Heat"], [" there"]])
    message = str(info.value)
    assert f"{url}/v1/completions" in message and "choices[0].logprobs.token_logprobs[" in message
    assert shown in message


def test_well_formed_logprobs_still_score(serve):
    url, _ = serve("ok")
    with _backend(url) as b:
        sums = b.score_continuations(["The user watched"], [[" Heat", " Alien"]])
        assert b.generate(["a", "b"], 2) == [" ok", " ok"]
    assert sums[0].tolist() == [-2.5, -3.0]


@pytest.mark.parametrize("mode", ["huge", "huge-chunked"])
def test_oversized_answer_is_refused(serve, mode):
    url, _ = serve(mode)
    with (
        _backend(url, max_response_bytes=1 << 20) as b,
        pytest.raises(EndpointError, match="max_response_bytes=1,048,576"),
    ):
        b.generate(["Hi"], 2)
    with _backend(url) as b:  # the default (64 MiB) takes the 3-4 MiB answer
        if mode == "huge":
            assert len(b.generate(["Hi"], 2)[0]) == 3 << 20


def test_deeply_nested_json_is_a_clear_error(serve):
    url, _ = serve("nested")
    with _backend(url) as b, pytest.raises(EndpointError, match="nested too deeply"):
        b.generate(["Hi"], 2)


def test_environment_key_is_not_sent_to_an_arbitrary_host(serve, monkeypatch):
    url, server = serve("ok")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with _backend(url) as b:
        b.generate(["Hi"], 2)
    assert "Authorization" not in server.seen[-1]
    with _backend(url, api_key_hosts=("127.0.0.1",)) as b:  # the user allows this host
        b.generate(["Hi"], 2)
    assert server.seen[-1]["Authorization"] == "Bearer sk-from-env"
    port = url.rsplit(":", 1)[1]
    with _backend(url, api_key_hosts=(f"127.0.0.1:{int(port) + 1}",)) as b:  # another port only
        b.generate(["Hi"], 2)
    assert "Authorization" not in server.seen[-1]


def test_explicit_key_goes_to_its_base_url_or_only_to_allowed_hosts(serve, monkeypatch):
    url, server = serve("ok")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with _backend(url, api_key="sk-explicit") as b:
        b.generate(["Hi"], 2)
    assert server.seen[-1]["Authorization"] == "Bearer sk-explicit"
    with _backend(url, api_key="sk-explicit", api_key_hosts=("api.example.com",)) as b:
        b.generate(["Hi"], 2)
    assert "Authorization" not in server.seen[-1]
    assert "sk-explicit" not in repr(b)
