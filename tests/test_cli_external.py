"""``trustrec audit --model external.yaml --out DIR``: the shipped example (examples/external_model)
audited on ml-100k, as a user copies it; a user's folder is never written into."""

from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from trustrec.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "external_model"
runner = CliRunner()


@pytest.fixture
def example(tmp_path, shared_data):
    folder = tmp_path / "external_model"
    shutil.copytree(EXAMPLE, folder)
    for name in ("external.yaml", "external_topk.yaml"):  # the shared data folder, wherever it is
        config = yaml.safe_load((folder / name).read_text())
        config["dataset"]["data_dir"] = str(shared_data)
        (folder / name).write_text(yaml.safe_dump(config))
    params = {"history_perturbation": {"max_users": 40, "budgets": [0.2], "n_boot": 50}}
    params["poisoning"] = {"budgets": [0.01], "attacks": ["random"], "max_users": 100, "n_boot": 50}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def _audit(*args):
    res = runner.invoke(app, ["audit", *map(str, args)])
    return res


def test_example_scorer_is_audited(example, tmp_path):
    out = tmp_path / "audits"
    picks = ["--audit", "item_exposure", "--audit", "history_perturbation", "--audit", "poisoning"]
    res = _audit("--model", example / "external.yaml", "--out", out, *picks, "--params", example / "params.yaml")
    assert res.exit_code == 0, res.output
    index = json.loads((out / "index.json").read_text())
    status = {e["name"]: e["status"] for e in index["audits"]}
    assert set(status) == {"item_exposure", "history_perturbation", "poisoning"}
    assert "not_applicable" not in status.values(), index["audits"]
    assert index["model"] == "external_scorer" and index["dataset"] == "ml-100k"
    assert index["model_spec"]["params"]["python_path"] == [str(example)]
    for name in status:
        assert (out / name / "result.json").exists()
    # the same config again adds to the folder; another config is refused
    res = _audit("--model", example / "external.yaml", "--out", out, "--audit", "user_fairness")
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "index.json").read_text())["audits"]) == 4
    res = _audit("--model", example / "external_topk.yaml", "--out", out, "--audit", "item_exposure")
    assert res.exit_code != 0 and "holds audits of another model config" in res.output


def test_example_list_file_is_audited(example, tmp_path, monkeypatch):
    monkeypatch.chdir(example)
    runpy.run_path(str(example / "my_model.py"), run_name="__main__")  # writes topk.csv, as the README says
    out = tmp_path / "list-audits"
    res = _audit(
        "--model",
        example / "external_topk.yaml",
        "--out",
        out,
        "--audit",
        "item_exposure",
        "--audit",
        "history_perturbation",
    )
    assert res.exit_code == 0, res.output
    entries = {e["name"]: e for e in json.loads((out / "index.json").read_text())["audits"]}
    assert entries["item_exposure"]["status"] != "not_applicable"
    assert entries["history_perturbation"]["status"] == "not_applicable"
    reasons = json.loads((out / "history_perturbation" / "result.json").read_text())["verdict"]["reasons"]
    assert "a precomputed list file cannot answer new queries" in " ".join(reasons)


def test_a_users_folder_is_never_written_into(example, tmp_path):
    mine = tmp_path / "my-notes"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    res = _audit("--model", example / "external.yaml", "--out", mine, "--audit", "item_exposure")
    assert res.exit_code != 0 and "not written by `trustrec audit --model`" in res.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    res = _audit("--model", example / "external.yaml", "--audit", "item_exposure")
    assert res.exit_code != 0 and "give --out" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {name: ml-100k}\nmodel: {name: external_scorer, params: {score: nope}}\n")
    res = _audit("--model", bad, "--out", tmp_path / "x")
    assert res.exit_code != 0 and "import path" in res.output
    assert not (tmp_path / "x").exists()
