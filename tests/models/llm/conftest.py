import pytest


@pytest.fixture(autouse=True)
def _no_user_model_folders(tmp_path_factory, monkeypatch):
    """Tests see an empty Hugging Face cache and no TRUSTREC_MODELS: a developer's own downloads
    never change which copy a test resolves (the trustrec cache is per test, see tests/conftest.py)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRUSTREC_MODELS", raising=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The tiny random SmolLM2-architecture checkpoint, built once per session."""
    pytest.importorskip("transformers")
    from trustrec.models.llm import build_tiny_random

    folder = tmp_path_factory.mktemp("tiny") / "tiny-smollm2-random"
    build_tiny_random(folder)
    return folder
