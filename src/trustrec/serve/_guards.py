"""The guard chain: small named checks on every request and every response of the service.

A guard is an object with a ``name`` and up to four hooks, each a no-op unless overridden:

- ``check_request(request)``: before the model runs; raise :class:`RequestRejected` to refuse;
- ``extra_depth(request)``: how many more of the model's ranked items the guard may need
  (a guard that removes items asks for deeper lists so the answer can still hold ``k`` items);
- ``filter_ranking(request, ranking)``: after the model, on the ranked candidates (item
  indices and scores, deeper than ``k``); returns the ranking to keep;
- ``check_response(request, response)``: on the final response (raw ids, titles); raise to veto;
- ``commit(request, response)``: the response is going out (e.g. count exposure).

:class:`GuardChain` runs its guards in order; the default chain is
``[InputLimits(), InjectionGuard()]`` and the service adds :class:`PlatformRulesGuard` and
:class:`HookGuard` when rules or a hook are given. A rejection names the guard and what is
wrong, and carries the HTTP status the service answers with (4xx; 503 for a failing hook).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trustrec.errors import ConfigError, TrustrecError

if TYPE_CHECKING:
    from trustrec.serve._service import RecommendationRequest, RecommendationResponse

__all__ = [
    "Guard",
    "GuardChain",
    "HookGuard",
    "InjectionGuard",
    "InputLimits",
    "PlatformRulesGuard",
    "Ranking",
    "RequestRejected",
]


class RequestRejected(TrustrecError):
    """A request (or its response) refused by the service: ``status`` is the HTTP status to
    answer with, ``guard`` the name of what refused it, ``reason`` what is wrong.

    Parameters
    ----------
    reason : str
        What is wrong, naming the field or id.
    status : int
        The HTTP status (4xx for the client's fault; 503 when a guardrail hook failed).
    guard : str
        The guard (or service step) that refused.
    headers : mapping of str to str or None
        HTTP headers the answer carries (``Retry-After`` ...).
    detail : list of dict or None
        Machine-readable detail (the schema errors of a 422).
    """

    def __init__(
        self,
        reason: str,
        status: int = 422,
        guard: str = "service",
        *,
        headers: Mapping[str, str] | None = None,
        detail: list[dict[str, Any]] | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.status = int(status)
        self.guard = guard
        self.headers = dict(headers or {})
        self.detail = detail


@dataclass
class Ranking:
    """The model's ranked candidates for one request, before cutting to ``k``.

    Parameters
    ----------
    items : numpy.ndarray
        Item indices, best first (no padding).
    scores : numpy.ndarray
        Their scores (finite).
    rules_applied : list of str
        What changed the list so far, in words.
    warnings : list of str
        What the client should know about the list.
    """

    items: np.ndarray
    scores: np.ndarray
    rules_applied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Guard:
    """Base class of a guard: a ``name`` and four hooks that do nothing (module docstring)."""

    name: str = "guard"

    def check_request(self, request: RecommendationRequest) -> None:
        """Refuse a request by raising :class:`RequestRejected`; return None to let it through.

        Parameters
        ----------
        request : RecommendationRequest
            The request as the service received it.
        """

    def extra_depth(self, request: RecommendationRequest) -> int:
        """How many more ranked items than ``k`` this guard may remove.

        Parameters
        ----------
        request : RecommendationRequest
            The request.

        Returns
        -------
        int
            Extra depth (0 by default).
        """
        return 0

    def filter_ranking(self, request: RecommendationRequest, ranking: Ranking) -> Ranking:
        """The ranking to keep (default: unchanged).

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        ranking : Ranking
            The ranked candidates.

        Returns
        -------
        Ranking
            The ranking after this guard.
        """
        return ranking

    def check_response(self, request: RecommendationRequest, response: RecommendationResponse) -> None:
        """Veto a response by raising :class:`RequestRejected`.

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        response : RecommendationResponse
            The response about to be sent.
        """

    def commit(self, request: RecommendationRequest, response: RecommendationResponse) -> None:
        """The response is sent: record what must be remembered.

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        response : RecommendationResponse
            The response sent.
        """

    def describe(self) -> dict[str, Any]:
        """The guard's settings, for ``/version`` and logs.

        Returns
        -------
        dict of str to object
            ``name`` and the settings.
        """
        return {"name": self.name}


@dataclass(frozen=True)
class InputLimits(Guard):
    """Size limits of a request: history length, ``k`` range, candidate list length, text size.

    Parameters
    ----------
    max_history : int
        Most history items a request may give.
    min_k, max_k : int
        The range of ``k`` (inclusive).
    max_candidates : int
        Most candidate items a request may give.
    max_text_chars : int
        Most characters of the constraint text.
    """

    max_history: int = 500
    min_k: int = 1
    max_k: int = 100
    max_candidates: int = 2000
    max_text_chars: int = 500
    name: str = field(default="input_limits", init=False)

    def __post_init__(self):
        for key in ("max_history", "min_k", "max_k", "max_candidates", "max_text_chars"):
            if getattr(self, key) < 0:
                raise ConfigError(f"InputLimits: {key} must be >= 0, got {getattr(self, key)}")
        if self.min_k > self.max_k:
            raise ConfigError(f"InputLimits: min_k ({self.min_k}) is above max_k ({self.max_k})")

    def check_request(self, request: RecommendationRequest) -> None:
        def refuse(reason: str) -> None:
            raise RequestRejected(reason, 422, self.name)

        if not self.min_k <= request.k <= self.max_k:
            refuse(f"k must be between {self.min_k} and {self.max_k}, got {request.k}")
        if request.history is not None and len(request.history) > self.max_history:
            refuse(f"history has {len(request.history)} items; at most {self.max_history} are accepted")
        if request.candidates is not None and len(request.candidates) > self.max_candidates:
            refuse(f"candidates has {len(request.candidates)} items; at most {self.max_candidates} are accepted")
        if request.constraint is not None and len(request.constraint) > self.max_text_chars:
            refuse(f"constraint has {len(request.constraint)} characters; at most {self.max_text_chars} are accepted")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_history": self.max_history,
            "k": [self.min_k, self.max_k],
            "max_candidates": self.max_candidates,
            "max_text_chars": self.max_text_chars,
        }


@dataclass(frozen=True)
class InjectionGuard(Guard):
    """Prompt-injection text in the request's constraint
    (:func:`trustrec.models.llm.find_injections`: the documented patterns on the text's
    skeleton). ``mode="reject"`` refuses the request (422 naming the patterns found);
    ``mode="flag"`` drops the constraint and says so in a warning.

    Parameters
    ----------
    mode : {"reject", "flag"}
        What to do with a constraint holding instruction-like text.
    """

    mode: Literal["reject", "flag"] = "reject"
    name: str = field(default="injection", init=False)

    def __post_init__(self):
        if self.mode not in ("reject", "flag"):
            raise ConfigError(f"InjectionGuard: mode must be 'reject' or 'flag', got {self.mode!r}")

    def check_request(self, request: RecommendationRequest) -> None:
        from trustrec.models.llm import find_injections

        if not request.constraint:
            return
        found = sorted({m.name for m in find_injections(request.constraint)})
        if not found:
            return
        if self.mode == "reject":
            raise RequestRejected(
                f"constraint holds instruction-like text (patterns: {', '.join(found)}); "
                "state a preference such as 'no horror' or 'films before 1980'",
                422,
                self.name,
            )
        request.constraint = None
        request.notes.append(f"constraint ignored: instruction-like text (patterns: {', '.join(found)})")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode}


class PlatformRulesGuard(Guard):
    """Platform rules on every response: ``blocked`` items are never returned, and no item is
    in more than ``max_exposure_share`` of the last ``window`` responses (the cap of
    :meth:`trustrec.mitigate.PlatformRules.cap` over ``window`` lists). Both are enforced with
    :func:`trustrec.mitigate.enforce_rules`: an item at its cap is treated as blocked for the
    request, and the list is filled from deeper in the model's ranking.

    Parameters
    ----------
    blocked : sequence of int
        Item indices never shown.
    max_exposure_share : float or None
        The exposure cap, in (0, 1]; None: no cap.
    window : int
        How many recent responses the cap counts over (positive).
    """

    name = "platform_rules"

    def __init__(self, blocked: Sequence[int] = (), max_exposure_share: float | None = None, window: int = 100):
        from trustrec.mitigate import PlatformRules

        if window < 1:
            raise ConfigError(f"PlatformRulesGuard: window must be >= 1, got {window}")
        self.rules = PlatformRules(np.asarray(list(blocked), np.int64), max_exposure_share)
        self.window = int(window)
        self._recent: deque[tuple[int, ...]] = deque()
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()

    @property
    def cap(self) -> int | None:
        """The most of the last ``window`` responses one item may be in (None: no cap)."""
        return self.rules.cap(self.window)

    def capped(self) -> list[int]:
        """The items at their cap now (they cannot be shown until older responses age out).

        Returns
        -------
        list of int
            Item indices, sorted.
        """
        cap = self.cap
        if cap is None:
            return []
        with self._lock:
            return sorted(i for i, c in self._counts.items() if c >= cap)

    def extra_depth(self, request: RecommendationRequest) -> int:
        return len(self.rules.blocked) + len(self.capped())

    def filter_ranking(self, request: RecommendationRequest, ranking: Ranking) -> Ranking:
        from trustrec.mitigate import PlatformRules, enforce_rules

        capped = self.capped()
        removed_blocked = int(np.isin(ranking.items, self.rules.blocked).sum())
        removed_capped = int(np.isin(ranking.items, capped).sum())
        if not removed_blocked and not removed_capped:
            return ranking
        rules = PlatformRules(np.union1d(self.rules.blocked, np.asarray(capped, np.int64)))
        n_items = int(max(ranking.items.max(initial=0), rules.blocked.max(initial=0))) + 1
        top = enforce_rules(ranking.items[None, :], ranking.scores[None, :], rules, len(ranking.items), n_items)
        keep = top.items[0] >= 0
        if removed_blocked:
            ranking.rules_applied.append(f"platform rules: {removed_blocked} blocked item(s) removed")
        if removed_capped:
            ranking.rules_applied.append(
                f"platform rules: {removed_capped} item(s) at the exposure cap ({self.cap} of the last "
                f"{self.window} responses) removed"
            )
        return Ranking(top.items[0][keep], top.scores[0][keep], ranking.rules_applied, ranking.warnings)

    def commit(self, request: RecommendationRequest, response: RecommendationResponse) -> None:
        if self.cap is None:
            return
        shown = tuple(sorted(set(response.item_indices)))
        with self._lock:
            self._recent.append(shown)
            self._counts.update(shown)
            while len(self._recent) > self.window:
                self._counts.subtract(self._recent.popleft())
            self._counts = +self._counts  # drop the zero counts

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_blocked": len(self.rules.blocked),
            "max_exposure_share": self.rules.max_exposure_share,
            "window": self.window,
        }


class HookGuard(Guard):
    """The guardrail seam: a callable ``hook(request, response)`` sees every response before it
    is sent and returns None to allow it or a reason (str) to veto it (403 naming the hook and
    the reason). A hook that raises fails closed: the request gets a 503 that says the
    guardrail failed (the hook's error is not shown to the client).

    Parameters
    ----------
    hook : callable
        ``hook(request, response) -> str | None``.
    name : str
        The name reported in a veto.
    """

    def __init__(
        self,
        hook: Callable[[RecommendationRequest, RecommendationResponse], str | None],
        name: str = "guardrail_hook",
    ):
        if not callable(hook):
            raise ConfigError(f"HookGuard: hook must be callable, got {type(hook).__name__}")
        self.hook = hook
        self.name = name

    def check_response(self, request: RecommendationRequest, response: RecommendationResponse) -> None:
        try:
            reason = self.hook(request, response)
        except Exception as exc:  # noqa: BLE001 - a failing guardrail must fail closed, never answer unchecked
            raise RequestRejected(
                f"guardrail '{self.name}' failed ({type(exc).__name__}); the response was withheld", 503, self.name
            ) from None
        if reason is not None:
            raise RequestRejected(f"vetoed by guardrail '{self.name}': {reason}", 403, self.name)


class GuardChain:
    """Guards run in order on every request and response (module docstring).

    Parameters
    ----------
    guards : iterable of Guard
        The guards, in the order they run; names must be distinct.
    """

    def __init__(self, guards: Iterable[Guard] = ()):
        self.guards = list(guards)
        names = [g.name for g in self.guards]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"GuardChain: guard names must be distinct; repeated: {dup}")

    @classmethod
    def default(cls) -> GuardChain:
        """``[InputLimits(), InjectionGuard()]``.

        Returns
        -------
        GuardChain
            The default chain.
        """
        return cls([InputLimits(), InjectionGuard()])

    @property
    def names(self) -> list[str]:
        """The guards' names, in order."""
        return [g.name for g in self.guards]

    def get(self, name: str) -> Guard | None:
        """The guard called ``name``, or None.

        Parameters
        ----------
        name : str
            The guard's name.

        Returns
        -------
        Guard or None
            The guard.
        """
        return next((g for g in self.guards if g.name == name), None)

    def check_request(self, request: RecommendationRequest) -> None:
        """Every guard's :meth:`Guard.check_request`, in order.

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        """
        for g in self.guards:
            g.check_request(request)

    def extra_depth(self, request: RecommendationRequest) -> int:
        """The sum of the guards' :meth:`Guard.extra_depth`.

        Parameters
        ----------
        request : RecommendationRequest
            The request.

        Returns
        -------
        int
            Extra ranking depth.
        """
        return sum(g.extra_depth(request) for g in self.guards)

    def filter_ranking(self, request: RecommendationRequest, ranking: Ranking) -> Ranking:
        """Every guard's :meth:`Guard.filter_ranking`, in order.

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        ranking : Ranking
            The model's ranked candidates.

        Returns
        -------
        Ranking
            The ranking after every guard.
        """
        for g in self.guards:
            ranking = g.filter_ranking(request, ranking)
        return ranking

    def check_response(self, request: RecommendationRequest, response: RecommendationResponse) -> None:
        """Every guard's :meth:`Guard.check_response`, then (nothing vetoed) every :meth:`Guard.commit`.

        Parameters
        ----------
        request : RecommendationRequest
            The request.
        response : RecommendationResponse
            The response about to be sent.
        """
        for g in self.guards:
            g.check_response(request, response)
        for g in self.guards:
            g.commit(request, response)

    def describe(self) -> list[dict[str, Any]]:
        """Each guard's :meth:`Guard.describe`.

        Returns
        -------
        list of dict
            The guards' settings, in order.
        """
        return [g.describe() for g in self.guards]
