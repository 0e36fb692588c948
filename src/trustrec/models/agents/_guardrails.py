"""The guardrail seam: every agent turn can be screened before it is acted on.

A turn (:class:`Turn`) is what an agent is about to act on: a user message, a tool call, a
recommendation, a memory write, or an item's text entering a prompt. A :class:`Guardrail`
answers one :class:`Verdict` per turn. Any classifier fits the seam: :class:`ClassifierGuardrail`
wraps a function from texts to unsafe-probabilities (a scikit-learn pipeline's
``predict_proba``, a transformers text-classification pipeline, a small guard model behind an
endpoint); :class:`RuleGuardrail` holds the rules (the injection detector of
:mod:`trustrec.models.llm`, blocked items, allowed tools); :class:`GuardrailChain` runs several
and blocks on the first refusal.

:func:`screen_turns` is how an agent calls a guardrail: with a deadline. A guardrail that raises
or does not answer within ``timeout_s`` blocks every turn it was given (fail closed, the default)
or lets them through (``on_timeout="allow"``); either way the verdict says what happened, and
the episode goes on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from trustrec.errors import ConfigError

__all__ = [
    "TURN_KINDS",
    "ClassifierGuardrail",
    "Guardrail",
    "GuardrailChain",
    "RuleGuardrail",
    "Turn",
    "Verdict",
    "screen_turns",
]

TurnKind = Literal["user_message", "tool_call", "recommendation", "memory_write", "item_text"]
TURN_KINDS: tuple[str, ...] = ("user_message", "tool_call", "recommendation", "memory_write", "item_text")


@dataclasses.dataclass(frozen=True)
class Turn:
    """One thing an agent is about to act on.

    Parameters
    ----------
    kind : {"user_message", "tool_call", "recommendation", "memory_write", "item_text"}
        What the turn is.
    text : str
        Its text (a message, a reason, a memory entry, an item's text, a tool call's arguments).
    items : tuple of int
        Item indices the turn recommends or shows (default none).
    tool : str or None
        The tool a ``tool_call`` calls (default None).
    """

    kind: TurnKind
    text: str
    items: tuple[int, ...] = ()
    tool: str | None = None

    def __post_init__(self):
        if self.kind not in TURN_KINDS:
            raise ConfigError(f"Turn: kind must be one of {list(TURN_KINDS)}; got {self.kind!r}")
        if not isinstance(self.text, str):
            raise ConfigError(f"Turn: text must be a string; got {type(self.text).__name__}")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A guardrail's answer about one turn.

    Parameters
    ----------
    allowed : bool
        Whether the turn may be acted on.
    reason : str
        Why it was blocked (or what went wrong, e.g. a timeout); empty when allowed plainly.
    guard : str
        The guardrail that decided.
    score : float or None
        The classifier's unsafe-probability, when there is one.
    """

    allowed: bool
    reason: str = ""
    guard: str = ""
    score: float | None = None


@runtime_checkable
class Guardrail(Protocol):
    """``name`` and ``screen(turns) -> list[Verdict]``, one verdict per turn, in order."""

    name: str

    def screen(self, turns: Sequence[Turn]) -> list[Verdict]: ...


@dataclasses.dataclass(frozen=True)
class RuleGuardrail:
    """Rules: instruction-like text (the injection detector), blocked items, allowed tools, size.

    Parameters
    ----------
    name : str
        Reported in verdicts (default ``"rules"``).
    injection_kinds : collection of str
        Turn kinds whose text is checked with :func:`~trustrec.models.llm.find_injections`
        (default: user messages, item text and memory writes; a recommendation's reason is the
        agent's own text, and tool calls are checked by ``allowed_tools``).
    blocked_items : collection of int
        Items no turn may recommend or show (default none).
    allowed_tools : collection of str or None
        Tools a ``tool_call`` may call (default None: any).
    max_text_chars : int
        Longer turn texts are blocked (default 20,000).
    """

    name: str = "rules"
    injection_kinds: Collection[str] = ("user_message", "item_text", "memory_write")
    blocked_items: Collection[int] = ()
    allowed_tools: Collection[str] | None = None
    max_text_chars: int = 20_000

    def __post_init__(self):
        unknown = sorted(set(self.injection_kinds) - set(TURN_KINDS))
        if unknown:
            raise ConfigError(f"RuleGuardrail: unknown turn kinds {unknown}; known: {list(TURN_KINDS)}")
        if self.max_text_chars < 1:
            raise ConfigError(f"RuleGuardrail: max_text_chars must be positive; got {self.max_text_chars}")

    def screen(self, turns: Sequence[Turn]) -> list[Verdict]:
        """One verdict per turn (the first rule a turn breaks is its reason)."""
        from trustrec.models.llm import find_injections

        blocked = {int(i) for i in self.blocked_items}
        out = []
        for turn in turns:
            reason = ""
            if len(turn.text) > self.max_text_chars:
                reason = f"{turn.kind} text has {len(turn.text)} characters, over {self.max_text_chars}"
            elif hit := sorted(blocked.intersection(turn.items)):
                reason = f"{turn.kind} names blocked item(s) {hit}"
            elif turn.kind == "tool_call" and self.allowed_tools is not None and turn.tool not in self.allowed_tools:
                reason = f"tool {turn.tool!r} is not allowed (allowed: {sorted(self.allowed_tools)})"
            elif turn.kind in self.injection_kinds and (matches := find_injections(turn.text)):
                m = matches[0]
                reason = f"instruction-like text in a {turn.kind} ({m.name}: {turn.text[m.start : m.end][:60]!r})"
            out.append(Verdict(not reason, reason, self.name))
        return out


@dataclasses.dataclass(frozen=True)
class ClassifierGuardrail:
    """Any classifier of texts as a guardrail: a turn is blocked when its unsafe-probability
    reaches ``threshold``.

    Parameters
    ----------
    classify : callable
        ``classify(texts) -> probabilities``: one unsafe-probability in ``[0, 1]`` per text.
    name : str
        Reported in verdicts (default ``"classifier"``).
    threshold : float
        Block at or above this probability (default 0.5).
    kinds : collection of str
        Turn kinds it screens; other turns pass (default: every kind).
    """

    classify: Callable[[list[str]], Any]
    name: str = "classifier"
    threshold: float = 0.5
    kinds: Collection[str] = TURN_KINDS

    def screen(self, turns: Sequence[Turn]) -> list[Verdict]:
        """One verdict per turn; the classifier sees only the turns of ``kinds``, in one call."""
        rows = [i for i, t in enumerate(turns) if t.kind in self.kinds]
        out = [Verdict(True, "", self.name) for _ in turns]
        if not rows:
            return out
        scores = np.asarray(self.classify([turns[i].text for i in rows]), dtype=np.float64).reshape(-1)
        if scores.shape != (len(rows),) or not np.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
            raise ConfigError(
                f"ClassifierGuardrail {self.name!r}: the classifier must give one probability in [0, 1] per "
                f"text ({len(rows)}); got {np.asarray(scores)[:5]!r}"
            )
        for i, p in zip(rows, scores.tolist(), strict=True):
            blocked = p >= self.threshold
            reason = f"classified unsafe (p={p:.2f} >= {self.threshold})" if blocked else ""
            out[i] = Verdict(not blocked, reason, self.name, p)
        return out


@dataclasses.dataclass(frozen=True)
class GuardrailChain:
    """Several guardrails: a turn passes only when every one allows it (the first refusal is
    reported).

    Parameters
    ----------
    guardrails : sequence of Guardrail
        In the order they are asked.
    name : str
        Reported in verdicts of turns every guardrail allowed (default ``"chain"``).
    """

    guardrails: Sequence[Guardrail]
    name: str = "chain"

    def screen(self, turns: Sequence[Turn]) -> list[Verdict]:
        """One verdict per turn."""
        out = [Verdict(True, "", self.name) for _ in turns]
        for guardrail in self.guardrails:
            for i, v in enumerate(guardrail.screen(turns)):
                if out[i].allowed and not v.allowed:
                    out[i] = v
        return out


def screen_turns(
    guardrail: Guardrail | None,
    turns: Sequence[Turn],
    *,
    timeout_s: float = 5.0,
    on_timeout: Literal["block", "allow"] = "block",
) -> tuple[list[Verdict], float]:
    """``guardrail.screen(turns)`` under a deadline.

    Parameters
    ----------
    guardrail : Guardrail or None
        The guardrail (None: every turn is allowed).
    turns : sequence of Turn
        The turns to screen.
    timeout_s : float
        Seconds the guardrail has (default 5.0).
    on_timeout : {"block", "allow"}
        What a timeout, an error or a malformed answer means for the turns (default ``"block"``:
        fail closed).

    Returns
    -------
    tuple of (list of Verdict, float)
        One verdict per turn, and the seconds screening took.
    """
    if on_timeout not in ("block", "allow"):
        raise ConfigError(f"screen_turns: on_timeout must be 'block' or 'allow'; got {on_timeout!r}")
    turns = list(turns)
    if guardrail is None or not turns:
        return [Verdict(True) for _ in turns], 0.0
    started = time.perf_counter()
    name = getattr(guardrail, "name", type(guardrail).__name__)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="guardrail")
    try:
        verdicts = pool.submit(guardrail.screen, turns).result(timeout=timeout_s)
        if len(verdicts) != len(turns) or not all(isinstance(v, Verdict) for v in verdicts):
            raise ConfigError(f"answered {len(verdicts)} verdicts for {len(turns)} turns")
        problem = None
    except concurrent.futures.TimeoutError:
        problem = f"guardrail {name!r} did not answer within {timeout_s} s"
    except Exception as err:  # noqa: BLE001 -- any failure of a guardrail must not end the episode
        problem = f"guardrail {name!r} failed: {type(err).__name__}: {err}"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if problem is not None:
        verdicts = [Verdict(on_timeout == "allow", problem, name) for _ in turns]
    return verdicts, time.perf_counter() - started
