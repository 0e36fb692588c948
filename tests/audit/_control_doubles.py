"""Test doubles for the position-bias audit: rankers whose position bias is known by construction."""

from __future__ import annotations

import numpy as np

from trustrec._config import Config
from trustrec.models import Recommender
from trustrec.models._base import exclusion_mask
from trustrec.models._topk import topk_from_scores


class ListOrderConfig(Config):
    prefer_first: bool = True
    seed: int = 0


class ListOrderRanker(Recommender):
    """Ranks the query's candidates (all items without them) by a fixed random preference per
    item, which ignores the listing order; with ``prefer_first`` the candidate listed first is
    always ranked first. Reads ``Query.candidates`` in the order given (``ordered_candidates``)."""

    name = "list_order_test_double"
    config_class = ListOrderConfig
    capabilities = frozenset({"candidates", "ordered_candidates"})

    def _fit(self, train, options) -> None:
        self.preference_ = np.random.default_rng(self.config.seed).random(train.n_items)

    def recommend(self, queries, k: int = 10, *, exclude_seen: bool = True):
        queries = self._prepare(queries)
        scores = np.tile(self.preference_, (len(queries), 1))
        cands = queries.candidates
        if cands is not None and self.config.prefer_first:
            rows = np.flatnonzero(cands.lengths > 0)
            scores[rows, cands.values[cands.indptr[rows]]] += 10.0
        return topk_from_scores(scores, k, exclusion_mask(queries, self.n_items_, exclude_seen))


class FirstSlotBackend:
    """An LLM backend whose score of a candidate falls with the line it is listed on: the first
    listed candidate always scores highest (a pure position effect, no model)."""

    tokenizer = None

    def __init__(self):
        self.n_prompts = 0

    def score_continuations(self, prompts, continuations, reduction="mean"):
        self.n_prompts += len(prompts)
        out = []
        for prompt, conts in zip(prompts, continuations):
            block = prompt[prompt.index("Candidates:") :]
            out.append(
                [-float(block.index(f"- {c}\n") if f"- {c}\n" in block else block.index(f"- {c}")) for c in conts]
            )
        return out


class WordingBackend:
    """An LLM backend whose scores depend on the prompt's wording as well as the candidate: any
    paraphrase reshuffles its ranking (maximally prompt-sensitive)."""

    tokenizer = None

    def score_continuations(self, prompts, continuations, reduction="mean"):
        import zlib

        head = [p[: p.index("\n")] if "\n" in p else p for p in prompts]  # the system line
        return [[zlib.crc32(f"{h}|{c}".encode()) / 2**32 for c in conts] for h, conts in zip(head, continuations)]


class ContentBackend:
    """An LLM backend that scores a candidate by its text alone: no prompt wording or order
    reaches it (prompt-insensitive and position-blind)."""

    tokenizer = None

    def score_continuations(self, prompts, continuations, reduction="mean"):
        import zlib

        return [[zlib.crc32(c.encode()) / 2**32 for c in conts] for conts in continuations]
