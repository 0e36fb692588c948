"""Grounding a free text to a catalog item by its words: exact normalised match, then a fallback.

:func:`make_grounder` builds ``ground(text) -> (item, how)`` for a catalog: ``how`` is
``"exact"`` (the text equals a title after :func:`normalise_title`), ``"near"`` (the fallback
found an item) or ``"none"``. Fallbacks: ``"tfidf"`` (character 3-gram TF-IDF nearest title at
cosine >= ``min_similarity``), ``"embedding"`` (a text encoder's nearest title, same threshold),
``"hidden_state"`` (a caller-given nearest-item function, BIGRec's LM hidden states, with no
threshold: BIGRec grounds every text) or ``"exact"`` (none).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["GROUNDINGS", "make_grounder", "normalise_title"]

#: Grounding modes :func:`make_grounder` knows.
GROUNDINGS = ("exact", "tfidf", "embedding", "hidden_state")


def normalise_title(text: str) -> str:
    """Case-folded NFKC text with whitespace runs collapsed and surrounding spaces, dots and quotes
    removed: what two titles must share to match exactly.

    Parameters
    ----------
    text : str
        Any text (converted with ``str``).

    Returns
    -------
    str
        The normalised text.
    """
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    return " ".join(text.split()).strip(" .\"'")


def _char_ngrams(text: str, n: int = 3) -> list[str]:
    padded = f" {text} "
    return [padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]


class _TfidfIndex:
    """Character 3-gram TF-IDF (sublinear tf, smooth idf, l2 rows) over catalog titles."""

    def __init__(self, titles: Sequence[str]):
        self.vocab: dict[str, int] = {}
        rows = []
        for t in titles:
            counts: dict[int, int] = {}
            for g in _char_ngrams(normalise_title(t)):
                j = self.vocab.setdefault(g, len(self.vocab))
                counts[j] = counts.get(j, 0) + 1
            rows.append(counts)
        df = np.zeros(len(self.vocab))
        for counts in rows:
            df[list(counts)] += 1
        self.idf = np.log((1 + len(titles)) / (1 + df)) + 1
        self.matrix = np.stack([self._vector(c) for c in rows]) if rows else np.zeros((0, len(self.vocab)))

    def _vector(self, counts: dict[int, int]) -> np.ndarray:
        v = np.zeros(len(self.vocab))
        for j, c in counts.items():
            v[j] = (1 + math.log(c)) * self.idf[j]
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v

    def nearest(self, text: str) -> tuple[int, float]:
        counts: dict[int, int] = {}
        for g in _char_ngrams(normalise_title(text)):
            j = self.vocab.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts or not len(self.matrix):
            return -1, 0.0
        sims = self.matrix @ self._vector(counts)
        best = int(np.argmax(sims))
        return best, float(sims[best])


def make_grounder(
    titles: Sequence[str],
    mode: str,
    min_similarity: float,
    *,
    encoder: Any = None,
    nearest: Callable[[str], tuple[int, float]] | None = None,
) -> Callable[[str], tuple[int, str]]:
    """``ground(text) -> (item, how)`` over ``titles`` (see the module docstring).

    Parameters
    ----------
    titles : sequence of str
        Item ``i``'s title at position ``i``; an exact match resolves to the lowest index.
    mode : {"exact", "tfidf", "embedding", "hidden_state"}
        The fallback after the exact match.
    min_similarity : float
        Smallest cosine similarity the ``"tfidf"`` and ``"embedding"`` fallbacks accept.
    encoder : object, optional
        A loaded text encoder (``encode(texts) -> array``), needed by ``"embedding"``.
    nearest : callable, optional
        ``text -> (item, similarity)``, needed by ``"hidden_state"`` (always accepted).

    Returns
    -------
    callable
        ``ground(text) -> (item, how)``, item -1 with ``how == "none"``.

    Raises
    ------
    ValueError
        For an unknown mode, or a mode without the encoder or nearest function it needs.
    """
    if mode not in GROUNDINGS:
        raise ValueError(f"make_grounder: mode must be one of {GROUNDINGS}, got {mode!r}")
    exact: dict[str, int] = {}
    for i, t in enumerate(titles):
        exact.setdefault(normalise_title(t), i)
    threshold = min_similarity
    fallback: Callable[[str], tuple[int, float]] | None = None
    if mode == "tfidf":
        fallback = _TfidfIndex(titles).nearest
    elif mode == "embedding":
        if encoder is None:
            raise ValueError("make_grounder: mode 'embedding' needs an encoder")
        emb = np.asarray(encoder.encode(list(titles)), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

        def fallback(text: str) -> tuple[int, float]:
            v = np.asarray(encoder.encode([text]), dtype=np.float64)[0]
            sims = emb @ (v / max(np.linalg.norm(v), 1e-12))
            best = int(np.argmax(sims))
            return best, float(sims[best])

    elif mode == "hidden_state":
        if nearest is None:
            raise ValueError("make_grounder: mode 'hidden_state' needs a nearest-item function")
        fallback, threshold = nearest, -math.inf

    def ground(text: str) -> tuple[int, str]:
        key = normalise_title(text)
        if key in exact:
            return exact[key], "exact"
        if fallback is not None and key:
            item, sim = fallback(text)
            if item >= 0 and sim >= threshold:
                return item, "near"
        return -1, "none"

    return ground
