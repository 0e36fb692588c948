"""KV-cache plumbing shared by every local-model path that runs a prefix once: the forward keyword
a cache travels under, the cache a forward returned, and continuations run after a cached prefix
(constrained decoding, likelihood scoring, RecICL's shared demonstrations, rollout training).

Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["cache_kwargs", "forward_after_prefix", "output_cache"]


@functools.cache
def _cache_keyword(model_class: type[Any]) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict:
    """The forward keyword that passes a KV cache: ``cache`` in recent transformers, which warn on
    every call that still uses the older ``past_key_values``; older 5.x versions know only that.
    Looked up once per model class (this runs on every decoding step).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The model (a peft wrapper is looked through).
    cache : transformers.Cache
        The KV cache to pass.

    Returns
    -------
    dict
        ``{keyword: cache}`` for the model's forward.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps forward
    base_class: type = type(base)  # (mypy takes type(<Any>) for unhashable)
    return {_cache_keyword(base_class): cache}


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned, under either name (see :func:`cache_kwargs`).

    Parameters
    ----------
    out : transformers.modeling_outputs.ModelOutput
        A forward's output (run with ``use_cache=True``).

    Returns
    -------
    transformers.Cache
        Its KV cache.
    """
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def forward_after_prefix(
    model: Any,
    cache: Any,
    n_prefix: int,
    rows: Sequence[Sequence[int]],
    pad_id: int,
    *,
    keep_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``rows`` as continuations of one prefix whose KV cache is ``cache``: each row right
    padded, its positions continuing after the prefix, the cache repeated once per row. Runs
    under the caller's grad mode (gradients flow into the prefix when its cache carries them).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM (a peft wrapper too).
    cache : transformers.Cache or None
        The prefix's KV cache (:func:`output_cache` of its forward); None: no prefix.
    n_prefix : int
        The prefix's length in tokens (0 without a prefix).
    rows : sequence of sequence of int
        Token ids of each continuation (each at least one).
    pad_id : int
        Token id padding the shorter rows (masked out).
    keep_cache : bool
        Repeat a copy of ``cache``, leaving it usable again (default True). A cache that carries
        gradients cannot be copied: pass False, and do not use it afterwards.

    Returns
    -------
    logits : torch.Tensor
        ``(len(rows), width, vocab)``: position ``t`` predicts token ``t + 1`` of the row.
    ids : torch.Tensor
        ``(len(rows), width)`` the padded rows, on the model's device.
    mask : torch.Tensor
        ``(len(rows), width)`` True on the rows' own tokens.
    """
    import copy

    import torch

    device = next(model.parameters()).device
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[r, : len(row)] = True
    ids, mask = ids.to(device), mask.to(device)
    kwargs: dict[str, Any] = {}
    if cache is not None:
        cache = copy.deepcopy(cache) if keep_cache else cache
        cache.batch_repeat_interleave(len(rows))
        kwargs = cache_kwargs(model, cache)
    attention = torch.cat([torch.ones((len(rows), n_prefix), dtype=torch.long, device=device), mask.long()], 1)
    logits = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=torch.arange(n_prefix, n_prefix + width, device=device).expand(len(rows), width),
        use_cache=cache is not None,
        **kwargs,
    ).logits
    return logits, ids, mask
