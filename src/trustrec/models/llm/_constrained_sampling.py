"""Seeded sampling constrained to a :class:`TitleTrie`: ``n`` catalog titles per prompt.

Each prompt is run once (left padded, ``batch_size`` prompts per forward) and its KV cache
repeated for its ``n`` samples, which then decode together one token per step: the next-token
distribution is the model's softmax over the tokens the trie allows after the sample's tokens so
far (the others masked before the softmax), scaled by ``temperature`` and cut to the nucleus
``top_p``, as Hugging Face's ``generate(do_sample=True, prefix_allowed_tokens_fn=...)`` samples;
``temperature=0`` takes the most likely allowed token. Unlike ``generate`` with
``num_return_sequences``, the prompt is not copied ``n`` times before its forward pass, which is
most of the work when ``n`` is large.

Samples are drawn from one ``torch.Generator`` seeded with ``seed`` per call: the same seed,
prompts and batch size give the same samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustrec.models.llm._kv_cache import cache_kwargs, output_cache
from trustrec.models.llm._trie import TitleTrie

__all__ = ["constrained_sample"]


def constrained_sample(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    trie: TitleTrie,
    n: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
) -> list[list[tuple[list[int], int]]]:
    """``n`` trie-constrained samples per prompt (module docstring).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer (prompts are tokenized with its special tokens).
    prompts : sequence of str
        The prompts.
    trie : TitleTrie
        The catalog's titles in the tokenizer's tokens.
    n : int
        Samples per prompt.
    temperature : float
        Softmax temperature; 0 is greedy.
    top_p : float
        Nucleus mass in (0, 1].
    seed : int
        Seed of the sampling generator.
    batch_size : int
        Prompts per forward pass.

    Returns
    -------
    list of list of (list of int, int)
        Per prompt, ``n`` samples: the generated token ids (end marker included when reached)
        and the item they name (-1 when the sample did not end on a title).
    """
    import torch

    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    results: list[list[tuple[list[int], int]]] = []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                chunk = list(prompts[start : start + batch_size])
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=True)
                rows = _sample_chunk(
                    model, enc["input_ids"].to(device), enc["attention_mask"].to(device), trie, n,
                    temperature=temperature, top_p=top_p, generator=generator, pad=pad,
                )  # fmt: skip
                results.extend(rows[b * n : (b + 1) * n] for b in range(len(chunk)))
    finally:
        tokenizer.padding_side = old_side
    return results


def _sample_chunk(
    model: Any,
    ids: Any,
    attention: Any,
    trie: TitleTrie,
    n: int,
    *,
    temperature: float,
    top_p: float,
    generator: Any,
    pad: int,
) -> list[tuple[list[int], int]]:
    import torch

    positions = (attention.cumsum(1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = output_cache(out)
    cache.batch_repeat_interleave(n)
    logits = out.logits[:, -1].repeat_interleave(n, 0)
    attention = attention.repeat_interleave(n, 0)
    position = positions[:, -1].repeat_interleave(n) + 1
    n_rows = logits.shape[0]
    node = np.zeros(n_rows, dtype=np.int64)  # each sample's trie node; -1 once it has ended
    tokens: list[list[int]] = [[] for _ in range(n_rows)]
    for _ in range(trie.max_length):
        live = np.flatnonzero(node >= 0)
        allowed = [trie.allowed[node[r]] for r in live]
        rows = torch.as_tensor(np.repeat(live, [len(a) for a in allowed]), device=logits.device)
        cols = torch.as_tensor(np.concatenate(allowed), device=logits.device)
        scores = torch.full(logits.shape, float("-inf"), device=logits.device)
        scores[rows, cols] = logits[rows, cols].float()
        scores[torch.as_tensor(np.flatnonzero(node < 0), device=logits.device), pad] = 0.0  # ended: pad
        if temperature > 0:
            probs = torch.softmax(scores / temperature, -1)
            if top_p < 1:
                probs = _nucleus(probs, top_p)
            chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            chosen = scores.argmax(-1)
        picked = chosen.cpu().numpy()
        for r in live:
            token = int(picked[r])
            tokens[r].append(token)
            node[r] = trie.child(int(node[r]), token)
            if token == trie.end_id:
                node[r] = -1 - node[r]  # ended at leaf ``-1 - node``
        if not (node >= 0).any():
            break
        attention = torch.cat([attention, torch.ones((n_rows, 1), dtype=attention.dtype, device=attention.device)], 1)
        out = model(
            input_ids=chosen[:, None],
            attention_mask=attention,
            position_ids=position[:, None],
            use_cache=True,
            **cache_kwargs(model, cache),
        )
        cache, logits, position = output_cache(out), out.logits[:, -1], position + 1
    samples = []
    for row, generated in enumerate(tokens):
        leaf = -1 - int(node[row]) if node[row] < 0 else -1
        items = trie.items_at(leaf) if leaf >= 0 else []
        samples.append((generated, items[0] if items else -1))
    return samples


def _nucleus(probs: Any, top_p: float) -> Any:
    """``probs`` cut to each row's smallest set of most likely tokens holding ``top_p`` mass
    (the most likely token always kept), renormalised."""
    import torch

    ordered, order = probs.sort(-1, descending=True)
    before = ordered.cumsum(-1) - ordered  # mass of the tokens ranked above
    ordered = torch.where(before < top_p, ordered, torch.zeros_like(ordered))
    kept = torch.zeros_like(probs).scatter(-1, order, ordered)
    return kept / kept.sum(-1, keepdim=True)
