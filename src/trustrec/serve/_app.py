"""The HTTP layer: a FastAPI app around a :class:`~trustrec.serve.RecommendationService`.

Endpoints: ``POST /v1/recommend`` (API key), ``GET /metrics`` (API key; Prometheus text
format), ``GET /health`` and ``GET /version`` (open), ``GET /openapi.json`` and ``/docs``.

Every ``/v1/recommend`` request passes, in order:

1. **authentication**: the key from ``X-API-Key`` or ``Authorization: Bearer``, compared with
   every configured key by :func:`hmac.compare_digest` (401 when missing or wrong);
2. **rate limit**: a token bucket per key (``rate_limit`` requests/second, ``burst``
   tokens; 429 with ``Retry-After`` seconds);
3. **admission**: at most ``max_concurrency`` requests run and ``max_queue`` wait; past that,
   503 with ``Retry-After: 1`` at once (the server sheds load instead of collapsing);
4. **body**: at most ``max_body_bytes`` (413), UTF-8 JSON (400 naming the parse error), the
   schema (422 listing each wrong field), parsed and checked in one pass by pydantic-core;
5. the service: with ``service.max_batch > 1``, its batcher thread (requests that arrive
   together share one model call; :meth:`RecommendationService.submit`); with ``max_batch == 1``,
   a worker thread per request (at most ``max_concurrency`` at once; the model itself runs one
   call at a time). Its guard rejections keep their status (4xx; 503 for a failed hook).

Request ids, the ``X-Request-ID`` header, the metrics and the last-resort 500 live in a pure ASGI
middleware (:class:`_Observe`), not in a ``BaseHTTPMiddleware``, which would run every request
through an extra task and memory stream. ``POST /v1/recommend`` itself is a plain ASGI endpoint
(:class:`_RecommendEndpoint`) that the middleware calls directly: the hot path skips FastAPI's
router, dependency solving and response validation, which together cost as much CPU per
request as the model's micro-batched call (``benchmarks/serve_load.py``). FastAPI serves the
other endpoints and the OpenAPI schema, which documents ``/v1/recommend`` from the same pydantic
schemas.

Errors are JSON ``{"error", "guard", "request_id", "detail"}``; every response carries
``X-Request-ID`` (the client's, when it is 1-64 characters of ``[A-Za-z0-9._-]``). An unexpected
error is a 500 that names no internals: that is a bug (the fuzz tests look for them).
"""

import asyncio
import gc
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustrec.errors import ConfigError, TrustrecError
from trustrec.serve._guards import RequestRejected
from trustrec.serve._service import new_request_id

if TYPE_CHECKING:
    from fastapi import FastAPI

    from trustrec.serve._service import RecommendationService

__all__ = ["ServeSettings", "check_bind", "create_app", "load_api_keys", "run_server"]

log = logging.getLogger("trustrec.serve")

API_KEYS_ENV = "TRUSTREC_API_KEYS"
MIN_KEY_LENGTH = 16
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ENDPOINTS = ("/v1/recommend", "/health", "/version", "/metrics", "/openapi.json", "/docs")
_LATENCY_WINDOW = 10_000
JSON = "application/json"


def _import_web():
    """fastapi and uvicorn, or one clear error naming the extra."""
    try:
        import fastapi
        import uvicorn
    except ImportError as exc:
        raise TrustrecError(
            f"trustrec serve needs the 'serve' extra ({exc.name or 'fastapi/uvicorn'} is not installed): "
            "pip install 'trustrec[serve]'"
        ) from None
    return fastapi, uvicorn


@dataclass(frozen=True)
class ServeSettings:
    """How the HTTP layer protects the service (module docstring).

    Parameters
    ----------
    api_keys : tuple of str
        The accepted API keys (see :func:`load_api_keys`).
    no_auth : bool
        Serve without keys (allowed on a loopback address only; see :func:`check_bind`).
    rate_limit : float
        Requests per second per key (token refill rate); 0: no rate limit.
    burst : int
        Token bucket size: requests a key may send at once.
    max_concurrency : int
        Requests served at once (worker threads, when the service answers one request at a
        time; with micro-batching the batcher serves them): with ``max_queue``, the admission bound.
    max_queue : int
        Requests waiting beyond ``max_concurrency``; beyond it, 503.
    max_body_bytes : int
        Largest request body (413 beyond).
    host : str
        The address to bind (loopback by default).
    port : int
        The port to bind.
    """

    api_keys: tuple[str, ...] = ()
    no_auth: bool = False
    rate_limit: float = 50.0
    burst: int = 100
    max_concurrency: int = 4
    max_queue: int = 64
    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self):
        for key in ("burst", "max_concurrency", "max_body_bytes"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"ServeSettings: {key} must be >= 1, got {getattr(self, key)}")
        if self.max_queue < 0 or self.rate_limit < 0 or not math.isfinite(self.rate_limit):
            raise ConfigError("ServeSettings: max_queue and rate_limit must be finite and >= 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"ServeSettings: port must be in 0..65535, got {self.port}")
        object.__setattr__(self, "api_keys", tuple(self.api_keys))


def load_api_keys(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """API keys from a file (one per line; blank lines and ``#`` comments skipped) and from the
    ``TRUSTREC_API_KEYS`` environment variable (comma- or space-separated).

    Parameters
    ----------
    path : str, Path or None
        The key file (e.g. a mounted secret); None: none.
    environ : mapping or None
        The environment to read (default ``os.environ``).

    Returns
    -------
    tuple of str
        The distinct keys, in order.

    Raises
    ------
    ConfigError
        When the file cannot be read, or a key is shorter than 16 characters or holds
        whitespace or non-printable characters (the message names the line, never the key).
    """
    environ = os.environ if environ is None else environ
    found: list[tuple[str, str]] = []
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{p}: cannot read the API key file ({type(exc).__name__})") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                found.append((line, f"{p} line {n}"))
    for n, key in enumerate(re.split(r"[,\s]+", environ.get(API_KEYS_ENV, "")), 1):
        if key:
            found.append((key, f"{API_KEYS_ENV} entry {n}"))
    keys: list[str] = []
    for key, where in found:
        if len(key) < MIN_KEY_LENGTH or not key.isprintable() or not key.isascii():
            raise ConfigError(
                f"{where}: an API key must be at least {MIN_KEY_LENGTH} printable ASCII characters without spaces"
            )
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServeSettings) -> None:
    """Refuse to serve without keys unless ``no_auth`` was asked for, and ``no_auth`` anywhere
    but on a loopback address.

    Parameters
    ----------
    settings : ServeSettings
        The settings to check.

    Raises
    ------
    ConfigError
        When no key is configured and ``no_auth`` is not set, when ``no_auth`` is set with a
        non-loopback host, or when both keys and ``no_auth`` are given.
    """
    if settings.no_auth:
        if settings.api_keys:
            raise ConfigError("give API keys or --no-auth, not both")
        if not _is_loopback(settings.host):
            raise ConfigError(
                f"--no-auth serves without authentication, so only on a loopback address (127.0.0.1, ::1, "
                f"localhost); got --host {settings.host}"
            )
        return
    if not settings.api_keys:
        raise ConfigError(
            f"no API key configured: give --api-keys FILE (one key per line) or set {API_KEYS_ENV}; "
            "or --no-auth to serve without keys on 127.0.0.1"
        )


class _TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take()`` returns 0 or the seconds to wait."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.last = float(burst), time.monotonic()

    def take(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class _Metrics:
    """Request counts by (endpoint, status), latencies of the last requests, rejections by guard."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=_LATENCY_WINDOW))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.rejections: dict[str, int] = defaultdict(int)
        self.in_flight = 0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.counts[(endpoint, status)] += 1
        self.latency[endpoint].append(seconds)
        self.latency_sum[endpoint] += seconds
        self.latency_count[endpoint] += 1

    def quantiles(self, endpoint: str) -> dict[float, float]:
        import numpy as np

        values = np.asarray(self.latency[endpoint])
        if not len(values):
            return {}
        return {q: float(np.quantile(values, q)) for q in (0.5, 0.95, 0.99)}

    def prometheus(self) -> str:
        lines = [
            "# HELP trustrec_requests_total Requests answered, by endpoint and HTTP status.",
            "# TYPE trustrec_requests_total counter",
        ]
        lines += [
            f'trustrec_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.counts.items())
        ]
        lines += [
            f"# HELP trustrec_request_latency_seconds Latency quantiles over the last {_LATENCY_WINDOW} requests of each endpoint.",
            "# TYPE trustrec_request_latency_seconds summary",
        ]
        for e in sorted(self.latency):
            for q, v in self.quantiles(e).items():
                lines.append(f'trustrec_request_latency_seconds{{endpoint="{e}",quantile="{q}"}} {v:.6f}')
            lines.append(f'trustrec_request_latency_seconds_sum{{endpoint="{e}"}} {self.latency_sum[e]:.6f}')
            lines.append(f'trustrec_request_latency_seconds_count{{endpoint="{e}"}} {self.latency_count[e]}')
        lines += [
            "# HELP trustrec_rejections_total Requests refused, by the check that refused them.",
            "# TYPE trustrec_rejections_total counter",
        ]
        lines += [f'trustrec_rejections_total{{guard="{g}"}} {n}' for g, n in sorted(self.rejections.items())]
        lines += [
            "# HELP trustrec_in_flight Recommendation requests admitted (running or queued).",
            "# TYPE trustrec_in_flight gauge",
            f"trustrec_in_flight {self.in_flight}",
        ]
        return "\n".join(lines) + "\n"


def _request_id(header: str | None) -> str:
    return header if header and _REQUEST_ID.fullmatch(header) else new_request_id()


def _clean_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without the (possibly huge) input echoed back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:300], "type": e.get("type")} for e in errors[:20]
    ]


class _Observe:
    """Pure ASGI middleware: the request id (``scope["state"]["request_id"]``), the
    ``X-Request-ID`` response header, the metrics, and a JSON 500 for an unexpected error.

    ``POST /v1/recommend`` goes from here straight to its endpoint: FastAPI's router and
    exception middleware, run for every request, cost a tenth of the server's CPU per request
    (other methods on that path still reach the router, which answers 405)."""

    def __init__(self, app: Any, metrics: _Metrics, recommend: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.recommend = recommend

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = _request_id(given)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = [500]
        sent = [False]

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                sent[0] = True
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            if scope["method"] == "POST" and scope["path"] == "/v1/recommend":
                await self.recommend(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not sent[0]:
                body = json.dumps(
                    {"error": "internal error (a bug: please report it)", "guard": "server", "request_id": request_id}
                ).encode()
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
            status[0] = 500
        path = scope.get("path", "")
        self.metrics.observe(path if path in _ENDPOINTS else "other", status[0], time.perf_counter() - started)


class _RecommendEndpoint:
    """``POST /v1/recommend`` as a plain ASGI app (module docstring, steps 1-5).

    It is a Starlette route of its own, not a FastAPI path operation: FastAPI's per-request
    dependency solving and response validation cost about as much CPU as the model call
    itself, and the service validates its answers already. The request body is parsed and
    validated in one pass (``model_validate_json``), the response serialised by pydantic-core.
    The operation is documented in the OpenAPI schema all the same (:func:`_document_recommend`).
    """

    def __init__(self, service: "RecommendationService", settings: ServeSettings, metrics: _Metrics) -> None:
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self.keys = [k.encode() for k in settings.api_keys]
        self.buckets: dict[str, _TokenBucket] = {}
        self.limiter: Any = None  # an anyio.CapacityLimiter, made in the event loop on first use

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request_id = scope["state"]["request_id"]
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        try:
            status, body = await self._answer(headers, receive, request_id)
            extra: list[tuple[bytes, bytes]] = []
        except RequestRejected as exc:
            status, body, extra = self.rejection(exc, request_id)
        except TrustrecError as exc:
            status, body, extra = self.rejection(RequestRejected(str(exc)[:1000], 422, "service"), request_id)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def rejection(self, exc: RequestRejected, request_id: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        from pydantic_core import to_json

        self.metrics.rejections[exc.guard] += 1
        body = {"error": exc.reason, "guard": exc.guard, "request_id": request_id, "detail": exc.detail}
        extra = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        if exc.status == 401:
            extra.append((b"www-authenticate", b"Bearer"))
        return exc.status, to_json(body), extra

    def authenticate(self, headers: Mapping[bytes, bytes]) -> str:
        if self.settings.no_auth:
            return "anonymous"
        given = headers.get(b"x-api-key")
        if given is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
        if not given:
            raise RequestRejected(
                "missing API key: send the X-API-Key header or Authorization: Bearer KEY", 401, "auth"
            )
        ok = False
        for k in self.keys:  # every key compared: the time does not say which one was close
            ok |= hmac.compare_digest(k, given)
        if not ok:
            raise RequestRejected("invalid API key", 401, "auth")
        return hashlib.sha256(given).hexdigest()[:16] if self.settings.rate_limit > 0 else ""

    def _admit(self, key_id: str) -> None:
        settings = self.settings
        if settings.rate_limit > 0:
            bucket = self.buckets.setdefault(key_id, _TokenBucket(settings.rate_limit, settings.burst))
            wait = bucket.take()
            if wait > 0:
                retry = str(max(1, math.ceil(wait)))
                raise RequestRejected(
                    f"rate limit: {settings.rate_limit:g} requests/s per key (burst {settings.burst}); retry in {retry} s",
                    429,
                    "rate_limit",
                    headers={"Retry-After": retry},
                )
        if self.metrics.in_flight >= settings.max_concurrency + settings.max_queue:
            raise RequestRejected(
                "overloaded: too many requests in flight; retry shortly", 503, "overload", headers={"Retry-After": "1"}
            )

    async def _read_body(self, headers: Mapping[bytes, bytes], receive: Any) -> bytes:
        limit = self.settings.max_body_bytes
        too_big = RequestRejected(f"request body over {limit} bytes", 413, "body_size")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected("the client disconnected before the body was read", 400, "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(self, headers: Mapping[bytes, bytes], receive: Any, request_id: str) -> tuple[int, bytes]:
        from pydantic import ValidationError
        from pydantic_core import to_json

        from trustrec.serve._schemas import RecommendBody
        from trustrec.serve._service import RecommendationRequest

        self._admit(self.authenticate(headers))
        self.metrics.in_flight += 1
        try:
            raw = await self._read_body(headers, receive)
            try:
                parsed = RecommendBody.model_validate_json(raw)
            except ValidationError as exc:
                errors = exc.errors(include_input=False, include_url=False)
                if errors and errors[0]["type"] == "json_invalid":
                    raise RequestRejected(f"malformed JSON: {str(errors[0]['msg'])[:200]}", 400, "json") from None
                errs = _clean_errors(errors)
                where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errs[:5])
                raise RequestRejected(f"invalid request: {where}", 422, "schema", detail=errs) from None
            req = RecommendationRequest(
                user_id=parsed.user_id,
                history=parsed.history,
                k=parsed.k,
                candidates=parsed.candidates,
                constraint=parsed.constraint,
                explain=parsed.explain,
                request_id=request_id,
            )
            service = self.service
            if service.max_batch > 1:
                response = await asyncio.wrap_future(service.submit(req))
            else:
                import anyio

                if self.limiter is None:
                    self.limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
                response = await anyio.to_thread.run_sync(service.recommend, req, limiter=self.limiter)
            return 200, to_json(response.to_dict())
        finally:
            self.metrics.in_flight -= 1


def _document_recommend(app: "FastAPI") -> None:
    """Add ``POST /v1/recommend`` (a plain route, see :class:`_RecommendEndpoint`) to the app's
    OpenAPI schema, with its request body, answer and error bodies."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    from trustrec.serve._schemas import ErrorBody, RecommendBody, RecommendResponseBody

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            refs, defs = models_json_schema(
                [(RecommendResponseBody, "serialization"), (ErrorBody, "serialization")],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))

            def answer(model: Any, words: str) -> dict[str, Any]:
                return {
                    "description": words,
                    "content": {"application/json": {"schema": refs[(model, "serialization")]}},
                }

            errors = {
                400: "Malformed JSON",
                401: "Missing or invalid API key",
                403: "Vetoed by a guardrail hook",
                404: "Unknown user id",
                413: "Request body too large",
                422: "Invalid request, or refused by a guard",
                429: "Rate limit",
                503: "Overloaded",
            }
            schema["paths"]["/v1/recommend"] = {
                "post": {
                    "summary": "Recommend items for a user or a history",
                    "operationId": "recommend_v1_recommend_post",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": RecommendBody.model_json_schema()}},
                    },
                    "responses": {
                        "200": answer(RecommendResponseBody, "The recommendations"),
                        **{str(code): answer(ErrorBody, words) for code, words in errors.items()},
                    },
                }
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(service: "RecommendationService", settings: "ServeSettings | None" = None) -> "FastAPI":
    """The FastAPI app serving ``service`` under ``settings`` (module docstring).

    Parameters
    ----------
    service : RecommendationService
        The service to expose.
    settings : ServeSettings or None
        Keys, limits and the bind address (None: defaults; then the app has no keys and
        refuses every request unless ``no_auth``).

    Returns
    -------
    fastapi.FastAPI
        The app (run it with uvicorn, or :func:`run_server`).

    Raises
    ------
    TrustrecError
        When fastapi is not installed (the message names ``pip install 'trustrec[serve]'``).
    """
    fastapi, _ = _import_web()
    from fastapi import Request
    from fastapi.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from trustrec._version import __version__
    from trustrec.serve._schemas import HealthBody, VersionBody

    settings = settings or ServeSettings()
    metrics = _Metrics()
    app = fastapi.FastAPI(
        title="trustrec",
        version=__version__,
        description="Recommendations from a trustrec run, behind guardrails.",
        redoc_url=None,
    )
    app.state.metrics = metrics
    app.state.service = service
    endpoint = _RecommendEndpoint(service, settings, metrics)
    app.router.routes.append(Route("/v1/recommend", endpoint, methods=["POST"]))
    _document_recommend(app)
    app.add_middleware(_Observe, metrics=metrics, recommend=endpoint)

    @app.get("/health", response_model=HealthBody, summary="Liveness: the model is loaded")
    async def health():
        return {"status": "ok", "model": service.model_name, "n_items": service.n_items}

    @app.get("/version", response_model=VersionBody, summary="trustrec version, model and guard settings")
    async def version():
        return {"trustrec": __version__, "model": service.model_name, "service": service.describe()}

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected):
        status, body, extra = endpoint.rejection(exc, request.state.request_id)
        return Response(body, status, headers={k.decode(): v.decode() for k, v in extra}, media_type=JSON)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (API key)")
    async def prometheus(request: Request):
        endpoint.authenticate({k.encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()})
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    return app


def run_server(
    service: "RecommendationService",
    settings: ServeSettings,
    *,
    log_level: str = "info",
    access_log: bool = False,
    torch_threads: int | None = None,
) -> None:
    """Check the settings (:func:`check_bind`), then serve ``service`` with uvicorn until stopped.

    Parameters
    ----------
    service : RecommendationService
        The service.
    settings : ServeSettings
        Keys, limits, host and port.
    log_level : str
        uvicorn's log level.
    access_log : bool
        Whether uvicorn logs every request (off by default: ``/metrics`` counts them, and a
        log line per request costs as much as a small model call).
    torch_threads : int or None
        torch's intra-op threads in the server process. None: 1, unless the model runs an LLM
        (then torch's default, every core). A micro-batch of a classic model is too small to
        share: the idle OpenMP threads spin between the batch's operations and take the core the
        HTTP layer needs (on a 2-core machine, p99 fell from 44 to 31 ms with 1 thread:
        ``benchmarks/serve_load.py``).

    Raises
    ------
    ConfigError
        When the settings would serve without authentication (see :func:`check_bind`), or
        ``torch_threads`` is below 1.
    TrustrecError
        When fastapi or uvicorn is not installed.
    """
    check_bind(settings)
    if torch_threads is not None and torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1, got {torch_threads}")
    if torch_threads is not None or not service.uses_llm:
        import torch

        torch.set_num_threads(torch_threads or 1)
    _, uvicorn = _import_web()
    app = create_app(service, settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level, server_header=False, access_log=access_log
    )
    server = uvicorn.Server(config)
    config.load()  # uvicorn's protocol modules, imported now so that they are frozen below
    service.warm_up()
    # Everything built so far (the model, the dataset, the app, every module imported, torch
    # included) lives as long as the server: moved out of the collector's generations, it is not
    # traversed again by each full collection. Left in, it made every full collection (about one
    # a second under load) a 50 ms pause of all requests in flight: the latency tail.
    gc.collect()
    gc.freeze()
    try:
        server.run()
    finally:
        service.close()
