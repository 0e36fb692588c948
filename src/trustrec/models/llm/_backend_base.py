"""The LLM backend interface: scoring continuations, generating and sampling, input checks.

Every model call in trustrec (LLM rankers, generative recommenders, user simulators, audits)
goes through an :class:`LLMBackend`, so it can be routed to a local transformers model
(:class:`LocalBackend`) or to an OpenAI-compatible endpoint (:class:`~trustrec.models.llm.OpenAIBackend`)
without changing the caller. Every backend scores continuations, generates and samples
(``sample``: ``n`` seeded completions per prompt); beam search, trie-constrained beam search and
trie-constrained sampling need the model's logits, so only :class:`LocalBackend` has them (other
backends raise a :class:`~trustrec.errors.ConfigError` that says so).

The base class validates inputs once for every backend:

- an empty prompt list gives an empty result (no model is loaded);
- ``prompts`` and ``continuations`` of different lengths raise ``ValueError`` naming both;
- an empty continuation scores log-probability 0 over 0 tokens (its mean is 0 too).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from trustrec.errors import ConfigError

if TYPE_CHECKING:
    from trustrec.models.llm._trie import TitleTrie

__all__ = ["ContextLengthError", "LLMBackend", "Reduction"]

Reduction = Literal["sum", "mean"]


class ContextLengthError(ConfigError):
    """A continuation (or a prompt, with ``truncation="error"``) does not fit the context window."""


def _check_strings(values: Any, label: str, owner: str) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"{owner}: {label} must be a list of strings, not one string; wrap it in a list")
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise TypeError(f"{owner}: {label}[{i}] must be a string; got {type(v).__name__}")
    return values


def _cut_at_stop(text: str, stop: list[str]) -> str:
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if 0 <= at < cut:
            cut = at
    return text[:cut]


class LLMBackend(abc.ABC):
    """Batched continuation scoring and batched generation.

    Subclasses implement ``_score_pairs`` and ``_generate``; the public methods validate the
    inputs and handle the empty cases, so every backend behaves the same on bad input.
    """

    # -- scoring ---------------------------------------------------------------------------
    def score_continuations(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]], *, reduction: Reduction = "sum"
    ) -> list[np.ndarray]:
        """Log-probability of each continuation given its prompt.

        ``continuations[i]`` are the candidate continuations of ``prompts[i]``. Returns one float64
        array per prompt, aligned with ``continuations[i]``: the summed log-probability of the
        continuation's tokens (``reduction="sum"``) or their mean per token (``"mean"``). Use
        :meth:`score_continuations_detailed` to get both and the token counts.
        """
        if reduction not in ("sum", "mean"):
            raise ConfigError(
                f"{type(self).__name__}.score_continuations: reduction must be 'sum' or 'mean'; got {reduction!r}"
            )
        sums, counts = self.score_continuations_detailed(prompts, continuations)
        if reduction == "sum":
            return sums
        return [np.divide(s, np.maximum(c, 1)) for s, c in zip(sums, counts)]

    def score_continuations_detailed(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(sums, n_tokens)``: summed log-probabilities (float64) and token counts (int64), one
        array of each per prompt, aligned with ``continuations[i]``."""
        owner = f"{type(self).__name__}.score_continuations"
        prompts = _check_strings(prompts, "prompts", owner)
        if isinstance(continuations, str):
            raise TypeError(f"{owner}: continuations must be a list of lists of strings, one list per prompt")
        continuations = list(continuations)
        if len(prompts) != len(continuations):
            raise ValueError(
                f"{owner}: got {len(prompts)} prompts but {len(continuations)} continuation "
                "lists; give one list of continuations per prompt"
            )
        conts = [_check_strings(c, f"continuations[{i}]", owner) for i, c in enumerate(continuations)]
        sums = [np.zeros(len(c), dtype=np.float64) for c in conts]
        counts = [np.zeros(len(c), dtype=np.int64) for c in conts]
        pairs = [(i, j) for i, c in enumerate(conts) for j, text in enumerate(c) if text]
        if pairs:
            values, n_tokens = self._score_pairs([prompts[i] for i, _ in pairs], [conts[i][j] for i, j in pairs])
            for (i, j), v, n in zip(pairs, values, n_tokens):
                sums[i][j], counts[i][j] = v, n
        return sums, counts

    @abc.abstractmethod
    def _score_pairs(self, prompts: list[str], continuations: list[str]) -> tuple[Sequence[float], Sequence[int]]:
        """Summed log-probability and token count of each (non-empty) continuation."""

    # -- generation ------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Generate a completion of each prompt (the new text only, without the prompt).

        Greedy when ``temperature == 0``; otherwise sampling with ``temperature`` and nucleus
        ``top_p``, reproducible for the same ``seed``, prompts and batch size. A completion is cut
        before the first occurrence of any string in ``stop``.
        """
        owner = f"{type(self).__name__}.generate"
        prompts = _check_strings(prompts, "prompts", owner)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise ConfigError(f"{owner}: max_new_tokens must be a positive integer; got {max_new_tokens!r}")
        if not temperature >= 0:
            raise ConfigError(f"{owner}: temperature must be >= 0; got {temperature!r}")
        if not 0 < top_p <= 1:
            raise ConfigError(f"{owner}: top_p must be in (0, 1]; got {top_p!r}")
        stop = [] if stop is None else _check_strings(stop, "stop", owner)
        stop = [s for s in stop if s]
        if not prompts:
            return []
        texts = self._generate(
            prompts, int(max_new_tokens), temperature=float(temperature), top_p=float(top_p), seed=int(seed)
        )
        return [_cut_at_stop(t, stop) for t in texts]

    @abc.abstractmethod
    def _generate(
        self, prompts: list[str], max_new_tokens: int, *, temperature: float, top_p: float, seed: int
    ) -> list[str]:
        """Completions of non-empty ``prompts`` (stop strings are applied by the caller)."""

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: Sequence[str] | None = None,
    ) -> list[list[str]]:
        """``n`` free completions of each prompt: sample ``j`` is :meth:`generate` with seed
        ``seed + j`` (so the same seed gives the same samples, on every backend that honours
        seeds). Returns one list of ``n`` texts per prompt."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"{type(self).__name__}.sample: n must be a positive integer; got {n!r}")
        prompts = _check_strings(prompts, "prompts", f"{type(self).__name__}.sample")
        per_seed = [
            self.generate(prompts, max_new_tokens, temperature=temperature, top_p=top_p, seed=seed + j, stop=stop)
            for j in range(int(n))
        ]
        return [[per_seed[j][i] for j in range(int(n))] for i in range(len(prompts))]

    def beam_search(
        self, prompts: Sequence[str], num_beams: int, max_new_tokens: int, *, batch_size: int = 8
    ) -> list[list[tuple[str, float]]]:
        """Per prompt, ``num_beams`` beam-search completions as ``(text, sequence
        log-probability)``, best first. Needs the model's weights: local backends only."""
        raise ConfigError(
            f"{type(self).__name__} has no beam search (it needs a local model: LocalBackend); "
            "use sample() for free generation through this backend"
        )

    def constrained_beam_search(
        self,
        prompts: Sequence[str],
        trie: TitleTrie,
        *,
        num_beams: int,
        top_k: int,
        batch_size: int = 8,
        exclude: np.ndarray | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Beam search constrained to a :class:`~trustrec.models.llm._trie.TitleTrie` (see
        :func:`~trustrec.models.llm._constrained.constrained_beam_search`). Needs the model's
        logits at every step: local backends only."""
        raise ConfigError(
            f"{type(self).__name__} cannot run trie-constrained decoding (it needs a local model: "
            "LocalBackend); use free generation (sample) and ground the texts instead"
        )

    def sample_constrained(
        self,
        prompts: Sequence[str],
        trie: TitleTrie,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
    ) -> list[list[tuple[list[int], int]]]:
        """``n`` samples per prompt restricted to a title trie: per prompt, ``n`` pairs
        ``(token_ids, item)`` (``item`` -1 when a sample ran out of tokens before a title
        ended). Local backends only."""
        raise ConfigError(
            f"{type(self).__name__} cannot sample under a title trie (it needs a local model: "
            "LocalBackend); sample freely and ground the texts instead"
        )

    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt string for chat ``messages`` (``[{"role": ..., "content": ...}, ...]``)."""
        raise NotImplementedError(f"{type(self).__name__} has no chat template")
