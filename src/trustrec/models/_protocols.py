"""Capabilities: what a recommender can do, declared by the model and checked by structure.

A model declares a capability by naming it in its ``capabilities`` class attribute; a capability
with a protocol below also needs the methods the protocol lists. :func:`has_capability` asks both,
so the declaration stays explicit (``runtime_checkable`` alone only sees that methods exist) and a
declaration without its methods is not believed. Audits, mitigations and the conformance checks
decide what applies from these, never from a model's class or name: a new model that declares a
capability is audited by every audit that needs it, with no audit edit.

=======================  ===========================  =================================================
capability               protocol                     meaning
=======================  ===========================  =================================================
``score``                :class:`ScoresCatalog`       full-catalog scores (``score(queries)``)
``candidates``           :class:`ReadsCandidates`     ranks the query's candidate list (a ranker)
``ordered_candidates``   :class:`ReadsOrderedCandidates`  answers depend on the candidates' listed order
``listed_scores``        :class:`ScoresListedCandidates`  scores each slot of a listed candidate list
``text``                 :class:`ReadsItemText`       reads item text; ``with_item_text`` swaps it
``prompt``               :class:`BuildsPrompts`       builds an LLM prompt from ``prompt_template()``
``llm_backend``          :class:`UsesLLMBackend`      every LLM call goes through ``backend``
``answer_likelihood``    :class:`ScoresAnswers`       an LLM picks items by the likelihood of their text as its answer
``sequence_likelihood``  :class:`SequenceLikelihood`  its own training loss of an item as the answer to a query
``unlearnable``          :class:`Unlearnable`         approximate unlearning (``unlearn``)
``user_embeddings``      :class:`UserEmbeddings`      a vector per user (``user_embeddings``)
``uses_history``         --                           answers change with the query's history
``attributes``           --                           answers read the query's user attributes
``stochastic_training``  --                           fitting draws random numbers (seeded)
``cold_start``           --                           scores items never seen in training
=======================  ===========================  =================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from trustrec.data import QueryBatch, Ragged

__all__ = [
    "CAPABILITIES",
    "BuildsPrompts",
    "ReadsCandidates",
    "ReadsItemText",
    "ReadsOrderedCandidates",
    "ScoresAnswers",
    "ScoresCatalog",
    "ScoresListedCandidates",
    "SequenceLikelihood",
    "Unlearnable",
    "UserEmbeddings",
    "UsesLLMBackend",
    "capability_gap",
    "declared_capabilities",
    "has_capability",
]


@runtime_checkable
class ScoresCatalog(Protocol):
    """``score(queries) -> (n_queries, n_items)`` scores, NaN where the model cannot score."""

    def score(self, queries: QueryBatch) -> Any: ...


@runtime_checkable
class ReadsCandidates(Protocol):
    """Ranks each query's own candidate list (``QueryBatch.candidates``)."""

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> Any: ...


@runtime_checkable
class ReadsOrderedCandidates(Protocol):
    """Reads each query's candidate list in the order it is listed (answers may change with the
    order, as an LLM reading a list does)."""

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> Any: ...


@runtime_checkable
class ScoresListedCandidates(Protocol):
    """Scores candidate lists as listed, one score per listed slot:
    ``score_listed(queries, lists, n_permutations=None) -> (n_queries, width)``."""

    def score_listed(self, queries: QueryBatch, lists: np.ndarray, n_permutations: int | None = None) -> Any: ...


@runtime_checkable
class ReadsItemText(Protocol):
    """Reads item text; ``with_item_text(items, injection_guard=...)`` is a fitted copy reading
    other text (edited listings) or showing it under another injection guard."""

    def with_item_text(self, items: pd.DataFrame | None = None, *, injection_guard: str | None = None) -> Any: ...


@runtime_checkable
class BuildsPrompts(Protocol):
    """Builds an LLM prompt from a :class:`~trustrec.models.llm.PromptTemplate`:
    ``prompt_template()`` (item fields, attribute keys, injection guard ...)."""

    def prompt_template(self) -> Any: ...


@runtime_checkable
class UsesLLMBackend(Protocol):
    """Every model call goes through ``backend`` (an :class:`~trustrec.models.llm.LLMBackend`);
    ``tokenizer`` is the backend's tokenizer, or None (a remote endpoint)."""

    @property
    def backend(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...


@runtime_checkable
class ScoresAnswers(Protocol):
    """An LLM recommender that picks items by the likelihood of their text as its answer to a
    prompt (likelihood attribution, deletion tests and written explanations read it this way).

    ``answer_backend``: the :class:`~trustrec.models.llm.LLMBackend` over the fitted LLM (scores
    continuations, generates; its ``tokenizer`` is None for a remote endpoint).
    ``answer_candidates(queries, n)``: ``(n_queries, width)`` items (-1 padded) each answer is
    chosen among: a ranker's retrieved candidates, or a generator's own top ``n``.
    ``answers_from_candidates``: True when the prompt lists those candidates (a ranker), False
    when the model answers freely (a generator; callers may pass their own candidate set).
    ``answer_prompts(queries, candidates)``: one :class:`~trustrec.models.llm.PromptResult` per
    query (``text``, ``n_history``: how many of the most recent history items it shows).
    ``answer_texts(items)``: the text the LLM would answer for each item.
    ``answer_reduction``: ``"sum"`` or ``"mean"`` of the answer's token log-probabilities.
    ``catalog_``: the item text columns prompts are built from."""

    @property
    def answer_backend(self) -> Any: ...

    @property
    def answers_from_candidates(self) -> bool: ...

    @property
    def answer_reduction(self) -> str: ...

    def answer_candidates(self, queries: QueryBatch, n: int) -> Any: ...

    def answer_prompts(self, queries: QueryBatch, candidates: np.ndarray) -> Any: ...

    def answer_texts(self, items: np.ndarray) -> list[str]: ...


@runtime_checkable
class SequenceLikelihood(Protocol):
    """The model's own training loss of an item as the answer to a query:
    ``answer_losses(queries, targets, *, base=False) -> (n_queries,)`` float64, the mean per-token
    cross-entropy of ``targets[i]``'s answer given query ``i`` (its fine-tuning loss); ``base=True``
    asks the untuned base model instead (a reference for membership inference).
    ``loss_positions``: how many trailing positions of each user's sequence training used."""

    @property
    def loss_positions(self) -> int: ...

    def answer_losses(self, queries: QueryBatch, targets: np.ndarray, *, base: bool = False) -> Any: ...


@runtime_checkable
class Unlearnable(Protocol):
    """Approximate unlearning in place: ``unlearn(forget, retain, ...)``; ``can_unlearn()`` says
    whether this instance supports it."""

    def unlearn(self, forget: Ragged, retain: Ragged, **kwargs: Any) -> Any: ...

    def can_unlearn(self) -> bool: ...


@runtime_checkable
class UserEmbeddings(Protocol):
    """``user_embeddings(queries) -> (n_queries, dim)``."""

    def user_embeddings(self, queries: QueryBatch) -> Any: ...


CAPABILITIES: dict[str, type | None] = {
    "score": ScoresCatalog,
    "candidates": ReadsCandidates,
    "ordered_candidates": ReadsOrderedCandidates,
    "listed_scores": ScoresListedCandidates,
    "text": ReadsItemText,
    "prompt": BuildsPrompts,
    "llm_backend": UsesLLMBackend,
    "answer_likelihood": ScoresAnswers,
    "sequence_likelihood": SequenceLikelihood,
    "unlearnable": Unlearnable,
    "user_embeddings": UserEmbeddings,
    "uses_history": None,
    "attributes": None,
    "stochastic_training": None,
    "cold_start": None,
}


def declared_capabilities(model: object) -> frozenset[str]:
    """The capability names a model (instance or class) declares.

    Parameters
    ----------
    model : Recommender or type
        A model instance or class.

    Returns
    -------
    frozenset of str
        Its ``capabilities`` (empty when it has none).
    """
    return frozenset(getattr(model, "capabilities", ()) or ())


def _protocol_missing(model, protocol: type) -> list[str]:
    # on the class (or the instance's own dict) only: never evaluate a property (it may load an LLM)
    cls = model if isinstance(model, type) else type(model)
    own = {} if isinstance(model, type) else getattr(model, "__dict__", {})
    return sorted(n for n in _protocol_attrs(protocol) if not hasattr(cls, n) and n not in own)


def _protocol_attrs(protocol: type) -> set[str]:
    attrs = set()
    for base in protocol.__mro__[:-1]:
        if base.__name__ in ("Protocol", "Generic"):
            continue
        attrs |= {n for n in list(vars(base)) + list(getattr(base, "__annotations__", {})) if not n.startswith("_")}
    return attrs


def capability_gap(model: object, capability: str) -> str | None:
    """None when ``model`` (an instance or a class) has ``capability``; otherwise why not (not
    declared, or declared without the methods its protocol needs).

    Parameters
    ----------
    model : Recommender or type
        A model instance or class.
    capability : str
        A known capability name (``"score"``, ``"user_embeddings"`` ...).

    Returns
    -------
    str or None
        None when the model has the capability, otherwise the reason it does not.

    Raises
    ------
    KeyError
        When ``capability`` is not a known capability.
    """
    if capability not in CAPABILITIES:
        raise KeyError(f"unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
    name = getattr(model, "name", "") or (model.__name__ if isinstance(model, type) else type(model).__name__)
    if capability not in declared_capabilities(model):
        return f"{name} does not declare the {capability!r} capability"
    protocol = CAPABILITIES[capability]
    if protocol is not None:
        missing = _protocol_missing(model, protocol)
        if missing:
            return f"{name} declares {capability!r} but lacks {', '.join(missing)} ({protocol.__name__})"
    return None


def has_capability(model: object, capability: str) -> bool:
    """Whether ``model`` declares ``capability`` and has what its protocol needs.

    Parameters
    ----------
    model : Recommender or type
        A model instance or class.
    capability : str
        A known capability name.

    Returns
    -------
    bool
        True when :func:`capability_gap` finds no gap.

    Raises
    ------
    KeyError
        When ``capability`` is not a known capability.
    """
    return capability_gap(model, capability) is None
