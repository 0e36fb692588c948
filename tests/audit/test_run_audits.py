"""`trustrec audit` on a finished run directory: results, index, trail, CLI."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from tests.audit.conftest import attributed_frames
from trustrec.audit import AuditResult
from trustrec.cli import app
from trustrec.errors import ConfigError, DataError
from trustrec.runs import (
    audit_model,
    audit_plan,
    load_audit_results,
    load_run_config,
    prepare_data,
    run_audits,
    run_experiment,
)

runner = CliRunner()


def atomic_folder(tmp_path):
    inter, users, items = attributed_frames(n_users=80, n_items=30)
    d = tmp_path / "attributed"
    d.mkdir(exist_ok=True)
    inter.to_csv(
        d / "attributed.inter", sep="\t", index=False, header=["user_id:token", "item_id:token", "timestamp:float"]
    )
    users.to_csv(
        d / "attributed.user",
        sep="\t",
        index=False,
        header=["user_id:token", "gender:token", "age:float", "occupation:token"],
    )
    items.assign(genre=items.genre.str.replace("|", " ")).to_csv(
        d / "attributed.item", sep="\t", index=False, header=["item_id:token", "title:token_seq", "genre:token_seq"]
    )
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    config = {
        "name": "knn",
        "dataset": {"name": str(atomic_folder(tmp))},
        "model": {"name": "item_knn"},
        "eval": {"metrics": ["ndcg@10", "hr@10"], "n_boot": 20},
    }
    return run_experiment(config, tmp / "runs", progress=False, log=lambda *_: None).path


def test_run_records_its_trail(run_dir):
    env = json.loads((run_dir / "environment.json").read_text())
    assert len(env["data_checksums"]["items_sha256"]) == 64 and set(env["data_checksums"]["split"]) >= {"train", "test"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["checkpoint_sha256"]) >= {"config.json", "state.safetensors"}


def test_run_audits_writes_results_index_and_trail(run_dir):
    index = run_audits(
        run_dir, dimensions=["fairness"], params={"user_fairness": {"n_boot": 30}}, progress=False, log=lambda *_: None
    )
    names = {e["name"] for e in index["audits"]}
    assert {"user_fairness", "item_exposure", "calibration", "counterfactual_attributes"} <= names
    assert all(e["dimension"] == "fairness" for e in index["audits"])
    trail = index["trail"]
    env = json.loads((run_dir / "environment.json").read_text())
    assert trail["data"]["interactions_fingerprint"] == env["dataset"]["fingerprint"]
    assert trail["data"]["items_sha256"] == env["data_checksums"]["items_sha256"]
    assert trail["model"]["files"] == json.loads((run_dir / "metrics.json").read_text())["checkpoint_sha256"]
    assert trail["seeds"]["run"] == 0 and trail["environment"]["packages"]["numpy"]
    loaded_index, results = load_audit_results(run_dir)
    assert loaded_index == json.loads((run_dir / "audits" / "index.json").read_text())
    by_name = {r.audit: r for r in results}
    assert by_name["user_fairness"].settings["config"]["n_boot"] == 30
    assert isinstance(by_name["calibration"], AuditResult)
    assert "gender" in by_name["user_fairness"].settings["groupings"]
    # a second, narrower run keeps the earlier results
    again = run_audits(run_dir, names=["item_exposure"], progress=False, log=lambda *_: None)
    assert {e["name"] for e in again["audits"]} == names


def test_audit_model_runs_a_plan_in_memory_and_shares_inputs(run_dir, tmp_path, monkeypatch):
    from trustrec.audit import AuditInputs
    from trustrec.models import Recommender

    _, split = prepare_data(load_run_config(run_dir / "config.yaml"))
    model = Recommender.load(run_dir / "checkpoint")
    built = []
    original = AuditInputs.__init__

    def counting_init(self, *args, **kwargs):
        built.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(AuditInputs, "__init__", counting_init)
    plan = audit_plan(
        names=["item_exposure", "calibration", "user_fairness"],
        params={"user_fairness": {"max_users": 20, "n_boot": 20}},
    )
    entries, results = audit_model(model, split, plan, progress=False, log=lambda *_: None)
    assert [e["name"] for e in entries] == ["item_exposure", "calibration", "user_fairness"]
    assert [r.audit for r in results] == [e["name"] for e in entries]
    assert len(built) == 2  # the two full-sample audits shared one ranking
    assert results[2].settings["n_users"] == 20
    assert not list(tmp_path.iterdir())  # nothing written without `out`
    audit_model(model, split, plan[:1], out=tmp_path / "a", progress=False, log=lambda *_: None)
    assert (tmp_path / "a" / "item_exposure" / "result.json").exists()


def test_bad_inputs(tmp_path, run_dir):
    with pytest.raises(DataError, match="not a finished trustrec run"):
        run_audits(tmp_path)
    with pytest.raises(ConfigError, match="unknown dimension"):
        run_audits(run_dir, dimensions=["beauty"])
    with pytest.raises(ConfigError, match="not in this plan"):
        run_audits(run_dir, names=["item_exposure"], params={"calibration": {}})
    with pytest.raises(ConfigError, match="invalid config"):
        run_audits(run_dir, names=["item_exposure"], params={"item_exposure": {"head_share": 3}})


def test_cli_audit_list_and_run(run_dir, tmp_path):
    listing = runner.invoke(app, ["audit", "--list"])
    assert listing.exit_code == 0, listing.output
    for name in ("user_fairness", "item_exposure", "calibration", "counterfactual_attributes", "hallucination"):
        assert name in listing.output
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"item_exposure": {"head_share": 0.1}}))
    res = runner.invoke(app, ["audit", str(run_dir), "-a", "item_exposure", "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "item_exposure" in res.output and "written" in res.output
    saved = AuditResult.load(run_dir / "audits" / "item_exposure")
    assert saved.settings["config"]["head_share"] == 0.1
    missing = runner.invoke(app, ["audit"])
    assert missing.exit_code != 0
