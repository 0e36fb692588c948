"""Batched beam search constrained to a :class:`TitleTrie`: every result is a catalog item.

Scores are true sequence log-probabilities: at each step ``log_softmax`` is taken over the FULL
vocabulary and only then are tokens the trie does not allow masked to ``-inf`` (masking before
the softmax would renormalise over the allowed tokens and give different scores). This is what
Hugging Face's beam search does with ``prefix_allowed_tokens_fn`` (its logits processors run on
the log-probabilities), and the candidate / finished / stopping rules below follow its
``_beam_search`` exactly, so with ``length_penalty=0.0`` and ``early_stopping="never"`` (or
``False``) the top-K items are identical to ``model.generate(..., num_beams=B,
num_return_sequences=B, prefix_allowed_tokens_fn=...)`` mapped to items:

* per prompt, the ``2 * num_beams`` best (beam, token) continuations by accumulated log-prob;
* those ending in the end marker AND ranked within the first ``num_beams`` become finished
  hypotheses (the best ``num_beams`` are kept);
* the best ``num_beams`` continuations not ending become the running beams;
* a prompt is done when it holds ``num_beams`` finished hypotheses and its best running beam
  scores no better than its worst finished one (log-probs only fall, so nothing can improve).

The prompt is run once (left padded, batch of ``batch_size`` prompts); its KV cache is repeated
to ``num_beams`` beams and reordered by beam origin each step; a prompt whose search is done
leaves the batch (its beams are not run again). A finished sequence resolves to
the lowest index among items sharing its title (see :class:`TitleTrie`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustrec.models.llm._backend import cache_kwargs, output_cache
from trustrec.models.llm._trie import TitleTrie

__all__ = ["constrained_beam_search"]


def constrained_beam_search(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    trie: TitleTrie,
    *,
    num_beams: int = 10,
    top_k: int = 10,
    batch_size: int = 8,
    add_special_tokens: bool = True,
    exclude: np.ndarray | None = None,
) -> list[list[tuple[int, float]]]:
    """Top-``top_k`` catalog items per prompt by constrained beam search.

    Returns, per prompt, up to ``top_k`` ``(item_index, sequence_logprob)`` pairs, best first,
    distinct items (fewer when the trie holds fewer sequences than asked for). ``top_k`` must not
    exceed ``num_beams``; ``num_beams >= trie.n_sequences`` makes the search exhaustive.
    ``exclude`` (``(n_prompts, n_items)`` bool) marks items a prompt must not get (its history,
    items outside its candidates): the search never enters a branch left without items, which
    is the same as searching a trie of the remaining titles, with no extra beams.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Causal LM that scores the continuations.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer (prompts are left padded; the eos token pads when there is no pad token).
    prompts : sequence of str
        The prompts (a single string is refused).
    trie : TitleTrie
        Catalog titles in the tokenizer's token ids.
    num_beams : int
        Beams per prompt (default 10).
    top_k : int
        Items returned per prompt, at most ``num_beams`` (default 10).
    batch_size : int
        Prompts run together (default 8).
    add_special_tokens : bool
        Whether the tokenizer adds its special tokens to the prompts (default True).
    exclude : numpy.ndarray or None
        ``(n_prompts, n_items)`` bool mask of items each prompt must not get (default None:
        none).

    Returns
    -------
    list of list of (int, float)
        Per prompt, up to ``top_k`` ``(item_index, sequence_logprob)`` pairs, best first.

    Raises
    ------
    ValueError
        When ``num_beams``, ``top_k`` or ``batch_size`` is below 1, ``top_k > num_beams``, or
        ``exclude`` has the wrong shape.
    TypeError
        When ``prompts`` is a single string.
    """
    if num_beams < 1 or top_k < 1 or batch_size < 1:
        raise ValueError("constrained_beam_search: num_beams, top_k and batch_size must be >= 1")
    if top_k > num_beams:
        raise ValueError(f"constrained_beam_search: top_k={top_k} > num_beams={num_beams}")
    if isinstance(prompts, str):
        raise TypeError("constrained_beam_search: prompts must be a list of strings")
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (len(prompts), trie.n_items):
            raise ValueError(
                f"constrained_beam_search: exclude must be ({len(prompts)}, {trie.n_items}); got {exclude.shape}"
            )
    results: list[list[tuple[int, float]]] = []
    if trie.n_sequences == 0:
        return [[] for _ in prompts]
    for start in range(0, len(prompts), batch_size):
        open_counts = None if exclude is None else trie.open_counts(exclude[start : start + batch_size])
        results.extend(
            _search_chunk(
                model,
                tokenizer,
                list(prompts[start : start + batch_size]),
                trie,
                num_beams,
                top_k,
                add_special_tokens,
                open_counts,
            )
        )
    return results


def _search_chunk(model, tokenizer, prompts, trie, nb, top_k, add_special_tokens, open_counts=None):
    import torch

    n_prompts = len(prompts)
    if n_prompts == 0:
        return []
    device = next(model.parameters()).device
    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = old_side, old_pad
    input_ids = enc["input_ids"].to(device)
    mask = enc["attention_mask"].to(device)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    end_id = trie.end_id
    n = n_prompts * nb
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        logits = out.logits[:, -1, :].float().repeat_interleave(nb, dim=0)
        del out
        cache.batch_repeat_interleave(nb)
        mask = mask.repeat_interleave(nb, dim=0)
        last_pos = positions[:, -1].repeat_interleave(nb, dim=0)
        vocab = logits.shape[-1]
        nodes = np.full(n, -1, dtype=np.int64)
        nodes[::nb] = 0  # only the first beam of each prompt is live at the start (as in HF)
        if open_counts is not None:
            nodes[::nb][open_counts[:, 0] == 0] = -1  # nothing left to recommend
        scores = torch.full((n,), float("-inf"), device=device)
        scores[::nb] = 0.0
        finished: list[list[tuple[float, int]]] = [[] for _ in range(n_prompts)]  # (score, leaf)
        done = np.zeros(n_prompts, dtype=bool)
        active = np.arange(n_prompts)  # prompts still searching; their beams are the rows, in order
        for step in range(trie.max_length):
            n = len(active) * nb
            logp = torch.log_softmax(logits, dim=-1)
            live = np.flatnonzero(nodes >= 0)
            if open_counts is None:
                allowed = [trie.allowed[nodes[i]] for i in live]
            else:  # only children that still lead to an item this prompt may get
                allowed = [
                    trie.allowed[nodes[i]][open_counts[active[i // nb], trie.children[nodes[i]]] > 0] for i in live
                ]
            rows = torch.from_numpy(np.repeat(live, [len(a) for a in allowed])).to(device)
            cols = torch.from_numpy(np.concatenate(allowed) if allowed else np.zeros(0, np.int64)).to(device)
            masked = torch.full((n, vocab), float("-inf"), device=device)
            masked[rows, cols] = logp[rows, cols] + scores[rows]
            top_v, top_i = masked.view(len(active), nb * vocab).topk(2 * nb, dim=-1)
            top_v_np = top_v.cpu().numpy()
            top_i_np = top_i.cpu().numpy()
            beam_local, tokens = top_i_np // vocab, top_i_np % vocab
            new_nodes = np.full(n, -1, dtype=np.int64)
            new_tokens = np.full(n, end_id, dtype=np.int64)
            parents = np.arange(n, dtype=np.int64)
            new_scores = np.full(n, -np.inf, dtype=np.float64)
            for a, b in enumerate(active):
                slot = 0
                for rank in range(2 * nb):
                    value = float(top_v_np[a, rank])
                    if value == -np.inf:
                        break
                    parent = a * nb + int(beam_local[a, rank])
                    tok = int(tokens[a, rank])
                    child = trie.child(int(nodes[parent]), tok)
                    if tok == end_id:
                        if rank < nb:
                            finished[b].append((value, child))
                    elif slot < nb:
                        row = a * nb + slot
                        parents[row], new_nodes[row], new_tokens[row], new_scores[row] = parent, child, tok, value
                        slot += 1
                finished[b].sort(key=lambda f: -f[0])
                del finished[b][nb:]
                best_running = new_scores[a * nb]
                if best_running == -np.inf or (len(finished[b]) == nb and not best_running > finished[b][-1][0]):
                    done[b] = True  # HF: no new finished hypotheses once nothing can improve
            if done.all() or step == trie.max_length - 1:
                break
            # finished prompts leave the batch: their beams are not run again
            keep = np.flatnonzero(~done[active])
            kept_rows = (keep[:, None] * nb + np.arange(nb)[None, :]).ravel()
            active = active[keep]
            beam_idx = torch.from_numpy(parents[kept_rows]).to(device)
            cache.reorder_cache(beam_idx)
            nodes = new_nodes[kept_rows]
            scores = torch.from_numpy(new_scores[kept_rows]).to(device=device, dtype=torch.float32)
            mask = torch.cat([mask[beam_idx], mask.new_ones((len(kept_rows), 1))], dim=1)
            last_pos = last_pos[beam_idx] + 1  # positions agree across the beams of one prompt
            out = model(
                input_ids=torch.from_numpy(new_tokens[kept_rows]).to(device)[:, None],
                attention_mask=mask,
                position_ids=last_pos[:, None],
                use_cache=True,
                **cache_kwargs(model, cache),
            )
            cache = output_cache(out)
            logits = out.logits[:, -1, :].float()
            del out
    return [[(trie.item_at(leaf), score) for score, leaf in fin[:top_k]] for fin in finished]
