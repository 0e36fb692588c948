"""The recommendation service: a fitted model answering raw-id requests behind a guard chain.

No web framework here: :class:`RecommendationService` takes a :class:`RecommendationRequest`
(raw user id or a history of raw item ids, ``k``, optional candidates, an optional
natural-language constraint, optional explanations) and returns a
:class:`RecommendationResponse` (raw item ids, titles, scores, the rules applied, warnings, the
model name, the request id), or raises :class:`~trustrec.serve.RequestRejected` with the HTTP
status to answer with. The FastAPI app (:func:`trustrec.serve.create_app`) is a thin layer on it.

One request, step by step:

1. the guard chain's request checks (input limits, injection text ...);
2. ids: an unknown user id is a 404, unknown item ids (history, candidates) a 422, each naming
   the ids; a request with a user id and no history uses that user's history in the run's
   split (train + valid interactions: what the model is given for the test part); no user and
   an empty history is a 422;
3. the constraint is parsed with :func:`trustrec.mitigate.parse_constraint` over the catalog
   and enforced as :class:`~trustrec.mitigate.ConstrainedRecommender` does in its
   ``candidates`` mode: the allowed items (intersected with the request's candidates) become the
   query's candidates, so the model ranks only them, and the final list is checked again;
   what the parser did not understand is reported in ``warnings``, never silently dropped;
4. the model ranks (one call at a time: ``recommend`` runs under a lock, since torch models
   are not always thread-safe), deep enough for the guards that remove items; items with
   non-finite scores are dropped with a warning;
5. the guards' ranking filters (platform rules), the cut to ``k``, titles, explanations;
6. the guards' response checks (the guardrail hook may veto), then the response is committed.

Micro-batching (:meth:`RecommendationService.submit`, what the HTTP layer uses when
``max_batch > 1``): requests that arrive together are collected by one batcher thread (up to
``max_batch``; when it was idle, it waits at most ``max_wait_ms`` for companions) and answered by
:meth:`RecommendationService.recommend_batch`: steps 1-3 for each request, then one
``model.recommend`` call for the requests without candidates and one for those with candidates
(the model's candidate lists have no "whole catalog" row), as deep as the deepest request, each
row cut to its request's own depth (top-k lists are prefixes of deeper ones: ties go to the lower
item index); then steps 5-6 one request at a time, in arrival order, so exposure caps count
exactly as one request at a time would. A request whose depth grew meanwhile (an exposure cap
filled) or whose batch the model refused is ranked alone, so the answers are the ones
:meth:`RecommendationService.recommend` gives. LLM recommenders are never batched across
requests: a padded batch changes their scores in the last bits, so an answer would depend on
what else arrived.

Explanations are leave-one-out attributions
(:func:`trustrec.audit.explainability.attribute`): for each item, the history items whose
removal lowers its score most (only those that raise it are cited; at most 3, from the last
20 history items). Models without full-catalog scores, and LLM recommenders (one LLM call per
history item), get a warning that explanations are not available instead.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trustrec.errors import ConfigError, DataError, TrustrecError
from trustrec.serve._guards import Guard, GuardChain, HookGuard, PlatformRulesGuard, Ranking, RequestRejected

if TYPE_CHECKING:
    from concurrent.futures import Future

    from trustrec.data import QueryBatch, Ragged
    from trustrec.mitigate import ControlCatalog
    from trustrec.models import Recommender

__all__ = [
    "RecommendationRequest",
    "RecommendationResponse",
    "RecommendationService",
    "RecommendedItem",
]

log = logging.getLogger("trustrec.serve")
_ID_BITS = random.Random(secrets.randbits(128))


def new_request_id() -> str:
    """A random request id: 32 hex characters, as a UUID's, drawn from a generator seeded once
    from the system's entropy. ``uuid4`` reads the system's entropy for every id, a system call
    that showed in the server's profile; a counter would tell clients how many requests were served."""
    return f"{_ID_BITS.getrandbits(128):032x}"


N_CITED = 3
EXPLAIN_HISTORY = 20
_SHOWN_IDS = 5


@dataclass
class RecommendationRequest:
    """One request, in raw ids.

    Parameters
    ----------
    user_id : str or None
        A user of the training data (its history is used when ``history`` is None).
    history : list of str or None
        Raw item ids, oldest first; None: the user's history.
    k : int
        How many items to return.
    candidates : list of str or None
        Only these raw item ids may be returned; None: the whole catalog.
    constraint : str or None
        A natural-language constraint ("no horror", "only films before 1980").
    explain : bool
        Whether each item gets an explanation.
    request_id : str
        The request's id (generated when empty).
    notes : list of str
        Warnings the request guards add (e.g. an ignored constraint).
    """

    user_id: str | None = None
    history: list[str] | None = None
    k: int = 10
    candidates: list[str] | None = None
    constraint: str | None = None
    explain: bool = False
    request_id: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.request_id:
            self.request_id = new_request_id()


@dataclass(frozen=True)
class RecommendedItem:
    """One recommended item.

    Parameters
    ----------
    item_id : str
        The raw item id.
    title : str or None
        Its title (None when the catalog has none).
    score : float
        The model's score (finite).
    because : list of dict or None
        With explanations: the history items that raised this item's score most
        (``item_id``, ``title``, ``attribution``); None when not asked or not available.
    """

    item_id: str
    title: str | None
    score: float
    because: list[dict[str, Any]] | None = None


@dataclass
class RecommendationResponse:
    """The answer to one request.

    Parameters
    ----------
    request_id : str
        The request's id.
    model : str
        The model's registered name.
    items : list of RecommendedItem
        The recommendations, best first.
    rules_applied : list of str
        What shaped the list (constraints, platform rules), in words.
    warnings : list of str
        What the client should know (parts of a constraint not understood, dropped scores,
        explanations not available ...).
    user_id : str or None
        The user asked about.
    explanation_method : str or None
        How explanations were computed, when given.
    item_indices : list of int
        The items' catalog indices (for guards; not sent to clients).
    """

    request_id: str
    model: str
    items: list[RecommendedItem]
    rules_applied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    user_id: str | None = None
    explanation_method: str | None = None
    item_indices: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The response as JSON-able data (without ``item_indices``).

        Returns
        -------
        dict of str to object
            The fields clients see.
        """
        return {
            "request_id": self.request_id,
            "model": self.model,
            "user_id": self.user_id,
            "items": [
                {"item_id": i.item_id, "title": i.title, "score": i.score, "because": i.because} for i in self.items
            ],
            "rules_applied": list(self.rules_applied),
            "warnings": list(self.warnings),
            "explanation_method": self.explanation_method,
        }


@dataclass
class _Prepared:
    """A request after steps 1-3: the user index, the history and allowed items as indices, and
    the rules and warnings so far."""

    request: RecommendationRequest
    user: int
    history: np.ndarray
    allowed: np.ndarray | None
    rules: list[str]
    warnings: list[str]

    def queries(self) -> QueryBatch:
        """The request as a batch of one (what the model and the explanations are given)."""
        from trustrec.data import QueryBatch, Ragged

        return QueryBatch.from_histories(
            [self.history],
            users=[self.user],
            texts=(self.request.constraint,),
            candidates=None if self.allowed is None else Ragged.from_rows([self.allowed]),
        )


def _or_rejection(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the :class:`RequestRejected` it raised."""
    try:
        return fn(*args)
    except RequestRejected as exc:
        return exc


def _shown(ids: Sequence[str]) -> str:
    head = ", ".join(repr(i[:60]) for i in ids[:_SHOWN_IDS])
    return head + (f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else "")


class RecommendationService:
    """A fitted model answering raw-id requests behind a guard chain (module docstring).

    Parameters
    ----------
    model : Recommender
        A fitted model with an id vocabulary (``item_ids_``, ``user_ids_``: saved by trustrec).
    titles : sequence of str or None
        The title of each item index (None: no titles).
    histories : Ragged or None
        Each user index's history (None: users have no stored history).
    catalog : ControlCatalog or None
        What constraints are parsed against (None: constraints are not available and are
        reported as ignored).
    guards : GuardChain, sequence of Guard or None
        The guard chain (None: :meth:`GuardChain.default`).
    info : mapping or None
        What ``/version`` reports beside the model (run name, dataset, checkpoint version).
    max_batch : int
        Most requests :meth:`submit` answers with one model call (1: one at a time; LLM
        recommenders always 1, see the module docstring).
    max_wait_ms : float
        How long the idle batcher waits for more requests to join the first one.
    """

    def __init__(
        self,
        model: Recommender,
        *,
        titles: Sequence[str] | None = None,
        histories: Ragged | None = None,
        catalog: ControlCatalog | None = None,
        guards: GuardChain | Sequence[Guard] | None = None,
        info: dict[str, Any] | None = None,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
    ):
        if not model.is_fitted():
            raise ConfigError(f"RecommendationService: the {type(model).__name__} is not fitted")
        if not model.has_vocabulary():
            raise ConfigError(
                f"RecommendationService: the {type(model).__name__} has no id vocabulary (item_ids_, user_ids_); "
                "refit and save it with this trustrec"
            )
        self.model = model
        self.model_name = str(getattr(model, "name", type(model).__name__))
        self.n_items = int(model.n_items_)
        self.item_ids: list[str] = list(model.item_ids_)
        self.user_ids: list[str] = list(model.user_ids_)
        self._item_index = {raw: i for i, raw in enumerate(self.item_ids)}
        self._user_index = {raw: i for i, raw in enumerate(self.user_ids)}
        if titles is not None and len(titles) != self.n_items:
            raise ConfigError(f"RecommendationService: {len(titles)} titles for {self.n_items} items")
        self.titles = None if titles is None else [str(t) if t is not None else None for t in titles]
        if histories is not None and len(histories) != len(self.user_ids):
            raise ConfigError(f"RecommendationService: {len(histories)} histories for {len(self.user_ids)} users")
        self.histories = histories
        self.catalog = catalog
        self.guards = (
            guards if isinstance(guards, GuardChain) else GuardChain.default() if guards is None else GuardChain(guards)
        )
        self.info = dict(info or {})
        if int(max_batch) < 1 or not 0 <= float(max_wait_ms) <= 1000:
            raise ConfigError(
                f"RecommendationService: max_batch must be >= 1 and max_wait_ms in [0, 1000]; got {max_batch}, "
                f"{max_wait_ms}"
            )
        caps: frozenset[str] = frozenset(getattr(model, "capabilities", ()))
        self.uses_llm = "llm_backend" in caps
        self.max_batch = 1 if self.uses_llm else int(max_batch)
        self.max_wait_ms = float(max_wait_ms)
        self._lock = threading.Lock()
        self._batcher: Any = None
        self._batcher_lock = threading.Lock()

    # -- construction from a run ----------------------------------------------------------
    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        guards: GuardChain | Sequence[Guard] | None = None,
        blocked_items: Iterable[str] = (),
        max_exposure_share: float | None = None,
        exposure_window: int = 100,
        hook: Callable[[RecommendationRequest, RecommendationResponse], str | None] | None = None,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
    ) -> RecommendationService:
        """The service of a finished run directory (``trustrec run`` output): the checkpoint
        (refused when written by a newer trustrec), and the dataset and split rebuilt from the
        run's config (titles, user histories, the constraint catalog).

        Parameters
        ----------
        run_dir : str or Path
            The run directory (config.yaml, metrics.json, checkpoint/).
        guards : GuardChain, sequence of Guard or None
            The request guards (None: :meth:`GuardChain.default`).
        blocked_items : iterable of str
            Raw item ids never returned (adds a :class:`PlatformRulesGuard`).
        max_exposure_share : float or None
            The exposure cap of the platform rules (None: none).
        exposure_window : int
            How many recent responses the exposure cap counts over.
        hook : callable or None
            A guardrail ``hook(request, response) -> str | None`` (adds a :class:`HookGuard`).
        max_batch : int
            Most requests answered by one model call (see the class).
        max_wait_ms : float
            How long the idle batcher waits for companions (see the class).

        Returns
        -------
        RecommendationService
            The service.

        Raises
        ------
        DataError
            When the folder is not a finished run, or its data no longer matches the checkpoint.
        ConfigError
            When the checkpoint was written by a newer trustrec, or a blocked id is unknown.
        """
        from trustrec.mitigate import ControlCatalog
        from trustrec.models import Recommender, check_checkpoint_version
        from trustrec.runs import load_run_config, prepare_data

        run_dir = Path(run_dir)
        for needed in ("config.yaml", "metrics.json", "checkpoint"):
            if not (run_dir / needed).exists():
                raise DataError(
                    f"{run_dir}: not a finished trustrec run (missing {needed}); create one with `trustrec run CONFIG`"
                )
        version = check_checkpoint_version(run_dir / "checkpoint")
        config = load_run_config(run_dir / "config.yaml")
        model = Recommender.load(run_dir / "checkpoint")
        dataset, split = prepare_data(config)
        if model.has_vocabulary() and [str(i) for i in dataset.item_ids] != list(model.item_ids_):
            raise DataError(
                f"{run_dir}: the dataset rebuilt from config.yaml has other items than the checkpoint was "
                "trained on (the data changed since the run); rerun the config"
            )
        items = dataset.items
        titles = items["title"].astype("string").fillna("").tolist() if "title" in items.columns else None
        catalog = ControlCatalog.from_items(items, n_items=dataset.n_items)
        histories = split.history_for("test").by_user(dataset.n_users)
        chain = (
            guards if isinstance(guards, GuardChain) else GuardChain.default() if guards is None else GuardChain(guards)
        )
        extra: list[Guard] = []
        blocked = [str(b) for b in blocked_items]
        if blocked or max_exposure_share is not None:
            known = set(model.item_ids_)
            unknown = [b for b in blocked if b not in known]
            if unknown:
                raise ConfigError(f"blocked item ids not in the catalog: {_shown(unknown)}")
            index = {raw: i for i, raw in enumerate(model.item_ids_)}
            extra.append(PlatformRulesGuard([index[b] for b in blocked], max_exposure_share, exposure_window))
        if hook is not None:
            extra.append(HookGuard(hook))
        if extra:
            chain = GuardChain([*chain.guards, *extra])
        info = {
            "run": run_dir.name,
            "dataset": dataset.name,
            "checkpoint_trustrec_version": version,
            "n_items": dataset.n_items,
            "n_users": dataset.n_users,
        }
        return cls(
            model,
            titles=titles,
            histories=histories,
            catalog=catalog,
            guards=chain,
            info=info,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
        )

    # -- answering ------------------------------------------------------------------------
    def _items_of(self, raw: Sequence[object], what: str) -> np.ndarray:
        ids = [str(r) for r in raw]
        index = [self._item_index.get(i, -1) for i in ids]
        unknown = [i for i, j in zip(ids, index) if j < 0]
        if unknown:
            raise RequestRejected(f"unknown item id(s) in {what}: {_shown(unknown)}", 422, "ids")
        return np.asarray(index, np.int64)

    def recommend(self, request: RecommendationRequest) -> RecommendationResponse:
        """Answer one request (module docstring: the steps).

        Parameters
        ----------
        request : RecommendationRequest
            The request (the request guards may change it, e.g. drop a flagged constraint).

        Returns
        -------
        RecommendationResponse
            The recommendations.

        Raises
        ------
        RequestRejected
            When a guard refuses the request or vetoes the response, an id is unknown, or the
            request has neither a user nor a history; its ``status`` is the HTTP status.
        """
        prepared = self._prepare(request)
        depth = self._depth(prepared)
        items, scores = self._rank_alone(prepared, depth)
        return self._finish(prepared, items, scores)

    def warm_up(self) -> None:
        """Answer one query with the model (for the first user, or an empty history), so that
        what the model builds or imports on its first call is done before the first request.
        No guard sees it: nothing is counted or committed. A failure (an endpoint that is down, a
        list file that cannot answer new queries) is logged, not raised: requests meet it anyway."""
        from trustrec.data import QueryBatch

        has_user = self.histories is not None and len(self.user_ids) > 0
        history = np.asarray(self.histories.row(0) if has_user else [], np.int64)  # type: ignore[union-attr]  # has_user checks it
        queries = QueryBatch.from_histories([history], users=[0 if has_user else -1])
        with self._lock:
            try:
                self.model.recommend(queries, min(10, self.n_items))
            except Exception as exc:  # noqa: BLE001 - only a head start: the first request meets the same error and answers it
                log.warning(
                    "warm-up query failed (%s: %s); the first request will do its work", type(exc).__name__, exc
                )

    def recommend_batch(
        self, requests: Sequence[RecommendationRequest]
    ) -> list[RecommendationResponse | RequestRejected]:
        """Answer several requests with one model call per kind (with or without candidates),
        each exactly as :meth:`recommend` would, one after the other (module docstring).

        Parameters
        ----------
        requests : sequence of RecommendationRequest
            The requests, in arrival order.

        Returns
        -------
        list of RecommendationResponse or RequestRejected
            One per request, aligned: the response, or the rejection :meth:`recommend` would
            have raised.
        """
        from trustrec.data import QueryBatch, Ragged

        prepared = [_or_rejection(self._prepare, request) for request in requests]
        ranked: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        ready = [(i, p) for i, p in enumerate(prepared) if isinstance(p, _Prepared)]
        for group in ([x for x in ready if x[1].allowed is None], [x for x in ready if x[1].allowed is not None]):
            if not group:
                continue
            rows = [p for _, p in group]
            depth = max(self._depth(p) for p in rows)
            allowed = [p.allowed for p in rows if p.allowed is not None]  # all of the group, or none
            queries = QueryBatch.from_histories(
                [p.history for p in rows],
                users=[p.user for p in rows],
                texts=tuple(p.request.constraint for p in rows),
                candidates=Ragged.from_rows(allowed) if allowed else None,
            )
            try:
                with self._lock:
                    top = self.model.recommend(queries, depth)
            except TrustrecError:
                continue  # each is ranked alone below: only the request the model refuses fails
            items, scores = np.asarray(top.items), np.asarray(top.scores, np.float64)
            for row, (i, _) in enumerate(group):
                ranked[i] = (items[row], scores[row], depth)

        def finish(i: int, p: _Prepared) -> RecommendationResponse:
            depth = self._depth(p)  # now: earlier responses of the batch may have filled exposure caps
            got = ranked.get(i)
            if got is None or got[2] < depth:
                items, scores = self._rank_alone(p, depth)
            else:
                items, scores = got[0][:depth], got[1][:depth]
            return self._finish(p, items, scores)

        # in arrival order: each request's ranking filters see the commits of those before it
        return [p if isinstance(p, RequestRejected) else _or_rejection(finish, i, p) for i, p in enumerate(prepared)]

    def submit(self, request: RecommendationRequest) -> Future[RecommendationResponse]:
        """Queue ``request`` for the batcher thread (started on first use): answered with the
        requests around it by :meth:`recommend_batch` (module docstring).

        Parameters
        ----------
        request : RecommendationRequest
            The request.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the :class:`RecommendationResponse`, or raises what :meth:`recommend`
            would (:class:`RequestRejected` ...).
        """
        from trustrec.serve._batching import MicroBatcher

        if self._batcher is None:
            with self._batcher_lock:
                if self._batcher is None:
                    self._batcher = MicroBatcher(self.recommend_batch, self.max_batch, self.max_wait_ms / 1000)
        return self._batcher.submit(request)

    def close(self) -> None:
        """Stop the batcher thread once the queued requests are answered (a later
        :meth:`submit` starts a new one)."""
        with self._batcher_lock:
            batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()

    def _prepare(self, request: RecommendationRequest) -> _Prepared:
        """Steps 1-3: the request checks, the ids, the constraint."""
        self.guards.check_request(request)
        user = -1
        if request.user_id is not None:
            user = self._user_index.get(str(request.user_id), -1)
            if user < 0:
                raise RequestRejected(f"unknown user id {str(request.user_id)[:60]!r}", 404, "ids")
        if request.history is not None:
            history = self._items_of(request.history, "history")
        elif user >= 0 and self.histories is not None:
            history = np.asarray(self.histories.row(user), np.int64)
        else:
            history = np.empty(0, np.int64)
        if not len(history) and user < 0:
            raise RequestRejected("empty history and no user_id: give a user_id or a non-empty history", 422, "ids")
        warnings = list(request.notes)
        rules: list[str] = []
        allowed = None if request.candidates is None else self._items_of(request.candidates, "candidates")
        if allowed is not None:
            rules.append(f"candidates: ranked only the {len(np.unique(allowed))} given item(s)")
        allowed = self._constrain(request, history, allowed, rules, warnings)
        return _Prepared(request, user, history, allowed, rules, warnings)

    def _depth(self, prepared: _Prepared) -> int:
        """How deep the model ranks for this request now (``k`` plus what the guards may remove)."""
        request = prepared.request
        return int(min(self.n_items, request.k + self.guards.extra_depth(request)))

    def _rank_alone(self, prepared: _Prepared, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Step 4 for one request: the model's top ``depth`` (item indices, scores)."""
        try:
            with self._lock:
                top = self.model.recommend(prepared.queries(), depth)
        except TrustrecError as exc:
            raise RequestRejected(f"the model could not answer: {exc}", 422, "model") from None
        return np.asarray(top.items[0]), np.asarray(top.scores[0], np.float64)

    def _finish(self, prepared: _Prepared, items: np.ndarray, scores: np.ndarray) -> RecommendationResponse:
        """Steps 5-6: drop what cannot be shown, the ranking filters, the cut to ``k``, titles,
        explanations, the response checks and the commit."""
        request, allowed, warnings = prepared.request, prepared.allowed, prepared.warnings
        valid = items >= 0
        bad = valid & ~np.isfinite(scores)
        if bad.any():
            warnings.append(
                f"{int(bad.sum())} item(s) with a non-finite score (NaN or inf) from the model were dropped"
            )
        keep = valid & ~bad
        if allowed is not None:  # the guarantee: never an item outside the candidates or the constraint
            keep &= np.isin(items, allowed)
        ranking = self.guards.filter_ranking(request, Ranking(items[keep], scores[keep], prepared.rules, warnings))
        chosen, chosen_scores = ranking.items[: request.k], ranking.scores[: request.k]
        if len(chosen) < request.k:
            ranking.warnings.append(f"only {len(chosen)} of the {request.k} items asked for could be recommended")
        because, method = self._explain(request, prepared, chosen, ranking.warnings)
        ids, titles = self.item_ids, self.titles
        chosen_list = chosen.tolist()
        response = RecommendationResponse(
            request_id=request.request_id,
            model=self.model_name,
            items=[
                RecommendedItem(
                    ids[i],
                    None if titles is None else titles[i],
                    float(s),
                    None if because is None else because[j],
                )
                for j, (i, s) in enumerate(zip(chosen_list, chosen_scores.tolist()))
            ],
            rules_applied=ranking.rules_applied,
            warnings=ranking.warnings,
            user_id=None if request.user_id is None else str(request.user_id),
            explanation_method=method,
            item_indices=chosen_list,
        )
        self.guards.check_response(request, response)
        return response

    def _constrain(
        self,
        request: RecommendationRequest,
        history: np.ndarray,
        allowed: np.ndarray | None,
        rules: list[str],
        warnings: list[str],
    ) -> np.ndarray | None:
        """The items the constraint (and the candidates) allow; None: no restriction."""
        from trustrec.data import Ragged
        from trustrec.mitigate import allowed_items, parse_constraint

        text = request.constraint
        if text is None or not text.strip():
            return allowed
        if self.catalog is None:
            warnings.append("constraint ignored: this service has no catalog to check constraints against")
            return allowed
        parsed = parse_constraint(text, self.catalog)
        warnings.extend(f"constraint: {u}" for u in parsed.unparsed)
        if not parsed.structured:
            warnings.append("constraint not understood: no structured constraint found; the list is unconstrained")
            return allowed
        mask = allowed_items([parsed], self.catalog, Ragged.from_rows([history]))[0]
        if allowed is not None:
            restricted = np.zeros(self.n_items, bool)
            restricted[allowed] = True
            mask &= restricted
        rules.append(f"constraint: {parsed.describe()} ({int(mask.sum())} item(s) allowed)")
        if not mask.any():
            warnings.append("no item satisfies the constraint: the list is empty")
        return np.flatnonzero(mask)

    def _explain(
        self, request: RecommendationRequest, prepared: _Prepared, items: np.ndarray, warnings: list[str]
    ) -> tuple[list[list[dict[str, Any]]] | None, str | None]:
        """Leave-one-out explanations of ``items`` (module docstring), or None and a warning."""
        if not request.explain or not len(items):
            return None, None
        caps: frozenset[str] = frozenset(getattr(self.model, "capabilities", ()))
        if "score" not in caps or "llm_backend" in caps:
            warnings.append(
                "explanation not available: this model does not score the catalog cheaply enough for per-request "
                "attributions; run `trustrec audit RUN_DIR -d explainability` offline"
            )
            return None, None
        if not len(prepared.history):
            warnings.append("explanation not available: the history is empty")
            return None, None
        from trustrec.audit.explainability import attribute

        queries = prepared.queries()
        try:
            with self._lock:
                att = attribute(
                    self.model, queries, items[None, :], method="leave_one_out", max_history=EXPLAIN_HISTORY
                )
        except TrustrecError as exc:
            warnings.append(f"explanation not available: {exc}")
            return None, None
        frame = att.to_frame(top=N_CITED)
        frame = frame[frame.attribution > 0]
        out: list[list[dict[str, Any]]] = [[] for _ in items]
        for slot, hist_item, value in zip(frame.slot, frame.history_item, frame.attribution):
            out[int(slot)].append(
                {
                    "item_id": self.item_ids[int(hist_item)],
                    "title": None if self.titles is None else self.titles[int(hist_item)],
                    "attribution": float(value),
                }
            )
        if any(not b for b in out):
            warnings.append(
                "no history item raises the score of some items (empty 'because'): the model recommends them "
                "for other reasons, e.g. popularity"
            )
        return out, "leave_one_out"

    def describe(self) -> dict[str, Any]:
        """What ``/version`` and ``/health`` report: the model, its catalog size, the guards.

        Returns
        -------
        dict of str to object
            ``model``, ``n_items``, ``guards``, ``max_batch`` and :attr:`info`.
        """
        return {
            "model": self.model_name,
            "n_items": self.n_items,
            "guards": self.guards.describe(),
            "max_batch": self.max_batch,
            **self.info,
        }
