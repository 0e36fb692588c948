"""RecICL, recommendation-specific in-context learning (ACL 2025 Findings, arXiv 2410.23136; code
ym689/rec_icl): training and scoring examples in in-context form, and the loss on the "Yes" logit.

A RecICL prompt shows ``k`` (4) demonstrations, then the query. Each demonstration is one of the
user's own earlier interactions, the most recent ones before the query: the titles the user
liked before it (at most ``max_titles``, most recent last), the question whether the user would
enjoy its title, and the answer (``Yes`` / ``No`` from its label). The query asks the same about
the query item, with the titles liked before the query. The wording follows the paper's prompt
file (``prompts/RecICL_amazon_movies.txt``), with the item noun as a parameter.

What the builder may show is fixed by time: only interactions strictly before the query's
timestamp, and never the query item itself (so no demonstration and no title list can leak the
answer or the future). A user with fewer than ``k`` earlier interactions gets fewer
demonstrations, and the prompt says how many it has (:attr:`RecICLPrompt.n_demonstrations`).

Labels: ``rating >= 4`` (the TALLRec convention) where the data has ratings
(:func:`liked_by_rating`). Without ratings there are no observed dislikes: give labels
explicitly (e.g. sampled unobserved items as ``No``); the builder never invents them.

The model answers through the logit of the first token of ``" Yes"`` at the position after the
prompt (:func:`yes_logits`; :func:`shared_prefix_yes_logits` runs a group's shared prefix once);
training is binary cross-entropy on that raw logit (:class:`YesLogitLoss`), on the query's answer
only.

:class:`RecICLRecommender` (``llm_recicl``) is the recommender trained and asked this way: its
training examples are sampled labelled events of the training data, ``predict`` scores events
with demonstrations from a log the caller gives (a later window: adaptation without updates), and
its lists re-rank a retriever's candidates by the Yes logit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, NonNegativeInt, PositiveInt

from trustrec.data import Dataset, QueryBatch
from trustrec.errors import DataError
from trustrec.mitigate.training.steering import _prompt_batches
from trustrec.models import FitOptions, TopK, register_model
from trustrec.models.llm import GenerativeConfig, GenerativeRecommender
from trustrec.models.training import IGNORE, LossContext, LossTerm, TrainingExample

if TYPE_CHECKING:
    import torch

__all__ = [
    "RECICL_DEMONSTRATIONS",
    "RecICLConfig",
    "RecICLPrompt",
    "RecICLRecommender",
    "YesLogitLoss",
    "liked_by_rating",
    "recicl_example",
    "recicl_prompt",
    "shared_prefix_yes_logits",
    "yes_logits",
    "yes_token_id",
]

RECICL_DEMONSTRATIONS = 4
LIKED_RATING = 4.0


def liked_by_rating(ratings: Any, threshold: float = LIKED_RATING) -> np.ndarray:
    """Like / dislike labels from ratings: ``rating >= threshold`` (TALLRec's rule, 4 of 5).

    Parameters
    ----------
    ratings : array_like of float
        The ratings.
    threshold : float
        The lowest rating that counts as liked.

    Returns
    -------
    numpy.ndarray of bool
        True where liked.

    Raises
    ------
    DataError
        When a rating is not finite (a set without ratings has no labels: give them explicitly).
    """
    r = np.asarray(ratings, dtype=float)
    if not np.isfinite(r).all():
        raise DataError(
            "liked_by_rating: ratings must be finite; a dataset without ratings has no observed dislikes, "
            "so give the labels explicitly"
        )
    return r >= threshold


@dataclass(frozen=True)
class RecICLPrompt:
    """One RecICL prompt and what it shows.

    Parameters
    ----------
    text : str
        The prompt, ending where the answer starts.
    demonstration_items : tuple of int
        The items the demonstrations ask about, oldest first.
    shown_items : tuple of int
        Every item the prompt names (title lists and demonstration items), for leakage checks.
    n_demonstrations : int
        How many demonstrations it has (``k``, or fewer for a user with a short past).
    """

    text: str
    demonstration_items: tuple[int, ...]
    shown_items: tuple[int, ...]
    n_demonstrations: int


def _question(liked: Sequence[str], title: str, noun: str) -> str:
    listed = ", ".join(f'"{t}"' for t in liked) if liked else "none yet"
    return (
        f"#Question: A user has given high ratings to the following {noun}s: {listed}. Leverage the information "
        f'to predict whether the user would enjoy the {noun} titled "{title}"? Answer with "Yes" or "No". \n#Answer:'
    )


def recicl_prompt(
    items: Sequence[int],
    times: Sequence[float],
    labels: Sequence[bool],
    query_item: int,
    query_time: float,
    titles: Sequence[str],
    *,
    k: int = RECICL_DEMONSTRATIONS,
    max_titles: int = 10,
    noun: str = "movie",
) -> RecICLPrompt:
    """The RecICL prompt for one query of one user (module docstring).

    Parameters
    ----------
    items, times, labels : sequence
        The user's interactions (item indices, timestamps, liked or not), in any order.
    query_item : int
        The item asked about.
    query_time : float
        The query's timestamp: only interactions strictly before it are shown.
    titles : sequence of str
        Item titles, indexed by item.
    k : int
        Demonstrations wanted (the most recent earlier interactions).
    max_titles : int
        Most liked titles listed per question (the most recent).
    noun : str
        What an item is called ("movie", "product" ...).

    Returns
    -------
    RecICLPrompt
        The prompt and what it shows.

    Raises
    ------
    DataError
        When the three sequences differ in length, a timestamp is not finite, an item has no
        title, or ``k`` / ``max_titles`` is below 0 / 1.
    """
    items_a, times_a = np.asarray(items, dtype=np.int64), np.asarray(times, dtype=float)
    labels_a = np.asarray(labels, dtype=bool)
    if not len(items_a) == len(times_a) == len(labels_a):
        raise DataError(
            f"recicl_prompt: {len(items_a)} items, {len(times_a)} timestamps and {len(labels_a)} labels; "
            "give one of each per interaction"
        )
    if k < 0 or max_titles < 1:
        raise DataError(f"recicl_prompt: k must be >= 0 and max_titles >= 1, got {k} and {max_titles}")
    if not np.isfinite(times_a).all() or not np.isfinite(query_time):
        raise DataError("recicl_prompt: timestamps must be finite")
    shown = np.concatenate([items_a, [query_item]])
    if (shown < 0).any() or (shown >= len(titles)).any():
        bad = int(shown[(shown < 0) | (shown >= len(titles))][0])
        raise DataError(f"recicl_prompt: item {bad} has no title (the catalog has {len(titles)} titles)")
    keep = (times_a < query_time) & (items_a != query_item)
    order = np.argsort(times_a[keep], kind="stable")
    past_items, past_labels = items_a[keep][order], labels_a[keep][order]
    n = len(past_items)
    first = max(0, n - k)

    def liked_before(position: int) -> list[int]:
        before = past_items[:position][past_labels[:position]]
        return [int(i) for i in before[-max_titles:]]

    blocks, named = [], []
    for j, position in enumerate(range(first, n), 1):
        liked = liked_before(position)
        item = int(past_items[position])
        named += [*liked, item]
        answer = "Yes" if past_labels[position] else "No"
        question = _question([titles[i] for i in liked], titles[item], noun)
        blocks.append(f"#Example {j}:\n{question} {answer}\n")
    liked = liked_before(n)
    named += liked
    query = _question([titles[i] for i in liked], titles[int(query_item)], noun)
    header = (
        f"You are a smart recommendation system that predicts whether a user will enjoy a {noun} based on their "
        "preferences. Below are a few examples:\n\n"
        if blocks
        else f"You are a smart recommendation system that predicts whether a user will enjoy a {noun} based on their "
        "preferences.\n\n"
    )
    text = header + "\n".join(blocks) + ("\n" if blocks else "") + f"#Example {len(blocks) + 1}:\n{query}"
    return RecICLPrompt(
        text=text,
        demonstration_items=tuple(int(i) for i in past_items[first:]),
        shown_items=tuple(sorted(set(named))),
        n_demonstrations=len(blocks),
    )


def yes_token_id(tokenizer: Any) -> int:
    """The first token of ``" Yes"`` (what follows ``#Answer:``).

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase
        The model's tokenizer.

    Returns
    -------
    int
        The token id.
    """
    return int(tokenizer(" Yes", add_special_tokens=False)["input_ids"][0])


def recicl_example(prompt: RecICLPrompt, tokenizer: Any, label: bool) -> TrainingExample:
    """A training example for :class:`YesLogitLoss`: the prompt's tokens, the Yes token as the
    one answer position, and the label in ``meta["label"]``.

    Parameters
    ----------
    prompt : RecICLPrompt
        The prompt.
    tokenizer : transformers.PreTrainedTokenizerBase
        The model's tokenizer.
    label : bool
        Whether the user liked the query item.

    Returns
    -------
    TrainingExample
        One variant; ``meta`` holds ``label`` and ``n_demonstrations``.
    """
    ids = list(tokenizer(prompt.text, add_special_tokens=False)["input_ids"])
    return TrainingExample.single(
        ids, [yes_token_id(tokenizer)], label=bool(label), n_demonstrations=prompt.n_demonstrations
    )


def yes_logits(model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 8) -> np.ndarray:
    """The raw logit of the Yes token after each prompt (the model's "would enjoy" score).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    prompts : sequence of str
        The prompts (each ending at ``#Answer:``).
    batch_size : int
        Prompts per forward pass (right-padded; each row is read at its own last token; a prompt
        longer than the model's context keeps its last tokens).

    Returns
    -------
    numpy.ndarray
        One float per prompt.
    """
    import torch

    yes = yes_token_id(tokenizer)
    out = np.empty(len(prompts))
    with torch.no_grad():
        for rows, ids, mask in _prompt_batches(
            model, tokenizer, prompts, batch_size, max_length=None, owner="yes_logits"
        ):
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
            last = hidden[torch.arange(len(rows), device=hidden.device), mask.sum(1) - 1]
            out[rows] = model.lm_head(last)[:, yes].float().cpu().numpy()
    return out


def shared_prefix_yes_logits(
    model: Any, tokenizer: Any, groups: Sequence[Sequence[str]], *, batch_size: int = 8
) -> list[np.ndarray]:
    """:func:`yes_logits` of each group's prompts, the group's longest common token prefix run
    once and its KV cache reused for every prompt of the group (a query's candidates share the
    demonstrations and differ only in the asked title). Equal to :func:`yes_logits` on the same
    prompts up to float rounding.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    groups : sequence of sequence of str
        Prompts grouped by what they share (each ending at ``#Answer:``).
    batch_size : int
        Prompts per forward pass after the shared prefix.

    Returns
    -------
    list of numpy.ndarray
        Per group, one logit per prompt.

    Raises
    ------
    DataError
        When a prompt is empty, or a group's prompts are longer than the model's context.
    """

    import torch

    from trustrec.models.llm import forward_after_prefix, output_cache

    yes = yes_token_id(tokenizer)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    limit = int(getattr(model.config, "max_position_embeddings", 2048))
    out = []
    for g, prompts in enumerate(groups):
        if not len(prompts):
            out.append(np.empty(0))
            continue
        encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        if any(not ids for ids in encoded) or max(len(ids) for ids in encoded) > limit:
            raise DataError(
                f"shared_prefix_yes_logits: group {g} has an empty prompt or one over the model's {limit} tokens"
            )
        n = min(len(ids) for ids in encoded) - 1  # every prompt keeps at least one token of its own
        first = encoded[0]
        for ids in encoded[1:]:
            n = next((j for j in range(n) if ids[j] != first[j]), n)
        values = np.empty(len(prompts))
        with torch.inference_mode():
            prefix_cache = None
            if n:
                prefix = model(input_ids=torch.tensor([first[:n]], device=device), use_cache=True, logits_to_keep=1)
                prefix_cache = output_cache(prefix)
            for start in range(0, len(encoded), batch_size):
                rows = list(range(start, min(start + batch_size, len(encoded))))
                rest = [encoded[r][n:] for r in rows]
                logits, _, _ = forward_after_prefix(model, prefix_cache, n, rest, pad)
                last = torch.tensor([len(x) - 1 for x in rest], device=device)
                values[rows] = logits[torch.arange(len(rows), device=device), last, yes].float().cpu().numpy()
        out.append(values)
    return out


@dataclass
class YesLogitLoss(LossTerm):
    """Binary cross-entropy on the raw Yes logit at each example's answer position, against
    ``meta["label"]`` (examples from :func:`recicl_example`).

    Parameters
    ----------
    yes_id : int
        The Yes token (:func:`yes_token_id`).
    weight : float
        Factor of the term in the summed loss.
    """

    yes_id: int
    weight: float = 1.0

    def compute(self, ctx: LossContext) -> torch.Tensor | None:
        import torch
        import torch.nn.functional as F

        labels = ctx.batch["labels"]
        predicts = labels[:, 1:] != IGNORE  # the position before each answer token
        rows, positions = torch.nonzero(predicts, as_tuple=True)
        if len(rows) != len(labels):
            raise ValueError("YesLogitLoss: every row needs exactly one answer token (the Yes position)")
        logit = ctx.outputs.logits[rows, positions, self.yes_id].float()
        example = ctx.batch["example_index"][rows]
        target = torch.tensor(
            [float(ctx.examples[int(i)].meta["label"]) for i in example], device=logit.device, dtype=logit.dtype
        )
        return F.binary_cross_entropy_with_logits(logit, target)


# -- the recommender ------------------------------------------------------------------------------------
class RecICLConfig(GenerativeConfig):
    """Settings of :class:`RecICLRecommender`: those of ``llm_generative`` (the LM, LoRA and the
    training schedule; the decoding settings are not used) plus

    Parameters
    ----------
    demonstrations : int
        Demonstrations per prompt (RecICL: 4; 0 gives TALLRec-style prompts without any, the
        paper's no-demonstration baseline trained on the same budget).
    max_titles : int
        Most liked titles listed per question (RecICL: 10).
    noun : str
        What an item is called in the prompt ("movie", "product", ...).
    labels : {"rating", "interaction"}
        Where Yes / No come from: ``"rating"``, rating >= ``like_threshold`` (TALLRec's rule;
        the data needs ratings); ``"interaction"``, for data without ratings: every interaction
        is a Yes, and one item the user never interacted with, drawn uniformly, is a No at the
        same time (there are no observed dislikes to use).
    like_threshold : float
        The lowest liked rating (default 4 of 5).
    retriever : dict
        The model whose top ``n_candidates`` the Yes logit re-ranks (``{"name", "params"}``;
        default MostPopular); fitted on the same data and saved with this model. A query's own
        candidates, when it has them, are what is ranked.
    n_candidates : int
        Candidates scored per query (one prompt each).
    """

    demonstrations: NonNegativeInt = RECICL_DEMONSTRATIONS
    max_titles: PositiveInt = 10
    noun: str = Field("item", min_length=1, max_length=40)
    labels: Literal["rating", "interaction"] = "rating"
    like_threshold: float = LIKED_RATING
    retriever: dict[str, Any] = Field(default_factory=lambda: {"name": "most_popular"})
    n_candidates: PositiveInt = 20


@register_model
class RecICLRecommender(GenerativeRecommender):
    """An LLM recommender trained and asked in RecICL's in-context form (module docstring).

    Training: one example per sampled interaction of the training data (at most
    ``max_train_examples``), its prompt built from the user's earlier interactions
    (:func:`recicl_prompt`), the loss BCE on the Yes logit (:class:`YesLogitLoss`). ``epochs=0``
    keeps the base LLM (the paper's "same demonstrations, no fine-tuning" arm).

    Asking: :meth:`predict` scores (user, item, time) events with demonstrations drawn from a log
    the caller gives (e.g. a later time window, RecICL's adaptation without updates);
    :meth:`recommend` re-ranks the retriever's candidates by the Yes logit of one prompt per
    candidate, whose demonstrations are the last items of the query's history, labelled by the
    training data's labels (an item without one counts as liked).

    Fitted state adds ``recicl_counts_`` (``n_examples``, ``n_positive``, ``n_fewer_than_k``,
    ``n_without_demonstrations``) and the training labels (``label_keys_``, ``label_values_``).

    Parameters
    ----------
    config : RecICLConfig, mapping or None
        The settings; None: build them from the keyword arguments instead.
    **kwargs : object
        The settings (:class:`RecICLConfig` fields) as keyword arguments.
    """

    name = "llm_recicl"
    config_class = RecICLConfig
    config: RecICLConfig
    capabilities = frozenset({"uses_history", "stochastic_training", "text", "candidates", "llm_backend"})
    sub_models: ClassVar[dict[str, str]] = {**GenerativeRecommender.sub_models, "retriever_": "retriever"}
    retriever_: Any

    # -- training --------------------------------------------------------------------------------
    def _fit(self, train: Dataset, options: FitOptions) -> None:
        # the labels are kept even without training: recommend() labels history items with them
        log = self._training_log = self.label_log(train, options.rng())
        keys = log["user"].to_numpy(np.int64) * train.n_items + log["item"].to_numpy(np.int64)
        order = np.argsort(keys, kind="stable")
        self.label_keys_, self.label_values_ = keys[order], log["label"].to_numpy(bool)[order]
        try:
            super()._fit(train, options)
        finally:
            self.__dict__.pop("_training_log", None)

    def label_log(self, train: Dataset, rng: np.random.Generator) -> pd.DataFrame:
        """Every labelled event of ``train`` by the ``labels`` rule: ``user``, ``item``,
        ``timestamp``, ``label``, sorted by user and time (a sampled No follows its Yes).

        Parameters
        ----------
        train : Dataset
            The training data.
        rng : numpy.random.Generator
            Draws the No items of the ``"interaction"`` rule.

        Returns
        -------
        pandas.DataFrame
            The events.

        Raises
        ------
        DataError
            When ``labels="rating"`` and the data has no ratings.
        """
        c = self.config
        frame = train.interactions.to_frame()
        if c.labels == "rating":
            if "rating" not in frame:
                raise DataError(
                    f"{type(self).__name__}: labels='rating' needs ratings and {train.name!r} has none; "
                    "use labels='interaction' (interactions are Yes, sampled unobserved items No)"
                )
            frame["label"] = liked_by_rating(frame.pop("rating").to_numpy(), c.like_threshold)
        else:
            frame = frame.drop(columns="rating", errors="ignore").assign(label=True)
            negatives = frame.assign(item=_unobserved_items(frame, train.n_items, rng), label=False)
            frame = pd.concat([frame, negatives.loc[negatives.item >= 0]], ignore_index=True)
        order = np.lexsort((~frame["label"].to_numpy(), frame["timestamp"].to_numpy(), frame["user"].to_numpy()))
        return frame.iloc[order].reset_index(drop=True)

    def training_examples(self, train: Dataset, rng: np.random.Generator) -> list[Any]:
        """One RecICL example per sampled labelled event (:meth:`label_log`), its demonstrations
        from the same user's earlier events."""
        c = self.config
        log = vars(self).get("_training_log")
        if log is None:
            log = self.label_log(train, rng)
        picked = np.arange(len(log))
        if c.max_train_examples is not None and len(log) > c.max_train_examples:
            picked = np.sort(rng.choice(len(log), c.max_train_examples, replace=False))
        prompts = self._event_prompts(log.iloc[picked], log)
        labels = log["label"].to_numpy(bool)[picked]
        shown = np.array([p.n_demonstrations for p in prompts])
        self.recicl_counts_ = {
            "n_examples": len(prompts),
            "n_positive": int(labels.sum()),
            "n_fewer_than_k": int((shown < c.demonstrations).sum()),
            "n_without_demonstrations": int((shown == 0).sum()),
        }
        return [recicl_example(p, self.tokenizer_, bool(y)) for p, y in zip(prompts, labels)]

    def _loss_terms(self) -> list:
        return [YesLogitLoss(yes_token_id(self.tokenizer_))]

    # -- asking ----------------------------------------------------------------------------------
    def _event_prompts(self, events: pd.DataFrame, log: pd.DataFrame) -> list[RecICLPrompt]:
        """The prompt of each event, its demonstrations from the same user's events in ``log``."""
        c = self.config
        titles = self.titles()
        by_user = {int(u): g for u, g in log.groupby("user", sort=False)}
        empty = log.iloc[:0]
        prompts = []
        for user, item, time in zip(events["user"], events["item"], events["timestamp"]):
            past = by_user.get(int(user), empty)
            prompts.append(
                recicl_prompt(
                    past["item"].to_numpy(),
                    past["timestamp"].to_numpy(float),
                    past["label"].to_numpy(bool),
                    int(item),
                    float(time),
                    titles,
                    k=c.demonstrations,
                    max_titles=c.max_titles,
                    noun=c.noun,
                )
            )
        return prompts

    def predict(self, events: pd.DataFrame, log: pd.DataFrame) -> np.ndarray:
        """The Yes logit of each event, its demonstrations drawn from ``log`` (the same user's
        events strictly before it, never its own item).

        Parameters
        ----------
        events : pandas.DataFrame
            ``user``, ``item`` (indices) and ``timestamp`` per event to score.
        log : pandas.DataFrame
            ``user``, ``item``, ``timestamp`` and ``label`` (bool): where demonstrations come from.

        Returns
        -------
        numpy.ndarray
            One logit per event (higher: more likely liked).

        Raises
        ------
        DataError
            When a column is missing, an index is outside the fitted catalog or users, or a
            timestamp is not finite.
        """
        self._check_fitted()
        for name, frame, columns in (("events", events, ("user", "item", "timestamp")), ("log", log, _LOG_COLUMNS)):
            missing = [col for col in columns if col not in frame.columns]
            if missing:
                raise DataError(f"{type(self).__name__}.predict: {name} has no column(s) {missing}")
            items = frame["item"].to_numpy()
            if len(items) and (items.min() < 0 or items.max() >= self.n_items_):
                raise DataError(
                    f"{type(self).__name__}.predict: {name} names item indices outside the catalog of "
                    f"{self.n_items_} items"
                )
        labels = log["label"]
        if not (labels.dtype == bool or labels.isin([0, 1]).all()):
            raise DataError(f"{type(self).__name__}.predict: log's 'label' must be True/False (or 1/0)")
        prompts = self._event_prompts(events, log.assign(label=labels.astype(bool)))
        return self._yes_logits([p.text for p in prompts])

    def _yes_logits(self, texts: list[str]) -> np.ndarray:
        return yes_logits(self.lm_, self.tokenizer_, texts, batch_size=self.config.inference_batch_size)

    def recommend(self, queries: QueryBatch, k: int = 10, *, exclude_seen: bool = True) -> TopK:
        from trustrec.errors import ConfigError
        from trustrec.models import topk_from_scores

        if k < 0:
            raise ConfigError(f"{type(self).__name__}.recommend: k must be >= 0, got {k}")
        self._check_fitted()
        queries = self._prepare(queries)
        c = self.config
        width = c.n_candidates
        if queries.candidates is not None and len(queries):
            width = max(width, int(queries.candidates.lengths.max()))
        retrieved = self.retriever_.recommend(queries, max(k, width), exclude_seen=exclude_seen)
        head = retrieved.items[:, :width]
        lengths = queries.histories.lengths
        owner = np.repeat(np.arange(len(queries)), lengths)
        log = pd.DataFrame(
            {
                "user": owner,  # the query's row: an anonymous query has its own history too
                "item": queries.histories.values,
                "timestamp": np.arange(len(owner)) - queries.histories.indptr[:-1][owner],
                "label": self._known_labels(np.asarray(queries.users)[owner], queries.histories.values),
            }
        )
        rows, cols = np.nonzero(head >= 0)
        events = pd.DataFrame({"user": rows, "item": head[rows, cols], "timestamp": lengths[rows]})
        scores = np.full(head.shape, -np.inf)
        if len(events):
            # a query's prompts share its demonstrations: their common prefix runs once per query
            texts = np.array([p.text for p in self._event_prompts(events, log)], dtype=object)
            bounds = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(head)))]
            groups = [list(texts[bounds[q] : bounds[q + 1]]) for q in range(len(head))]
            logits = shared_prefix_yes_logits(
                self.lm_, self.tokenizer_, groups, batch_size=self.config.inference_batch_size
            )
            scores[rows, cols] = np.concatenate(logits)
        ranked = topk_from_scores(scores, head.shape[1])
        items = np.where(ranked.items >= 0, np.take_along_axis(head, np.maximum(ranked.items, 0), 1), -1)
        top = TopK(items, ranked.scores)
        tail = retrieved.items[:, width:]
        if tail.shape[1] and k > width:  # beyond the scored candidates: the retriever's order, below them
            floor = np.where(np.isfinite(top.scores), top.scores, np.inf).min(1, initial=np.inf)
            floor = np.where(np.isfinite(floor), floor, 0.0)[:, None] - np.arange(1, tail.shape[1] + 1)
            items = np.concatenate([top.items, tail], 1)
            scores = np.concatenate([top.scores, np.where(tail >= 0, floor, -np.inf)], 1)
            last = np.argsort(items < 0, axis=1, kind="stable")  # padding after every item
            top = TopK(np.take_along_axis(items, last, 1), np.take_along_axis(scores, last, 1))
        return top.truncate(k)

    def _known_labels(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The training label of each (user, item); True where training had none (or no user)."""
        users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
        if not len(self.label_keys_):
            return np.ones(len(items), bool)
        keys = users * self.n_items_ + items
        at = np.minimum(np.searchsorted(self.label_keys_, keys), len(self.label_keys_) - 1)
        found = (self.label_keys_[at] == keys) & (users >= 0)
        return np.where(found, self.label_values_[at], True)


_LOG_COLUMNS = ("user", "item", "timestamp", "label")


def _unobserved_items(frame: pd.DataFrame, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """For each row of ``frame`` (``user``, ``item``) an item its user never interacted with,
    drawn uniformly; -1 for a user who interacted with every item."""
    users = frame["user"].to_numpy(np.int64)
    seen = np.unique(users * n_items + frame["item"].to_numpy(np.int64))
    full = (np.bincount(seen // n_items, minlength=users.max(initial=0) + 1) >= n_items)[users]
    drawn = rng.integers(n_items, size=len(users))
    todo = np.isin(users * n_items + drawn, seen) & ~full
    while todo.any():  # rejection sampling: each redraw finds an unseen item with p >= 1 / n_items
        drawn[todo] = rng.integers(n_items, size=int(todo.sum()))
        todo[todo] = np.isin(users[todo] * n_items + drawn[todo], seen)
    return np.where(full, -1, drawn)
