"""A generative LLM recommender served by an OpenAI-compatible endpoint (vLLM, llama.cpp server,
Ollama ...), as a trustrec model: your model, your server, trustrec's prompts, grounding and audits.

Per query, the prompt is the one :class:`~trustrec.models.llm.GenerativeRecommender` builds
(:func:`~trustrec.models.llm.build_prompts` with the ``template``; by default the BIGRec / D3
Alpaca-style instruction, preset ``"bigrec"``, over the last ``max_history_items`` = 10 titles,
quoted and oldest first). The endpoint writes ``n_samples`` completions of it through
:meth:`OpenAIBackend.generate <trustrec.models.llm.OpenAIBackend>` (``POST /v1/completions``):
sample ``j`` is sent with ``seed + j``, so the samples differ and the same seed gives the same
samples on a server that honours seeds (vLLM does; ``temperature=0`` makes every sample the
greedy answer). Each completion is read as an answer: leading whitespace dropped, cut before the
first ``stop`` string (a newline by default), then ``answer_format``'s quotes removed
(:meth:`ExternalGenerative.read_answer`). Each answer is grounded to a catalog item: exact match
after :func:`~trustrec.models.llm.normalise_title`, else (``grounding="tfidf"``) the nearest
title by character 3-gram TF-IDF at cosine >= ``min_similarity``, else nothing.

Ranking: the grounded items of a query are ranked by how many of its samples named them
(score = that share of ``n_samples``), ties by the sample that named them first. History items
(unless ``exclude_seen=False``) and, for a query with candidates, every item outside them are
removed. **Nothing is filled in**: a list holds only items the model named, so it is often
shorter than ``k`` (padded with -1), and a model that names nothing in the catalog gets empty
lists; metrics see exactly what the model recommends. For the same reason, asking for ``k``
items does not draw more than ``n_samples`` samples: raise ``n_samples`` for longer lists.
:meth:`ExternalGenerative.recommend_with_stats` counts ``n_generated``, ``n_exact``,
``n_near_miss`` and ``n_out_of_catalog`` answers.

Audits: :meth:`ExternalGenerative.generate_titles` (the answers, ungrounded) and
:meth:`ExternalGenerative.grounder` (``text -> (item, how)``) are what the ``hallucination``
(factuality) audit reads; ``text_attack`` and ``knowledge_hallucination`` also apply. Constrained
decoding needs the model's logits and cannot run through an endpoint, so that audit measures free
text only (and says so). ``fit`` records the catalog titles and the id vocabulary and trains
nothing: the endpoint serves a model its owner trains, so retraining audits (poisoning,
unlearning ...) are not applicable, with that reason (:meth:`ExternalGenerative.audit_gap`).

Scores of ``generate_titles``: with ``score_texts`` (default) each answer is scored by the
endpoint as the summed log-probability of its text after the prompt
(:meth:`~trustrec.models.llm.LLMBackend.score_continuations`, one extra batched request per
``batch_size`` answers). That needs echo + prompt log-probabilities on ``/v1/completions`` (vLLM
has them; Ollama and llama.cpp's server do not): when the endpoint cannot score, or its tokenizer
merges the prompt's end with an answer's start, every score of the call is NaN and a
:class:`~trustrec.errors.DataWarning` says why. ``score_texts=False`` skips the requests (all NaN).

The key: ``api_key_env`` names an environment variable whose value is sent as ``Authorization:
Bearer`` to ``base_url``'s host only (never to another host, never saved, never logged); the
name alone is part of the config. Errors of the endpoint (down, timing out, answering something
that is not an OpenAI completions response) are :class:`~trustrec.models.llm.EndpointError`
naming the URL.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from trustrec._config import Config
from trustrec.data import Dataset, QueryBatch
from trustrec.errors import ConfigError, DataError, DataWarning
from trustrec.models._base import FitOptions, Recommender, exclusion_mask
from trustrec.models._registry import register_model
from trustrec.models._topk import TopK
from trustrec.models.llm import EndpointError, PromptCatalog, PromptTemplate, build_prompts, make_grounder
from trustrec.models.llm._prompts import ReadsItemText

__all__ = ["ExternalGenerative", "ExternalGenerativeConfig"]

#: Phrases of :class:`~trustrec.models.llm.OpenAIBackend` errors that mean "this endpoint cannot
#: score these texts" (no prompt log-probabilities, merged token boundary), not "it failed".
_CANNOT_SCORE = ("did not return prompt log-probabilities", "no token starts where", "returned no log-probability")


class ExternalGenerativeConfig(Config):
    """Settings of :class:`ExternalGenerative` (see the module docstring).

    Parameters
    ----------
    base_url : str
        Root of the OpenAI-compatible server, e.g. ``http://localhost:8000`` (a trailing ``/v1``
        is accepted); requests go to ``{base_url}/v1/completions``.
    model : str
        The model name the server serves (sent with every request).
    api_key_env : str or None
        Name of the environment variable holding the API key, sent as ``Authorization: Bearer``
        to ``base_url``'s host only (default None: no key, except ``OPENAI_API_KEY`` under
        :class:`~trustrec.models.llm.OpenAIBackend`'s rule, to ``api.openai.com`` only).
    template : dict
        Prompt template fields (:class:`~trustrec.models.llm.PromptTemplate`; default
        ``{"preset": "bigrec"}``, the BIGRec / D3 Alpaca-style instruction).
    max_history_items : int or None
        Most recent history items shown in a prompt (default 10, as BIGRec / D3; None: all).
    answer_format : str
        How the model writes an item, with the slot ``{title}`` (default ``'"{title}"'`` and a
        newline, as BIGRec / D3); its fixed prefix and suffix are removed from each answer.
    stop : tuple of str
        An answer ends before the first of these strings (default a newline; empty: the whole
        completion).
    n_samples : int
        Completions drawn per query (default 10).
    temperature : float
        Sampling temperature, >= 0 (default 1.0; 0: greedy, every sample the same).
    top_p : float
        Nucleus sampling mass, in (0, 1] (default 1.0).
    seed : int or None
        Seed of sample 0 (sample ``j`` uses ``seed + j``; default None: the fit seed).
    max_new_tokens : int
        Longest completion, in tokens (default 32).
    grounding : {"exact", "tfidf"}
        How an answer that is no exact title is matched: not at all, or by the nearest title in
        character 3-gram TF-IDF (default ``"tfidf"``).
    min_similarity : float
        Smallest cosine similarity, in [0, 1], at which ``"tfidf"`` grounds an answer (default 0.3).
    encoder : str or None
        Text encoder (registered name or checkpoint folder) for ``grounder("embedding")``, which
        the hallucination audit measures when it is available offline (default None: not measured).
    score_texts : bool
        Whether :meth:`ExternalGenerative.generate_titles` asks the endpoint for each answer's
        log-probability (default True; NaN where the endpoint cannot score).
    batch_size : int
        Prompts per request (default 16).
    max_concurrency : int
        Requests in flight at once (default 4).
    timeout_s : float
        Longest wait for one read from the server, seconds (default 60.0).
    max_retries : int
        Retries after connection errors, timeouts, HTTP 429 and 5xx (default 3).
    """

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    template: dict[str, Any] = Field(default_factory=lambda: {"preset": "bigrec"})
    max_history_items: PositiveInt | None = 10
    answer_format: str = '"{title}"\n'
    stop: tuple[str, ...] = ("\n",)
    n_samples: PositiveInt = 10
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: NonNegativeInt | None = None
    max_new_tokens: PositiveInt = 32
    grounding: Literal["exact", "tfidf"] = "tfidf"
    min_similarity: float = Field(0.3, ge=0, le=1)
    encoder: str | None = None
    score_texts: bool = True
    batch_size: PositiveInt = 16
    max_concurrency: PositiveInt = 4
    timeout_s: float = Field(60.0, gt=0)
    max_retries: NonNegativeInt = 3

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.strip().startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check(self):
        self.prompt_template()  # raises ConfigError on a bad template
        if self.answer_format.count("{title}") != 1:
            raise ValueError(f"answer_format must hold the slot {{title}} exactly once, got {self.answer_format!r}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must not be empty")
        return self

    def prompt_template(self) -> PromptTemplate:
        """The prompt template of ``template``.

        Returns
        -------
        PromptTemplate
            The validated template.
        """
        return PromptTemplate.from_dict(self.template)


@register_model
class ExternalGenerative(ReadsItemText, Recommender):
    """A generative LLM recommender behind an OpenAI-compatible endpoint (see the module docstring).

    Parameters
    ----------
    config : ExternalGenerativeConfig, mapping or None
        The settings; None: from the keyword arguments.
    **kwargs
        The settings as keyword arguments (``base_url``, ``model``, ``n_samples`` ...).
    """

    name = "external_generative"
    config_class = ExternalGenerativeConfig
    config: ExternalGenerativeConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({"uses_history", "text", "prompt", "llm_backend"})

    # -- fitting ---------------------------------------------------------------------------------
    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self._api_key()  # an unset variable fails now, not at the first request
        if "title" not in train.items.columns:
            raise DataError(
                f"{self.name}: the dataset '{train.name}' has no item titles (a 'title' column of its items); "
                "a generative LLM names items by title, so it needs them"
            )
        self.catalog_ = PromptCatalog.from_items(train.items, self._prompt_template().item_fields).columns
        self.seed_ = int(self.config.seed if self.config.seed is not None else options.seed)
        self.__dict__.pop("_backend", None)

    def audit_gap(self, need: str) -> str | None:
        """None when the endpoint's model can serve an audit that needs ``need``; otherwise why not.

        Parameters
        ----------
        need : str
            ``"lists"``, ``"queries"`` or ``"retraining"``.

        Returns
        -------
        str or None
            The reason for ``"retraining"`` (trustrec cannot retrain the served model); else None.
        """
        if need == "retraining":
            return (
                f"{self.name} serves a model its owner trains ({self.config.model!r} at {self.config.base_url}); "
                "trustrec cannot retrain it on other data, so audits that refit the model do not apply"
            )
        return None

    def _prompt_template(self) -> PromptTemplate:
        return self.config.prompt_template()

    # -- the endpoint ---------------------------------------------------------------------------
    def _api_key(self) -> dict[str, Any]:
        env = self.config.api_key_env
        if env is None:
            return {}
        key = os.environ.get(env, "")
        if not key:
            raise ConfigError(
                f"{self.name}: api_key_env names the environment variable {env!r}, but it is not set (or empty); "
                "export it with the endpoint's API key, or remove api_key_env"
            )
        return {"api_key": key, "api_key_hosts": (self.config.base_url,)}

    @property
    def backend(self) -> Any:
        """The :class:`~trustrec.models.llm.OpenAIBackend` every request goes through (built on
        first use, not saved)."""
        cached = self.__dict__.get("_backend")
        if cached is None:
            from trustrec.models.llm import OpenAIBackend

            c = self.config
            cached = OpenAIBackend(
                base_url=c.base_url,
                model=c.model,
                timeout_s=c.timeout_s,
                max_retries=c.max_retries,
                batch_size=c.batch_size,
                max_concurrency=c.max_concurrency,
                **self._api_key(),
            )
            self._backend = cached
        return cached

    @property
    def tokenizer(self) -> None:
        """None: the endpoint's tokenizer is not available here (prompts are plain text)."""
        return None

    # -- text -------------------------------------------------------------------------------------
    def titles(self) -> list[str]:
        """Each item's title as the model should write it (cleaned, or the template's placeholder).

        Returns
        -------
        list of str
            One title per item index.
        """
        self._check_fitted()
        titles_only = self._prompt_template().model_copy(update={"item_fields": (), "injection_guard": "off"})
        return PromptCatalog(self.catalog_).texts(titles_only)

    def read_answer(self, text: str) -> str:
        """The title an answer states: ``answer_format``'s fixed prefix and suffix removed where
        present, surrounding whitespace dropped.

        Parameters
        ----------
        text : str
            An answer (a completion already cut at ``stop``).

        Returns
        -------
        str
            The stated title.
        """
        prefix, _, suffix = self.config.answer_format.partition("{title}")
        text = str(text).strip()
        if prefix.strip() and text.startswith(prefix.strip()):
            text = text[len(prefix.strip()) :]
        if suffix.strip() and text.endswith(suffix.strip()):
            text = text[: -len(suffix.strip())]
        return text.strip()

    def _cut(self, completion: str) -> str:
        text = completion.lstrip()
        for s in self.config.stop:
            text = text.split(s, 1)[0]
        return text.rstrip()

    def prompts(self, queries: QueryBatch) -> list[str]:
        """The generation prompt of each query (history cut to ``max_history_items``).

        Parameters
        ----------
        queries : QueryBatch
            The queries.

        Returns
        -------
        list of str
            One prompt per query.
        """
        queries = self._prepare(queries)
        limit = self.config.max_history_items
        if limit is not None and len(queries) and queries.histories.lengths.max() > limit:
            queries = queries.with_histories(queries.histories.tails(limit))
        return [p.text for p in build_prompts(queries, PromptCatalog(self.catalog_), self._prompt_template())]

    def _sample(self, prompts: list[str], n: int) -> list[list[str]]:
        """``n`` answers per prompt (sample ``j`` with seed ``seed_ + j``), cut at ``stop``."""
        c = self.config
        raw = self.backend.sample(
            prompts, n, c.max_new_tokens, temperature=c.temperature, top_p=c.top_p, seed=self.seed_
        )
        return [[self._cut(t) for t in row] for row in raw]

    # -- audits: free text and its grounding ------------------------------------------------------
    def generate_titles(self, queries: QueryBatch, n: int | None = None) -> list[list[tuple[str, float]]]:
        """The model's answers, ungrounded: per query, ``n`` samples as ``(text, score)``.

        Texts are in sample order (sample ``j`` drawn with seed ``seed + j``), each cut at
        ``stop`` (the answer as :meth:`recommend` reads it; it may be empty, off-catalog or
        malformed, and samples may repeat). ``score`` is the endpoint's summed log-probability of
        the text after the prompt, or NaN (``score_texts=False``, an empty text, or an endpoint
        that cannot score: see the module docstring).

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        n : int or None
            Samples per query (default ``n_samples``).

        Returns
        -------
        list of list of (str, float)
            One list per query.

        Raises
        ------
        ConfigError
            When ``n < 1``.
        EndpointError
            When the endpoint cannot be reached or answers outside the completions format.
        """
        if n is not None and n < 1:
            raise ConfigError(f"{type(self).__name__}.generate_titles: n must be >= 1, got {n}")
        prompts = self.prompts(queries)
        if not prompts:
            return []
        texts = self._sample(prompts, n or self.config.n_samples)
        scores = self._text_scores(prompts, texts)
        return [list(zip(row, values)) for row, values in zip(texts, scores)]

    def _text_scores(self, prompts: list[str], texts: list[list[str]]) -> list[list[float]]:
        out = [[float("nan")] * len(row) for row in texts]
        if not self.config.score_texts:
            return out
        reason = self.__dict__.get("_cannot_score")
        if reason is None:
            unique = [list(dict.fromkeys(t for t in row if t)) for row in texts]
            try:
                sums = self.backend.score_continuations(prompts, unique, reduction="sum")
            except EndpointError as exc:
                if not any(phrase in str(exc) for phrase in _CANNOT_SCORE):
                    raise
                reason = str(exc)
                if "did not return prompt log-probabilities" in reason:
                    self._cannot_score = reason  # the endpoint never will: ask no more
            else:
                for i, (row, keys, values) in enumerate(zip(texts, unique, sums)):
                    found = dict(zip(keys, values.tolist()))
                    out[i] = [found.get(t, float("nan")) for t in row]
                return out
        warnings.warn(
            f"{self.name}: the answers' scores are NaN: the endpoint {self.config.base_url} cannot score them "
            f"({reason[:300]}); set score_texts=False to skip asking",
            DataWarning,
            stacklevel=3,
        )
        return out

    def grounder(
        self, mode: Literal["exact", "tfidf", "embedding"] | None = None, *, encoder: Any = None
    ) -> Callable[[str], tuple[int, str]]:
        """``ground(text) -> (item, how)``: the catalog item an answer names and how it was found.

        The answer is read through ``answer_format`` first (:meth:`read_answer`). ``how`` is
        ``"exact"`` (normalised title match), ``"near"`` (the ``mode`` fallback at similarity >=
        ``min_similarity``) or ``"none"`` (item -1), as
        :meth:`GenerativeRecommender.grounder <trustrec.models.llm.GenerativeRecommender.grounder>`.

        Parameters
        ----------
        mode : {"exact", "tfidf", "embedding"} or None
            The fallback (default: the configured ``grounding``); ``"embedding"`` needs
            ``encoder`` or a configured ``encoder``. BIGRec's ``"hidden_state"`` needs the LM's
            weights, which an endpoint does not give.
        encoder : object or None
            A loaded text encoder (``encode(texts) -> array``) for ``"embedding"``.

        Returns
        -------
        callable
            ``ground(text) -> (item, how)``.

        Raises
        ------
        ConfigError
            For an unknown mode, ``"hidden_state"``, or ``"embedding"`` without an encoder.
        """
        self._check_fitted()
        c = self.config
        mode = mode or c.grounding
        if mode not in ("exact", "tfidf", "embedding"):
            why = " (hidden-state grounding needs the LM's weights; an endpoint serves only text)"
            raise ConfigError(
                f"{type(self).__name__}.grounder: mode must be 'exact', 'tfidf' or 'embedding', got {mode!r}"
                + (why if str(mode) == "hidden_state" else "")
            )
        if mode == "embedding" and encoder is None:
            if c.encoder is None:
                raise ConfigError(
                    f"{type(self).__name__}.grounder: 'embedding' grounding needs a text encoder: pass encoder= "
                    "or set the encoder setting"
                )
            from trustrec.models.llm import load_text_encoder

            encoder = load_text_encoder(c.encoder)
        ground = make_grounder(self.titles(), mode, c.min_similarity, encoder=encoder)

        def read_and_ground(text: str) -> tuple[int, str]:
            return ground(self.read_answer(text))

        return read_and_ground

    # -- recommending -----------------------------------------------------------------------------
    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        """Items the samples named, most often named first (see the module docstring).

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Longest list (lists are shorter when the samples name fewer allowed items).
        exclude_seen : bool
            Whether history items are removed.

        Returns
        -------
        TopK
            Items and their share of samples; -1 / -inf padding.
        """
        return self.recommend_with_stats(queries, k, exclude_seen=exclude_seen)[0]

    def recommend_with_stats(
        self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True
    ) -> tuple[TopK, dict[str, int]]:
        """:meth:`recommend` and counts of the answers: ``n_generated``, ``n_exact``,
        ``n_near_miss`` (grounded by the fallback) and ``n_out_of_catalog`` (grounded to nothing).

        Parameters
        ----------
        queries : QueryBatch
            The queries.
        k : int
            Longest list.
        exclude_seen : bool
            Whether history items are removed.

        Returns
        -------
        tuple of (TopK, dict)
            The lists and the counts.

        Raises
        ------
        ConfigError
            When ``k < 0``.
        EndpointError
            When the endpoint cannot be reached or answers outside the completions format.
        """
        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        queries = self._prepare(queries)
        k = min(k, self.n_items_)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf)
        stats = {"n_generated": 0, "n_exact": 0, "n_near_miss": 0, "n_out_of_catalog": 0}
        mask = exclusion_mask(queries, self.n_items_, exclude_seen)
        allowed = np.ones(len(queries), dtype=bool) if mask is None else ~mask.all(1)
        asked = np.flatnonzero(allowed)  # a query that may get no item at all costs no request
        if k == 0 or not len(asked):
            return TopK(items, scores), stats
        n = self.config.n_samples
        texts = self._sample(self.prompts(queries[asked]), n)
        ground = self.grounder()
        counted = {"exact": "n_exact", "near": "n_near_miss", "none": "n_out_of_catalog"}
        for row, answers in zip(asked, texts):
            counts: dict[int, int] = {}  # insertion order: first appearance
            for text in answers:
                stats["n_generated"] += 1
                item, how = ground(text) if text else (-1, "none")
                stats[counted[how]] += 1
                if item >= 0 and (mask is None or not mask[row, item]):
                    counts[item] = counts.get(item, 0) + 1
            ranked = sorted(counts.items(), key=lambda pair: -pair[1])[:k]  # stable: ties by first appearance
            for j, (item, count) in enumerate(ranked):
                items[row, j], scores[row, j] = item, count / n
        return TopK(items, scores), stats

    def _item_text_changed(self) -> None:
        """Nothing is cached from the item text (grounders are built per call)."""
