"""Evaluation schemes through runs: the config field, labelled outputs, `trustrec compare` side by
side and the report's evaluation-bias panel."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from trustrec.cli import app
from trustrec.errors import ConfigError
from trustrec.runs import (
    compare_runs,
    load_run_config,
    run_experiment,
    schemes_side_by_side,
    split_scheme,
)

runner = CliRunner()


def coat_like(tmp_path):
    """A Coat-format folder: 30 users x 20 items, 6 self-selected ratings and 8 random ones each."""
    folder = tmp_path / "coatlike"
    if folder.exists():
        return folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = np.zeros((30, 20), int)
    test = np.zeros((30, 20), int)
    for u in range(30):
        train[u, rng.choice(20, 6, replace=False)] = rng.integers(1, 6, 6)
        test[u, rng.choice(20, 8, replace=False)] = rng.integers(1, 6, 8)
    for name, m in (("train.ascii", train), ("test.ascii", test)):
        (folder / name).write_text("".join(" ".join(map(str, row)) + "\n" for row in m))
    (folder / "propensities.ascii").write_text("".join(" ".join(["0.3"] * 20) + "\n" for _ in range(30)))
    return folder


def config(tmp_path, model="mf", params=None, schemes=("full", "traditional-random", "ure"), **extra):
    return {
        "name": f"{model}-coatlike",
        "dataset": {"name": str(coat_like(tmp_path))},
        "split": {"method": "random_exposure", "params": {"cold_test_items": "keep"}},
        "model": {"name": model, "params": params or {}},
        "eval": {"metrics": ["recall@3", "precision@3", "ndcg@3"], "n_boot": 20, "schemes": list(schemes)},
        **extra,
    }


def test_schemes_config_validation(tmp_path):
    cfg = load_run_config(config(tmp_path))
    assert cfg.eval.schemes == ["full", "traditional-random", "ure"]
    assert load_run_config({**config(tmp_path), "eval": {"metrics": ["recall@3"], "schemes": "ure"}}).eval.schemes == [
        "ure"
    ]
    default = load_run_config({k: v for k, v in config(tmp_path).items() if k != "eval"})
    assert default.eval.schemes == ["full"]
    with pytest.raises(ConfigError, match=r"add e.g. 'recall@10'"):
        load_run_config({**config(tmp_path), "eval": {"metrics": ["ndcg@3"], "schemes": ["ure"]}})
    with pytest.raises(ConfigError, match="schemes"):
        load_run_config({**config(tmp_path), "eval": {"metrics": ["recall@3"], "schemes": ["unbiased"]}})
    with pytest.raises(ConfigError, match="repeats"):
        load_run_config({**config(tmp_path), "eval": {"metrics": ["recall@3"], "schemes": ["ure", "ure"]}})
    bad = config(tmp_path)
    bad["split"] = {"method": "random", "params": {}}
    with pytest.raises(ConfigError, match="need a random-exposure test set"):
        run_experiment(bad, tmp_path / "runs", progress=False, log=lambda *_: None)


def test_run_labels_every_scheme_and_compare_and_report(tmp_path):
    runs = tmp_path / "runs"
    paths = []
    for model, params in (("mf", {"method": "naive", "epochs": 3}), ("most_popular", {})):
        path = tmp_path / f"{model}.yaml"
        path.write_text(yaml.safe_dump(config(tmp_path, model, params)))
        res = runner.invoke(app, ["run", str(path), "--out", str(runs)])
        assert res.exit_code == 0, res.output
        paths.append(runs / f"{model}-coatlike")
    metrics = json.loads((paths[0] / "metrics.json").read_text())
    assert set(metrics["schemes"]) == {"full", "traditional-random", "ure"}
    assert metrics["schemes"]["ure"]["metrics"] == ["recall@3 (ure)", "precision@3 (ure)"]
    assert metrics["schemes"]["ure"]["settings"]["scheme"] == "ure"
    assert {"recall@3", "ndcg@3", "recall@3 (ure)", "precision@3 (traditional-random)"} <= set(metrics["metrics"])
    assert "n_users_no_exposed_positive" in metrics["schemes"]["ure"]["counts"]
    per_user = pd.read_parquet(paths[0] / "per_user.parquet")
    assert {"recall@3", "recall@3 (ure)", "recall@3 (traditional-random)", "user_id"} <= set(per_user.columns)
    assert per_user["user"].is_unique

    frame = compare_runs(*paths)
    assert split_scheme("recall@3 (traditional-random)") == ("recall@3", "traditional-random")
    assert frame.loc["recall@3 (ure)", "scheme"] == "ure" and frame.loc["ndcg@3", "scheme"] == "full"
    side = schemes_side_by_side(frame)
    assert set(side.index) == {"recall@3", "precision@3"} and "b - a [ure]" in side.columns
    res = runner.invoke(app, ["compare", *map(str, paths)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "side by side" in res.output and "same winner" in res.output

    res = runner.invoke(app, ["report", str(paths[0])])
    assert res.exit_code == 0, res.output
    html = (paths[0] / "report.html").read_text()
    assert 'id="evaluation-bias"' in html and "traditional-random" in html
    data = json.loads((paths[0] / "report.json").read_text())
    assert set(data["evaluation_bias"]["rows"]) == {"recall@3", "precision@3"}


def test_single_scheme_run_has_no_panel(tmp_path):
    res = run_experiment(
        config(tmp_path, "most_popular", schemes=("full",)), tmp_path / "runs", progress=False, log=lambda *_: None
    )
    from trustrec.report import build_report

    data, html = build_report(res.path)
    assert data["evaluation_bias"] is None and 'id="evaluation-bias"' not in html
    per_user = pd.read_parquet(res.path / "per_user.parquet")
    assert len(per_user) == res.metrics["counts"]["n_users_evaluated"]
