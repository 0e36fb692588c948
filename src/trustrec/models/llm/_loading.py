"""Loading resolved checkpoints: causal LMs (model + tokenizer) and sentence encoders."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trustrec._device import resolve_device
from trustrec.errors import ConfigError
from trustrec.models.llm._convert import require_transformers
from trustrec.models.llm._registry import ModelNotFoundError, llm_entry, llm_registry, resolve_model
from trustrec.models.llm._sources import checkpoint_problem

__all__ = ["TextEncoder", "load_causal_lm", "load_text_encoder", "resolve_checkpoint"]


def resolve_checkpoint(
    name_or_path: str | os.PathLike, *, kind: str | None = None, download: bool = True, progress: bool = True
) -> Path:
    """A registered name (resolved, fetched if needed) or a checkpoint folder, as a folder.

    Parameters
    ----------
    name_or_path : str or path-like
        A registered model name or a checkpoint folder.
    kind : {"causal-lm", "text-encoder"} or None
        Kind a registered model must be (default None: any); not checked for folders.
    download : bool
        Whether a registered model may be fetched when no local copy exists (default True).
    progress : bool
        Whether to show download and conversion progress (default True).

    Returns
    -------
    Path
        Folder holding a complete checkpoint.

    Raises
    ------
    ConfigError
        When the registered model is not of ``kind``.
    ModelNotFoundError
        When ``name_or_path`` is neither a registered name nor an existing folder, when the folder
        is not a complete checkpoint, or when the model cannot be resolved (see
        :func:`resolve_model`).
    """
    if isinstance(name_or_path, str) and name_or_path in llm_registry():
        entry = llm_entry(name_or_path)
        if kind is not None and entry.kind != kind:
            loader = "load_text_encoder" if entry.kind == "text-encoder" else "load_causal_lm"
            raise ConfigError(f"model {entry.name!r} is a {entry.kind}, not a {kind}; load it with {loader}")
        return resolve_model(name_or_path, download=download, progress=progress)
    path = Path(name_or_path).expanduser()
    if not path.exists():
        llm_entry(str(name_or_path))  # raises: unknown name, listing the registered ones
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ModelNotFoundError(f"{path} is not a model checkpoint: {problem}")
    return path


@contextlib.contextmanager
def _quiet(transformers):
    """No per-load progress bars: reading a local safetensors file takes well under a second."""
    utils_logging = transformers.utils.logging
    was_on = utils_logging.is_progress_bar_enabled()
    utils_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            utils_logging.enable_progress_bar()


def load_causal_lm(
    name_or_path: str | os.PathLike,
    *,
    dtype: str = "float32",
    device: str | None = None,
    download: bool = True,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer: ``(model, tokenizer)``, the model in eval mode.

    Parameters
    ----------
    name_or_path : str or path-like
        A registered name (``trustrec models list``) or a checkpoint folder.
    dtype : str
        Torch dtype name of the loaded weights (default ``"float32"``).
    device : str or None
        Device to move the model to (default None: where ``transformers`` loads it, the CPU).
    download : bool
        Whether a registered model may be fetched when no local copy exists (default True).
    progress : bool
        Whether to show download and conversion progress (default True).

    Returns
    -------
    model : transformers.PreTrainedModel
        The causal LM (``AutoModelForCausalLM``), in eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.

    Raises
    ------
    ConfigError
        When the registered model is a text encoder.
    ModelNotFoundError
        When the checkpoint cannot be resolved (see :func:`resolve_checkpoint`).
    """
    folder = resolve_checkpoint(name_or_path, kind="causal-lm", download=download, progress=progress)
    transformers = require_transformers()
    import torch

    with _quiet(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    model.eval()
    if device is not None:
        model.to(resolve_device(device))
    return model, tokenizer


def _pooling_from(folder: Path) -> tuple[str, int | None]:
    """Pooling and maximum sequence length from a sentence-transformers folder (mean, none)."""
    pooling, max_length = "mean", None
    pooling_config = folder / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        spec = json.loads(pooling_config.read_text())
        if spec.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not spec.get("pooling_mode_mean_tokens", True):
            raise ConfigError(f"{pooling_config}: only mean or CLS pooling is supported; got {spec}")
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_length = json.loads(bert_config.read_text()).get("max_seq_length")
    return pooling, max_length


class TextEncoder:
    """Sentence embeddings from a transformer encoder: pooled, L2-normalised, as numpy.

    Built by :func:`load_text_encoder`; ``encode(texts)`` returns a ``(len(texts), dim)`` float32
    array whose rows have unit norm (``normalize=True``).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Encoder whose output has ``last_hidden_state``.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer.
    pooling : {"mean", "cls"}
        Mean of the token states under the attention mask, or the first token's state
        (default ``"mean"``).
    max_length : int
        Longer texts are truncated to this many tokens (default 256).
    normalize : bool
        Whether to L2-normalise each embedding (default True).
    name : str
        Name shown in ``repr`` and progress bars (default empty).

    Raises
    ------
    ConfigError
        When ``pooling`` is neither ``"mean"`` nor ``"cls"``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        max_length: int = 256,
        normalize: bool = True,
        name: str = "",
    ):
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"TextEncoder: pooling must be 'mean' or 'cls'; got {pooling!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.normalize = normalize
        self.name = name

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return (
            f"TextEncoder(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r}, "
            f"max_length={self.max_length}, normalize={self.normalize})"
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` (longer ones are truncated to ``max_length`` tokens).

        Texts are batched by length (less padding) and returned in input order.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("TextEncoder.encode takes a sequence of strings; wrap one text in a list")
        texts = [str(t) for t in texts]
        if batch_size < 1:
            raise ConfigError(f"TextEncoder.encode: batch_size must be >= 1; got {batch_size}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=f"encode {self.name or 'texts'}", unit="batch", leave=False)
        with torch.inference_mode():
            for start in starts:
                idx = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[idx] = pooled.float().cpu().numpy()
        return out


def load_text_encoder(
    name_or_path: str | os.PathLike,
    *,
    device: str | None = None,
    max_length: int | None = None,
    download: bool = True,
    progress: bool = True,
) -> TextEncoder:
    """Load a sentence encoder (a registered name or a checkpoint folder) as a :class:`TextEncoder`.

    Pooling and maximum length come from a sentence-transformers folder's
    ``1_Pooling/config.json`` and ``sentence_bert_config.json`` when present (default: mean, 256).

    Parameters
    ----------
    name_or_path : str or path-like
        A registered name (``trustrec models list``) or a checkpoint folder.
    device : str or None
        Device to move the model to (default None: where ``transformers`` loads it, the CPU).
    max_length : int or None
        Maximum tokens per text (default None: the folder's ``max_seq_length``, else 256); never
        above the model's ``max_position_embeddings``.
    download : bool
        Whether a registered model may be fetched when no local copy exists (default True).
    progress : bool
        Whether to show download and conversion progress (default True).

    Returns
    -------
    TextEncoder
        The encoder, in eval mode.

    Raises
    ------
    ConfigError
        When the registered model is a causal LM, or the folder's pooling is neither mean nor CLS.
    ModelNotFoundError
        When the checkpoint cannot be resolved (see :func:`resolve_checkpoint`).
    """
    folder = resolve_checkpoint(name_or_path, kind="text-encoder", download=download, progress=progress)
    transformers = require_transformers()

    pooling, configured = _pooling_from(folder)
    with _quiet(transformers):
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModel.from_pretrained(folder)
    model.eval()
    if device is not None:
        model.to(resolve_device(device))
    limit = max_length or configured or 256
    limit = min(int(limit), int(getattr(model.config, "max_position_embeddings", limit)))
    name = str(name_or_path) if isinstance(name_or_path, str) else folder.name
    return TextEncoder(model, tokenizer, pooling=pooling, max_length=limit, name=name)
