"""Your recommender behind an HTTP endpoint, as a trustrec model.

The JSON contract (every field name can be renamed with ``fields``)::

    POST <url>                                   HTTP 200
    {"k": 10,                                    {"results": [
     "exclude_seen": true,                          {"items": ["50", "181", ...],
     "queries": [                                    "scores": [4.1, 3.9, ...]},
       {"user_id": "196",                           ...
        "history": ["242", "302", ...],          ]}
        "candidates": null},
       ...]}

One result per query, in the order of the queries; ``items`` are raw item ids of the dataset,
best first; ``scores`` (optional) never increase; ``user_id`` is null for an anonymous query and
``candidates`` is null unless the query restricts the answer to a candidate list. trustrec removes
history items (when ``exclude_seen``) and items outside the candidates, then cuts to ``k``: return
at least ``k`` items. Queries go ``batch_size`` per request, at most ``max_concurrency`` requests
at a time; HTTP 429, 502, 503 and 504, timeouts and refused connections are retried ``max_retries``
times (waiting ``backoff_s`` doubled each time, or the server's ``Retry-After``); any other error
status, a body that is not the JSON above, an unknown item id or a NaN score is an
:class:`~trustrec.models.llm.EndpointError` naming the URL and the problem.

The endpoint serves a model its owner trains: retraining audits are not applicable (unless given
a ``model_spec``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions, Recommender
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.external._common import ExternalQueries, RefusesToSave, lists_to_topk
from trustrec.models.llm import EndpointError

__all__ = ["ENDPOINT_FIELDS", "ExternalEndpoint", "ExternalEndpointConfig"]

#: The JSON field names of the contract, by role (``fields`` renames them).
ENDPOINT_FIELDS: dict[str, str] = {
    "k": "k",
    "exclude_seen": "exclude_seen",
    "queries": "queries",
    "user": "user_id",
    "history": "history",
    "candidates": "candidates",
    "results": "results",
    "items": "items",
    "scores": "scores",
}
_RETRIED = {429, 502, 503, 504}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is an error, never followed: the body and the key would go to another URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class ExternalEndpointConfig(Config):
    """Settings of :class:`ExternalEndpoint`. Redirects are never followed: the request (and its
    key) goes only to ``url``.

    Parameters
    ----------
    url : str
        The endpoint (``http://`` or ``https://``) that answers the POST requests.
    fields : dict of str to str
        Renamed JSON fields, role -> name (roles: the keys of ``ENDPOINT_FIELDS``).
    headers : dict of str to str
        Extra request headers (no secrets: the config is written to the audit index).
    api_key_env : str or None
        Name of an environment variable holding an API key, sent as ``Authorization: Bearer``.
    timeout_s : float
        Longest wait for one request, seconds.
    batch_size : int
        Queries per request.
    max_concurrency : int
        Requests in flight at once.
    max_retries : int
        Retries of a request after 429/502/503/504, a timeout or a refused connection.
    backoff_s : float
        First retry delay in seconds, doubled at each retry (the server's Retry-After when longer).
    max_response_bytes : int
        Largest answer accepted, in bytes (default 64 MiB); a larger one is refused.
    """

    url: str = Field(min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    api_key_env: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    batch_size: PositiveInt = 64
    max_concurrency: PositiveInt = 4
    max_retries: NonNegativeInt = 3
    backoff_s: float = Field(0.5, ge=0)
    max_response_bytes: PositiveInt = 64 * 2**20

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value

    @field_validator("fields")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = set(value) - set(ENDPOINT_FIELDS)
        if unknown:
            raise ValueError(f"fields: unknown role(s) {sorted(unknown)}; roles: {sorted(ENDPOINT_FIELDS)}")
        return value


@register_model
class ExternalEndpoint(RefusesToSave, Recommender):
    """Your recommender's HTTP endpoint as a trustrec model (the JSON contract is in the module docstring).

    Parameters
    ----------
    config : ExternalEndpointConfig, mapping or None
        The settings; None: from the keyword arguments.
    **kwargs
        The settings as keyword arguments (``url``, ``fields``, ``headers``, ``api_key_env`` ...).
    """

    name = "external_endpoint"
    config_class = ExternalEndpointConfig
    config: ExternalEndpointConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({"uses_history", "candidates"})

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        env = self.config.api_key_env
        if env is not None and not os.environ.get(env):
            raise ConfigError(f"{self.name}: api_key_env names {env!r}, but that environment variable is not set")
        self.item_index_ = pd.Index(self.item_ids_)

    def audit_gap(self, need: str) -> str | None:
        if need == "retraining":
            return (
                f"{self.name} serves a model its owner trains at {self.config.url}; trustrec cannot retrain it "
                "on other data (wrap your training code as external_scorer with a fit function to run "
                "retraining audits)"
            )
        return None

    def _unsaved_reason(self) -> str:
        return f"nothing to save; the endpoint {self.config.url} is the model"

    def _field(self, role: str) -> str:
        return self.config.fields.get(role, ENDPOINT_FIELDS[role])

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """Ask the endpoint, batch by batch (concurrently), and check its answers.

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Items per list.
        exclude_seen : bool
            Whether history items are removed (also sent, as ``exclude_seen``).

        Returns
        -------
        TopK
            The ranked items and scores.

        Raises
        ------
        EndpointError
            When the endpoint fails or answers outside the contract.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        size = self.config.batch_size
        batches = [queries[s : s + size] for s in range(0, len(queries), size)]
        if not batches:
            return TopK(np.empty((0, k)), np.empty((0, k)))
        with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(batches))) as pool:
            parts = list(pool.map(lambda b: self._answer(b, k, exclude_seen), batches))
        return TopK.concat(parts)

    def _answer(self, batch: QueryBatch, k: int, exclude_seen: bool) -> TopK:
        raw = ExternalQueries.from_batch(batch, self.item_ids_, self.user_ids_, k=k, exclude_seen=exclude_seen)
        f = self._field
        body = {
            f("k"): k,
            f("exclude_seen"): exclude_seen,
            f("queries"): [
                {
                    f("user"): raw.user_ids[i],
                    f("history"): raw.histories[i],
                    f("candidates"): None if raw.candidates is None else raw.candidates[i],
                }
                for i in range(len(raw))
            ],
        }
        data = self._post(body)
        url = self.config.url
        results = data.get(f("results")) if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise EndpointError(
                f"{self.name}: POST {url} answered JSON without a {f('results')!r} list "
                f"(got {str(data)[:200]!r}); see the JSON contract in trustrec.models.external"
            )
        if len(results) != len(batch):
            raise EndpointError(f"{self.name}: POST {url} answered {len(results)} results for {len(batch)} queries")
        lists: list[list[Any]] = []
        scores: list[Any] = []
        for i, r in enumerate(results):
            if not isinstance(r, dict) or not isinstance(r.get(f("items")), list):
                raise EndpointError(f"{self.name}: POST {url}: result {i} has no {f('items')!r} list: {str(r)[:200]!r}")
            lists.append(r[f("items")])
            s = r.get(f("scores"))
            if s is not None and not isinstance(s, list):
                raise EndpointError(f"{self.name}: POST {url}: result {i}: {f('scores')!r} is not a list")
            scores.append(s)
        have = [s is not None for s in scores]
        if any(have) and not all(have):
            raise EndpointError(f"{self.name}: POST {url}: some results have scores and some do not")
        try:
            return lists_to_topk(
                lists, scores if all(have) else None, self.item_index_, batch, k, exclude_seen, f"POST {url}"
            )
        except DataError as exc:
            raise EndpointError(f"{self.name}: {exc}") from None

    def _post(self, body: dict[str, Any]) -> Any:
        c = self.config
        headers = {"Content-Type": "application/json", "Accept": "application/json", **c.headers}
        if c.api_key_env is not None:
            headers["Authorization"] = f"Bearer {os.environ.get(c.api_key_env, '')}"
        payload = json.dumps(body).encode()
        last = ""
        for attempt in range(c.max_retries + 1):
            delay = c.backoff_s * 2**attempt
            request = urllib.request.Request(c.url, data=payload, headers=headers, method="POST")
            try:
                with _OPENER.open(request, timeout=c.timeout_s) as response:
                    text = response.read(c.max_response_bytes + 1)
                if len(text) > c.max_response_bytes:
                    raise EndpointError(
                        f"{self.name}: POST {c.url} answered with more than max_response_bytes="
                        f"{c.max_response_bytes:,} bytes; lower batch_size or raise max_response_bytes"
                    )
            except urllib.error.HTTPError as exc:
                detail = exc.read(200).decode("utf-8", "replace")
                if 300 <= exc.code < 400:
                    raise EndpointError(
                        f"{self.name}: POST {c.url} answered with a redirect (HTTP {exc.code} to "
                        f"{exc.headers.get('Location', '?') if exc.headers else '?'}); redirects are not followed, so "
                        "the request and its key go only to the configured url: configure the final url"
                    ) from None
                if exc.code not in _RETRIED:
                    raise EndpointError(f"{self.name}: POST {c.url} returned HTTP {exc.code}: {detail!r}") from None
                last = f"HTTP {exc.code} ({detail!r})"
                retry_after = exc.headers.get("Retry-After", "") if exc.headers else ""
                with contextlib.suppress(ValueError):
                    delay = max(delay, min(float(retry_after), 60.0))
            except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                timed_out = isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError)
                last = (
                    f"no answer within timeout_s={c.timeout_s:g} s"
                    if timed_out
                    else f"connection failed ({reason}); check that the server runs and the url is right"
                )
            else:
                try:
                    return json.loads(text)
                except (ValueError, RecursionError):
                    raise EndpointError(
                        f"{self.name}: POST {c.url} returned HTTP 200 but not JSON: "
                        f"{text[:200].decode('utf-8', 'replace')!r}"
                    ) from None
            if attempt < c.max_retries:
                time.sleep(min(delay, 60.0))
        raise EndpointError(f"{self.name}: POST {c.url} failed after {c.max_retries + 1} attempt(s): {last}")
