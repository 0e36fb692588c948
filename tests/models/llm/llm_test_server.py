"""A small OpenAI-compatible server for the HTTP backend tests (run as a real process by uvicorn).

Serves ``POST /v1/completions`` (prompt list, max_tokens, temperature, top_p, seed, stop, echo,
logprobs with the legacy ``tokens`` / ``token_logprobs`` / ``text_offset`` format) and
``GET /v1/models``, through :class:`trustrec.models.llm.LocalBackend` on the checkpoint named by
``TRUSTREC_TEST_SERVER_MODEL`` (default ``tiny-smollm2-random``).

Fault modes, chosen by the request's model name (or the ``X-Fault`` header), ``<mode>[:<arg>[:<key>]]``:

- ``flaky:N:key``: HTTP 500 for the first N requests with that key, then normal answers;
- ``ratelimit:N:key``: HTTP 429 (``Retry-After: 0``) for the first N requests, then normal;
- ``slow:S``: sleep S seconds, then answer normally;
- ``garbage``: HTTP 200 with a body that is not JSON;
- ``nochoices``: JSON without ``choices``; ``fewchoices``: one choice fewer than prompts;
- ``reversed``: the right choices, listed in reverse order (their ``index`` fields are right);
- ``noecho``: ignores echo/logprobs like Ollama (``logprobs: null``);
- ``badrequest``: HTTP 400.

``GET /stats?key=<fault string>`` reports the most completion requests with that fault string
(model name) that were in flight at once (the concurrency a client really achieved).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from trustrec.models.llm import LocalBackend

MODEL = os.environ.get("TRUSTREC_TEST_SERVER_MODEL", "tiny-smollm2-random")
backend = LocalBackend(MODEL, batch_size=8)
_lock = threading.Lock()  # one model call at a time (requests run in a thread pool)
_seen: Counter[str] = Counter()
_now: Counter[str] = Counter()  # completion requests in flight, by fault string
_most: Counter[str] = Counter()  # the most ever in flight at once, by fault string
_flight_lock = threading.Lock()


@contextlib.asynccontextmanager
async def _lifespan(_app):
    _ = backend.model  # load before serving: readiness (GET /v1/models) implies the model is loaded
    yield


app = FastAPI(lifespan=_lifespan)


@app.get("/v1/models")
def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": "tiny-smollm2-random", "object": "model"}]}


def _echo_logprobs(prompt: str, generated: str) -> dict[str, Any]:
    """Legacy logprobs of every token of ``prompt + generated`` (prompt and generated text are
    tokenized separately, as a server sees them): the first token has none (no context); offsets
    are character offsets into the echoed text computed from decoded prefixes (like vLLM)."""
    import torch

    tok, model = backend.tokenizer, backend.model
    ids = [i for t in (prompt, generated) if t for i in tok(t, add_special_tokens=False)["input_ids"]]
    if not ids:
        return {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    offsets = [len(tok.decode(ids[:t], clean_up_tokenization_spaces=False)) for t in range(len(ids))]
    values: list[float | None] = [None]
    if len(ids) > 1:
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits
            lp = torch.log_softmax(logits[0, :-1].float(), dim=-1)
            values += [float(v) for v in lp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)]
    tokens = [tok.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": [None] * len(ids), "text_offset": offsets}


@app.get("/stats")
def stats(key: str) -> dict[str, int]:
    return {"max_inflight": _most[key]}


@contextlib.contextmanager
def _in_flight(key: str):
    with _flight_lock:
        _now[key] += 1
        _most[key] = max(_most[key], _now[key])
    try:
        yield
    finally:
        with _flight_lock:
            _now[key] -= 1


@app.post("/v1/completions")
def completions(body: dict[str, Any], request: Request):
    with _in_flight(request.headers.get("X-Fault") or str(body.get("model", ""))):
        return _completions(body, request)


def _completions(body: dict[str, Any], request: Request):
    fault = request.headers.get("X-Fault") or str(body.get("model", ""))
    mode, _, rest = fault.partition(":")
    arg = rest.partition(":")[0]  # a trailing :key only makes the counter distinct
    if mode in ("flaky", "ratelimit"):
        _seen[fault] += 1
        if _seen[fault] <= int(arg):
            if mode == "flaky":
                return JSONResponse({"error": {"message": "transient failure"}}, status_code=500)
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"})
    if mode == "slow":
        time.sleep(float(arg))
    if mode == "garbage":
        return PlainTextResponse("<html>surprise</html>", status_code=200)
    if mode == "nochoices":
        return {"object": "text_completion", "data": []}
    if mode == "badrequest":
        return JSONResponse({"error": {"message": "max_tokens is too large"}}, status_code=400)

    prompts = body.get("prompt", [])
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    max_tokens = int(body.get("max_tokens", 16))
    echo = bool(body.get("echo", False)) and mode != "noecho"
    want_logprobs = body.get("logprobs") is not None and mode != "noecho"
    with _lock:
        new = [""] * len(prompts)
        if max_tokens > 0 and prompts:
            new = backend.generate(
                prompts,
                max_tokens,
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                seed=int(body.get("seed") or 0),
                stop=body.get("stop"),
            )
        choices = []
        for i, (p, g) in enumerate(zip(prompts, new)):
            text = p + g if echo else g
            logprobs = _echo_logprobs(p, g) if (echo and want_logprobs) else None
            choices.append({"index": i, "text": text, "logprobs": logprobs, "finish_reason": "length"})
    if mode == "fewchoices":
        choices = choices[:-1]
    if mode == "reversed":
        choices = choices[::-1]
    return {
        "id": "cmpl-test",
        "object": "text_completion",
        "created": int(time.time()),
        "model": "tiny-smollm2-random",
        "choices": choices,
    }
