"""Structural pruning of Llama-architecture causal LMs: the core of PruneRec (arXiv 2507.07064).

A :class:`PruningPlan` names, in original indices, what each layer keeps and which hidden dimensions stay;
:func:`apply_plan` returns a physically smaller copy, :func:`masked_forward` makes the unpruned model compute exactly
what it computes without changing a shape (for plans that keep every hidden dimension: RMSNorm normalises over the
kept dimensions, so hidden-dimension pruning has no exact masked form). The criteria that choose a plan are in
:mod:`trustrec.mitigate.training.pruning_criteria`.

GQA rule (the one rule a plan obeys): query head ``h`` is in key/value group ``h // (num_heads // num_kv_heads)``.
Query heads are pruned evenly per group: every kept key/value head keeps the same number ``r >= 1`` of its own query
heads, and a key/value head is kept exactly when one of its query heads is. A layer then has repeat factor ``r``, which
the stock ``repeat_kv`` computes, and zeroing the pruned query heads' outputs (:func:`masked_forward`) is exact.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from trustrec._safeio import load_json_object
from trustrec.errors import ConfigError, DataError

__all__ = [
    "PruningPlan",
    "apply_plan",
    "drop_layers",
    "load_pruned",
    "masked_forward",
    "prune_hidden",
    "save_pruned",
]

_PLAN_KEY = "trustrec_pruning"
_SIZES = ("num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")
_PER_LAYER = ("query_heads", "kv_heads", "channels")
_WEIGHTS = "model.safetensors"


def _torch() -> Any:
    return importlib.import_module("torch")  # on use: importing trustrec.mitigate.training stays light


def _original_sizes(config: Any) -> dict[str, Any]:
    """The unpruned sizes: from the plan a pruned model's config records, else from the config."""
    recorded = getattr(config, _PLAN_KEY, None)
    if isinstance(recorded, Mapping):
        return {k: int(recorded[k]) for k in _SIZES}
    try:
        heads, kv = int(config.num_attention_heads), getattr(config, "num_key_value_heads", None)
        head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
        sizes = (config.num_hidden_layers, heads, kv or heads, head_dim, config.intermediate_size)
    except AttributeError as exc:
        raise ConfigError(f"pruning: the config is not a Llama-style decoder config ({exc})") from exc
    return dict(zip(_SIZES, map(int, sizes)))


def _indices(value: Any, what: str, n: int) -> tuple[int, ...]:
    items = tuple(sorted(int(i) for i in value))
    if len(set(items)) != len(items):
        raise ConfigError(f"PruningPlan: {what} lists an index twice: {list(items)}")
    if any(not 0 <= i < n for i in items):
        raise ConfigError(f"PruningPlan: {what} has indices out of range 0..{n - 1}: {list(items)}")
    return items


@dataclass(frozen=True)
class PruningPlan:
    """What a pruned Llama-style model keeps, in original indices (sorted tuples); plain data, GQA rule enforced.

    Parameters
    ----------
    num_layers, num_heads, num_kv_heads, head_dim, intermediate_size : int
        The unpruned architecture: layers, query and key/value heads, head size, MLP width.
    kept_layers : tuple of int
        The decoder layers that stay (at least one).
    query_heads, kv_heads, channels : tuple of tuple of int
        Per original layer, the kept query heads, key/value heads and MLP channels.
    hidden_size : int or None
        The unpruned hidden size; needed with ``hidden`` (default None).
    hidden : tuple of int or None
        The kept hidden (residual-stream) dimensions (default None: all).

    Raises
    ------
    ConfigError
        When an index is out of range or repeated, a layer keeps no head or channel, GQA breaks, or no layer stays.
    """

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    kept_layers: tuple[int, ...]
    query_heads: tuple[tuple[int, ...], ...]
    kv_heads: tuple[tuple[int, ...], ...]
    channels: tuple[tuple[int, ...], ...]
    hidden_size: int | None = None
    hidden: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in _SIZES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"PruningPlan: {name} must be a positive integer; got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"PruningPlan: num_heads={self.num_heads} is not a multiple of num_kv_heads")
        object.__setattr__(self, "kept_layers", _indices(self.kept_layers, "kept_layers", self.num_layers))
        if not self.kept_layers:
            raise ConfigError("PruningPlan: kept_layers is empty; a plan must keep at least one layer")
        for name, n in zip(_PER_LAYER, (self.num_heads, self.num_kv_heads, self.intermediate_size)):
            entries = tuple(_indices(v, f"{name}[{i}]", n) for i, v in enumerate(getattr(self, name)))
            if len(entries) != self.num_layers:
                raise ConfigError(f"PruningPlan: {name} has {len(entries)} entries; expected {self.num_layers}")
            object.__setattr__(self, name, entries)
        group = self.num_heads // self.num_kv_heads
        for layer, (q, kv, ch) in enumerate(zip(self.query_heads, self.kv_heads, self.channels)):
            for what, kept in (("query head", q), ("MLP channel", ch)):
                if not kept:
                    raise ConfigError(f"PruningPlan: layer {layer} keeps no {what}; drop the layer from kept_layers")
            counts = {g: sum(h // group == g for h in q) for g in sorted({h // group for h in q})}
            if tuple(counts) != kv:
                raise ConfigError(f"PruningPlan: layer {layer} kv_heads {list(kv)} != query groups {list(counts)}")
            if len(set(counts.values())) > 1:
                raise ConfigError(f"PruningPlan: layer {layer} keeps uneven query heads per key/value group {counts}")
        if self.hidden_size is not None:
            if isinstance(self.hidden_size, bool) or not isinstance(self.hidden_size, (int, np.integer)):
                raise ConfigError(f"PruningPlan: hidden_size must be a positive integer; got {self.hidden_size!r}")
            object.__setattr__(self, "hidden_size", int(self.hidden_size))
            if self.hidden_size < 1:
                raise ConfigError(f"PruningPlan: hidden_size must be a positive integer; got {self.hidden_size}")
        if self.hidden is not None:
            if self.hidden_size is None:
                raise ConfigError("PruningPlan: hidden needs hidden_size, the unpruned hidden size")
            object.__setattr__(self, "hidden", _indices(self.hidden, "hidden", self.hidden_size))
            if not self.hidden:
                raise ConfigError("PruningPlan: hidden is empty; a plan must keep at least one hidden dimension")

    @classmethod
    def full(cls, config: Any) -> PruningPlan:
        """The plan keeping all of the (original) architecture ``config`` describes.

        Parameters
        ----------
        config : transformers.PretrainedConfig

        Returns
        -------
        PruningPlan

        Raises
        ------
        ConfigError
            When ``config`` is not a Llama-style config.
        """
        s = _original_sizes(config)
        n, widths = s["num_layers"], (s["num_heads"], s["num_kv_heads"], s["intermediate_size"])
        per_layer = {name: (tuple(range(w)),) * n for name, w in zip(_PER_LAYER, widths)}
        hidden = getattr(config, "hidden_size", None)  # a pruned model's config keeps the original size too
        return cls(**s, kept_layers=tuple(range(n)), **per_layer, hidden_size=None if hidden is None else int(hidden))

    @classmethod
    def of(cls, model: Any) -> PruningPlan:
        """What ``model`` keeps: the plan its config records when it was pruned here, else the full plan.

        Parameters
        ----------
        model : transformers.PreTrainedModel

        Returns
        -------
        PruningPlan

        Raises
        ------
        ConfigError, DataError
            When the config is not Llama-style; when the recorded plan is malformed.
        """
        recorded = getattr(model.config, _PLAN_KEY, None)
        return cls.from_dict(recorded) if isinstance(recorded, Mapping) else cls.full(model.config)

    def validate(self, config: Any) -> None:
        """Check that the plan fits the (original, for a pruned model's) architecture ``config`` describes.

        Parameters
        ----------
        config : transformers.PretrainedConfig

        Raises
        ------
        ConfigError
            When a size differs, naming it.
        """
        sizes = _original_sizes(config)
        wrong = [f"{k}: plan {getattr(self, k)}, model {v}" for k, v in sizes.items() if getattr(self, k) != v]
        if wrong:
            raise ConfigError(f"PruningPlan does not fit this model ({', '.join(wrong)})")

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (ints and lists), read back by :meth:`from_dict`.

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {k: getattr(self, k) for k in _SIZES}
        out["kept_layers"] = list(self.kept_layers)
        out["hidden_size"], out["hidden"] = self.hidden_size, None if self.hidden is None else list(self.hidden)
        return out | {k: [list(v) for v in getattr(self, k)] for k in _PER_LAYER}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        """A plan from :meth:`to_dict` output.

        Parameters
        ----------
        data : mapping

        Returns
        -------
        PruningPlan

        Raises
        ------
        DataError, ConfigError
            When a field is missing or not made of integers; when the plan is invalid.
        """
        fields = (*_SIZES, "kept_layers", *_PER_LAYER)
        if any(k not in data for k in fields):
            raise DataError(f"PruningPlan.from_dict: missing fields {[k for k in fields if k not in data]}")
        try:  # plans written before hidden-dimension pruning keep every hidden dimension
            return cls(**{k: data[k] for k in fields}, hidden_size=data.get("hidden_size"), hidden=data.get("hidden"))
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise DataError(f"PruningPlan.from_dict: a field has the wrong type ({exc})") from exc

    def non_embedding_parameters(self, config: Any) -> tuple[int, int]:
        """Non-embedding parameters (attention, MLP, with biases if any, norms) kept, and of the unpruned model.

        Parameters
        ----------
        config : transformers.PretrainedConfig

        Returns
        -------
        kept, full : int

        Raises
        ------
        ConfigError
            When the plan does not fit the config.
        """
        self.validate(config)
        hd = self.head_dim
        d = int(self.hidden_size or config.hidden_size)
        kept_d = d if self.hidden is None else len(self.hidden)
        attn_bias, mlp_bias = bool(getattr(config, "attention_bias", False)), bool(getattr(config, "mlp_bias", False))

        def layer(nq: int, nkv: int, ch: int, d: int) -> int:
            attention = 2 * d * hd * (nq + nkv) + attn_bias * (hd * (nq + 2 * nkv) + d)
            return attention + 3 * d * ch + mlp_bias * (2 * ch + d) + 2 * d

        full = d + self.num_layers * layer(self.num_heads, self.num_kv_heads, self.intermediate_size, d)
        sizes = [(len(self.query_heads[i]), len(self.kv_heads[i]), len(self.channels[i])) for i in self.kept_layers]
        return kept_d + sum(layer(*s, kept_d) for s in sizes), full


def _check_unpruned(model: Any, plan: PruningPlan) -> Any:
    """The decoder layers of ``model``, after checking that it is Llama-style, unpruned and fits ``plan``."""
    layers = getattr(getattr(model, "model", None), "layers", None) or []
    needed = [("self_attn", f"{n}_proj") for n in "qkvo"] + [("mlp", f"{n}_proj") for n in ("gate", "up", "down")]
    if not layers or any(not hasattr(getattr(layer, a, None), b) for layer in layers for a, b in needed):
        raise ConfigError(f"pruning: {type(model).__name__} lacks Llama's model.layers[i].self_attn/mlp projections")
    if getattr(model.config, _PLAN_KEY, None) is not None:
        raise ConfigError("pruning: this model is already pruned; apply plans and masks to the unpruned model")
    plan.validate(model.config)
    hd, attn, mlp = plan.head_dim, layers[0].self_attn, layers[0].mlp
    shapes = (len(layers), attn.q_proj.out_features, attn.k_proj.out_features, mlp.down_proj.in_features)
    expected = (plan.num_layers, plan.num_heads * hd, plan.num_kv_heads * hd, plan.intermediate_size)
    if shapes != expected:
        raise ConfigError(f"pruning: model shapes {shapes} (layers, q, k, MLP width) differ from the plan's {expected}")
    return layers


def _slice_linear(linear: Any, rows: Any = None, cols: Any = None) -> None:
    """Keep ``rows`` (outputs) and/or ``cols`` (inputs) of ``linear``, in place."""
    parameter, weight, bias = _torch().nn.Parameter, linear.weight.detach(), linear.bias
    if rows is not None:
        weight = weight[rows.to(weight.device)]
        if bias is not None:
            linear.bias = parameter(bias.detach()[rows.to(weight.device)], requires_grad=bias.requires_grad)
    if cols is not None:
        weight = weight[:, cols.to(weight.device)]
    linear.weight = parameter(weight.contiguous(), requires_grad=linear.weight.requires_grad)
    linear.out_features, linear.in_features = weight.shape


def _prune_in_place(model: Any, plan: PruningPlan) -> Any:
    torch = _torch()
    layers, config, hd = _check_unpruned(model, plan), model.config, plan.head_dim
    if getattr(config, "layer_types", None) is not None:  # Llama has none; per-layer kinds would need renumbering
        raise ConfigError("apply_plan: configs with per-layer layer_types (sliding windows ...) are not supported")
    for i in plan.kept_layers:
        attn, mlp, heads = layers[i].self_attn, layers[i].mlp, (plan.query_heads[i], plan.kv_heads[i])
        q_rows, kv_rows = (torch.tensor([h * hd + j for h in kept for j in range(hd)]) for kept in heads)
        for linear, rows in ((attn.q_proj, q_rows), (attn.k_proj, kv_rows), (attn.v_proj, kv_rows)):
            _slice_linear(linear, rows=rows)
        _slice_linear(attn.o_proj, cols=q_rows)
        # eager's repeat_kv and sdpa's GQA read this per-module repeat factor; heads are reshaped with -1
        attn.num_key_value_groups = len(heads[0]) // len(heads[1])
        channels = torch.tensor(plan.channels[i])
        _slice_linear(mlp.gate_proj, rows=channels)
        _slice_linear(mlp.up_proj, rows=channels)
        _slice_linear(mlp.down_proj, cols=channels)
        mlp.intermediate_size = len(plan.channels[i])
    config.head_dim = plan.head_dim  # pinned so nothing derives it from the (upper-bound) head count
    model = _keep_layers(model, list(plan.kept_layers), plan)
    if plan.hidden is not None:
        _slice_hidden(model, torch.tensor(plan.hidden))
    return model


def _slice_hidden(model: Any, keep: Any) -> None:
    """Keep the hidden dimensions at positions ``keep`` everywhere the residual stream is read or written, in place."""
    parameter, inner = _torch().nn.Parameter, model.model
    tied = model.lm_head.weight is inner.embed_tokens.weight
    embedding = inner.embed_tokens.weight
    inner.embed_tokens.weight = parameter(
        embedding.detach()[:, keep].contiguous(), requires_grad=embedding.requires_grad
    )
    inner.embed_tokens.embedding_dim = len(keep)
    if tied:
        model.lm_head.weight = inner.embed_tokens.weight
        model.lm_head.in_features = len(keep)
    else:
        _slice_linear(model.lm_head, cols=keep)
    norms = [inner.norm]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
            _slice_linear(linear, cols=keep)
        for linear in (attn.o_proj, mlp.down_proj):
            _slice_linear(linear, rows=keep)
        mlp.hidden_size = len(keep)
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
    for norm in norms:
        norm.weight = parameter(norm.weight.detach()[keep.to(norm.weight.device)].contiguous())
    # config.hidden_size stays the original (upper-bound) size, as head counts and MLP width do: the forward never
    # reads it, and Hugging Face configs require it to be a multiple of the head count


def _keep_layers(model: Any, positions: Sequence[int], plan: PruningPlan) -> Any:
    """Keep the decoder layers at ``positions`` of ``model`` (in place) and record ``plan`` (what is now kept)."""
    layers = model.model.layers
    model.model.layers = _torch().nn.ModuleList([layers[p] for p in positions])
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():  # the KV cache is indexed by layer_idx: the kept layers are 0..n-1
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    # the forward runs layers[:num_hidden_layers] and the cache makes a slot per layer; head counts and MLP width stay
    # the original (upper-bound) sizes as layers differ
    model.config.num_hidden_layers = len(positions)
    setattr(model.config, _PLAN_KEY, plan.to_dict())
    return model


def apply_plan(model: Any, plan: PruningPlan) -> Any:
    """A pruned deep copy of the unpruned ``model`` (left untouched): sliced projections, removed layers dropped,
    per-layer ``layer_idx`` and ``num_key_value_groups``, ``config.num_hidden_layers`` the kept count, ``head_dim`` set
    (head counts, ``intermediate_size``: original sizes, as layers differ), the plan as ``config.trustrec_pruning``.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
    plan : PruningPlan

    Returns
    -------
    transformers.PreTrainedModel

    Raises
    ------
    ConfigError
        When the model is not Llama-style, is already pruned or does not fit the plan.
    """
    _check_unpruned(model, plan)
    return _prune_in_place(copy.deepcopy(model), plan)


def drop_layers(model: Any, layers: Sequence[int]) -> Any:
    """A copy of ``model`` (pruned here or unpruned; left untouched) without the decoder ``layers``.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
    layers : sequence of int
        Original layer indices, among the layers ``model`` keeps (:meth:`PruningPlan.of`).

    Returns
    -------
    transformers.PreTrainedModel
        The copy; its config records the plan with the layers gone.

    Raises
    ------
    ConfigError
        When a layer is not kept by ``model`` or no layer would stay.
    """
    plan, drop = PruningPlan.of(model), {int(i) for i in layers}
    if drop - set(plan.kept_layers):
        raise ConfigError(f"drop_layers: layers {sorted(drop - set(plan.kept_layers))} are not kept by this model")
    kept = tuple(i for i in plan.kept_layers if i not in drop)
    if not kept:
        raise ConfigError("drop_layers: every kept layer would go; one must stay")
    if getattr(model.config, _PLAN_KEY, None) is None:
        return apply_plan(model, replace(plan, kept_layers=kept))
    positions = [p for p, i in enumerate(plan.kept_layers) if i in kept]
    return _keep_layers(copy.deepcopy(model), positions, replace(plan, kept_layers=kept))


def prune_hidden(model: Any, hidden: Sequence[int]) -> Any:
    """A copy of ``model`` (pruned here or unpruned; left untouched) keeping only the ``hidden`` dimensions.

    Every read and write of the residual stream is sliced: the embedding (and a tied ``lm_head``), the attention and MLP
    input and output projections, and the RMSNorm weights; RMSNorm then normalises over the kept dimensions, so the
    pruned model does not compute what the unpruned one does (PruneRec recovers by distillation).

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
    hidden : sequence of int
        Original hidden-dimension indices to keep, among the ones ``model`` keeps (:meth:`PruningPlan.of`).

    Returns
    -------
    transformers.PreTrainedModel
        The copy; its config records the plan with the dimensions gone.

    Raises
    ------
    ConfigError
        When a dimension is not kept by ``model`` or none would stay.
    """
    plan = PruningPlan.of(model)
    current = (
        plan.hidden if plan.hidden is not None else tuple(range(int(plan.hidden_size or model.config.hidden_size)))
    )
    keep = sorted({int(i) for i in hidden})
    if set(keep) - set(current):
        raise ConfigError(f"prune_hidden: dimensions {sorted(set(keep) - set(current))[:5]} are not kept by this model")
    if not keep:
        raise ConfigError("prune_hidden: no hidden dimension would stay; keep at least one")
    new_plan = replace(plan, hidden_size=plan.hidden_size or len(current), hidden=tuple(keep))
    if getattr(model.config, _PLAN_KEY, None) is None:
        return apply_plan(model, new_plan)
    out = copy.deepcopy(model)
    position = {d: p for p, d in enumerate(current)}
    _slice_hidden(out, _torch().tensor([position[d] for d in keep]))
    setattr(out.config, _PLAN_KEY, new_plan.to_dict())
    return out


def _skip_layer(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    # the computed output is dropped: the residual stream passes the layer unchanged
    hidden = args[0] if args else kwargs["hidden_states"]
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextlib.contextmanager
def _hooks(pre: Sequence[tuple[Any, Any]], post: Sequence[tuple[Any, Any]] = ()) -> Iterator[None]:
    """Forward pre-hooks and (keyword-receiving) forward hooks, ``(module, hook)``, removed on exit."""
    handles = []
    try:
        handles += [module.register_forward_pre_hook(hook) for module, hook in pre]
        handles += [module.register_forward_hook(hook, with_kwargs=True) for module, hook in post]
        yield
    finally:
        for handle in handles:
            handle.remove()


def _mask_hooks(model: Any, head_dim: int, heads: Mapping[int, Any], channels: Mapping[int, Any]) -> list[Any]:
    """Pre-hooks scaling ``o_proj`` inputs by head keep-masks (``(H,)`` or ``(R, H)``), ``down_proj``'s by channels'."""
    layers, param = model.model.layers, next(model.parameters())
    targets = [(layers[i].self_attn.o_proj, m.repeat_interleave(head_dim, dim=-1)) for i, m in heads.items()]
    targets += [(layers[i].mlp.down_proj, m) for i, m in channels.items()]
    out = []
    for module, mask in targets:
        mask = mask.to(param.device, param.dtype)
        mask = mask[:, None, :] if mask.dim() == 2 else mask  # one mask per row: broadcast over positions
        out.append((module, lambda mod, args, m=mask: (args[0] * m, *args[1:])))
    return out


@contextlib.contextmanager
def masked_forward(model: Any, plan: PruningPlan) -> Iterator[Any]:
    """Within the block, the unpruned ``model`` computes what ``apply_plan(model, plan)`` computes.

    Pre-hooks zero the ``o_proj`` inputs of pruned query heads (head ``h``: columns ``h*head_dim:(h+1)*head_dim``) and
    ``down_proj``'s of pruned channels; removed layers return their input. Hooks go on exit, also after an error.

    Parameters
    ----------
    model : transformers.LlamaForCausalLM
    plan : PruningPlan

    Yields
    ------
    transformers.PreTrainedModel
        ``model`` itself, masked.

    Raises
    ------
    ConfigError
        When the model is not Llama-style, is already pruned or does not fit the plan.
    """
    if plan.hidden is not None and len(plan.hidden) < (plan.hidden_size or 0):
        raise ConfigError(
            "masked_forward: the plan prunes hidden dimensions, which have no exact masked form (RMSNorm normalises "
            "over the kept dimensions); use apply_plan"
        )
    torch, layers, kept, width = _torch(), _check_unpruned(model, plan), plan.kept_layers, plan.intermediate_size
    heads = {i: torch.isin(torch.arange(plan.num_heads), torch.tensor(plan.query_heads[i])) for i in kept}
    channels = {i: torch.isin(torch.arange(width), torch.tensor(plan.channels[i])) for i in kept}
    skip = [(layers[i], _skip_layer) for i in range(plan.num_layers) if i not in kept]
    with _hooks(_mask_hooks(model, plan.head_dim, heads, channels), skip):
        yield model


def save_pruned(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Write ``model.safetensors`` (less a tied ``lm_head``), ``config.json`` with the plan, and the tokenizer.

    Parameters
    ----------
    model, tokenizer : transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase or None
        A model from :func:`apply_plan`; its tokenizer, saved with ``save_pretrained`` unless None.
    folder : str or Path
        A new or empty folder.

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        When the model records no plan, or ``folder`` is a file or already holds files.
    """
    from safetensors.torch import save_file

    if getattr(model.config, _PLAN_KEY, None) is None:
        raise ConfigError("save_pruned: the model records no pruning plan; prune it with apply_plan first")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"save_pruned: {folder} is not an empty folder; give a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # it aliases the embedding, which safetensors refuses
    save_file(state, str(folder / _WEIGHTS), metadata={"format": "pt"})
    model.config.to_json_file(str(folder / "config.json"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return folder


def load_pruned(folder: str | Path) -> tuple[Any, Any]:
    """Read a :func:`save_pruned` folder: the original architecture is built, cut to the plan, then loaded strictly.

    Parameters
    ----------
    folder : str or Path

    Returns
    -------
    model, tokenizer : transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase or None
        The pruned model in eval mode; the tokenizer, None when the folder has none.

    Raises
    ------
    DataError
        When ``config.json`` or ``model.safetensors`` is missing or malformed, naming the file.
    """
    import transformers  # the llm extra
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path, weights_path = Path(folder) / "config.json", Path(folder) / _WEIGHTS
    raw = load_json_object(config_path, what="a pruned model's config")
    try:
        plan = PruningPlan.from_dict(raw[_PLAN_KEY])
        config = transformers.AutoConfig.from_pretrained(str(folder))
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise DataError(f"{config_path}: not a config written by save_pruned ({exc!r})") from exc
    delattr(config, _PLAN_KEY)
    config.num_hidden_layers, config.num_attention_heads = plan.num_layers, plan.num_heads
    config.num_key_value_heads, config.intermediate_size = plan.num_kv_heads, plan.intermediate_size
    config.head_dim = plan.head_dim
    try:
        state = load_file(str(weights_path))
    except (OSError, ValueError, SafetensorError) as exc:
        raise DataError(f"{weights_path}: cannot read the weights ({exc})") from exc
    model = transformers.AutoModelForCausalLM.from_config(config)
    floats = [t.dtype for t in state.values() if t.is_floating_point()]
    model = _prune_in_place(model.to(floats[0]) if floats else model, plan)
    if getattr(config, "tie_word_embeddings", False) and "model.embed_tokens.weight" in state:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"{weights_path}: the weights do not match the recorded plan ({exc})") from exc
    has_tokenizer = any((Path(folder) / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json"))
    return model.eval(), transformers.AutoTokenizer.from_pretrained(str(folder)) if has_tokenizer else None
