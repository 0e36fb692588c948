"""Serve a fitted model over HTTP, with guardrails.

- :class:`RecommendationService` (no web framework): a finished run's model answering raw-id
  requests behind a :class:`GuardChain` (input limits, injection text, platform rules, a
  guardrail hook);
- :func:`create_app` (FastAPI, the ``serve`` extra, imported only when called): the HTTP layer,
  with API keys, per-key rate limits, a bounded queue, a body size limit and ``/metrics``;
- :func:`run_server`: the checks before binding (keys or ``--no-auth`` on loopback only), then
  uvicorn.
"""

from trustrec.serve._app import ServeSettings, check_bind, create_app, load_api_keys, run_server
from trustrec.serve._guards import (
    Guard,
    GuardChain,
    HookGuard,
    InjectionGuard,
    InputLimits,
    PlatformRulesGuard,
    Ranking,
    RequestRejected,
)
from trustrec.serve._service import (
    RecommendationRequest,
    RecommendationResponse,
    RecommendationService,
    RecommendedItem,
)

__all__ = [
    "Guard",
    "GuardChain",
    "HookGuard",
    "InjectionGuard",
    "InputLimits",
    "PlatformRulesGuard",
    "Ranking",
    "RecommendationRequest",
    "RecommendationResponse",
    "RecommendationService",
    "RecommendedItem",
    "RequestRejected",
    "ServeSettings",
    "check_bind",
    "create_app",
    "load_api_keys",
    "run_server",
]
