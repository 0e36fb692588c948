"""The criteria that choose what PruneRec (arXiv 2507.07064) prunes, on Llama-architecture causal LMs.

Each scores one kind of structure on calibration texts: attention heads by the KL of the next-token distribution with
the head masked (:func:`head_importance`), MLP channels by how often they are among a token's strongest activations
(:func:`channel_importance`), hidden dimensions by ``|gradient x activation|`` of the last layer
(:func:`hidden_importance`); :func:`plan_from_scores` turns head and channel scores into a
:class:`~trustrec.mitigate.training.pruning.PruningPlan`, and :func:`layer_removal_order` removes whole layers greedily
by perplexity. The structure itself (plans, pruned copies, masks, checkpoints) is
:mod:`trustrec.mitigate.training.pruning`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from trustrec.errors import ConfigError, DataError
from trustrec.mitigate.training.pruning import (
    PruningPlan,
    _check_unpruned,
    _hooks,
    _mask_hooks,
    _skip_layer,
    _torch,
    masked_forward,
)

__all__ = [
    "channel_importance",
    "head_importance",
    "hidden_importance",
    "layer_removal_order",
    "plan_from_scores",
]


def _batches(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int) -> list[Any]:
    """Right-padded ``(ids, mask)`` batches on the model's device (no truncation: the last token matters)."""
    torch, device = _torch(), next(model.parameters()).device
    if isinstance(texts, str) or not len(texts) or not all(isinstance(t, str) for t in texts):
        raise DataError("pruning: texts must be a non-empty list of strings")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"pruning: batch_size must be a positive integer; got {batch_size!r}")
    ids = [torch.tensor(r, dtype=torch.long) for r in tokenizer(list(texts))["input_ids"]]
    if not all(len(r) for r in ids):
        raise DataError(f"pruning: texts {[i for i, r in enumerate(ids) if not len(r)][:5]} tokenize to nothing")
    pad = torch.nn.utils.rnn.pad_sequence
    rows = [ids[s : s + batch_size] for s in range(0, len(ids), batch_size)]
    masks = [pad([torch.ones_like(r) for r in b], batch_first=True).to(device) for b in rows]
    return [(pad(b, batch_first=True).to(device), m) for b, m in zip(rows, masks)]


def _last_logprobs(model: Any, ids: Any, mask: Any) -> Any:
    """Log next-token distribution at each row's last real token (only those reach the head: small logits)."""
    torch = _torch()
    hidden = model.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    logits = model.lm_head(hidden[torch.arange(len(ids), device=hidden.device), mask.sum(dim=1) - 1])
    return torch.log_softmax(logits.float(), dim=-1)


def head_importance(
    model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 8, smooth: bool = True
) -> np.ndarray:
    """PruneRec head scores: KL of the last-token next-token distribution under cumulative masking.

    Per layer, each query head is masked alone (its ``o_proj`` input zeroed) and ``KL(base || masked)`` of each
    text's last-token distribution is averaged over ``texts``. Heads are then masked cumulatively in increasing order
    of that KL: the ``k``-th of the order scores the KL with the first ``k`` masked together (the last: the layer's
    whole attention removed). Scores are divided by the layer's maximum (0 stays 0). ``smooth`` then applies a 3-layer
    moving average (2 at the ends) rank by rank: a layer's ``k``-th least important head gets the mean of the ``k``-th
    values of its and its neighbours' sorted scores (head indices mean nothing across layers, ranks do; each layer's
    order is kept). Masked variants run as one batch of ``num_heads * batch_size`` rows.

    Parameters
    ----------
    model, tokenizer : transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerBase
        An unpruned Llama-style causal LM and its tokenizer.
    texts : list of str
    batch_size : int
    smooth : bool

    Returns
    -------
    numpy.ndarray
        ``(num_layers, num_heads)``; higher is more important.

    Raises
    ------
    DataError, ConfigError
        When ``texts`` is empty or a text has no token; when the model is not an unpruned Llama or ``batch_size`` < 1.
    """
    torch, plan = _torch(), PruningPlan.full(model.config)
    _check_unpruned(model, plan)
    batches, n_layers, n_heads = _batches(model, tokenizer, texts, batch_size), plan.num_layers, plan.num_heads
    scores = np.zeros((n_layers, n_heads))
    with torch.no_grad():
        base = [_last_logprobs(model, ids, mask) for ids, mask in batches]

        def mean_kl(layer: int, masks: Any) -> np.ndarray:
            total = torch.zeros(len(masks), dtype=torch.float64, device=base[0].device)
            for (ids, mask), b_base in zip(batches, base):
                m, b = len(masks), len(ids)
                with _hooks(_mask_hooks(model, plan.head_dim, {layer: masks.repeat_interleave(b, dim=0)}, {})):
                    masked = _last_logprobs(model, ids.repeat(m, 1), mask.repeat(m, 1)).view(m, b, -1)
                total += (b_base.exp() * (b_base - masked)).sum(dim=(1, 2)).double()
            return (total / len(texts)).cpu().numpy()

        for layer in range(n_layers):
            order = np.argsort(mean_kl(layer, 1.0 - torch.eye(n_heads)), kind="stable")
            cumulative = torch.ones(n_heads, n_heads)
            for k, head in enumerate(order):
                cumulative[k:, int(head)] = 0.0  # row k masks the first k + 1 heads of the order
            scores[layer, order] = mean_kl(layer, cumulative)
    peak = scores.max(axis=1, keepdims=True)
    scores = np.divide(scores, peak, out=np.zeros_like(scores), where=peak > 0)
    if smooth and n_layers > 1:
        curves, ranks = np.sort(scores, axis=1), np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1)
        scores = np.stack([curves[max(0, i - 1) : i + 2].mean(axis=0)[ranks[i]] for i in range(n_layers)])
    return scores


def channel_importance(
    model: Any, tokenizer: Any, texts: Sequence[str], *, top_k: int | None = None, batch_size: int = 8
) -> list[np.ndarray]:
    """PruneRec channel scores: how often each MLP channel is among a token's ``top_k`` largest.

    A channel's activation is its ``down_proj`` input (``act(gate) * up``); for every real token of ``texts`` the
    ``top_k`` channels of largest ``|activation|`` get a count; scores are counts over the number of tokens.

    Parameters
    ----------
    model, tokenizer : transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerBase
        An unpruned Llama-style causal LM and its tokenizer.
    texts : list of str
    top_k, batch_size : int or None, int
        Channels counted per token (default None: a tenth of the MLP width, at least 1); texts per forward pass.

    Returns
    -------
    list of numpy.ndarray
        One ``(intermediate_size,)`` array per layer, values in [0, 1].

    Raises
    ------
    ConfigError, DataError
        When ``top_k`` or ``batch_size`` is out of range or the model not an unpruned Llama; when ``texts`` is empty.
    """
    torch, plan = _torch(), PruningPlan.full(model.config)
    layers, width = _check_unpruned(model, plan), plan.intermediate_size
    k = max(1, width // 10) if top_k is None else top_k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= width:
        raise ConfigError(f"channel_importance: top_k must be an integer in 1..{width}; got {top_k!r}")
    batches = _batches(model, tokenizer, texts, batch_size)
    counts, valid = [torch.zeros(width, dtype=torch.float64) for _ in layers], [None]

    def counter(layer: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            top = args[0].abs().topk(k, dim=-1).indices[valid[0]]
            counts[layer] += torch.bincount(top.flatten().cpu(), minlength=width).double()

        return hook

    with torch.no_grad(), _hooks([(layer.mlp.down_proj, counter(i)) for i, layer in enumerate(layers)]):
        for ids, mask in batches:
            valid[0] = mask.bool()
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)
    n_tokens = sum(int(mask.sum()) for _, mask in batches)
    return [(c / n_tokens).numpy() for c in counts]


def hidden_importance(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 8) -> np.ndarray:
    """PruneRec's hidden-dimension score: ``|gradient x activation|`` of the last decoder layer's output.

    Per dimension ``d``, ``|sum_t g_td h_td|`` over the predicted positions ``t`` of ``texts``, ``g`` the gradient of
    the mean next-token NLL: the first-order change of that loss when the dimension is removed (Taylor importance).

    Parameters
    ----------
    model, tokenizer : transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerBase
        A Llama-style causal LM (pruned here or not) and its tokenizer.
    texts : list of str
    batch_size : int

    Returns
    -------
    numpy.ndarray
        ``(hidden_size,)`` scores of the model's current hidden dimensions, in order; higher is more important.

    Raises
    ------
    DataError
        When ``texts`` has nothing to predict.
    """
    torch = _torch()
    batches = _batches(model, tokenizer, texts, batch_size)
    n_tokens = sum(int((mask[:, 1:] * mask[:, :-1]).sum()) for _, mask in batches)
    if n_tokens == 0:
        raise DataError("hidden_importance: the texts have no token to predict; give texts of two tokens or more")
    scores = torch.zeros(int(model.model.embed_tokens.embedding_dim), dtype=torch.float64)
    captured: dict[str, Any] = {}

    def keep_output(module: Any, args: Any, kwargs: Any, output: Any) -> Any:
        # a leaf in place of the layer's output: its gradient exists even when the weights are frozen
        hidden = (output[0] if isinstance(output, tuple) else output).detach().requires_grad_(True)
        captured["hidden"] = hidden
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), _hooks((), [(model.model.layers[-1], keep_output)]):
            for ids, mask in batches:
                valid = (mask[:, 1:] * mask[:, :-1]).bool()
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1][valid]
                loss = torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][valid], reduction="sum") / n_tokens
                model.zero_grad(set_to_none=True)
                loss.backward()
                hidden = captured.pop("hidden")
                product = (hidden.grad * hidden.detach())[:, :-1][valid]
                scores += product.sum(0).double().cpu()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores.abs().numpy()


def _top(scores: np.ndarray, candidates: Sequence[int], n: int) -> tuple[int, ...]:
    """The ``n`` best of ``candidates`` by score, sorted; ties keep the lower index."""
    return tuple(sorted(sorted(candidates, key=lambda i: (-scores[i], i))[:n]))


def plan_from_scores(
    config: Any, head_scores: np.ndarray, channel_scores: list[np.ndarray], *, head_ratio: float, channel_ratio: float
) -> PruningPlan:
    """Prune the lowest-scoring query heads evenly per key/value group and the lowest-scoring channels.

    Each group of ``G = num_heads // num_kv_heads`` query heads prunes ``min(G - 1, floor(head_ratio * G + 0.5))``
    (the ratio rounded half up to whole heads per group, one always kept, so every key/value head stays); each layer
    prunes ``min(I - 1, floor(channel_ratio * I + 0.5))`` of its ``I`` channels. Ties keep the lower index.

    Parameters
    ----------
    config : transformers.PretrainedConfig
    head_scores : numpy.ndarray
        ``(num_layers, num_heads)``, e.g. from :func:`head_importance`; higher is more important.
    channel_scores : list of numpy.ndarray
        One ``(intermediate_size,)`` array per layer, e.g. from :func:`channel_importance`.
    head_ratio, channel_ratio : float
        Shares of query heads and channels to prune, in [0, 1).

    Returns
    -------
    PruningPlan

    Raises
    ------
    ConfigError, DataError
        When a ratio is outside [0, 1); when the scores have the wrong shape or are not finite.
    """
    for name, ratio in (("head_ratio", head_ratio), ("channel_ratio", channel_ratio)):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not 0 <= ratio < 1:
            raise ConfigError(f"plan_from_scores: {name} must be a number in [0, 1); got {ratio!r}")
    full = PruningPlan.full(config)
    n_layers, width, group = full.num_layers, full.intermediate_size, full.num_heads // full.num_kv_heads
    heads, channels = np.asarray(head_scores, dtype=float), [np.asarray(c, dtype=float) for c in channel_scores]
    if heads.shape != (n_layers, full.num_heads) or not np.isfinite(heads).all():
        raise DataError(f"plan_from_scores: head_scores must be finite of shape {(n_layers, full.num_heads)}")
    if len(channels) != n_layers or any(c.shape != (width,) or not np.isfinite(c).all() for c in channels):
        raise DataError(f"plan_from_scores: channel_scores must be {n_layers} finite arrays of shape ({width},)")
    keep_heads = group - min(group - 1, math.floor(head_ratio * group + 0.5))
    keep_channels = width - min(width - 1, math.floor(channel_ratio * width + 0.5))
    groups = [range(g * group, (g + 1) * group) for g in range(full.num_kv_heads)]
    query = tuple(tuple(h for g in groups for h in _top(heads[i], g, keep_heads)) for i in range(n_layers))
    return replace(full, query_heads=query, channels=tuple(_top(c, range(width), keep_channels) for c in channels))


def _mean_nll(model: Any, batches: Sequence[Any]) -> float:
    """Mean negative log-likelihood per predicted token (real positions reach the head 512 at a time: small logits)."""
    torch, total, count = _torch(), 0.0, 0
    for ids, mask in batches:
        valid = (mask[:, 1:] * mask[:, :-1]).bool()
        hidden = model.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        states, targets = hidden[:, :-1][valid], ids[:, 1:][valid]
        for s in range(0, len(states), 512):
            logits = model.lm_head(states[s : s + 512]).float()
            total += float(torch.nn.functional.cross_entropy(logits, targets[s : s + 512], reduction="sum"))
        count += int(valid.sum())
    if count == 0:
        raise DataError("layer_removal_order: the texts have no token to predict; give texts of two tokens or more")
    return total / count


def layer_removal_order(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    plan: PruningPlan | None = None,
    *,
    n_remove: int,
    batch_size: int = 8,
) -> list[int]:
    """Greedy layer removal: each step drops the kept layer whose removal least raises perplexity.

    Candidates run without a copy: through :func:`masked_forward` with ``plan`` on an unpruned model, or, without a
    plan, on ``model`` as it is (pruned here or not), its layers skipped by hooks. The lowest mean per-token NLL of
    ``texts`` goes (ties: lower index).

    Parameters
    ----------
    model, tokenizer : transformers.LlamaForCausalLM, transformers.PreTrainedTokenizerBase
        The unpruned Llama-style causal LM and its tokenizer.
    texts : list of str
    plan : PruningPlan or None
        The starting plan for an unpruned ``model`` (e.g. from :func:`plan_from_scores`; its head and channel choices
        apply), or None: the model as it is (:meth:`PruningPlan.of`).
    n_remove, batch_size : int
        Layers to remove, fewer than ``len(plan.kept_layers)``; texts per forward pass.

    Returns
    -------
    list of int
        Original layer indices in removal order.

    Raises
    ------
    ConfigError, DataError
        When ``n_remove`` or ``batch_size`` is out of range (a layer must stay); when ``texts`` has nothing to predict.
    """
    if isinstance(n_remove, bool) or not isinstance(n_remove, (int, np.integer)) or n_remove < 0:
        raise ConfigError(f"layer_removal_order: n_remove must be a non-negative integer; got {n_remove!r}")
    start = PruningPlan.of(model) if plan is None else plan
    if n_remove >= len(start.kept_layers):
        raise ConfigError(f"layer_removal_order: n_remove={n_remove} would remove all the kept layers; one must stay")
    position = {layer: p for p, layer in enumerate(start.kept_layers)}

    def without(kept: set[int]) -> Any:
        if plan is not None:
            return masked_forward(model, replace(plan, kept_layers=tuple(kept)))
        skipped = [i for i in start.kept_layers if i not in kept]
        return _hooks((), [(model.model.layers[position[i]], _skip_layer) for i in skipped])

    batches, removed, kept = _batches(model, tokenizer, texts, batch_size), list[int](), set(start.kept_layers)
    with _torch().no_grad():
        for _ in range(int(n_remove)):
            losses = {}
            for layer in sorted(kept):
                with without(kept - {layer}):
                    losses[layer] = _mean_nll(model, batches)
            removed.append(min(losses, key=lambda i: (losses[i], i)))
            kept.discard(removed[-1])
    return removed
