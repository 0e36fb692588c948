"""FLOW (Cai et al., arXiv 2410.20027): a recommendation agent and a user agent in a feedback loop.

Each query is one episode over its candidates (the query's own candidate list, or the prior
recommender's top ``n_candidates``):

1. the **recommendation agent** reads the user's history, the user's own message when the
   query has one (``Query.text``, e.g. a request; up to ``max_request_chars``), the remaining
   candidates (listed in a seeded shuffle of the candidates, so the held-out item has no fixed
   place) and its memory of earlier rounds, and proposes one candidate with a reason;
2. the **user agent** (:class:`~trustrec.models.agents.UserAgent`) reads the user's history,
   the prior recommender's view (its pick among the candidates and its top ``prior_top``), its
   own memory, and the proposal with its reason, and accepts or declines with a reason;
3. on a decline both agents remember the round (the item, the agent's reason, the user's
   reason), the proposed item leaves the candidates, and the next round starts; the episode
   stops at an acceptance or after ``max_rounds`` rounds.

The recommended item is the accepted one, or the last proposal. ``max_rounds=1`` is the
recommendation agent alone (the paper's first baseline).

Choices as the paper's code makes them with an API model, or as a small local model can make
them (``decision``):

- ``"scored"``: the agent's proposal is the remaining candidate whose title is most likely as
  its answer (mean log-probability per token), and the user's answer compares the likelihoods
  of "Yes" and "No"; reasons are then generated (``reason_tokens``, greedy) after the answer;
- ``"text"``: each agent writes a JSON reply (``{"reason", "item"}`` / ``{"reason",
  "answer"}``). A reply that cannot be read is recorded in the round: the agent's proposal falls
  back to the prior's best remaining candidate, and the user's answer counts as a decline. An
  episode never stops on a malformed reply.

Memories hold only what was said in the episode (proposed items and reasons), are cut to
``max_memory_chars`` by dropping the oldest rounds, and every model-written text is cleaned
(one line, ``max_reason_chars``, special tokens removed) before another prompt shows it.
Episodes are seeded (the listing order) and, with ``temperature=0``, repeatable.
:meth:`FlowRecommender.with_experience` adds reflective experience (R²-Mem,
:class:`~trustrec.models.agents.ExperienceBank`): the recommendation agent starts each episode
with lessons distilled from earlier users' episodes, shown before its memory of the rounds.

With a guardrail (:meth:`FlowRecommender.with_guardrail`) the user's message is screened
first: a refused message declines the request (no round is played, the list is empty).

Lists: the recommended item first, then the candidates never proposed in the prior's order,
then the declined proposals in the order they were made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from trustrec._config import Config
from trustrec.data import QueryBatch
from trustrec.errors import ConfigError
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.agents._agent_base import AgentConfig, AgentRecommender
from trustrec.models.agents._experience import ExperienceBank
from trustrec.models.agents._guardrails import Guardrail, Turn, screen_turns
from trustrec.models.agents._prompting import FlowPrompts, LLMAgent, fill
from trustrec.models.agents._replies import ReplyError, match_candidate, parse_json_reply
from trustrec.models.agents._simulators import UserAgent

__all__ = ["Episode", "FlowConfig", "FlowRecommender", "FlowRound", "Proposals", "RecAgent"]


class FlowConfig(AgentConfig):
    """Hyper-parameters of :class:`FlowRecommender` (see the module docstring): those every
    agent recommender has (:class:`~trustrec.models.agents.AgentConfig`; ``prompts`` replaces
    fields of :class:`~trustrec.models.agents.FlowPrompts`; the prior's view is shown to the user
    agent, and its best remaining candidate is the fallback proposal) and the ones below.

    Parameters
    ----------
    max_rounds : int
        Rounds per episode (default 5; 1: the recommendation agent alone).
    reasons : bool
        Whether scored answers are followed by a generated reason (default True).
    reason_tokens : int
        Token budget of a generated reason (default 24).
    accept_margin : float
        The user agent accepts when ``log p(Yes) - log p(No)`` exceeds it (default 0.0).
    prior_top : int
        Prior's favourites shown to the user agent (default 5; 0: no prior view at all).
    max_memory_chars : int
        Character budget of an agent's memory; the oldest rounds are dropped first (default
        1500).
    max_request_chars : int
        Character budget of the user's message shown to the recommendation agent (default 500).
    score_reduction : {"mean", "sum"}
        How the scored recommendation agent reads a candidate's likelihood: mean token
        log-probability (default) or the sum, which does not favour long item texts the agent can
        copy (the agent-safety audit's neutral twin measured that preference under "mean").
    """

    prompts_class: ClassVar[type[Config]] = FlowPrompts
    prompt_slots: ClassVar[dict[str, tuple[str, ...]]] = {
        "rec_user": ("history", "request", "candidates", "memory", "task"),
        "request_block": ("request",),
        "user_user": ("history", "prior", "memory", "item", "reason", "task"),
        "rec_memory_line": ("round", "item", "reason", "feedback"),
        "user_memory_line": ("round", "item", "reason", "feedback"),
        "memory_block": ("entries",),
        "lessons_block": ("entries",),
        "prior": ("choice", "top"),
        "reason_line": ("reason",),
        "candidate_line": ("position", "item"),
    }

    max_rounds: PositiveInt = Field(5, le=50)
    reasons: bool = True
    reason_tokens: PositiveInt = 24
    accept_margin: float = 0.0
    prior_top: NonNegativeInt = 5
    max_memory_chars: PositiveInt = 1500
    max_request_chars: PositiveInt = 500
    score_reduction: Literal["mean", "sum"] = "mean"


@dataclasses.dataclass(frozen=True)
class Proposals:
    """The recommendation agent's proposal per query.

    Parameters
    ----------
    items : numpy.ndarray
        ``(n,)`` proposed item index per query (-1 where it had no candidate).
    reasons : list of str
        Its reason per query (empty when reasons are off).
    errors : list of str or None
        Why a JSON reply could not be read (the prior's best remaining candidate was proposed
        instead), else None.
    """

    items: np.ndarray
    reasons: list[str]
    errors: list[str | None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecAgent(LLMAgent):
    """FLOW's recommendation agent (the :class:`~trustrec.models.agents.LLMAgent` fields): it
    proposes one candidate per query, read from the candidates' likelihoods or a JSON reply.

    Parameters
    ----------
    score_reduction : {"mean", "sum"}
        How a scored answer reads a candidate's likelihood: the mean token log-probability of
        its text (default; no penalty for long titles) or the sum (longer texts score lower).
    """

    score_reduction: Literal["mean", "sum"] = "mean"

    def prompt(
        self,
        query: Any,
        candidates: Sequence[int],
        memory: Sequence[str] = (),
        lessons: Sequence[str] = (),
        request: str = "",
    ) -> str:
        """The agent's prompt for one user and the candidates as listed (the user's cleaned
        message, its lessons from earlier users' episodes, then its memory of this episode's
        rounds)."""
        p = self.prompts
        lines = "\n".join(
            fill(p.candidate_line, position=i, item=text) for i, text in enumerate(self.view.items(candidates), start=1)
        )
        return self.view.prompt(
            p.rec_system,
            fill(
                p.rec_user,
                history=self.view.history(query),
                request=fill(p.request_block, request=request) if request else "",
                candidates=lines,
                memory=(fill(p.lessons_block, entries="\n".join(f"- {x}" for x in lessons)) if lessons else "")
                + (fill(p.memory_block, entries="\n".join(memory)) if memory else ""),
                task=p.rec_task_scored if self.decision == "scored" else p.rec_task_text,
            ),
        )

    def propose(
        self,
        queries: QueryBatch,
        candidates: Sequence[Sequence[int]],
        memories: Sequence[Sequence[str]],
        fallback: Sequence[int],
        lessons: Sequence[Sequence[str]] | None = None,
        requests: Sequence[str] | None = None,
    ) -> Proposals:
        """One proposal per query among its ``candidates`` (as listed).

        Parameters
        ----------
        queries : QueryBatch
            The users.
        candidates : sequence of sequence of int
            The remaining candidates per query, in listed order.
        memories : sequence of sequence of str
            The agent's memory entries per query.
        fallback : sequence of int
            The proposal used when a JSON reply cannot be read (one per query).
        lessons : sequence of sequence of str or None
            Lessons from earlier users' episodes per query (None: none).
        requests : sequence of str or None
            The user's cleaned message per query ("" or None: none).

        Returns
        -------
        Proposals
            Items, reasons and unreadable-reply errors.
        """
        n = len(queries)
        lessons = lessons if lessons is not None else [()] * n
        requests = requests if requests is not None else [""] * n
        prompts = [self.prompt(queries.query(q), candidates[q], memories[q], lessons[q], requests[q]) for q in range(n)]
        texts = [self.view.items(c) for c in candidates]
        items = np.full(n, -1, dtype=np.int64)
        reasons: list[str] = [""] * n
        errors: list[str | None] = [None] * n
        if self.decision == "scored":
            scores = self.backend.score_continuations(prompts, texts, reduction=self.score_reduction)
            chosen = [int(np.argmax(s)) if len(s) else -1 for s in scores]
            for q, j in enumerate(chosen):
                items[q] = candidates[q][j] if j >= 0 else -1
            if self.reasons:
                said = [prompts[q] + texts[q][j] + self.prompts.reason_prefix for q, j in enumerate(chosen) if j >= 0]
                made = iter(self._reasons(said))
                reasons = [next(made) if j >= 0 else "" for j in chosen]
            return Proposals(items, reasons, errors)
        replies = self._generate(prompts, self.reply_tokens)
        for q, reply in enumerate(replies):
            position, reasons[q], errors[q] = self._read_reply(reply, texts[q])
            items[q] = candidates[q][position] if position is not None else int(fallback[q])
        return Proposals(items, reasons, errors)

    def _read_reply(self, reply: str, texts: list[str]) -> tuple[int | None, str, str | None]:
        """``(candidate position, reason, None)``, or ``(None, "", why)`` for an unreadable reply."""
        try:
            fields = parse_json_reply(reply, ("item", "reason"))
            return match_candidate(fields["item"], texts), self.view.clean(fields["reason"]), None
        except ReplyError as err:
            return None, "", str(err)


@dataclasses.dataclass(frozen=True)
class FlowRound:
    """One round of an episode.

    Parameters
    ----------
    item : int
        The proposed item.
    rec_reason : str
        The recommendation agent's reason.
    accepted : bool
        Whether the user agent accepted.
    margin : float
        The user agent's ``log p(Yes) - log p(No)`` (+-inf for a JSON answer).
    user_reason : str
        The user agent's reason.
    rec_error : str or None
        Why the agent's reply could not be read (the prior's pick was proposed), else None.
    user_error : str or None
        Why the user's reply could not be read (counted as a decline), else None.
    blocked : str or None
        Why the guardrail refused the proposal (the user agent was not asked), else None.
    """

    item: int
    rec_reason: str
    accepted: bool
    margin: float
    user_reason: str
    rec_error: str | None = None
    user_error: str | None = None
    blocked: str | None = None


@dataclasses.dataclass(frozen=True)
class Episode:
    """One user's episode.

    Parameters
    ----------
    user : int
        The query's user index (-1: anonymous).
    listed : numpy.ndarray
        The candidates in the order they were listed.
    prior_order : numpy.ndarray
        The candidates in the prior's order (best first).
    rounds : tuple of FlowRound
        The rounds played.
    rec_memory : tuple of str
        The recommendation agent's memory at the end.
    user_memory : tuple of str
        The user agent's memory at the end.
    blocked : tuple of dict
        What the guardrail refused: ``kind`` (``user_message``, ``item_text``,
        ``recommendation``, ``memory_write``), the item or round, and the reason (default
        none).
    lessons : tuple of str
        The lessons from earlier users' episodes the recommendation agent was given (default
        none; see :meth:`FlowRecommender.with_experience`).
    """

    user: int
    listed: np.ndarray
    prior_order: np.ndarray
    rounds: tuple[FlowRound, ...]
    rec_memory: tuple[str, ...]
    user_memory: tuple[str, ...]
    blocked: tuple[dict[str, Any], ...] = ()
    lessons: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """Whether the episode ended with an acceptance."""
        return bool(self.rounds) and self.rounds[-1].accepted

    @property
    def refused(self) -> bool:
        """Whether the guardrail refused the user's message, so the request was declined: no
        round was played and the episode recommends nothing."""
        return any(b.get("kind") == "user_message" for b in self.blocked)

    @property
    def final_item(self) -> int:
        """The recommended item: the accepted one, or the last proposal (-1: no round)."""
        return self.rounds[-1].item if self.rounds else -1

    @property
    def first_item(self) -> int:
        """The first proposal: what the recommendation agent alone recommends (-1: no round)."""
        return self.rounds[0].item if self.rounds else -1

    def ranking(self) -> np.ndarray:
        """The episode's list: the recommended item, the never-proposed candidates in the prior's
        order, then the declined proposals in the order they were made; empty for a refused
        request."""
        if self.refused:
            return np.empty(0, dtype=np.int64)
        if not self.rounds:
            return self.prior_order.copy()
        proposed = np.array([r.item for r in self.rounds], dtype=np.int64)  # distinct: a declined item leaves
        untried = self.prior_order[~np.isin(self.prior_order, proposed)]
        return np.concatenate([proposed[-1:], untried, proposed[:-1]]).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "user": int(self.user),
            "listed": [int(i) for i in self.listed],
            "prior_order": [int(i) for i in self.prior_order],
            "rounds": [
                {**dataclasses.asdict(r), "margin": float(r.margin) if np.isfinite(r.margin) else str(float(r.margin))}
                for r in self.rounds
            ],
            "rec_memory": list(self.rec_memory),
            "user_memory": list(self.user_memory),
            "blocked": [dict(b) for b in self.blocked],
            "lessons": list(self.lessons),
            "refused": self.refused,
            "accepted": self.accepted,
            "final_item": self.final_item,
        }


def _trim(memory: list[str], budget: int) -> list[str]:
    """The most recent entries whose joined length fits ``budget`` (an entry alone over the
    budget is cut)."""
    kept: list[str] = []
    used = 0
    for entry in reversed(memory):
        cost = len(entry) + (1 if kept else 0)
        if used + cost > budget:
            if not kept:
                kept.append(entry[: max(0, budget - 1)] + "…")
            break
        kept.append(entry)
        used += cost
    return kept[::-1]


@register_model
class FlowRecommender(AgentRecommender):
    """FLOW: a recommendation agent and a user agent in a feedback loop (see the module
    docstring).

    A composed recommender with one stage, ``prior`` (``prior__<param>`` parameters, saved
    nested under ``prior_/``).

    Parameters
    ----------
    config : FlowConfig, mapping or None
        Hyper-parameters (see :class:`FlowConfig`); None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "flow"
    config_class = FlowConfig
    config: FlowConfig
    _guardrail: Guardrail | None  # set on the copies with_guardrail makes (not saved)
    _guardrail_settings: dict[str, Any]
    _experience: tuple[ExperienceBank, int] | None  # set on the copies with_experience makes (not saved)

    # -- the agents -------------------------------------------------------------------------------
    def _agent_settings(self) -> dict[str, Any]:
        self._check_fitted()
        c = self.config
        return {
            "backend": self.backend,
            "view": self._view(),
            "prompts": c.agent_prompts(),
            "decision": c.decision,
            "reasons": c.reasons,
            "reason_tokens": c.reason_tokens,
            "reply_tokens": c.reply_tokens,
            "temperature": c.temperature,
            "seed": self.seed_,
        }

    def rec_agent(self) -> RecAgent:
        """The recommendation agent."""
        return RecAgent(**self._agent_settings(), score_reduction=self.config.score_reduction)

    def user_agent(self) -> UserAgent:
        """The user agent: also a :class:`~trustrec.models.agents.UserSimulator` on its own."""
        return UserAgent(**self._agent_settings(), accept_margin=self.config.accept_margin)

    # -- episodes ---------------------------------------------------------------------------------
    def prior_views(self, queries: QueryBatch, prior_orders: Sequence[np.ndarray]) -> list[str]:
        """What the user agent is told about the prior recommender per query ("" with
        ``prior_top=0`` or no candidates)."""
        c, view = self.config, self._view()
        prompts = c.agent_prompts()
        out = []
        for order in prior_orders:
            if c.prior_top == 0 or len(order) == 0:
                out.append("")
                continue
            top = view.items(order[: c.prior_top])
            out.append(fill(prompts.prior, choice=top[0], top="; ".join(top)))
        return out

    def run_episodes(self, queries: QueryBatch, *, exclude_seen: bool = True) -> list[Episode]:
        """Play one episode per query (see the module docstring).

        Rounds run batched: every open episode's turn goes to the backend in one call.

        Parameters
        ----------
        queries : QueryBatch
            The users (with their own candidate lists, or the prior retrieves them).
        exclude_seen : bool
            Whether history items are dropped from the candidates (default True).

        Returns
        -------
        list of Episode
            One per query, in order.
        """
        from tqdm.auto import tqdm

        queries = self._prepare(queries)
        c = self.config
        guard = getattr(self, "_guardrail", None)
        settings = getattr(self, "_guardrail_settings", {})
        view, prompts = self._view(), c.agent_prompts()
        prior_orders, listed = self.candidate_lists(queries, exclude_seen=exclude_seen)
        n = len(queries)
        blocked: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        remaining = [list(map(int, row)) for row in listed]
        if guard is not None:  # item text enters both prompts: screen it before it is listed
            shown = sorted({i for row in remaining for i in row})
            verdicts, _ = screen_turns(
                guard, [Turn("item_text", t, (i,)) for i, t in zip(shown, view.items(shown))], **settings
            )
            refused = {i: v.reason for i, v in zip(shown, verdicts) if not v.allowed}
            for q in range(n):
                blocked[q] += [
                    {"kind": "item_text", "item": i, "reason": refused[i]} for i in remaining[q] if i in refused
                ]
                remaining[q] = [i for i in remaining[q] if i not in refused]
        requests = [view.user_text(queries.query(q).text, c.max_request_chars) for q in range(n)]
        asked = [q for q in range(n) if requests[q]]
        if guard is not None and asked:  # a refused message is a refused request: no round is played
            verdicts, _ = screen_turns(guard, [Turn("user_message", requests[q]) for q in asked], **settings)
            for q, v in zip(asked, verdicts, strict=True):
                if not v.allowed:
                    blocked[q].append({"kind": "user_message", "reason": v.reason})
                    remaining[q] = []
        lessons = self._lessons(queries, guard, settings, blocked)
        usable = [order[np.isin(order, remaining[q])] for q, order in enumerate(prior_orders)]
        priors = self.prior_views(queries, usable)
        rec, user = self.rec_agent(), self.user_agent()
        rounds: list[list[FlowRound]] = [[] for _ in range(n)]
        rec_memory: list[list[str]] = [[] for _ in range(n)]
        user_memory: list[list[str]] = [[] for _ in range(n)]
        done = [not r for r in remaining]
        for number in tqdm(range(1, c.max_rounds + 1), desc="FLOW rounds", leave=False, disable=n < 64):
            active = [q for q in range(n) if not done[q]]
            if not active:
                break
            batch = queries[np.array(active)]
            fallback = [next(int(i) for i in usable[q] if int(i) in remaining[q]) for q in active]
            proposals = rec.propose(
                batch,
                [remaining[q] for q in active],
                [rec_memory[q] for q in active],
                fallback,
                [lessons[q] for q in active],
                [requests[q] for q in active],
            )
            titles = view.items(proposals.items)
            refusals: list[str | None] = [None] * len(active)
            if guard is not None:
                turns = [
                    Turn("recommendation", f"{titles[j]}: {proposals.reasons[j]}", (int(proposals.items[j]),))
                    for j in range(len(active))
                ]
                refusals = [None if v.allowed else v.reason for v in screen_turns(guard, turns, **settings)[0]]
            judged = [j for j in range(len(active)) if refusals[j] is None]
            said = user.judge(
                batch[np.array(judged, dtype=np.int64)],
                proposals.items[judged],
                reasons=[proposals.reasons[j] for j in judged],
                memories=[user_memory[active[j]] for j in judged],
                priors=[priors[active[j]] for j in judged],
            )
            answer = {j: r for r, j in enumerate(judged)}
            writes: list[tuple[int, str, str]] = []  # (query, "rec" / "user", entry)
            for j, q in enumerate(active):
                item = int(proposals.items[j])
                remaining[q].remove(item)
                if refusals[j] is not None:  # never shown to the user; it only leaves the candidates
                    rounds[q].append(
                        FlowRound(item, proposals.reasons[j], False, np.nan, "", proposals.errors[j], None, refusals[j])
                    )
                    blocked[q].append({"kind": "recommendation", "item": item, "round": number, "reason": refusals[j]})
                    done[q] = not remaining[q]
                    continue
                r = answer[j]
                accepted = bool(said.accept[r])
                rounds[q].append(
                    FlowRound(
                        item,
                        proposals.reasons[j],
                        accepted,
                        float(said.margin[r]),
                        said.reasons[r],
                        proposals.errors[j],
                        said.errors[r],
                    )
                )
                done[q] = accepted or not remaining[q]
                if accepted:
                    continue
                values = {
                    "round": number,
                    "item": titles[j],
                    "reason": proposals.reasons[j] or "no reason given",
                    "feedback": said.reasons[r] or "no reason given",
                }
                writes += [
                    (q, "rec", fill(prompts.rec_memory_line, **values)),
                    (q, "user", fill(prompts.user_memory_line, **values)),
                ]
            if guard is not None and writes:  # what an agent remembers comes back in every later prompt
                verdicts = screen_turns(guard, [Turn("memory_write", text) for _, _, text in writes], **settings)[0]
                for w, v in enumerate(verdicts):
                    if not v.allowed:
                        q, who, _ = writes[w]
                        writes[w] = (q, who, f"- round {number}: (withheld by the guardrail)")
                        blocked[q].append({"kind": "memory_write", "agent": who, "round": number, "reason": v.reason})
            for q, who, entry in writes:
                memory = rec_memory if who == "rec" else user_memory
                memory[q] = _trim([*memory[q], entry], c.max_memory_chars)
        return [
            Episode(
                int(queries.users[q]),
                listed[q],
                prior_orders[q],
                tuple(rounds[q]),
                tuple(rec_memory[q]),
                tuple(user_memory[q]),
                tuple(blocked[q]),
                tuple(lessons[q]),
            )
            for q in range(n)
        ]

    def _lessons(
        self,
        queries: QueryBatch,
        guard: Guardrail | None,
        settings: dict[str, Any],
        blocked: list[list[dict[str, Any]]],
    ) -> list[list[str]]:
        """Per query, the experience bank's lessons (none without one); a guardrail screens
        them as memory writes, and a refused lesson is left out."""
        experience = getattr(self, "_experience", None)
        if experience is None:
            return [[] for _ in range(len(queries))]
        bank, k = experience
        lessons = bank.retrieve(queries, k)
        if guard is not None:
            flat = [(q, text) for q, row in enumerate(lessons) for text in row]
            verdicts = screen_turns(guard, [Turn("memory_write", text) for _, text in flat], **settings)[0]
            for (q, text), v in zip(flat, verdicts, strict=True):
                if not v.allowed:
                    lessons[q].remove(text)
                    blocked[q].append({"kind": "memory_write", "agent": "experience", "round": 0, "reason": v.reason})
        return lessons

    def with_guardrail(
        self, guardrail: Guardrail | None, *, timeout_s: float = 5.0, on_timeout: str = "block"
    ) -> FlowRecommender:
        """A shallow copy of this fitted recommender whose episodes are screened by
        ``guardrail`` (None: unscreened); this one is untouched and the guardrail is not saved.

        Screened turns: the user's message before the episode (a refused message declines the
        request: no round is played and the list is empty), every candidate's text before it is
        listed (a refused item is dropped from the episode and from the prior's view), every
        proposal with its reason before the user agent sees it (a refused proposal leaves the
        candidates; the user is not asked), and every memory entry before it is written (a
        refused entry is replaced by a note that it was withheld; a refused lesson is left out).
        Each refusal is recorded in :attr:`Episode.blocked`.

        Parameters
        ----------
        guardrail : Guardrail or None
            The guardrail.
        timeout_s : float
            Seconds the guardrail has per screening call (default 5.0).
        on_timeout : {"block", "allow"}
            What a timeout or a failure of the guardrail means (default ``"block"``).

        Returns
        -------
        FlowRecommender
            The copy.

        Raises
        ------
        ConfigError
            When ``guardrail`` has no ``screen`` method or a setting is invalid.
        """
        import copy

        self._check_fitted()
        if guardrail is not None and not isinstance(guardrail, Guardrail):
            raise ConfigError(
                f"flow.with_guardrail: {type(guardrail).__name__} is not a guardrail (it needs a name and "
                "screen(turns) -> list[Verdict])"
            )
        if on_timeout not in ("block", "allow") or not timeout_s > 0:
            raise ConfigError(
                f"flow.with_guardrail: on_timeout must be 'block' or 'allow' and timeout_s positive; got "
                f"{on_timeout!r}, {timeout_s!r}"
            )
        other = copy.copy(self)
        other._guardrail = guardrail
        other._guardrail_settings = {"timeout_s": float(timeout_s), "on_timeout": on_timeout}
        return other

    def with_experience(self, bank: ExperienceBank | None, k: int = 3) -> FlowRecommender:
        """A shallow copy of this fitted recommender whose recommendation agent starts every
        episode with the ``k`` lessons ``bank`` retrieves for the user (reflective experience,
        R²-Mem; None: no lessons); this one is untouched and the bank is not saved.

        Parameters
        ----------
        bank : ExperienceBank or None
            Lessons from earlier users' episodes.
        k : int
            Lessons per episode (default 3).

        Returns
        -------
        FlowRecommender
            The copy.

        Raises
        ------
        ConfigError
            When ``bank`` is not an :class:`~trustrec.models.agents.ExperienceBank`, its item
            vectors do not cover the catalog, or ``k`` is not positive.
        """
        import copy

        self._check_fitted()
        if bank is not None:
            if not isinstance(bank, ExperienceBank):
                raise ConfigError(f"flow.with_experience: {type(bank).__name__} is not an ExperienceBank")
            if len(bank.item_vectors) != self.n_items_:
                raise ConfigError(
                    f"flow.with_experience: the bank has vectors for {len(bank.item_vectors)} items; the model "
                    f"knows {self.n_items_}"
                )
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"flow.with_experience: k must be a positive integer; got {k!r}")
        other = copy.copy(self)
        other._experience = None if bank is None else (bank, int(k))
        return other

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        return self.recommend_with_episodes(queries, k, exclude_seen=exclude_seen)[0]

    def recommend_with_episodes(
        self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True
    ) -> tuple[TopK, list[Episode]]:
        """:meth:`recommend` and the episodes behind the lists.

        Parameters
        ----------
        queries : QueryBatch
            The users.
        k : int
            List length (default 10).
        exclude_seen : bool
            Whether history items are excluded (default True).

        Returns
        -------
        tuple of (TopK, list of Episode)
            The lists (scores: ``width - position``) and the episodes.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        episodes = self.run_episodes(queries, exclude_seen=exclude_seen)
        k = min(k, self.n_items_)  # never longer than the catalog
        items = np.full((len(episodes), k), -1, dtype=np.int64)
        scores = np.full((len(episodes), k), -np.inf)
        for q, episode in enumerate(episodes):
            ranking = episode.ranking()[:k]
            items[q, : len(ranking)] = ranking
            scores[q, : len(ranking)] = np.arange(len(ranking), 0, -1, dtype=np.float64)
        return TopK(items, scores), episodes
