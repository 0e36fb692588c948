"""User simulators: "would this user accept this item?", for agents and audits alike.

A :class:`UserSimulator` answers with a probability per (query, item). Two are built in:

- :class:`PreferenceSimulator`: a fitted preference model's scores turned into acceptance
  probabilities by percentile rank (:func:`acceptance_probabilities`). The feedback-loop audit
  simulates its users with it.
- :class:`UserAgent`: an LLM reads the user's history (and what a prior recommender would pick,
  and its memory of earlier rounds) and says Yes or No to a recommended item, with a reason.
  The FLOW recommender talks to it. Its answer is read from the likelihoods of "Yes" and "No"
  (``decision="scored"``, any backend that scores continuations) or from a JSON reply
  (``decision="text"``, the free-text protocol of the paper, any backend that generates).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from trustrec.data import QueryBatch
from trustrec.errors import DataError
from trustrec.models.agents._prompting import LLMAgent, fill
from trustrec.models.agents._replies import ReplyError, parse_json_reply

__all__ = [
    "Judgements",
    "PreferenceSimulator",
    "UserAgent",
    "UserSimulator",
    "acceptance_probabilities",
]

_YES = ("yes", "y", "true", "accept")
_NO = ("no", "n", "false", "reject")


@runtime_checkable
class UserSimulator(Protocol):
    """``accept_probability(queries, items) -> (n_queries,)``: the probability that the user of
    query ``q`` accepts item ``items[q]``."""

    def accept_probability(self, queries: QueryBatch, items: np.ndarray) -> np.ndarray: ...


def acceptance_probabilities(scores: np.ndarray, *, accept_max: float = 0.5, sharpness: float = 20.0) -> np.ndarray:
    """Per row, ``accept_max * q ** sharpness`` where ``q`` is each item's percentile rank in the
    row (1 = the highest score, 0 = the lowest; ties share the lower rank; NaN scores count as
    the lowest).

    Parameters
    ----------
    scores : numpy.ndarray
        ``(n_users, n_items)`` preference scores.
    accept_max : float
        Acceptance probability of the most preferred item (default 0.5).
    sharpness : float
        Exponent on the percentile rank (default 20: an item in the top 1% is accepted about
        41% of the time at ``accept_max = 0.5``).

    Returns
    -------
    numpy.ndarray
        ``(n_users, n_items)`` float64 probabilities.
    """
    from scipy.stats import rankdata

    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, np.float64))
    n = s.shape[1]
    if n < 2:
        return np.full(s.shape, accept_max)
    rank = rankdata(-s, method="max", axis=1)  # 1 = best; ties take the worse rank
    q = 1.0 - (rank - 1) / (n - 1)
    return accept_max * q**sharpness


@dataclasses.dataclass(frozen=True)
class PreferenceSimulator:
    """Users who accept items by how high a preference model ranks them.

    Parameters
    ----------
    model : Recommender
        A fitted recommender that scores the catalog (``score``), usually fitted on every
        interaction the simulated users have (preferences the audited model never saw).
    accept_max : float
        See :func:`acceptance_probabilities` (default 0.5).
    sharpness : float
        See :func:`acceptance_probabilities` (default 20.0).
    """

    model: Any
    accept_max: float = 0.5
    sharpness: float = 20.0

    def acceptance_matrix(self, queries: QueryBatch, batch_size: int = 256) -> np.ndarray:
        """``(n_queries, n_items)`` acceptance probability of every item for every query.

        Parameters
        ----------
        queries : QueryBatch
            The users (their histories are what the preference model reads).
        batch_size : int
            Queries scored at once (default 256).

        Returns
        -------
        numpy.ndarray
            Probabilities, float64.
        """
        parts = [
            acceptance_probabilities(
                np.asarray(self.model.score(self.model._prepare(b)), np.float64),
                accept_max=self.accept_max,
                sharpness=self.sharpness,
            )
            for b in queries.batches(batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.model.n_items_))

    def accept_probability(self, queries: QueryBatch, items: np.ndarray) -> np.ndarray:
        """The probability that the user of query ``q`` accepts ``items[q]``.

        Parameters
        ----------
        queries : QueryBatch
            The users.
        items : numpy.ndarray
            One item index per query.

        Returns
        -------
        numpy.ndarray
            ``(n_queries,)`` probabilities.
        """
        items = _check_items(items, len(queries), self.model.n_items_, "PreferenceSimulator")
        return self.acceptance_matrix(queries)[np.arange(len(queries)), items]


def _check_items(items: Any, n_queries: int, n_items: int, who: str) -> np.ndarray:
    items = np.asarray(items)
    if items.shape != (n_queries,) or not np.issubdtype(items.dtype, np.integer):
        raise DataError(f"{who}: items must be one integer item index per query ({n_queries}); got {items!r:.80}")
    bad = (items < 0) | (items >= n_items)
    if bad.any():
        raise DataError(
            f"{who}: item index {int(items[bad][0])} (query {int(np.flatnonzero(bad)[0])}) is outside the "
            f"catalog of {n_items} items"
        )
    return items.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Judgements:
    """What the user agent said about one recommended item per query.

    Parameters
    ----------
    accept : numpy.ndarray
        ``(n,)`` bool, True where the user accepted.
    margin : numpy.ndarray
        ``(n,)`` log p(Yes) - log p(No) (scored answers); +inf / -inf for a JSON yes / no;
        -inf for an unreadable reply.
    reasons : list of str
        The user's reason per query (empty when reasons are off).
    errors : list of str or None
        Why a reply could not be read (then the answer counts as No), else None.
    """

    accept: np.ndarray
    margin: np.ndarray
    reasons: list[str]
    errors: list[str | None]

    @property
    def probability(self) -> np.ndarray:
        """``sigmoid(margin)``: the acceptance probability of a scored answer, 1 / 0 for a JSON
        one."""
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-self.margin))


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserAgent(LLMAgent):
    """An LLM that plays the user (FLOW's user agent); see the module docstring. Its fields are
    :class:`~trustrec.models.agents.LLMAgent`'s and ``accept_margin``.

    Parameters
    ----------
    accept_margin : float
        A scored answer accepts when ``log p(Yes) - log p(No) > accept_margin`` (default 0.0).
    **agent : object
        The :class:`~trustrec.models.agents.LLMAgent` fields.
    """

    accept_margin: float = 0.0

    def prompt(self, query: Any, item: int, reason: str = "", memory: Sequence[str] = (), prior: str = "") -> str:
        """The user agent's prompt for one recommended item."""
        p = self.prompts
        return self.view.prompt(
            p.user_system,
            fill(
                p.user_user,
                history=self.view.history(query),
                prior=prior,
                memory=fill(p.memory_block, entries="\n".join(memory)) if memory else "",
                item=self.view.items([item])[0],
                reason=fill(p.reason_line, reason=self.view.clean(reason)) if reason else "",
                task=p.user_task_scored if self.decision == "scored" else p.user_task_text,
            ),
        )

    def judge(
        self,
        queries: QueryBatch,
        items: np.ndarray,
        *,
        reasons: Sequence[str] | None = None,
        memories: Sequence[Sequence[str]] | None = None,
        priors: Sequence[str] | None = None,
    ) -> Judgements:
        """The user's answer to ``items[q]`` recommended to query ``q``.

        Parameters
        ----------
        queries : QueryBatch
            The users.
        items : numpy.ndarray
            One recommended item index per query.
        reasons : sequence of str or None
            The recommendation agent's reason per query (default none).
        memories : sequence of sequence of str or None
            The user agent's memory entries per query (default none).
        priors : sequence of str or None
            The prior recommender's view per query, as shown (default none).

        Returns
        -------
        Judgements
            Accept flags, margins, reasons and unreadable-reply errors.
        """
        n = len(queries)
        items = _check_items(items, n, len(self.view.catalog), "UserAgent.judge")
        reasons = [""] * n if reasons is None else list(reasons)
        memories = [()] * n if memories is None else list(memories)
        priors = [""] * n if priors is None else list(priors)
        if not len(reasons) == len(memories) == len(priors) == n:
            raise DataError(f"UserAgent.judge: give one reason, memory and prior per query ({n})")
        prompts = [self.prompt(queries.query(q), int(items[q]), reasons[q], memories[q], priors[q]) for q in range(n)]
        if self.decision == "text":
            return self._read_replies(prompts)
        p = self.prompts
        scores = self.backend.score_continuations(prompts, [[p.yes, p.no]] * n, reduction="sum")
        margin = np.array([s[0] - s[1] for s in scores], dtype=np.float64).reshape(n)
        accept = margin > self.accept_margin
        said = [
            self._reason_prompt(prompt, p.yes if a else p.no)
            for prompt, a in zip(prompts, accept.tolist(), strict=True)
        ]
        return Judgements(accept, margin, self._reasons(said), [None] * n)

    def accept_probability(self, queries: QueryBatch, items: np.ndarray) -> np.ndarray:
        """The :class:`UserSimulator` answer: ``sigmoid(log p(Yes) - log p(No))`` for a scored
        agent, 1 or 0 for one that replies in JSON (no reasons are generated).

        Parameters
        ----------
        queries : QueryBatch
            The users.
        items : numpy.ndarray
            One item index per query.

        Returns
        -------
        numpy.ndarray
            ``(n_queries,)`` probabilities.
        """
        return dataclasses.replace(self, reasons=False).judge(queries, items).probability

    # -- generated text ----------------------------------------------------------------------
    def _reason_prompt(self, prompt: str, answer: str) -> str:
        return prompt + answer + self.prompts.reason_prefix

    def _read_reply(self, reply: str) -> tuple[bool, str, str | None]:
        """``(yes, reason, None)``, or ``(False, "", why)`` for an unreadable reply (a decline)."""
        try:
            fields = parse_json_reply(reply, ("answer", "reason"))
            answer = fields["answer"].strip().strip("\"'").casefold()
            if answer not in _YES + _NO:
                raise ReplyError(f"user agent's answer {fields['answer'][:40]!r} is neither yes nor no")
            return answer in _YES, self.view.clean(fields["reason"]), None
        except ReplyError as err:
            return False, "", str(err)

    def _read_replies(self, prompts: list[str]) -> Judgements:
        n = len(prompts)
        replies = self._generate(prompts, self.reply_tokens)
        accept = np.zeros(n, dtype=bool)
        margin = np.full(n, -np.inf)
        reasons: list[str] = [""] * n
        errors: list[str | None] = [None] * n
        for q, reply in enumerate(replies):
            said, reasons[q], errors[q] = self._read_reply(reply)
            if said:
                accept[q], margin[q] = True, np.inf
        return Judgements(accept, margin, reasons, errors)
