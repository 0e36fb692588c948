import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from trustrec.cli import app
from trustrec.errors import ConfigError
from trustrec.runs import compare_runs, load_run_config, run_experiment

runner = CliRunner()


def toy_folder(tmp_path):
    from trustrec.testing import toy_dataset

    ds = toy_dataset()
    d = tmp_path / "toy"
    if d.exists():
        return d
    d.mkdir()
    inter = ds.interactions
    lines = ["user_id:token\titem_id:token\ttimestamp:float"] + [
        f"{ds.user_ids[u]}\t{ds.item_ids[i]}\t{t}" for u, i, t in zip(inter.user, inter.item, inter.timestamp)
    ]
    (d / "toy.inter").write_text("\n".join(lines) + "\n")
    return d


def config(tmp_path, model="item_knn", params=None, **extra):
    return {
        "name": f"{model}-toy",
        "dataset": {"name": str(toy_folder(tmp_path))},
        "split": {"method": "leave_one_out", "params": {"short_users": "train"}},
        "model": {"name": model, "params": params or {}},
        "eval": {"metrics": ["ndcg@5", "hr@5", "coverage@5"], "n_boot": 20},
        **extra,
    }


def test_run_writes_complete_directory(tmp_path):
    res = run_experiment(config(tmp_path), tmp_path / "runs", progress=False, log=lambda *_: None)
    files = {p.name for p in res.path.iterdir()}
    assert {"config.yaml", "environment.json", "metrics.json", "per_user.parquet", "checkpoint"} <= files
    metrics = json.loads((res.path / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"ndcg@5", "hr@5"} and "coverage@5" in metrics["aggregates"]
    env = json.loads((res.path / "environment.json").read_text())
    assert len(env["dataset"]["fingerprint"]) == 64 and env["packages"]["numpy"]
    per_user = pd.read_parquet(res.path / "per_user.parquet")
    assert len(per_user) == metrics["counts"]["n_users_evaluated"]
    assert not list((tmp_path / "runs").glob(".partial-*"))  # the work folder was renamed


def test_run_resumes_from_checkpoint(tmp_path):
    cfg = load_run_config(config(tmp_path))
    res = run_experiment(cfg, tmp_path / "runs", progress=False, log=lambda *_: None)
    # simulate a crash after fitting: put the work folder back without metrics
    partial = tmp_path / "runs" / f".partial-{cfg.run_name()}-{cfg.digest()}"
    res.path.rename(partial)
    (partial / "metrics.json").unlink()
    messages = []
    again = run_experiment(cfg, tmp_path / "runs", progress=False, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert again.metrics["metrics"] == res.metrics["metrics"]


def test_run_on_a_user_sample(tmp_path):
    from trustrec.runs._run import prepare_data

    cfg = config(tmp_path)
    cfg["dataset"]["filters"] = [{"kind": "sample_users", "n_users": 5, "seed": 3}]
    ds, _split = prepare_data(load_run_config(cfg))
    assert ds.n_users == 5 and ds.provenance[-1].name == "sample_users"
    res = run_experiment(cfg, tmp_path / "runs", progress=False, log=lambda *_: None)
    assert res.metrics["counts"]["n_users_evaluated"] <= 5
    cfg["dataset"]["filters"] = [{"kind": "sample_users"}]
    with pytest.raises(ConfigError, match="sample_users needs 'n_users'"):
        prepare_data(load_run_config(cfg))


def test_config_errors_name_the_key(tmp_path):
    bad = config(tmp_path)
    bad["eval"]["metrics"] = ["ndgc@10"]
    with pytest.raises(ConfigError, match="unknown metric 'ndgc'"):
        load_run_config(bad)
    bad = config(tmp_path, model="sasrek")
    with pytest.raises(ConfigError, match=r"unknown model 'sasrek'.*sasrec"):
        load_run_config(bad)
    bad = config(tmp_path, model="sasrec", params={"epoch": 3})
    with pytest.raises(ConfigError, match="'epoch'"):
        load_run_config(bad)
    bad = config(tmp_path, seeed=1)
    with pytest.raises(ConfigError, match="'seeed'"):
        load_run_config(bad)
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(path)


def test_cli_run_and_compare(tmp_path):
    runs = tmp_path / "runs"
    paths = []
    for model in ("most_popular", "item_knn"):
        cfg_path = tmp_path / f"{model}.yaml"
        cfg_path.write_text(yaml.safe_dump(config(tmp_path, model)))
        res = runner.invoke(app, ["run", str(cfg_path), "--out", str(runs)])
        assert res.exit_code == 0, res.output
        paths.append(runs / f"{model}-toy")
    out = tmp_path / "cmp.json"
    res = runner.invoke(app, ["compare", *map(str, paths), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "Wilcoxon" in res.output
    rows = json.loads(out.read_text())
    assert {r["metric"] for r in rows} == {"ndcg@5", "hr@5"}
    frame = compare_runs(*paths)
    assert frame.loc["hr@5", "n_users"] > 0
