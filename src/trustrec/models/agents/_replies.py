"""Reading what an agent wrote: one JSON object with named fields, a title among the candidates.

Agents that answer in free text (an OpenAI-compatible endpoint, or a local model asked for
JSON) are asked for a JSON object. Small models wrap it in prose or code fences, quote titles
loosely or add fields; what can be read is read, and anything else is a :class:`ReplyError`
that names what was wrong, so the caller can record it and fall back (an episode never crashes
on a malformed reply).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from trustrec.errors import TrustrecError
from trustrec.models.llm._text_grounding import normalise_title

__all__ = ["ReplyError", "match_candidate", "parse_json_reply"]

_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


class ReplyError(TrustrecError):
    """An agent's reply could not be read (no JSON object, a missing field, an unknown item)."""


def parse_json_reply(text: str, fields: Sequence[str], *, max_chars: int = 20_000) -> dict[str, str]:
    """The first JSON object in ``text`` that has every one of ``fields``, as strings.

    Code fences are ignored; objects are tried in the order they start. Values are converted
    with ``str`` (a number answer is still read); other keys are dropped.

    Parameters
    ----------
    text : str
        The agent's reply.
    fields : sequence of str
        Keys the object must have.
    max_chars : int
        Replies longer than this are refused unread (default 20,000).

    Returns
    -------
    dict of str to str
        The fields' values.

    Raises
    ------
    ReplyError
        When the reply is not a string, is too long, has no JSON object, or none of its
        objects has all the fields (the message names the missing ones).
    """
    if not isinstance(text, str):
        raise ReplyError(f"agent reply must be text; got {type(text).__name__}")
    if len(text) > max_chars:
        raise ReplyError(f"agent reply has {len(text)} characters, over the limit of {max_chars}")
    body = _FENCE.sub("", text)
    decoder = json.JSONDecoder()
    best_missing: list[str] | None = None
    for start in (m.start() for m in re.finditer(r"\{", body)):
        try:
            value, _end = decoder.raw_decode(body, start)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        missing = [f for f in fields if f not in value or value[f] is None]
        if not missing:
            return {f: _as_text(value[f]) for f in fields}
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    if best_missing is None:
        raise ReplyError(f"agent reply has no JSON object: {text[:80]!r}")
    raise ReplyError(f"agent reply's JSON object lacks the field(s) {best_missing}: {text[:80]!r}")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def match_candidate(answer: str, texts: Sequence[str]) -> int:
    """The position in ``texts`` of the candidate ``answer`` names.

    Titles are compared after :func:`~trustrec.models.llm.normalise_title` (case and spacing
    folded, surrounding quotes and dots removed); a unique exact match wins, else a unique
    candidate whose normalised title starts with the answer or that the answer starts with (a
    cut title, or one with a suffix).

    Parameters
    ----------
    answer : str
        The title the agent wrote.
    texts : sequence of str
        The candidates' texts as shown to the agent.

    Returns
    -------
    int
        Index into ``texts``.

    Raises
    ------
    ReplyError
        When no candidate, or more than one, matches.
    """
    key = normalise_title(answer)
    if not key:
        raise ReplyError("agent reply names no item (empty title)")
    keys = [normalise_title(t) for t in texts]
    exact = [i for i, k in enumerate(keys) if k == key]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        loose = [i for i, k in enumerate(keys) if k and (k.startswith(key) or key.startswith(k))]
        if len(loose) == 1:
            return loose[0]
        if not loose:
            raise ReplyError(f"agent recommended {answer[:80]!r}, which is not among the candidates")
        exact = loose
    raise ReplyError(f"agent's answer {answer[:80]!r} matches {len(exact)} candidates; it must name one")
