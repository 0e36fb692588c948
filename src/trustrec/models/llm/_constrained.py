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

Two decoding switches of the LLM-recommendation literature, both off by default (the default
call is the plain search above, unchanged):

* ``length_penalty`` (``lp``): a finished hypothesis scores ``sum_logprob / L ** lp`` with ``L``
  the number of GENERATED tokens, end marker included (the prompt is not counted: that is what
  Hugging Face ``>= 4.3x`` does, ``cur_len + 1 - decoder_prompt_len``; older releases counted
  the prompt too, which we do not follow). ``lp = 0`` ranks by the summed log-probability of
  the answer, as D3 argues for ("Decoding Matters", Bao et al., arXiv 2406.14900); ``lp = 1``
  by its mean per-token log-probability, BIGRec's default (Bao et al., arXiv 2308.08434, which
  runs ``generate`` with HF's default ``length_penalty=1.0``). Running beams stay ranked by the
  summed log-prob, finished hypotheses by the penalised score, and the stopping rule is HF's
  ``early_stopping="never"`` heuristic: a running beam's best possible score is its current sum
  divided by ``max_length ** lp`` when ``lp > 0`` (log-probs only fall, and a longer answer
  divides by more) and by ``cur_len ** lp`` otherwise; with ``lp > 0`` the search thus equals
  ``generate(..., length_penalty=lp, early_stopping="never", max_new_tokens=trie.max_length)``.
* D3's text-free assistant (``assistant``, ``guidance`` ``g``): a per-prompt item distribution
  (e.g. a SASRec softmax) turned into a next-token distribution over the trie,
  ``p_assist(t | v) = mass(child(v, t)) / sum_t' mass(child(v, t'))`` (mass: the assistant
  probability of the items below; see :func:`assistant_token_logprobs`), and each token scores
  ``g * log p_LLM(t) + (1 - g) * log p_assist(t)`` (D3's ``CFEnhancedLogitsProcessor``:
  ``g * (scores - cf) + cf``). ``g = 1`` is the plain search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustrec.models.llm._kv_cache import cache_kwargs, output_cache
from trustrec.models.llm._trie import TitleTrie

__all__ = ["ASSISTANT_FLOOR", "assistant_token_logprobs", "constrained_beam_search"]

#: Added to every allowed token's (row-normalised) assistant mass before normalising over the
#: allowed tokens, as D3's released processor does (``+ 1e-10``): a token whose items the
#: assistant gives no probability stays reachable (at a large penalty) instead of scoring -inf.
ASSISTANT_FLOOR = 1e-10


def _check_item_probs(values: Any, shape: tuple[int, int], name: str, owner: str) -> np.ndarray:
    """``values`` as float64 of ``shape``, finite and non-negative, or a ValueError naming it."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}: {name} must be a numeric array of shape {shape}") from exc
    if array.shape != shape:
        raise ValueError(f"{owner}: {name} must be {shape} (n_prompts, n_items); got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ValueError(f"{owner}: {name} must be finite and non-negative")
    return array


def _row_normalised_mass(trie: TitleTrie, item_probs: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """``(n_rows, n_nodes)`` assistant mass under every node, rows scaled to sum 1 over ALL items
    (before exclusion) so that :data:`ASSISTANT_FLOOR` sits on D3's scale (a softmax over the
    catalog) whatever the caller's scale; an all-zero row stays zero (its tokens tie)."""
    total = item_probs.sum(axis=1, keepdims=True)
    scaled = np.divide(item_probs, total, out=np.zeros_like(item_probs), where=total > 0)
    return trie.subtree_mass(scaled, exclude)


def _token_logprobs(mass: np.ndarray, mass_rows: np.ndarray, children: Sequence[np.ndarray]) -> np.ndarray:
    """Flat log p_assist for the (query, allowed child) pairs: query ``q`` reads mass row
    ``mass_rows[q]`` and allows ``children[q]``; the result follows ``np.concatenate(children)``.
    One gather and one segment sum (bincount), no loop over items."""
    counts = np.array([len(c) for c in children], dtype=np.int64)
    if counts.sum() == 0:
        return np.zeros(0, dtype=np.float64)
    segment = np.repeat(np.arange(len(children)), counts)
    numer = mass[np.repeat(mass_rows, counts), np.concatenate(children)] + ASSISTANT_FLOOR
    denom = np.bincount(segment, weights=numer, minlength=len(children))
    return np.log(numer) - np.log(denom[segment])


def assistant_token_logprobs(
    trie: TitleTrie,
    node_ids: Sequence[int] | np.ndarray,
    item_probs: np.ndarray,
    exclude: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """D3's text-free assistant as next-token log-probabilities at trie nodes.

    For query ``q`` at node ``v = node_ids[q]`` and each token ``t`` the trie allows there (and
    that still leads to an item not excluded), ``p_assist(t) = (m(child(v, t)) + f) / sum_t'
    (m(child(v, t')) + f)``, where ``m(u)`` is the summed probability ``item_probs[q]`` gives the
    items whose sequences continue through node ``u`` (:meth:`TitleTrie.subtree_mass`: excluded
    items and closed leaves add nothing) after scaling the row to sum 1, and ``f`` is
    :data:`ASSISTANT_FLOOR`, D3's ``+ 1e-10``. D3 ("Decoding Matters", Bao et al., arXiv
    2406.14900) defines the assistant's prefix probability as this sum over items; its released
    processor can also take the max over the items (a comment there says "max or sum"): we take
    the sum, which makes the assistant's sequence probability telescope to the item's share.
    :func:`constrained_beam_search` scores its tokens with these same values.

    Parameters
    ----------
    trie : TitleTrie
        Catalog titles in token ids.
    node_ids : sequence of int or numpy.ndarray
        ``(n_queries,)`` trie nodes (0 is the root).
    item_probs : numpy.ndarray
        ``(n_queries, n_items)`` non-negative finite item probabilities, one row per query (need
        not be normalised).
    exclude : numpy.ndarray or None
        ``(n_queries, n_items)`` bool mask of items that are out (default None: none).

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        Per query, the allowed token ids (ascending, as ``trie.allowed``) and their float64
        assistant log-probabilities (empty at a leaf or where every branch is excluded).

    Raises
    ------
    ValueError
        When ``node_ids`` holds a node outside the trie, or ``item_probs`` / ``exclude`` has the
        wrong shape, or ``item_probs`` is negative or not finite.
    """
    owner = "assistant_token_logprobs"
    nodes = np.asarray(node_ids, dtype=np.int64).reshape(-1)
    if ((nodes < 0) | (nodes >= trie.n_nodes)).any():
        raise ValueError(f"{owner}: node_ids must be trie nodes in [0, {trie.n_nodes})")
    probs = _check_item_probs(item_probs, (len(nodes), trie.n_items), "item_probs", owner)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != probs.shape:
            raise ValueError(f"{owner}: exclude must be {probs.shape}; got {exclude.shape}")
    mass = _row_normalised_mass(trie, probs, exclude)
    if exclude is None:
        opens = [np.ones(len(trie.children[v]), dtype=bool) for v in nodes]
    else:
        counts = trie.open_counts(exclude)
        opens = [counts[q, trie.children[v]] > 0 for q, v in enumerate(nodes)]
    children = [trie.children[v][o] for v, o in zip(nodes, opens)]
    flat = _token_logprobs(mass, np.arange(len(nodes)), children)
    bounds = np.cumsum([0] + [len(c) for c in children])
    return [(trie.allowed[v][o], flat[bounds[q] : bounds[q + 1]]) for q, (v, o) in enumerate(zip(nodes, opens))]


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
    length_penalty: float = 0.0,
    assistant: np.ndarray | None = None,
    guidance: float = 1.0,
) -> list[list[tuple[int, float]]]:
    """Top-``top_k`` catalog items per prompt by constrained beam search.

    Returns, per prompt, up to ``top_k`` ``(item_index, score)`` pairs, best first,
    distinct items (fewer when the trie holds fewer sequences than asked for). ``top_k`` must not
    exceed ``num_beams``; ``num_beams >= trie.n_sequences`` makes the search exhaustive.
    ``exclude`` (``(n_prompts, n_items)`` bool) marks items a prompt must not get (its history,
    items outside its candidates): the search never enters a branch left without items, which
    is the same as searching a trie of the remaining titles, with no extra beams.

    With the defaults the score is the answer's summed log-probability (D3's choice).
    ``length_penalty`` divides a finished answer's score by its number of generated tokens
    (end marker included, prompt not counted) to that power: ``1.0`` is BIGRec's mean
    log-probability. ``assistant`` with ``guidance < 1`` mixes in D3's text-free assistant:
    each token scores ``guidance * log p_LLM + (1 - guidance) * log p_assist`` (see
    :func:`assistant_token_logprobs`; a token whose items the assistant gives zero probability
    is not cut off but gets the :data:`ASSISTANT_FLOOR`). The module docstring has the details.

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
    length_penalty : float
        Exponent of the generated length dividing a finished answer's score (default 0.0: the
        summed log-probability, D3; 1.0: the mean, BIGRec). Any finite value.
    assistant : numpy.ndarray or None
        ``(n_prompts, n_items)`` non-negative finite item probabilities per prompt, e.g. a
        SASRec softmax (rows need not be normalised; default None: no assistant).
    guidance : float
        D3's weight ``g`` in ``(0, 1]`` of the LLM against the assistant (default 1.0: the
        assistant is off and the results are those without it).

    Returns
    -------
    list of list of (int, float)
        Per prompt, up to ``top_k`` ``(item_index, score)`` pairs, best first; the score is the
        summed (assistant-mixed) log-probability divided by ``length ** length_penalty``.

    Raises
    ------
    ValueError
        When ``num_beams``, ``top_k`` or ``batch_size`` is below 1, ``top_k > num_beams``,
        ``exclude`` or ``assistant`` has the wrong shape, ``assistant`` is negative or not
        finite, ``guidance`` is outside ``(0, 1]`` or ``length_penalty`` is not finite.
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
    owner = "constrained_beam_search"
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float, np.floating, np.integer)):
        raise ValueError(f"{owner}: length_penalty must be a real number; got {length_penalty!r}")
    if not np.isfinite(length_penalty):
        raise ValueError(f"{owner}: length_penalty must be finite; got {length_penalty!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.floating, np.integer)):
        raise ValueError(f"{owner}: guidance must be a real number in (0, 1]; got {guidance!r}")
    if not 0.0 < guidance <= 1.0:
        raise ValueError(f"{owner}: guidance must be in (0, 1] (1 switches the assistant off); got {guidance!r}")
    if assistant is not None:
        assistant = _check_item_probs(assistant, (len(prompts), trie.n_items), "assistant", owner)
        if guidance == 1.0:
            assistant = None  # g = 1: the plain search, bit for bit
    results: list[list[tuple[int, float]]] = []
    if trie.n_sequences == 0:
        return [[] for _ in prompts]
    for start in range(0, len(prompts), batch_size):
        chunk_exclude = None if exclude is None else exclude[start : start + batch_size]
        open_counts = None if chunk_exclude is None else trie.open_counts(chunk_exclude)
        # the assistant's mass under every node, once per chunk: each step is then a gather
        mass = (
            None
            if assistant is None
            else _row_normalised_mass(trie, assistant[start : start + batch_size], chunk_exclude)
        )
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
                float(length_penalty),
                mass,
                float(guidance),
            )
        )
    return results


def _search_chunk(
    model, tokenizer, prompts, trie, nb, top_k, add_special_tokens, open_counts=None, lp=0.0, mass=None, g=1.0
):
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
                opens = [slice(None)] * len(live)
            else:  # only children that still lead to an item this prompt may get
                opens = [open_counts[active[i // nb], trie.children[nodes[i]]] > 0 for i in live]
            allowed = [trie.allowed[nodes[i]][o] for i, o in zip(live, opens)]
            rows = torch.from_numpy(np.repeat(live, [len(a) for a in allowed])).to(device)
            cols = torch.from_numpy(np.concatenate(allowed) if allowed else np.zeros(0, np.int64)).to(device)
            masked = torch.full((n, vocab), float("-inf"), device=device)
            if mass is None:
                masked[rows, cols] = logp[rows, cols] + scores[rows]
            else:  # D3: g * log p_LLM + (1 - g) * log p_assist, accumulated like HF's processed scores
                children = [trie.children[nodes[i]][o] for i, o in zip(live, opens)]
                assist = _token_logprobs(mass, active[live // nb], children)
                assist_t = torch.from_numpy(assist).to(device=device, dtype=logp.dtype)
                masked[rows, cols] = g * logp[rows, cols] + (1.0 - g) * assist_t + scores[rows]
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
                        if rank < nb:  # HF: score / (generated tokens, end marker included) ** lp
                            finished[b].append((value / (step + 1) ** lp, child))
                    elif slot < nb:
                        row = a * nb + slot
                        parents[row], new_nodes[row], new_tokens[row], new_scores[row] = parent, child, tok, value
                        slot += 1
                finished[b].sort(key=lambda f: -f[0])
                del finished[b][nb:]
                best_running = new_scores[a * nb]
                # HF's early_stopping="never" bound: a running sum can only fall, so with lp > 0 its
                # best final score is the sum over the LONGEST length, else over the current one
                best_possible = best_running / (trie.max_length if lp > 0 else step + 1) ** lp
                if best_running == -np.inf or (len(finished[b]) == nb and not best_possible > finished[b][-1][0]):
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
