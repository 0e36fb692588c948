"""Writing model checkpoints: GGUF -> plain safetensors, the tiny random test model, tokenizer assets.

A checkpoint is a folder that ``transformers`` loads with ``from_pretrained``: ``config.json``,
``generation_config.json``, ``model.safetensors`` (float32 unless asked otherwise, tied weights
stored once) and the tokenizer files. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from trustrec._cache import atomic_directory, atomic_write_text

__all__ = [
    "TINY_SMOLLM2_CONFIG",
    "build_tiny_random",
    "convert_gguf",
    "export_tokenizer_files",
    "require_transformers",
    "save_checkpoint",
    "tokenizer_asset",
]

LLM_EXTRA_HINT = "install the LLM extra: pip install 'trustrec[llm]'"

# Keys a GGUF load leaves in the config that a plain checkpoint must not carry.
_CONFIG_DROP = ("quantization_config", "_model_name_or_path", "_name_or_path")
# Keys transformers writes into tokenizer_config.json that describe one load, not the tokenizer.
_TOKENIZER_CONFIG_DROP = ("is_local", "local_files_only", "name_or_path", "_commit_hash")

# SmolLM2-135M's architecture (LlamaForCausalLM, GQA, tied embeddings) shrunk to a few MB:
# the vocabulary stays (the real tokenizer), every other size is small.
TINY_SMOLLM2_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}


def require_transformers(*, gguf: bool = False):
    """Import and return ``transformers``; a missing LLM dependency names the extra to install.

    Parameters
    ----------
    gguf : bool
        Whether to also require ``gguf`` and ``accelerate``, which reading GGUF weights needs
        (default False).

    Returns
    -------
    module
        The ``transformers`` module.

    Raises
    ------
    ImportError
        When torch, transformers or (with ``gguf``) a GGUF dependency is not installed.
    """
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise ImportError(f"trustrec's LLM models need transformers and torch ({exc}); {LLM_EXTRA_HINT}") from exc
    if gguf:
        for module in ("gguf", "accelerate"):
            try:
                __import__(module)
            except ImportError as exc:  # noqa: PERF203 - two imports, checked once
                raise ImportError(f"reading GGUF weights needs the {module!r} package; {LLM_EXTRA_HINT}") from exc
    return transformers


def tokenizer_asset(name: str) -> Path:
    """The folder of a tokenizer shipped with trustrec (``assets/<name>``).

    Parameters
    ----------
    name : str
        Tokenizer asset name, e.g. ``"smollm2-tokenizer"``.

    Returns
    -------
    Path
        The folder holding its ``tokenizer.json``.

    Raises
    ------
    FileNotFoundError
        When the asset is missing from the installation.
    """
    folder = Path(str(resources.files("trustrec.models.llm").joinpath("assets").joinpath(name)))
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"trustrec's tokenizer asset {name!r} is missing ({folder}); reinstall trustrec")
    return folder


def _unique_state_dict(model) -> dict:
    """The state dict with every tensor stored once (tied weights such as ``lm_head.weight``
    share the embedding's storage; transformers re-ties them on load)."""
    seen: set[tuple[int, int]] = set()
    state = {}
    for key, tensor in model.state_dict().items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if ident in seen and tensor.numel() > 0:
            continue
        seen.add(ident)
        state[key] = tensor.detach().contiguous()
    return state


def _write_checkpoint(model, tokenizer, folder: Path, *, extra_metadata: Mapping[str, str] | None = None) -> None:
    """Write model and tokenizer into ``folder`` (not atomic: callers write into a temp folder)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = _unique_state_dict(model)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt", **(extra_metadata or {})})
    os.chmod(folder / "model.safetensors", 0o644)
    config = model.config.to_diff_dict()  # what differs from the architecture's defaults
    config["model_type"] = model.config.model_type
    for key in _CONFIG_DROP:
        config.pop(key, None)
    config["architectures"] = [type(model).__name__]
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(folder)
    if tokenizer is not None:
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and (tokenizer.model_max_length is None or tokenizer.model_max_length > limit):
            tokenizer.model_max_length = int(limit)
        tokenizer.save_pretrained(folder)
        _clean_tokenizer_config(folder / "tokenizer_config.json")


def _clean_tokenizer_config(path: Path) -> None:
    if not path.exists():
        return
    config = json.loads(path.read_text())
    for key in _TOKENIZER_CONFIG_DROP:
        config.pop(key, None)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def _is_model_checkpoint(folder: Path) -> bool:
    """A folder this module wrote: weights and a config, nothing the user keeps beside them."""
    allowed = {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
    }
    names = {p.name for p in folder.iterdir()}
    return "model.safetensors" in names and names <= allowed


def save_checkpoint(model: Any, tokenizer: Any, folder: str | Path) -> Path:
    """Save a causal LM (and its tokenizer) as a plain safetensors checkpoint, atomically.

    Works for models that ``save_pretrained`` refuses (those loaded from GGUF). The folder is
    replaced in one rename once every file is written.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        The causal LM; tied weights are stored once.
    tokenizer : transformers.PreTrainedTokenizerBase or None
        Its tokenizer, saved beside the weights; None saves the model only.
    folder : str or Path
        Destination folder: new, empty, or a checkpoint trustrec wrote (replaced).

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    DataError
        When ``folder`` is a symbolic link, not a folder, or a non-empty folder trustrec did not
        write.
    """
    folder = Path(folder)
    with atomic_directory(folder, replaceable=_is_model_checkpoint) as tmp:
        _write_checkpoint(model, tokenizer, tmp)
    return folder


def convert_gguf(
    gguf_path: str | Path, folder: str | Path, *, dtype: str = "float32", progress: bool = True
) -> dict[str, Any]:
    """Dequantise a GGUF file with transformers and write a safetensors checkpoint into ``folder``.

    ``folder`` is written in place (pass a temporary folder and rename it, as the model registry
    does).

    Parameters
    ----------
    gguf_path : str or Path
        The GGUF file; its tokenizer is read from it too.
    folder : str or Path
        Destination folder (created if needed).
    dtype : str
        Torch dtype name of the dequantised weights (default ``"float32"``).
    progress : bool
        Whether to keep ``transformers``' progress bars while loading (default True).

    Returns
    -------
    dict of str to str
        Record for the cache: the GGUF file name, load and write times in seconds, the parameter
        count, the dtype and the ``transformers`` version.
    """
    transformers = require_transformers(gguf=True)
    import torch

    gguf_path = Path(gguf_path)
    utils_logging = transformers.utils.logging
    bars_were_on = utils_logging.is_progress_bar_enabled()
    if not progress:
        utils_logging.disable_progress_bar()
    try:
        started = time.perf_counter()
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=getattr(torch, dtype)
        )
        load_s = time.perf_counter() - started
    finally:
        if bars_were_on:
            utils_logging.enable_progress_bar()
    started = time.perf_counter()
    _write_checkpoint(model, tokenizer, Path(folder), extra_metadata={"converted_from": gguf_path.name})
    write_s = time.perf_counter() - started
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "gguf_file": gguf_path.name,
        "gguf_load_s": f"{load_s:.2f}",
        "checkpoint_write_s": f"{write_s:.2f}",
        "n_parameters": str(n_params),
        "dtype": dtype,
        "transformers_version": transformers.__version__,
    }


def build_tiny_random(
    folder: str | Path,
    *,
    config: Mapping[str, Any] = TINY_SMOLLM2_CONFIG,
    tokenizer: str = "smollm2-tokenizer",
    seed: int = 0,
) -> dict[str, Any]:
    """Write a randomly initialised causal LM with a shipped tokenizer into ``folder``.

    The weights depend only on ``config``, ``seed`` and the torch version: torch's global random
    state is restored afterwards.

    Parameters
    ----------
    folder : str or Path
        Destination folder (created if needed), written in place.
    config : mapping
        ``transformers`` model configuration with a ``model_type`` (default: a 2-layer SmolLM2
        architecture, hidden size 64).
    tokenizer : str
        Name of a tokenizer folder shipped in trustrec's assets (default
        ``"smollm2-tokenizer"``).
    seed : int
        Seed of the random initialisation (default 0).

    Returns
    -------
    dict of str to str
        Record for the cache: how it was built, the tokenizer, the parameter count and the
        torch and ``transformers`` versions.
    """
    transformers = require_transformers()
    import torch

    spec = dict(config)
    model_type = spec.pop("model_type")
    spec.pop("architectures", None)
    model_config = transformers.AutoConfig.for_model(model_type, **spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_asset(tokenizer))
    _write_checkpoint(model, tok, Path(folder), extra_metadata={"random_init_seed": str(seed)})
    return {
        "built": f"random init, seed {seed}",
        "tokenizer": tokenizer,
        "n_parameters": str(sum(p.numel() for p in model.parameters())),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }


def export_tokenizer_files(tokenizer, dest: str | Path) -> Path:
    """Write a tokenizer as small, load-ready files (minified ``tokenizer.json``, a clean
    ``tokenizer_config.json``, the chat template): how ``assets/smollm2-tokenizer`` was made.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerBase
        The tokenizer to export.
    dest : str or Path
        Destination folder, replaced atomically (an existing one must hold a ``tokenizer.json``);
        a ``NOTICE`` file already there is kept.

    Returns
    -------
    Path
        ``dest``.
    """
    dest = Path(dest)
    with (
        tempfile.TemporaryDirectory() as tmp,
        atomic_directory(dest, replaceable=lambda d: (d / "tokenizer.json").exists()) as out,
    ):
        tokenizer.save_pretrained(tmp)
        raw = json.loads((Path(tmp) / "tokenizer.json").read_text(encoding="utf-8"))
        (out / "tokenizer.json").write_text(
            json.dumps(raw, ensure_ascii=False, separators=(",", ":")), encoding="utf-8"
        )
        _clean_tokenizer_config(Path(tmp) / "tokenizer_config.json")
        shutil.copy(Path(tmp) / "tokenizer_config.json", out / "tokenizer_config.json")
        for name in ("chat_template.jinja", "special_tokens_map.json"):
            if (Path(tmp) / name).exists():
                shutil.copy(Path(tmp) / name, out / name)
        keep = dest / "NOTICE"
        if keep.exists():
            shutil.copy(keep, out / "NOTICE")
    return dest
