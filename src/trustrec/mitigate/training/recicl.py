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
prompt (:func:`yes_logits`); training is binary cross-entropy on that raw logit
(:class:`YesLogitLoss`), on the query's answer only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trustrec.errors import DataError
from trustrec.mitigate.training.steering import _prompt_batches
from trustrec.models.training import IGNORE, LossContext, LossTerm, TrainingExample

if TYPE_CHECKING:
    import torch

__all__ = [
    "RECICL_DEMONSTRATIONS",
    "RecICLPrompt",
    "YesLogitLoss",
    "liked_by_rating",
    "recicl_example",
    "recicl_prompt",
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
