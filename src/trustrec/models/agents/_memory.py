"""AutoMR (Wang et al., WWW 2025 companion, arXiv 2412.17593): a long history goes to a memory, and
a trained retriever chooses which memory items join the recent ones in the LLM's prompt.

An LLM's prompt holds only so much history, so LLM recommenders usually show the most recent
items and forget the rest. :class:`MemoryRanker` (``automr``) is the :class:`LLMRanker` whose
prompt history is the ``n_recent`` most recent items plus ``n_memory`` items chosen from the
older ones (the **memory**: at most ``max_memory`` items before the recent window), shown oldest
first. ``selection`` chooses them:

- ``"learned"`` (AutoMR): the retriever's top ``n_memory`` by ``s(m) = q^T W e_m``, where ``e_m``
  is memory item ``m``'s text embedding (the sentence encoder, L2-normalised), ``q`` the
  normalised mean embedding of the recent items and ``W`` a learned ``d x d`` matrix;
- ``"semantic"``: the same with ``W = I`` (cosine similarity to the recent items, the paper's
  semantic-retrieval baseline);
- ``"random"``: ``n_memory`` memory items drawn by a seeded hash of (item, position), so the same
  query always gets the same draw;
- ``"recent"``: the ``n_memory`` most recent memory items, i.e. the ``n_recent + n_memory`` most
  recent items: the recent-only prompt at the same budget.

**Training the retriever** (``"learned"``). Each training user with at least 2 memory items
gives one example: the last training item ``y`` is the answer, the history before it the
context. The LLM scores ``y``'s text as the answer of the ranking prompt (the retriever's
candidates for that context, ``y`` put in the first free or the last slot when the retriever
missed it) once with
the recent items only (loss ``L_0``) and once per memory item ``m`` with ``m`` added (``L_m``);
the loss is the negative log-likelihood of the answer (per token with ``reduction="mean"``). The
target distribution over the user's memory is the one each item's effect on that loss induces,
``p*(m) = softmax_m((L_0 - L_m) / temperature)`` (:func:`retrieval_targets`), and ``W`` (started
at ``I``) is fitted by minimising ``KL(p* || softmax_m s(m))`` averaged over the examples, with
Adam (:func:`fit_memory_retriever`). :meth:`MemoryRanker.memory_targets` is the annotation step
on its own.

Differences from the paper, stated: the paper fine-tunes a generative LLM (next-item generation,
no candidates) and keeps hidden LLM states in its memory; here the LLM is used as it comes, as a
ranker of the retriever's candidates (the loss is that of the held-out answer in that prompt), and
memory items are represented by the sentence encoder's embedding of their text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from trustrec.data import Dataset, QueryBatch, Ragged
from trustrec.errors import ConfigError, DataError
from trustrec.models._base import FitOptions
from trustrec.models._registry import register_model
from trustrec.models.llm._prompts import PromptCatalog, PromptResult, special_strings
from trustrec.models.llm._ranker import LLMRanker, RankerConfig

if TYPE_CHECKING:
    from trustrec.models.training import Callback

__all__ = [
    "MemoryExamples",
    "MemoryRanker",
    "MemoryRankerConfig",
    "fit_memory_retriever",
    "retrieval_targets",
    "select_history",
]

Selection = Literal["learned", "semantic", "random", "recent"]


class MemoryRankerConfig(RankerConfig):
    """Hyper-parameters of :class:`MemoryRanker`: those of :class:`RankerConfig` and the memory's.

    Parameters
    ----------
    n_recent : int
        Most recent history items always shown (default 10).
    n_memory : int
        Memory items added to the prompt (default 5).
    max_memory : int
        Memory size: the items before the recent window a retrieval chooses from, the most
        recent ones (default 50).
    selection : {"learned", "semantic", "random", "recent"}
        How memory items are chosen (see the module docstring; default ``"learned"``).
    encoder : str
        Sentence encoder of the item texts (registered name or checkpoint folder; default
        ``"all-minilm-l6-v2"``).
    fields : tuple of str
        Item columns the encoder reads after the title (default none).
    train_users : int or None
        Training examples annotated by the LLM, the users drawn with the fit seed (default 200;
        None: every user with a memory). Each costs ``1 + max_memory`` LLM scorings.
    temperature : float
        Temperature of the target distribution, in loss units (default 0.1: with the mean
        per-token loss, a memory item that lowers it by 0.1 nats gets e times the weight).
    epochs : int
        Full-batch Adam steps of the retriever (default 200).
    learning_rate : float
        Adam's learning rate (default 0.01).
    weight_decay : float
        L2 pull of ``W`` towards ``I`` (default 0.001).
    """

    n_recent: PositiveInt = 10
    n_memory: PositiveInt = 5
    max_memory: PositiveInt = 50
    selection: Selection = "learned"
    encoder: str = "all-minilm-l6-v2"
    fields: tuple[str, ...] = ()
    train_users: PositiveInt | None = 200
    temperature: PositiveFloat = 0.1
    epochs: PositiveInt = 200
    learning_rate: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 1e-3
    max_history_items: PositiveInt | None = Field(None, description="unused: the memory sets the history")

    @model_validator(mode="after")
    def _check_memory(self):
        if self.retriever.name == "automr":
            raise ValueError("retriever: a memory ranker cannot be its own retriever")
        if self.max_history_items is not None:
            raise ValueError("max_history_items: the memory ranker shows n_recent + n_memory items; leave it unset")
        if self.n_shots:
            raise ValueError("n_shots: in-context examples are not supported by the memory ranker")
        return self


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _memory_layout(histories: Ragged, n_recent: int, max_memory: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per history element: its row, whether it is recent, whether it is in the memory."""
    lengths = np.diff(histories.indptr)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    from_end = lengths[rows] - (np.arange(len(histories.values)) - histories.indptr[rows])  # 1 = latest
    recent = from_end <= n_recent
    memory = ~recent & (from_end <= n_recent + max_memory)
    return rows, recent, memory


def _recent_queries(item_vectors: np.ndarray, histories: Ragged, rows, recent) -> np.ndarray:
    """``(n_rows, d)`` normalised mean embedding of each row's recent items (0 for none)."""
    import scipy.sparse as sp

    n_rows = len(histories.indptr) - 1
    pick = sp.csr_matrix(
        (np.ones(int(recent.sum())), (rows[recent], histories.values[recent])),
        shape=(n_rows, len(item_vectors)),
    )
    q = np.asarray(pick @ item_vectors, dtype=np.float64)
    return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)


def select_history(
    histories: Ragged,
    *,
    n_recent: int,
    n_memory: int,
    max_memory: int,
    selection: Selection,
    item_vectors: np.ndarray | None = None,
    projection: np.ndarray | None = None,
    seed: int = 0,
) -> Ragged:
    """The prompt history of each row: its ``n_recent`` latest items and ``n_memory`` items of its
    memory (the ``max_memory`` items before them), chosen by ``selection`` and kept in their
    original (chronological) order. Vectorised over all rows.

    Parameters
    ----------
    histories : Ragged
        Item indices per row, oldest first.
    n_recent, n_memory, max_memory : int
        As in :class:`MemoryRankerConfig`.
    selection : {"learned", "semantic", "random", "recent"}
        How memory items are chosen.
    item_vectors : numpy.ndarray or None
        ``(n_items, d)`` item embeddings; needed by ``"learned"`` and ``"semantic"``.
    projection : numpy.ndarray or None
        ``(d, d)`` the retriever's ``W``; needed by ``"learned"``.
    seed : int
        Seed of the ``"random"`` draw.

    Returns
    -------
    Ragged
        The chosen items per row, oldest first (a history shorter than ``n_recent + n_memory``
        is returned whole).
    """
    rows, recent, memory = _memory_layout(histories, n_recent, max_memory)
    values = np.asarray(histories.values, dtype=np.int64)
    lengths = np.diff(histories.indptr)
    if selection == "recent":
        score = -(lengths[rows] - (np.arange(len(values)) - histories.indptr[rows])).astype(np.float64)
    elif selection == "random":
        position = np.arange(len(values)) - histories.indptr[rows]
        key = _splitmix64(values.astype(np.uint64) * np.uint64(1_000_003) + position.astype(np.uint64))
        score = (_splitmix64(key ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) >> np.uint64(11)).astype(np.float64)
    else:
        if item_vectors is None or (selection == "learned" and projection is None):
            raise ConfigError(f"select_history: selection={selection!r} needs item_vectors (and a learned projection)")
        if len(values) and values.max() >= len(item_vectors):
            raise DataError(
                f"select_history: item index {int(values.max())} is outside the {len(item_vectors)} item embeddings"
            )
        queries = _recent_queries(item_vectors, histories, rows, recent)
        if selection == "learned":
            queries = queries @ np.asarray(projection, dtype=np.float64)
        score = np.zeros(len(values))
        idx = np.flatnonzero(memory)
        score[idx] = np.einsum("nd,nd->n", queries[rows[idx]], item_vectors[values[idx]].astype(np.float64))
    # rank memory elements within their row by score (ties: the more recent first)
    idx = np.flatnonzero(memory)
    order = np.lexsort((-idx, -score[idx], rows[idx]))
    ranked = idx[order]
    starts = np.searchsorted(rows[ranked], rows[ranked], side="left")
    rank_in_row = np.arange(len(ranked)) - starts
    keep = recent.copy()
    keep[ranked[rank_in_row < n_memory]] = True
    kept_rows = rows[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(kept_rows, minlength=len(lengths)))])
    return Ragged(indptr, values[keep])


def retrieval_targets(
    base_losses: np.ndarray, memory_losses: np.ndarray, mask: np.ndarray, temperature: float
) -> np.ndarray:
    """AutoMR's target retrieval distribution: ``p*(m) = softmax_m((L_0 - L_m) / temperature)``
    over each row's valid memory slots (0 elsewhere).

    Parameters
    ----------
    base_losses : numpy.ndarray
        ``(n,)`` loss of the answer with the recent items only (``L_0``).
    memory_losses : numpy.ndarray
        ``(n, M)`` loss with memory item ``m`` added (``L_m``).
    mask : numpy.ndarray
        ``(n, M)`` bool, True for real memory slots.
    temperature : float
        Softmax temperature (> 0), in loss units.

    Returns
    -------
    numpy.ndarray
        ``(n, M)`` float64 rows summing to 1 (all 0 for a row without memory).
    """
    if temperature <= 0:
        raise ConfigError(f"retrieval_targets: temperature must be > 0; got {temperature}")
    gain = (np.asarray(base_losses, np.float64)[:, None] - np.asarray(memory_losses, np.float64)) / temperature
    gain = np.where(mask, gain, -np.inf)
    top = np.max(gain, axis=1, keepdims=True, initial=-np.inf, where=mask)
    weights = np.where(mask, np.exp(gain - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = weights.sum(1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


class MemoryExamples:
    """Annotated training examples of the retriever (read-only arrays).

    Parameters
    ----------
    recent : numpy.ndarray
        ``(n, d)`` normalised mean embedding of each example's recent items.
    memory_items : numpy.ndarray
        ``(n, M)`` memory item indices, -1 padding.
    base_losses : numpy.ndarray
        ``(n,)`` answer loss with the recent items only.
    memory_losses : numpy.ndarray
        ``(n, M)`` answer loss with each memory item added (nan at padding).
    targets : numpy.ndarray
        ``(n, M)`` the target distribution (:func:`retrieval_targets`).
    """

    def __init__(self, recent, memory_items, base_losses, memory_losses, targets):
        self.recent = np.asarray(recent, np.float64)
        self.memory_items = np.asarray(memory_items, np.int64)
        self.base_losses = np.asarray(base_losses, np.float64)
        self.memory_losses = np.asarray(memory_losses, np.float64)
        self.targets = np.asarray(targets, np.float64)
        for value in vars(self).values():
            value.setflags(write=False)

    def __len__(self) -> int:
        return len(self.base_losses)


def fit_memory_retriever(
    examples: MemoryExamples,
    item_vectors: np.ndarray,
    *,
    epochs: int = 200,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-3,
    seed: int = 0,
    callbacks: tuple[Callback, ...] = (),
) -> tuple[np.ndarray, list[float]]:
    """Fit the retriever's ``W`` (from ``I``) so that ``softmax_m(q^T W e_m)`` matches each
    example's target distribution: full-batch Adam on the mean ``KL(p* || p_W)``, plus
    ``weight_decay * ||W - I||^2``. Returns ``W`` and the KL after each epoch (the penalty left
    out).

    Parameters
    ----------
    examples : MemoryExamples
        The annotated examples.
    item_vectors : numpy.ndarray
        ``(n_items, d)`` item embeddings.
    epochs : int
        Adam steps (default 200).
    learning_rate : float
        Adam's learning rate (default 0.01).
    weight_decay : float
        Strength of the pull towards ``I`` (default 0.001).
    seed : int
        Torch seed (the fit is deterministic on CPU).
    callbacks : tuple of Callback
        Told of the :class:`~trustrec.models.training.EpochLoop`'s events.

    Returns
    -------
    tuple
        ``(W, kl_per_epoch)``.
    """
    import torch

    from trustrec.models.training import EpochLoop

    torch.manual_seed(seed)
    d = item_vectors.shape[1]
    mask = torch.from_numpy(examples.memory_items >= 0)
    memory = torch.from_numpy(item_vectors[np.maximum(examples.memory_items, 0)].astype(np.float32))
    recent = torch.from_numpy(examples.recent.astype(np.float32))
    target = torch.from_numpy(examples.targets.astype(np.float32))
    log_target = torch.where(target > 0, torch.log(target.clamp_min(1e-30)), torch.zeros_like(target))
    eye = torch.eye(d)
    weight = torch.nn.Parameter(eye.clone())
    optimiser = torch.optim.Adam([weight], lr=learning_rate)

    def kl() -> torch.Tensor:
        logits = torch.einsum("nd,de,nme->nm", recent, weight, memory).masked_fill(~mask, float("-inf"))
        log_p = torch.log_softmax(logits, dim=1).masked_fill(~mask, 0.0)
        return (target * (log_target - log_p)).sum(1).mean()

    def epoch(_: int) -> float:
        optimiser.zero_grad()
        loss = kl()
        (loss + weight_decay * (weight - eye).pow(2).sum()).backward()
        optimiser.step()
        loop.step()
        with torch.no_grad():
            return float(kl())

    if len(examples) == 0:
        raise DataError("fit_memory_retriever: no training example has 2 or more memory items")
    loop = EpochLoop(epoch, epochs, callbacks)
    loop.run()
    return weight.detach().numpy().astype(np.float64), loop.losses


@register_model
class MemoryRanker(LLMRanker):
    """AutoMR: the LLM ranker whose prompt shows the recent items plus retrieved memory items (see
    the module docstring). Parameters as :class:`MemoryRankerConfig`.

    Parameters
    ----------
    config : MemoryRankerConfig, mapping or None
        Hyper-parameters; None: the defaults.
    **kwargs
        The same hyper-parameters as keywords (not together with ``config``).
    """

    name = "automr"
    config_class = MemoryRankerConfig
    config: MemoryRankerConfig

    def _fit(self, train: Dataset, options: FitOptions) -> None:
        self._options = options  # read by _setup, which the stage fitting calls
        try:
            super()._fit(train, options)
        finally:
            vars(self).pop("_options", None)

    def _setup(self, train: Dataset) -> None:
        """The catalog, the item embeddings and the memory retriever (also after
        ``compose``/``from_fitted``, which do not refit the candidate retriever: seed 0 then)."""
        from trustrec.models.llm._text_items import item_text_embeddings

        super()._setup(train)
        options = getattr(self, "_options", None) or FitOptions(progress=False)
        c = self.config
        self.fit_seed_ = int(options.seed)
        self.item_vectors_ = item_text_embeddings(train, c.encoder, fields=c.fields, progress=options.progress).astype(
            np.float32
        )
        self.projection_ = np.eye(self.item_vectors_.shape[1])
        self.memory_training_: dict[str, Any] = {"n_examples": 0, "kl": []}
        if c.selection != "learned":
            return
        examples = self._annotate(*self._training_queries(train), progress=options.progress)
        if len(examples) == 0:
            raise DataError(
                f"automr: no training user of '{train.name}' has the {c.n_recent + 3}+ items a memory example "
                f"needs (n_recent={c.n_recent} recent items, 2 memory items and the answer); lower n_recent "
                "or use selection='recent'"
            )
        projection, kl = fit_memory_retriever(
            examples,
            self.item_vectors_,
            epochs=c.epochs,
            learning_rate=c.learning_rate,
            weight_decay=c.weight_decay,
            seed=self.fit_seed_,
        )
        self.projection_ = projection
        vars(self).pop("_backend", None)  # a runtime handle, not fitted state: built again on first use
        gains = examples.base_losses[:, None] - examples.memory_losses
        self.memory_training_ = {
            "n_examples": len(examples),
            "kl": kl,
            "mean_best_gain": float(np.nanmax(gains, axis=1).mean()),
            "mean_gain": float(np.nanmean(gains)),
        }

    def _training_queries(self, train: Dataset) -> tuple[QueryBatch, np.ndarray]:
        """One example per user with 2+ memory items before the last training item: (the history
        before it, that item); ``train_users`` of them drawn with the fit seed."""
        c = self.config
        histories = train.histories()
        lengths = np.diff(histories.indptr)
        users = np.flatnonzero(lengths >= c.n_recent + 3)
        if c.train_users is not None and len(users) > c.train_users:
            rng = np.random.default_rng(self.fit_seed_)
            users = np.sort(rng.choice(users, c.train_users, replace=False))
        rows = [histories.values[histories.indptr[u] : histories.indptr[u + 1]] for u in users]
        return QueryBatch.from_histories([r[:-1] for r in rows], users=users), np.array([r[-1] for r in rows])

    def memory_targets(self, examples: tuple[QueryBatch, np.ndarray]) -> MemoryExamples:
        """Annotate ``(queries, answers)``: the LLM's loss of each answer with the recent items only
        and with each memory item added, and the target distribution they induce
        (:func:`retrieval_targets`). The prompt lists the retriever's candidates for the query
        (the answer in the first free slot, else the last, when missing).

        Parameters
        ----------
        examples : tuple of (QueryBatch, numpy.ndarray)
            The contexts and the answer item of each.

        Returns
        -------
        MemoryExamples
            The annotated examples (rows without 2+ memory items left out).
        """
        queries, answers = examples
        queries = self._prepare(queries)
        answers = np.asarray(answers)
        if (
            answers.shape != (len(queries),)
            or not np.issubdtype(answers.dtype, np.integer)
            or (answers < 0).any()
            or (answers >= self.n_items_).any()
        ):
            raise DataError(
                f"{self.name}.memory_targets: needs one answer per query, an item index in the catalog of "
                f"{self.n_items_} items; got {answers.shape[0] if answers.ndim else 'no'} answers for "
                f"{len(queries)} queries"
            )
        return self._annotate(queries, answers.astype(np.int64))

    def _annotate(self, queries: QueryBatch, answers: np.ndarray, *, progress: bool = False) -> MemoryExamples:
        from tqdm.auto import tqdm

        c = self.config
        rows, recent, memory = _memory_layout(queries.histories, c.n_recent, c.max_memory)
        n_mem = np.bincount(rows[memory], minlength=len(queries))
        usable = np.flatnonzero(n_mem >= 2)
        queries, answers, n_mem = queries[usable], answers[usable], n_mem[usable]
        rows, recent, memory = _memory_layout(queries.histories, c.n_recent, c.max_memory)
        width = int(n_mem.max(initial=0))
        memory_items = np.full((len(queries), width), -1, np.int64)
        slot = np.arange(len(rows)) - queries.histories.indptr[rows]
        start_mem = np.diff(queries.histories.indptr) - c.n_recent - n_mem  # position of the first memory item
        idx = np.flatnonzero(memory)
        memory_items[rows[idx], slot[idx] - start_mem[rows[idx]]] = queries.histories.values[idx]
        candidates = np.array(self.retriever_.recommend(queries, c.n_candidates).items)
        missing = np.flatnonzero(~(candidates == answers[:, None]).any(1))
        free = (candidates[missing] >= 0).sum(1)  # the answer takes the first free slot, else the last
        candidates[missing, np.minimum(free, candidates.shape[1] - 1)] = answers[missing]
        template, catalog, tok = c.prompt_template(), PromptCatalog(self.catalog_), self.tokenizer
        answer_texts = catalog.texts(
            template, remove=special_strings(tok) if tok is not None else [], indices=[int(a) for a in answers]
        )
        values = np.asarray(queries.histories.values)
        prompts, conts, slots = [], [], []
        for q in range(len(queries)):
            query = queries.query(q)
            recent_items = values[queries.histories.indptr[q] : queries.histories.indptr[q + 1]][-c.n_recent :]
            listed = candidates[q][candidates[q] >= 0]
            for m in range(-1, int(n_mem[q])):
                shown = recent_items if m < 0 else np.concatenate([[memory_items[q, m]], recent_items])
                prompts.append(self._history_prompt(query, shown, listed, catalog, template, tok).text)
                conts.append([answer_texts[q]])
                slots.append((q, m))
        losses = np.full((len(queries), width + 1), np.nan)
        step = 64
        for begin in tqdm(
            range(0, len(prompts), step),
            desc="AutoMR annotation",
            unit="chunk",
            leave=False,
            disable=not progress or len(prompts) <= step,
        ):
            scored = self.backend.score_continuations(
                prompts[begin : begin + step], conts[begin : begin + step], reduction=c.reduction
            )
            for (q, m), value in zip(slots[begin : begin + step], scored):
                losses[q, m + 1] = -float(value[0])
        mask = memory_items >= 0
        targets = retrieval_targets(losses[:, 0], losses[:, 1:], mask, c.temperature)
        recent_vectors = _recent_queries(self.item_vectors_, queries.histories, rows, recent)
        return MemoryExamples(recent_vectors, memory_items, losses[:, 0], losses[:, 1:], targets)

    # -- the prompt history ----------------------------------------------------------------------
    def prompt_histories(self, queries: QueryBatch) -> Ragged:
        """The history each query's prompt shows (recent items plus the chosen memory items)."""
        c = self.config
        return select_history(
            queries.histories,
            n_recent=c.n_recent,
            n_memory=c.n_memory,
            max_memory=c.max_memory,
            selection=c.selection,
            item_vectors=self.item_vectors_,
            projection=self.projection_,
            seed=self.fit_seed_,
        )

    def _llm_scores(self, queries, head, n_cand, orders=None):
        return super()._llm_scores(queries.with_histories(self.prompt_histories(queries)), head, n_cand, orders)

    def answer_prompts(self, queries: QueryBatch, candidates: np.ndarray) -> list[PromptResult]:
        return super().answer_prompts(queries.with_histories(self.prompt_histories(queries)), candidates)

    def _history_prompt(self, query, history, candidates, catalog, template, tokenizer) -> PromptResult:
        import dataclasses

        return self._prompt(
            dataclasses.replace(query, history=np.asarray(history)), candidates, catalog, template, tokenizer
        )
