"""An :class:`LLMBackend` for any OpenAI-compatible completions endpoint (vLLM, llama.cpp server, Ollama).

Both operations use the legacy text endpoint ``POST {base_url}/v1/completions`` (not chat), because
it takes raw prompts and is what vLLM, llama.cpp's server and Ollama all implement:

- **generation** sends ``{"model", "prompt": [...], "max_tokens", "temperature", "top_p", "seed"}``
  in batches of ``batch_size`` prompts and reads ``choices[k]["text"]``. Stop strings are applied
  on the client (by :meth:`LLMBackend.generate`), exactly as for :class:`LocalBackend`.
- **scoring** sends ``prompt = prompt + continuation`` with ``echo=true``, ``logprobs=1`` and
  ``max_tokens=1`` (the OpenAI legacy trick used ``max_tokens=0``; vLLM rejects 0 in several
  versions, and the single generated token is excluded anyway, see below). The response must carry
  the legacy logprobs object ``choices[k]["logprobs"] = {"tokens", "token_logprobs", "text_offset"}``
  for the *echoed prompt tokens*. ``text_offset[t]`` is the character offset of token ``t`` in the
  echoed text. The continuation's tokens are the tokens whose offset lies in
  ``[len(prompt), len(prompt) + len(continuation))``; the score is the sum of their
  ``token_logprobs`` and the token count is how many there are. A token must start exactly at
  ``len(prompt)``: if the server's tokenizer merges the end of the prompt with the start of the
  continuation into one token, the pair cannot be scored and :class:`EndpointError` says so
  (end prompts without a trailing space and start continuations with one, e.g. ``" Heat"``).
  The server tokenizes the joined text, so scores can differ slightly from :class:`LocalBackend`,
  which tokenizes prompt and continuation separately, when the two tokenizations differ.
  Servers that do not return prompt logprobs (Ollama, llama.cpp's OpenAI route) cannot score:
  :class:`EndpointError` says to use an endpoint with echo+logprobs support, such as vLLM.
  An empty prompt cannot be scored over HTTP (the first token has no logprob); use a non-empty prompt.

Choices are matched to prompts by their ``index`` field, never by position. Connection errors,
read timeouts, HTTP 429 and 5xx are retried ``max_retries`` times with exponential backoff
(``backoff_s * 2**attempt``, or the server's ``Retry-After`` when longer, capped at 60 s); other
4xx are not retried. Every failure raises :class:`EndpointError` naming the URL, the status and what
to do. Importing this module imports neither httpx nor torch.

Untrusted answers are bounded:

- ``timeout_s`` bounds each socket read; ``deadline_s`` bounds one whole request (connect, send,
  wait, read), so a server that trickles a byte at a time cannot hang the caller: past the
  deadline :class:`EndpointError` names the URL and the setting (a request that used its whole
  deadline is not retried).
- an answer larger than ``max_response_bytes`` (after content decoding) is refused, as is JSON
  nested too deeply to parse.
- log-probabilities must be finite numbers <= 0 (``1e-6`` of rounding is tolerated); a NaN, an
  infinity or a positive value is refused naming the endpoint and the field
  (``choices[k].logprobs.token_logprobs[t]``), never summed into a score.

The API key goes only where the user says: an ``api_key`` given explicitly (argument or config)
is sent to ``base_url``'s host, or, when ``api_key_hosts`` is set, only to the hosts listed there;
a key taken from the ``OPENAI_API_KEY`` environment variable is sent only to ``api.openai.com``
and to the hosts in ``api_key_hosts`` (``"host"`` matches any port, ``"host:port"`` one port).
Redirects are never followed, so the key never travels to another host.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, SecretStr

from trustrec._config import Config, validate_config
from trustrec.errors import ConfigError, TrustrecError
from trustrec.models.llm._backend import LLMBackend

__all__ = ["EndpointError", "OpenAIBackend", "OpenAIBackendConfig"]


class EndpointError(TrustrecError):
    """An OpenAI-compatible endpoint could not be reached or gave an unusable answer."""


def _default_api_key() -> SecretStr:
    return SecretStr(os.environ.get("OPENAI_API_KEY", ""))


class OpenAIBackendConfig(Config):
    """Settings of :class:`OpenAIBackend`.

    ``base_url``: the server root, e.g. ``http://localhost:8000`` (a trailing ``/v1`` is accepted
    too); requests go to ``{base_url}/v1/completions``. ``model``: the model name the server
    serves. ``api_key``: sent as ``Authorization: Bearer ...`` when non-empty (default: the
    ``OPENAI_API_KEY`` environment variable; empty for local servers), under the rule of the
    module documentation: an explicit key goes to ``base_url``'s host (or only to
    ``api_key_hosts`` when set), a key from the environment only to ``api.openai.com`` and
    ``api_key_hosts``. ``timeout_s``: the longest wait for any single read from the server;
    ``deadline_s``: the longest one whole request may take; ``max_response_bytes``: the largest
    answer accepted (default 64 MiB); ``max_retries``: retries after the first attempt;
    ``backoff_s``: first retry delay, doubled each time; ``batch_size``: prompts per request;
    ``max_concurrency``: requests in flight at once.

    Parameters
    ----------
    base_url : str
        Server root, e.g. ``http://localhost:8000`` (a trailing ``/v1`` is accepted); requests go
        to ``{base_url}/v1/completions``.
    model : str
        Model name the server serves, sent with every request.
    api_key : SecretStr
        Sent as ``Authorization: Bearer ...`` when non-empty (default: the ``OPENAI_API_KEY``
        environment variable, else empty), only to the hosts the rule above allows.
    api_key_hosts : tuple of str
        Hosts (``host`` or ``host:port``, or URLs) that may receive the key (default none: an
        explicit key goes to ``base_url``'s host, a key from the environment only to
        ``api.openai.com``).
    timeout_s : float
        Longest wait, in seconds, for any single read from the server (default 60.0).
    deadline_s : float
        Longest time, in seconds, one whole request may take: connect, send, wait and read
        (default 600.0).
    max_response_bytes : int
        Largest answer accepted, in bytes after content decoding (default 64 MiB).
    max_retries : int
        Retries after the first attempt for connection errors, read timeouts, HTTP 429 and 5xx
        (default 3).
    backoff_s : float
        First retry delay in seconds, doubled at each retry (or the server's ``Retry-After``
        when longer, capped at 60 s) (default 0.5).
    batch_size : int
        Prompts (or prompt + continuation pairs when scoring) per request (default 16).
    max_concurrency : int
        Requests in flight at once (default 1: one batch after another). A server that batches
        continuously (vLLM) is fastest with several in flight; results keep the prompts' order
        whatever the order the answers arrive in.
    """

    base_url: str
    model: str
    api_key: SecretStr = Field(default_factory=_default_api_key)
    api_key_hosts: tuple[str, ...] = ()
    timeout_s: PositiveFloat = 60.0
    deadline_s: PositiveFloat = 600.0
    max_response_bytes: PositiveInt = 64 * 2**20
    max_retries: NonNegativeInt = 3
    backoff_s: NonNegativeFloat = 0.5
    batch_size: PositiveInt = 16
    max_concurrency: PositiveInt = 1


LOGPROB_TOLERANCE = 1e-6
"""Largest positive log-probability accepted (rounding); anything above is impossible."""
_OPENAI_HOST = "api.openai.com"


class _Refused(Exception):
    """Raised inside the request thread for an answer that is never retried."""


def _host_matches(host: str, port: int | None, allowed: str) -> bool:
    allowed = allowed.strip().lower()
    if "://" in allowed:
        parts = urlsplit(allowed)
        allowed = parts.hostname or ""
        if parts.port:
            allowed += f":{parts.port}"
    name, sep, want_port = allowed.rpartition(":") if allowed.count(":") == 1 else (allowed, "", "")
    if not sep:
        return host == allowed
    return host == name and str(port) == want_port


def _dumps(value) -> str:
    try:
        return json.dumps(value)[:2000]
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:2000]


def _excerpt(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


class OpenAIBackend(LLMBackend):
    """Scoring and generation through an OpenAI-compatible ``/v1/completions`` endpoint.

    >>> backend = OpenAIBackend("http://localhost:8000", model="HuggingFaceTB/SmolLM2-135M")  # doctest: +SKIP
    >>> backend.generate(["The user watched Heat and"], max_new_tokens=8)  # doctest: +SKIP

    See the module documentation for the exact request formats and how scores are computed.

    Parameters
    ----------
    base_url : str or None
        Server root, e.g. ``http://localhost:8000``; required unless ``config`` is given.
    config : OpenAIBackendConfig, mapping or None
        All settings at once (see :class:`OpenAIBackendConfig`); not together with ``base_url``
        or keywords.
    **kwargs
        The other :class:`OpenAIBackendConfig` fields as keywords (``model`` is required).

    Raises
    ------
    ConfigError
        When both ``config`` and arguments are given, neither is, or a setting is invalid.
    """

    config: OpenAIBackendConfig

    def __init__(
        self, base_url: str | None = None, *, config: OpenAIBackendConfig | Mapping | None = None, **kwargs: Any
    ):
        if config is not None and (base_url is not None or kwargs):
            raise ConfigError("OpenAIBackend: pass either config or keyword arguments, not both")
        if config is None:
            if base_url is None:
                raise ConfigError("OpenAIBackend: base_url is required, e.g. 'http://localhost:8000'")
            config = {"base_url": base_url, **kwargs}
        validated = validate_config(OpenAIBackendConfig, config, "OpenAIBackend")
        assert isinstance(validated, OpenAIBackendConfig)  # validate_config returns an instance of its class
        self.config = validated
        root = self.config.base_url.strip().rstrip("/")
        if not root.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAIBackend: base_url must start with http:// or https://; got {self.config.base_url!r}"
            )
        root = root.removesuffix("/v1")
        self.completions_url = root + "/v1/completions"
        self._client = None
        self._key_withheld = False

    def _authorization(self) -> str | None:
        """The key to send to ``base_url``, or None (the rule is in the module documentation)."""
        key = self.config.api_key.get_secret_value()
        if not key:
            return None
        parts = urlsplit(self.completions_url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = None
        allowed = list(self.config.api_key_hosts)
        explicit = "api_key" in self.config.model_fields_set
        if explicit and not allowed:
            return key
        if not explicit:
            allowed.append(_OPENAI_HOST)
        if any(_host_matches(host, port, a) for a in allowed):
            return key
        self._key_withheld = True
        return None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.config.model_dump_json()})"

    # -- HTTP ------------------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            try:
                import httpx
            except ImportError:  # pragma: no cover - depends on the environment
                raise ConfigError("OpenAIBackend needs httpx: pip install 'trustrec[serve]'") from None
            headers = {"Content-Type": "application/json"}
            key = self._authorization()
            if key:
                headers["Authorization"] = f"Bearer {key}"
            timeout = min(self.config.timeout_s, self.config.deadline_s)
            self._client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=False)
        return self._client

    def close(self) -> None:
        """Close the HTTP connection pool (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _stream(self, client, payload: dict[str, Any], deadline: float) -> tuple[int, Any, bytes]:
        """One POST, read to the end within the deadline and the size limit (runs in a thread)."""
        url, cfg = self.completions_url, self.config
        too_large = (
            f"OpenAIBackend: POST {url} answered with more than max_response_bytes="
            f"{cfg.max_response_bytes:,} bytes; the endpoint is misbehaving, or raise "
            "max_response_bytes (or lower batch_size)"
        )
        with client.stream("POST", url, json=payload) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > cfg.max_response_bytes:
                raise _Refused(too_large)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cfg.max_response_bytes:
                    raise _Refused(too_large)
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Refused(self._deadline_message())
            return response.status_code, response.headers, b"".join(chunks)

    def _deadline_message(self) -> str:
        return (
            f"OpenAIBackend: POST {self.completions_url} did not finish within deadline_s="
            f"{self.config.deadline_s:g} s (the server answers too slowly or never ends its answer); "
            "check the server, or raise deadline_s / lower batch_size and max_new_tokens"
        )

    def _request(self, payload: dict[str, Any]) -> tuple[int, Any, bytes]:
        """Run :meth:`_stream` in a daemon thread and wait at most ``deadline_s`` for it: no server
        behaviour (a trickle of bytes, headers that never end) can block the caller longer."""
        deadline = time.monotonic() + self.config.deadline_s
        client = self.client
        box: dict[str, Any] = {}

        def work():
            try:
                box["result"] = self._stream(client, payload, deadline)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=work, name="trustrec-openai-request", daemon=True)
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self.close()  # drop the stuck connection; the next call opens a new one
            raise EndpointError(self._deadline_message())
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to the completions URL with retries; the parsed JSON object, or EndpointError."""
        import httpx

        url, cfg = self.completions_url, self.config
        attempts = cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            delay = cfg.backoff_s * (2**attempt)
            try:
                status, headers, body = self._request(payload)
            except _Refused as exc:
                raise EndpointError(str(exc)) from None
            except httpx.TimeoutException:
                last = (
                    f"no answer within timeout_s={cfg.timeout_s:g} s; the server is overloaded or the "
                    "request is too large: raise timeout_s or lower batch_size / max_new_tokens"
                )
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                last = (
                    f"connection failed ({type(exc).__name__}: {exc}); check that the server is running "
                    "and that base_url (host and port) is right"
                )
            except httpx.HTTPError as exc:  # invalid URL, unsupported protocol, ...: not transient
                raise EndpointError(
                    f"OpenAIBackend: request to {url} failed: {type(exc).__name__}: {exc}; check base_url"
                ) from None
            else:
                if status == 200:
                    return self._parse_json(body, url)
                text = _excerpt(body.decode("utf-8", "replace"))
                if status == 429 or status >= 500:
                    last = f"HTTP {status} ({text!r}); the server is overloaded or failing"
                    retry_after = headers.get("Retry-After", "")
                    with contextlib.suppress(ValueError):
                        delay = max(delay, min(float(retry_after), 60.0))
                else:
                    withheld = (
                        " (OPENAI_API_KEY is set but was not sent to this host: pass api_key "
                        "explicitly or list the host in api_key_hosts)"
                        if self._key_withheld
                        else ""
                    )
                    hint = {
                        401: "set api_key (or OPENAI_API_KEY) to a valid key" + withheld,
                        403: "set api_key (or OPENAI_API_KEY) to a key allowed to use this model" + withheld,
                        404: "check base_url and that the server implements /v1/completions "
                        f"and serves model {cfg.model!r}",
                    }.get(status, f"check the request parameters and that the server serves model {cfg.model!r}")
                    raise EndpointError(f"OpenAIBackend: POST {url} returned HTTP {status}: {text!r}; {hint}")
            if attempt + 1 < attempts:
                time.sleep(min(delay, 60.0))
        raise EndpointError(f"OpenAIBackend: POST {url} failed after {attempts} attempt(s): {last}")

    @staticmethod
    def _parse_json(body: bytes, url: str) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except RecursionError:
            raise EndpointError(
                f"OpenAIBackend: POST {url} returned JSON nested too deeply to read; "
                "check that base_url points to an OpenAI-compatible server"
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise EndpointError(
                f"OpenAIBackend: POST {url} returned HTTP 200 but not JSON "
                f"({_excerpt(body.decode('utf-8', 'replace'))!r}); check that base_url points "
                "to an OpenAI-compatible server"
            ) from None
        if not isinstance(data, dict):
            raise EndpointError(
                f"OpenAIBackend: POST {url} returned JSON that is not an object "
                f"({_excerpt(body.decode('utf-8', 'replace'))!r}); expected an OpenAI "
                "completions response"
            )
        return data

    def _choices(self, data: dict[str, Any], n: int) -> list[dict[str, Any]]:
        """The ``n`` choices of a response, ordered by their ``index`` (0..n-1), or EndpointError."""
        url = self.completions_url
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise EndpointError(
                f"OpenAIBackend: the response of {url} has no 'choices' list "
                f"({_excerpt(_dumps(data))!r}); expected an OpenAI completions response"
            )
        if len(choices) != n:
            raise EndpointError(
                f"OpenAIBackend: {url} returned {len(choices)} choices for {n} prompts; "
                "the server must return one choice per prompt (n=1)"
            )
        ordered: list[dict[str, Any] | None] = [None] * n
        for c in choices:
            index = c.get("index") if isinstance(c, dict) else None
            if (
                isinstance(index, bool)
                or not isinstance(index, int)
                or not 0 <= index < n
                or ordered[index] is not None
            ):
                raise EndpointError(
                    f"OpenAIBackend: {url} returned a choice with a missing, duplicate or "
                    f"out-of-range 'index' ({_excerpt(_dumps(c))!r}) for {n} prompts"
                )
            ordered[index] = c
        return ordered  # type: ignore[return-value]

    # -- generation ------------------------------------------------------------------------------
    def _each_batch(self, items: list, work) -> list:
        """``work(batch)`` for each ``batch_size`` slice of ``items``, up to ``max_concurrency`` at a
        time; the answers in the order of ``items`` (the first error, in that order, is raised)."""
        size = self.config.batch_size
        batches = [items[start : start + size] for start in range(0, len(items), size)]
        if self.config.max_concurrency == 1 or len(batches) <= 1:
            return [answer for batch in batches for answer in work(batch)]
        from concurrent.futures import ThreadPoolExecutor

        _ = self.client  # one connection pool, built before the threads share it
        with ThreadPoolExecutor(min(self.config.max_concurrency, len(batches)), "trustrec-openai") as pool:
            futures = [pool.submit(work, batch) for batch in batches]
            return [answer for future in futures for answer in future.result()]

    def _generate(
        self, prompts: list[str], max_new_tokens: int, *, temperature: float, top_p: float, seed: int
    ) -> list[str]:
        def work(batch: list[str]) -> list[str]:
            data = self._post(
                {
                    "model": self.config.model,
                    "prompt": batch,
                    "max_tokens": max_new_tokens,
                    "temperature": temperature,
                    "top_p": top_p,
                    "seed": seed,
                    "n": 1,
                }
            )
            texts = []
            for k, c in enumerate(self._choices(data, len(batch))):
                text = c.get("text")
                if not isinstance(text, str):
                    raise EndpointError(
                        f"OpenAIBackend: choice {k} from {self.completions_url} has no 'text' "
                        "string; expected an OpenAI completions response"
                    )
                texts.append(text)
            return texts

        return self._each_batch(prompts, work)

    # -- scoring ---------------------------------------------------------------------------------
    def _score_pairs(self, prompts: list[str], continuations: list[str]):
        url = self.completions_url

        def work(batch: list[tuple[str, str]]) -> list[tuple[float, int]]:
            scored = []
            data = self._post(
                {
                    "model": self.config.model,
                    "prompt": [p + c for p, c in batch],
                    "max_tokens": 1,
                    "echo": True,
                    "logprobs": 1,
                    "temperature": 0.0,
                    "n": 1,
                }
            )
            for k, ((prompt, cont), choice) in enumerate(zip(batch, self._choices(data, len(batch)))):
                lp = choice.get("logprobs")
                offsets = lp.get("text_offset") if isinstance(lp, dict) else None
                values = lp.get("token_logprobs") if isinstance(lp, dict) else None
                if (
                    not isinstance(offsets, list)
                    or not isinstance(values, list)
                    or len(offsets) != len(values)
                    or not offsets
                ):
                    raise EndpointError(
                        f"OpenAIBackend.score_continuations: {url} did not return prompt log-probabilities "
                        "('logprobs' with 'token_logprobs' and 'text_offset' for the echoed prompt). Scoring "
                        "needs an endpoint that supports echo=true with logprobs on /v1/completions, such as "
                        "vLLM; Ollama and llama.cpp's server do not. Use generation only, or serve the model "
                        "with vLLM or trustrec's LocalBackend."
                    )
                self._check_logprobs(values, k)
                begin, end = len(prompt), len(prompt) + len(cont)
                total, n, starts_at_boundary = 0.0, 0, False
                for offset, value in zip(offsets, values):
                    if not isinstance(offset, int) or isinstance(offset, bool):
                        raise EndpointError(
                            f"OpenAIBackend.score_continuations: {url} returned a non-integer text_offset {offset!r}"
                        )
                    if offset == begin:
                        starts_at_boundary = True
                    if begin <= offset < end:
                        if isinstance(value, bool) or not isinstance(value, (int, float)):
                            hint = (
                                " (the prompt is empty, so the first token has no context; give a non-empty prompt)"
                                if begin == 0
                                else ""
                            )
                            raise EndpointError(
                                f"OpenAIBackend.score_continuations: {url} returned no "
                                f"log-probability ({value!r}) for a token of continuation "
                                f"{cont[:60]!r}{hint}"
                            )
                        total += float(value)
                        n += 1
                if not starts_at_boundary or n == 0:
                    raise EndpointError(
                        f"OpenAIBackend.score_continuations: in the server's tokenization of prompt + "
                        f"continuation no token starts where continuation {cont[:60]!r} begins (character "
                        f"{begin}): the tokenizer merged the end of the prompt with its start, so its tokens "
                        "cannot be separated. End prompts without a trailing space and start continuations "
                        "with one (e.g. ' Heat')."
                    )
                scored.append((total, n))
            return scored

        answers = self._each_batch(list(zip(prompts, continuations)), work)
        return [total for total, _ in answers], [n for _, n in answers]

    def _check_logprobs(self, values: list, k: int) -> None:
        """Every log-probability must be a finite number <= 0 (None marks a token without one)."""
        for t, value in enumerate(values):
            if value is None:
                continue
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value <= LOGPROB_TOLERANCE
            )
            if not ok:
                raise EndpointError(
                    f"OpenAIBackend.score_continuations: {self.completions_url} returned an impossible "
                    f"log-probability {value!r} in field choices[{k}].logprobs.token_logprobs[{t}] "
                    "(log-probabilities are finite numbers <= 0); the endpoint is misbehaving: check the "
                    "server and the model it serves"
                )
