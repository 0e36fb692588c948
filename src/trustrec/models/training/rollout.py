"""Rollouts: several seeded samples per query through an LLM backend, free or constrained to a
title trie.

:class:`RolloutSampler` asks its backend for ``n`` samples of each prompt. Free sampling works on
every backend (:meth:`~trustrec.models.llm.LLMBackend.sample`: sample ``j`` uses seed
``seed + j``, so a local model and an OpenAI-compatible endpoint that honours seeds both give
reproducible rollouts); trie-constrained sampling (every rollout is a catalog title, mapped to
its item) needs a local backend (:meth:`~trustrec.models.llm.LocalBackend.sample_constrained`).
The same seed gives the same rollouts. Rollouts feed
:class:`~trustrec.models.training.ListRewardLoss` (:meth:`RolloutSampler.sample_ids`) or are
scored by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from trustrec.models.llm._backend import LLMBackend
    from trustrec.models.llm._trie import TitleTrie
    from trustrec.models.training.llm import TrainingExample

__all__ = ["Rollout", "RolloutSampler", "shared_prompt_logprobs"]


@dataclass(frozen=True)
class Rollout:
    """One sample: its text, its token ids (None when the backend has no tokenizer), the
    catalog item it names (trie-constrained rollouts; -1 otherwise or when it did not finish) and
    the seed it was drawn with (free sampling; the call's seed for constrained rollouts).

    Parameters
    ----------
    text : str
        The sampled text.
    token_ids : tuple of int or None
        Its token ids; None when the backend has no tokenizer.
    item : int
        The catalog item it names (trie-constrained rollouts), -1 otherwise.
    seed : int
        The seed it was drawn with.
    """

    text: str
    token_ids: tuple[int, ...] | None
    item: int = -1
    seed: int = 0


class RolloutSampler:
    """``n`` seeded rollouts per prompt through ``backend``; with ``trie`` (a
    :class:`~trustrec.models.llm._trie.TitleTrie` in the backend's tokenizer) every rollout is a
    catalog title. ``temperature`` 0 is greedy (all ``n`` rollouts equal).

    Parameters
    ----------
    backend : LLMBackend
        The LLM backend that samples (a local one for ``trie``).
    n : int
        Rollouts per prompt (at least 1).
    max_new_tokens : int
        Most tokens generated per rollout (at least 1).
    temperature : float
        Sampling temperature; 0 is greedy.
    top_p : float
        Nucleus-sampling mass.
    seed : int
        Base seed of the rollouts.
    trie : TitleTrie or None
        Constrains every rollout to a catalog title; None: free sampling.
    batch_size : int
        Prompts per backend call (at least 1).
    stop : sequence of str or None
        Strings that end a free rollout.

    Raises
    ------
    ValueError
        When ``n``, ``max_new_tokens`` or ``batch_size`` is less than 1.
    """

    def __init__(
        self,
        backend: LLMBackend,
        *,
        n: int = 4,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        trie: TitleTrie | None = None,
        batch_size: int = 8,
        stop: Sequence[str] | None = None,
    ):
        if n < 1 or max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"RolloutSampler: n, max_new_tokens and batch_size must be >= 1; got {n}, "
                f"{max_new_tokens}, {batch_size}"
            )
        self.backend, self.n, self.max_new_tokens = backend, int(n), int(max_new_tokens)
        self.temperature, self.top_p, self.seed, self.trie = float(temperature), float(top_p), int(seed), trie
        self.batch_size, self.stop = int(batch_size), stop

    def _tokenizer(self):
        return getattr(self.backend, "tokenizer", None)

    def sample(self, prompts: Sequence[str], *, seed: int | None = None) -> list[list[Rollout]]:
        """Per prompt, ``n`` rollouts (the sampler's seed unless ``seed`` is given)."""
        seed = self.seed if seed is None else int(seed)
        prompts = list(prompts)
        if self.trie is not None:
            rows = self.backend.sample_constrained(
                prompts,
                self.trie,
                self.n,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=seed,
                batch_size=self.batch_size,
            )
            tok = self._tokenizer()
            return [
                [Rollout(tok.decode(ids, skip_special_tokens=True), tuple(ids), int(item), seed) for ids, item in row]
                for row in rows
            ]
        texts = self.backend.sample(
            prompts,
            self.n,
            self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
            stop=self.stop,
        )
        tok = self._tokenizer()
        return [
            [
                Rollout(t, None if tok is None else tuple(tok(t, add_special_tokens=False)["input_ids"]), -1, seed + j)
                for j, t in enumerate(row)
            ]
            for row in texts
        ]

    def sample_ids(self, example: TrainingExample, *, seed: int | None = None) -> list[list[int]]:
        """Answer token ids of ``n`` rollouts of a
        :class:`~trustrec.models.training.TrainingExample` (its ``meta["prompt"]`` text, else
        its first variant's prompt decoded with the backend's tokenizer), each ended by the
        tokenizer's eos token unless it already is: the ``sample`` argument of
        :class:`~trustrec.models.training.ListRewardLoss`."""
        tok = self._tokenizer()
        if tok is None:
            raise ValueError("RolloutSampler.sample_ids needs a backend with a tokenizer (a local backend)")
        prompt = example.meta.get("prompt")
        if prompt is None:
            prompt = tok.decode(list(example.variants[0].prompt_ids), skip_special_tokens=True)
        rows = []
        for r in self.sample([prompt], seed=seed)[0]:
            ids = list(r.token_ids or ())
            if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
                ids.append(tok.eos_token_id)
            rows.append(ids)
        return rows


def shared_prompt_logprobs(
    model: Any, prompt: Sequence[int], answers: Sequence[Sequence[int]], pad_id: int
) -> torch.Tensor:
    """Summed log-likelihood of each answer after one shared prompt, the prompt run once and its
    KV cache repeated for the answers (gradients flow through both passes): the rollouts of one
    user share their prompt, which is most of each row. Equal to scoring every ``prompt +
    answer`` row on its own, up to float rounding.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM (a peft wrapper too).
    prompt : sequence of int
        The prompt's token ids (at least one).
    answers : sequence of sequence of int
        Each answer's token ids (each at least one).
    pad_id : int
        Token id padding the shorter answers (masked out).

    Returns
    -------
    torch.Tensor
        ``(len(answers),)`` summed answer log-likelihoods.

    Raises
    ------
    ValueError
        When the prompt or an answer is empty.
    """
    import torch

    from trustrec.models.llm import forward_after_prefix, output_cache

    if not len(prompt) or not answers or any(not len(a) for a in answers):
        raise ValueError("shared_prompt_logprobs: the prompt and every answer need at least one token")
    device = next(model.parameters()).device
    head = model(input_ids=torch.tensor([list(prompt)], device=device), use_cache=True, logits_to_keep=1)
    tail, ids, mask = forward_after_prefix(model, output_cache(head), len(prompt), answers, pad_id, keep_cache=False)
    # Answer token t is predicted at position t - 1: the prompt's last position for t = 0.
    logits = torch.cat([head.logits[:, -1:, :].expand(len(answers), 1, -1), tail[:, :-1, :]], 1).float()
    picked = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(1)
