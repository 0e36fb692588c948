"""Activation steering of a local LLM: NullSteer (null-space constrained) and plain steering.

Both add a vector to the residual stream (the output of chosen decoder layers) at every token
position, through forward hooks that are installed for the duration of a call and removed after
it, so the model's weights are never changed.

Plain steering (ActAdd / contrastive activation addition)
    ``h <- h + s * v``: the same vector ``v`` for every input, the mean of the fitted target
    directions (below). It moves ordinary inputs as much as the targeted ones.

NullSteer (null-space constrained steering; the construction of its sibling AlphaSteer)
    From the activations ``H_b`` of ordinary ("benign") inputs at a layer, ``P`` projects onto the
    null space of ``H_b^T H_b``: the eigenvectors whose eigenvalue is at most ``null_tol`` times
    the largest (or the ``null_rank`` smallest). With ``X = H_t P`` the targeted activations
    projected by ``P`` and ``R`` the rows of target directions, ``D = argmin ||X D - R||^2 +
    lambda ||D||^2 = (X^T X + lambda I)^-1 X^T R`` and the steering matrix is ``S = P D``; at
    inference ``h <- h + s * (h S)``. For a benign ``h``, ``h P`` is (near) zero, so ``h S`` is too:
    benign activations are left (near) unchanged by construction, while targeted ones move along
    their target rows. ``lambda = ridge * trace(X^T X) / d`` (the ridge is relative to the scale of
    the projected activations, so one setting works across layers).

Target directions
    With ``steer_to`` prompts paired one to one with the ``steer_from`` prompts, row ``i``'s
    target is ``h(steer_to[i]) - h(steer_from[i])`` (e.g. a query stating a user attribute moved
    to the same query without it). Without, every row's target is the difference of means
    ``mean h(steer_from) - mean h(benign)`` (the difference-in-means direction of Arditi et al.
    2024: adding the harmful-minus-benign direction of a chat model's last prompt token makes it
    refuse). Targets are read at each prompt's last token; benign activations at the last token
    (``benign_positions="last"``) or at every token (``"all"``, the default: the steering acts on
    every position, so every position of an ordinary input should be protected).

Activations are collected with the same hooks' modules (the decoder layers' outputs), so what
is fitted is what is steered. Layers are fitted independently on unsteered activations.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trustrec.errors import ConfigError, DataError

__all__ = [
    "ActivationSteering",
    "collect_activations",
    "decoder_layers",
    "fit_null_space_steering",
    "fit_steering",
    "null_space_projector",
    "steered",
]

SteeringMethod = Literal["null_space", "plain"]
_MODEL_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()
STEERING_METHODS: tuple[str, ...] = ("null_space", "plain")


def decoder_layers(model: Any) -> Any:
    """The decoder layers (a ``ModuleList``) of a transformers causal LM.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A decoder-only model (Llama, Mistral, Qwen, GPT-2 style).

    Returns
    -------
    torch.nn.ModuleList
        Its blocks, in order.

    Raises
    ------
    ConfigError
        When no list of decoder blocks is found.
    """
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and len(obj):
            return obj
    raise ConfigError(
        f"steering: cannot find the decoder layers of {type(model).__name__} (looked for "
        "model.layers, transformer.h, gpt_neox.layers, model.decoder.layers)"
    )


def _check_layers(model: Any, layers: Sequence[int]) -> tuple[int, ...]:
    n = len(decoder_layers(model))
    layers = tuple(int(i) for i in layers)
    if not layers:
        raise ConfigError("steering: give at least one layer")
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise ConfigError(f"steering: layer indices {bad} are out of range; the model has {n} layers (0..{n - 1})")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"steering: layers {list(layers)} repeat an index")
    return layers


def _hidden_of(output):
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass(frozen=True, eq=False)
class ActivationSteering:
    """A fitted steering: per layer a ``(d, d)`` matrix (``null_space``: ``h + s * h S``) or a
    ``(d,)`` vector (``plain``: ``h + s * v``), applied with :func:`steered`.

    Parameters
    ----------
    method : {"null_space", "plain"}
        The construction (module docstring).
    layers : tuple of int
        Decoder layer indices steered (their outputs).
    weights : numpy.ndarray
        ``(n_layers, d, d)`` steering matrices or ``(n_layers, d)`` vectors, float32.
    strength : float
        ``s``, the steering strength (0: no change).
    info : dict
        What the fit measured, per layer (null-space dimension, rows used, fit residual, the
        relative change of the benign fitting activations).

    Raises
    ------
    ConfigError
        When the method, shapes or strength are invalid.
    """

    method: SteeringMethod
    layers: tuple[int, ...]
    weights: np.ndarray
    strength: float = 1.0
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in STEERING_METHODS:
            raise ConfigError(f"ActivationSteering: method must be one of {STEERING_METHODS}, got {self.method!r}")
        w = np.asarray(self.weights, np.float32)
        want = 3 if self.method == "null_space" else 2
        if w.ndim != want or w.shape[0] != len(self.layers) or (want == 3 and w.shape[1] != w.shape[2]):
            raise ConfigError(
                f"ActivationSteering: {self.method} weights must be {'(n_layers, d, d)' if want == 3 else '(n_layers, d)'}"
                f" with n_layers = {len(self.layers)}; got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ConfigError("ActivationSteering: the weights contain NaN or infinite values")
        if not math.isfinite(self.strength):
            raise ConfigError(f"ActivationSteering: strength must be finite, got {self.strength}")
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    @property
    def hidden_size(self) -> int:
        return int(self.weights.shape[-1])

    def with_strength(self, strength: float) -> ActivationSteering:
        """The same steering at another strength."""
        return replace(self, strength=float(strength))

    def delta(self, hidden: Any, weight: Any) -> Any:
        """The change added to ``hidden`` (a ``(..., d)`` torch tensor) by one layer's ``weight``
        (its matrix or vector as a torch tensor on ``hidden``'s device and dtype)."""
        if self.method == "plain":
            return self.strength * weight
        return self.strength * (hidden @ weight)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``steering.safetensors`` and ``steering.json`` into ``folder`` (created if
        needed; refuses to overwrite existing files)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors, meta = folder / "steering.safetensors", folder / "steering.json"
        existing = [str(p) for p in (tensors, meta) if p.exists()]
        if existing:
            raise ConfigError(f"ActivationSteering.save: {existing} already exist; choose an empty folder")
        save_file({"weights": np.ascontiguousarray(self.weights)}, str(tensors))
        meta.write_text(
            json.dumps(
                {
                    "method": self.method,
                    "layers": list(self.layers),
                    "strength": self.strength,
                    "info": dict(self.info),
                },
                indent=2,
                default=float,
            )
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ActivationSteering:
        """Read a steering written by :meth:`save`.

        Raises
        ------
        DataError
            When a file is missing or malformed.
        """
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / "steering.json").read_text())
            weights = load_file(str(folder / "steering.safetensors"))["weights"]
            return cls(meta["method"], tuple(meta["layers"]), weights, float(meta["strength"]), meta.get("info", {}))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"ActivationSteering.load: {folder} is not a saved steering ({err})") from err


@contextlib.contextmanager
def steered(model: Any, steering: ActivationSteering | None) -> Iterator[Any]:
    """Install ``steering``'s forward hooks on ``model`` for the ``with`` block; they are removed on
    exit, even after an error, so the model answers exactly as before afterwards. ``None``: no
    steering (the block runs on the model as it is). The hooks act on every call of the model
    while installed, so steered blocks on one model are serialised across threads (a lock per
    model); a thread calling the same model unsteered meanwhile would be steered too.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The local model steered.
    steering : ActivationSteering or None
        The steering; None or strength 0: none. Nesting the same steering installs it once.

    Yields
    ------
    transformers.PreTrainedModel
        ``model``, steered inside the block.

    Raises
    ------
    ConfigError
        When a layer is out of range or the hidden size differs from the model's.
    """
    if steering is None or steering.strength == 0:
        yield model
        return
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.setdefault(model, threading.RLock())
    with lock, _installed(model, steering):  # hooks are global to the model: one steered block at a time
        yield model


@contextlib.contextmanager
def _installed(model: Any, steering: ActivationSteering) -> Iterator[Any]:
    active = getattr(model, "_trustrec_steering", None)
    if active is steering:
        yield model  # already installed by an enclosing block of this thread (never twice)
        return
    if active is not None:
        raise ConfigError("steering: another steering is already installed on this model; nest no two steerings")
    layers = decoder_layers(model)
    _check_layers(model, steering.layers)
    d = int(getattr(model.config, "hidden_size", steering.hidden_size))
    if d != steering.hidden_size:
        raise ConfigError(f"steering: fitted for hidden size {steering.hidden_size}, the model has {d}")

    import torch

    parameter = next(model.parameters())

    def hook_for(position: int):
        weight = torch.tensor(steering.weights[position], device=parameter.device, dtype=parameter.dtype)

        def hook(_module, _inputs, output):
            hidden = _hidden_of(output)
            return _with_hidden(output, hidden + steering.delta(hidden, weight.to(hidden.dtype)))

        return hook

    handles = [layers[i].register_forward_hook(hook_for(p)) for p, i in enumerate(steering.layers)]
    model._trustrec_steering = steering
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        del model._trustrec_steering


def collect_activations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    positions: Literal["last", "all"] = "last",
    batch_size: int = 16,
    max_length: int | None = None,
    steering: ActivationSteering | None = None,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Outputs of decoder ``layers`` for each prompt: at its last token (``(n_prompts, d)``) or at
    every token (``(total_tokens, d)``), float32, with ``steering`` applied if given.

    Prompts are tokenized without special tokens (a chat template's text already has them) and
    right-padded; pad positions are never read. A prompt longer than ``max_length`` keeps its
    last ``max_length`` tokens.

    Parameters
    ----------
    model, tokenizer
        A local transformers causal LM and its tokenizer.
    prompts : sequence of str
        The prompts (non-empty strings).
    layers : sequence of int
        Decoder layers read (their outputs).
    positions : {"last", "all"}
        The last token of each prompt, or every token.
    batch_size : int
        Prompts per forward pass.
    max_length : int or None
        Tokens kept per prompt (the last ones); None: the model's context length.
    steering : ActivationSteering or None
        A steering active while reading (None: the model as it is).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict of int to numpy.ndarray
        Per layer, the activations in prompt order (``"last"``) or prompt by prompt, token by
        token (``"all"``).

    Raises
    ------
    DataError
        When ``prompts`` is empty or holds an empty or non-string prompt.
    ConfigError
        When a layer is out of range or ``positions`` is unknown.
    """
    import torch
    from tqdm.auto import tqdm

    if positions not in ("last", "all"):
        raise ConfigError(f"collect_activations: positions must be 'last' or 'all', got {positions!r}")
    layers = _check_layers(model, layers)
    blocks = decoder_layers(model)
    captured: dict[int, Any] = {}

    def grab(layer: int):
        def hook(_module, _inputs, output):
            captured[layer] = _hidden_of(output)

        return hook

    out: dict[int, list[np.ndarray]] = {i: [] for i in layers}
    order: list[np.ndarray] = []
    batches = _prompt_batches(model, tokenizer, prompts, batch_size, max_length=max_length, owner="collect_activations")
    with steered(model, steering), torch.inference_mode():  # steering hooks first: what is read is steered
        handles = [blocks[i].register_forward_hook(grab(i)) for i in layers]
        try:
            for rows, ids, mask in tqdm(batches, desc="activations", disable=not progress, leave=False):
                order.append(rows)
                model(input_ids=ids, attention_mask=mask, use_cache=False)
                lengths = mask.sum(1).cpu()
                for i in layers:
                    h = captured[i].float().cpu()
                    if positions == "last":
                        out[i].append(h[torch.arange(len(rows)), lengths - 1].numpy())
                    else:  # one block per prompt, put back in prompt order below
                        out[i].extend(h[j, : int(lengths[j])].numpy() for j in range(len(rows)))
        finally:
            for handle in handles:
                handle.remove()
    flat = np.concatenate(order)
    back = np.empty(len(flat), np.int64)
    back[flat] = np.arange(len(flat))
    if positions == "all":
        return {i: np.concatenate([v[b] for b in back]) for i, v in out.items()}
    return {i: np.concatenate(v)[back] for i, v in out.items()}


def _prompt_batches(
    model: Any, tokenizer: Any, prompts: Sequence[str], batch_size: int, *, max_length: int | None, owner: str
) -> list[tuple[np.ndarray, Any, Any]]:
    """``(rows, ids, mask)`` right-padded batches of ``prompts`` on the model's device, shortest
    first (little padding per batch); ``rows``: the prompts' positions. Prompts are tokenized
    without special tokens (a chat template's text already has them); one longer than
    ``max_length`` (default: the model's context) keeps its last tokens."""
    import torch

    if isinstance(prompts, str) or not len(prompts):
        raise DataError(f"{owner}: no prompts")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p]
    if bad:
        raise DataError(f"{owner}: prompts {bad[:5]} are empty or not strings")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    limit = max_length or int(getattr(model.config, "max_position_embeddings", 2048))
    encoded = [ids[-limit:] for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise DataError(f"{owner}: prompts {empty[:5]} tokenize to nothing")
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = max(len(encoded[r]) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : len(encoded[r])] = torch.tensor(encoded[r])
            mask[j, : len(encoded[r])] = 1
        batches.append((rows, ids.to(device), mask.to(device)))
    return batches


def null_space_projector(
    benign: np.ndarray, *, null_tol: float = 1e-2, null_rank: int | None = None
) -> tuple[np.ndarray, int]:
    """The projector onto the null space of ``benign^T benign`` and its dimension: the
    eigenvectors whose eigenvalue is at most ``null_tol`` times the largest, or the
    ``null_rank`` smallest when given.

    Parameters
    ----------
    benign : numpy.ndarray
        ``(n, d)`` activations of ordinary inputs; ``n >= d`` (fewer rows leave a null space that
        is an artefact of the sample, not of the inputs).
    null_tol : float
        Relative eigenvalue threshold, in (0, 1).
    null_rank : int or None
        Dimension of the null space kept, in [1, d); overrides ``null_tol``.

    Returns
    -------
    tuple of (numpy.ndarray, int)
        The ``(d, d)`` projector (float64) and the null space's dimension.

    Raises
    ------
    DataError
        When the activations are not a finite 2-D array with at least ``d`` rows.
    ConfigError
        When the settings are out of range or the null space comes out empty or total.
    """
    h = np.asarray(benign, np.float64)
    if h.ndim != 2 or not np.isfinite(h).all():
        raise DataError(f"null_space_projector: benign activations must be a finite (n, d) array; got shape {h.shape}")
    n, d = h.shape
    if n < d:
        raise DataError(
            f"null_space_projector: {n} benign activation rows for hidden size {d}; at least {d} are needed to "
            "estimate the benign subspace (use more prompts, or every token position)"
        )
    if not 0 < null_tol < 1:
        raise ConfigError(f"null_space_projector: null_tol must be in (0, 1), got {null_tol}")
    values, vectors = np.linalg.eigh(h.T @ h)  # ascending
    if null_rank is not None:
        if not 1 <= null_rank < d:
            raise ConfigError(f"null_space_projector: null_rank must be in [1, {d}), got {null_rank}")
        dim = int(null_rank)
    else:
        dim = int((values <= null_tol * values[-1]).sum())
        if dim == 0:
            raise ConfigError(
                f"null_space_projector: no eigenvalue of the benign covariance is below {null_tol} x the largest; "
                "raise null_tol or give null_rank"
            )
        if dim == d:
            raise ConfigError("null_space_projector: the benign activations are all zero; nothing to protect")
    basis = vectors[:, :dim]
    return basis @ basis.T, dim


def fit_null_space_steering(
    benign: np.ndarray,
    target: np.ndarray,
    directions: np.ndarray,
    *,
    ridge: float = 1e-2,
    null_tol: float = 1e-2,
    null_rank: int | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """``S = P D`` with ``D = (X^T X + lambda I)^-1 X^T R``, ``X = target P`` (module docstring).

    Parameters
    ----------
    benign : numpy.ndarray
        ``(n_b, d)`` activations to leave unchanged.
    target : numpy.ndarray
        ``(n_t, d)`` activations to move.
    directions : numpy.ndarray
        ``(n_t, d)`` target rows, or ``(d,)`` (the same for every row).
    ridge : float
        Relative ridge (``lambda = ridge * trace(X^T X) / d``), > 0.
    null_tol, null_rank
        As :func:`null_space_projector`.

    Returns
    -------
    tuple of (numpy.ndarray, dict)
        ``S`` (``(d, d)``, float64) and fit figures: ``null_dim``, ``fit_r2`` (share of the
        targets' squared norm reproduced by ``target S``), ``benign_change`` (median of
        ``||h S|| / ||h||`` over the benign rows).

    Raises
    ------
    DataError
        When shapes disagree or values are not finite.
    ConfigError
        When ``ridge`` is not positive.
    """
    t = np.asarray(target, np.float64)
    r = np.asarray(directions, np.float64)
    if t.ndim != 2 or not np.isfinite(t).all() or len(t) < 2:
        raise DataError(
            f"fit_null_space_steering: target activations must be a finite (n >= 2, d) array; got {t.shape}"
        )
    if r.ndim == 1:
        r = np.broadcast_to(r, t.shape)
    if r.shape != t.shape or not np.isfinite(r).all():
        raise DataError(f"fit_null_space_steering: directions {r.shape} must match the targets {t.shape} and be finite")
    if np.shape(benign)[-1] != t.shape[1]:
        raise DataError(f"fit_null_space_steering: benign hidden size {np.shape(benign)[-1]} != target's {t.shape[1]}")
    if not ridge > 0:
        raise ConfigError(f"fit_null_space_steering: ridge must be > 0, got {ridge}")
    projector, dim = null_space_projector(benign, null_tol=null_tol, null_rank=null_rank)
    x = t @ projector
    gram = x.T @ x
    lam = ridge * max(np.trace(gram), np.finfo(float).tiny) / t.shape[1]
    solved = np.linalg.solve(gram + lam * np.eye(t.shape[1]), x.T @ r)
    matrix = projector @ solved
    fitted = t @ matrix
    total = float((r**2).sum())
    b = np.asarray(benign, np.float64)
    change = np.linalg.norm(b @ matrix, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    info = {
        "null_dim": dim,
        "fit_r2": 1.0 - float(((fitted - r) ** 2).sum()) / total if total > 0 else float("nan"),
        "benign_change": float(np.median(change)),
    }
    return matrix, info


def fit_steering(
    model: Any,
    tokenizer: Any,
    *,
    benign: Sequence[str],
    steer_from: Sequence[str],
    steer_to: Sequence[str] | None = None,
    contrast: tuple[Sequence[str], Sequence[str]] | None = None,
    layers: Sequence[int],
    method: SteeringMethod = "null_space",
    strength: float = 1.0,
    ridge: float = 1e-2,
    null_tol: float = 1e-2,
    null_rank: int | None = None,
    benign_positions: Literal["last", "all"] = "all",
    batch_size: int = 16,
    progress: bool = False,
) -> ActivationSteering:
    """Fit a steering from prompts (module docstring).

    Parameters
    ----------
    model, tokenizer
        A local transformers causal LM and its tokenizer.
    benign : sequence of str
        Ordinary prompts, whose activations NullSteer leaves unchanged (plain steering uses them
        only for the difference-of-means direction).
    steer_from : sequence of str
        Prompts whose activations are moved (at least 2).
    steer_to : sequence of str or None
        Paired prompts (same length as ``steer_from``) giving each row's target; None: the
        difference of means ``mean(steer_from) - mean(benign)``, unless ``contrast`` is given.
    contrast : pair of sequences of str or None
        ``(away, toward)``: every row's target is ``mean h(toward) - mean h(away)`` at the last
        token (contrastive activation addition, Rimsky et al. 2024: the same request followed by
        a compliant and by a refusing reply opening). Not together with ``steer_to``.
    layers : sequence of int
        Decoder layers steered.
    method : {"null_space", "plain"}
        NullSteer or plain steering.
    strength : float
        Steering strength ``s``.
    ridge, null_tol, null_rank
        NullSteer's settings (:func:`fit_null_space_steering`).
    benign_positions : {"all", "last"}
        Benign activations at every token or at the last token only.
    batch_size : int
        Prompts per forward pass.
    progress : bool
        Show progress bars.

    Returns
    -------
    ActivationSteering

    Raises
    ------
    ConfigError
        For an unknown method or bad layers.
    DataError
        For too few prompts, unpaired ``steer_to``, or too few benign rows for the hidden size.
    """
    if method not in STEERING_METHODS:
        raise ConfigError(f"fit_steering: method must be one of {STEERING_METHODS}, got {method!r}")
    if len(steer_from) < 2:
        raise DataError(f"fit_steering: at least 2 steer_from prompts are needed, got {len(steer_from)}")
    if steer_to is not None and len(steer_to) != len(steer_from):
        raise DataError(
            f"fit_steering: steer_to pairs one prompt with each steer_from prompt; got {len(steer_to)} for "
            f"{len(steer_from)}"
        )
    if contrast is not None and (steer_to is not None or len(contrast) != 2 or not all(len(c) for c in contrast)):
        raise DataError("fit_steering: contrast is a pair (away, toward) of non-empty prompt lists, not with steer_to")
    layers = _check_layers(model, layers)
    kw: dict[str, Any] = {"batch_size": batch_size, "progress": progress}
    source = collect_activations(model, tokenizer, steer_from, layers, **kw)
    paired = collect_activations(model, tokenizer, steer_to, layers, **kw) if steer_to is not None else None
    contrasted = None
    if contrast is not None:
        away, toward = (collect_activations(model, tokenizer, c, layers, **kw) for c in contrast)
        contrasted = {i: toward[i].mean(0) - away[i].mean(0) for i in layers}
    benign_last = None
    if (paired is None and contrasted is None) or (method == "null_space" and benign_positions == "last"):
        benign_last = collect_activations(model, tokenizer, benign, layers, **kw)
    benign_rows = None
    if method == "null_space":
        benign_rows = (
            benign_last
            if benign_positions == "last"
            else collect_activations(model, tokenizer, benign, layers, positions="all", **kw)
        )
    target = "paired" if paired is not None else "contrast" if contrasted is not None else "difference_of_means"
    weights, info = [], {"n_benign_prompts": len(benign), "n_steer_from": len(steer_from), "target": target}
    for i in layers:
        if paired is not None:
            directions = paired[i] - source[i]
        elif contrasted is not None:
            directions = np.broadcast_to(contrasted[i], source[i].shape)
        else:
            assert benign_last is not None
            directions = np.broadcast_to(source[i].mean(0) - benign_last[i].mean(0), source[i].shape)
        if method == "plain":
            weights.append(directions.mean(0))
            info[f"layer_{i}"] = {"direction_norm": float(np.linalg.norm(directions.mean(0)))}
        else:
            assert benign_rows is not None
            matrix, fit = fit_null_space_steering(
                benign_rows[i], source[i], directions, ridge=ridge, null_tol=null_tol, null_rank=null_rank
            )
            weights.append(matrix)
            info[f"layer_{i}"] = {**fit, "n_benign_rows": len(benign_rows[i])}
    return ActivationSteering(method, layers, np.stack(weights).astype(np.float32), float(strength), info)
