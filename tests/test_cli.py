import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trustrec import __version__
from trustrec.cli import app

runner = CliRunner()


def test_version_and_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "demo" in res.output and "data" in res.output


def test_data_info_ml100k(shared_data, tmp_path):
    out = tmp_path / "s.json"
    res = runner.invoke(app, ["data", "info", "ml-100k", "--data-dir", str(shared_data), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "943" in res.output and "1,682" in res.output and "100,000" in res.output
    stats = json.loads(out.read_text())
    assert (stats["n_users"], stats["n_items"], stats["n_interactions"]) == (943, 1682, 100000)


def test_data_info_on_a_path(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "mine.inter").write_text("user_id:token\titem_id:token\nu\ti\nv\ti\n")
    res = runner.invoke(app, ["data", "info", str(d)])
    assert res.exit_code == 0 and "n_interactions" in res.output


def test_data_list_and_unknown_name(shared_data):
    res = runner.invoke(app, ["data", "list", "--data-dir", str(shared_data)])
    assert res.exit_code == 0 and "ml-100k" in res.output and "local" in res.output
    res = runner.invoke(app, ["data", "info", "no-such-set"])
    assert res.exit_code == 2
    assert "unknown dataset 'no-such-set'" in res.stderr


def test_demo_writes_json(shared_data, tmp_path):
    """The demo end to end; the LLM side runs on the tiny random model (the real one: `make.py demo`)."""
    pytest.importorskip("transformers")
    res = runner.invoke(
        app,
        [
            "demo",
            "--data-dir",
            str(shared_data),
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--llm-model",
            "tiny-smollm2-random",
            "--sft-examples",
            "8",
            "--user",
            "42",
            "--audit-users",
            "60",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "demo.json").read_text())
    assert result["split"]["test"] == 943
    assert set(result["results"]) == {"most_popular", "sasrec"}
    assert round(result["results"]["most_popular"]["metrics"]["ndcg@10"]["mean"], 4) == 0.0449
    side = result["side_by_side"]
    assert side["user"] == "42" and side["history"] and len(side["target"]) == 1
    recs = side["recommendations"]
    assert set(recs) == {"SASRec", "LLM ranker", "generative LLM"}
    assert all(len(v) == 10 for v in recs.values())
    assert all(len(set(v)) == 10 for v in recs.values())
    assert not set(recs["generative LLM"]) & set(side["history"])  # seen items are not recommended again
    assert "side by side" in res.output
    # the demo ends by auditing both runs and writing their trust reports
    for report in result["reports"].values():
        html = Path(report)
        assert html.exists() and html.with_suffix(".json").exists() and "trust report" in res.output
        index = json.loads((html.parent / "audits" / "index.json").read_text())
        audits = {e["name"]: e["status"] for e in index["audits"]}
        assert {"user_fairness", "item_exposure", "calibration", "counterfactual_attributes"} <= set(audits)
        assert audits["hallucination"] == "not_applicable"  # neither run generates free text
        dimensions = {e["dimension"] for e in index["audits"]}
        assert {
            "robustness",
            "fairness",
            "controllability",
            "explainability",
            "factuality",
            "privacy",
        } <= dimensions  # every trust dimension is audited
        assert "poisoning" not in audits  # retraining audits only on request


def test_demo_unknown_user(shared_data, tmp_path):
    res = runner.invoke(
        app,
        [
            "demo",
            "--data-dir",
            str(shared_data),
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--llm-model",
            "tiny-smollm2-random",
            "--sft-examples",
            "8",
            "--user",
            "nobody",
        ],
    )
    assert res.exit_code == 2 and "nobody" in res.stderr


def test_data_info_with_column_mapping(tmp_path):
    f = tmp_path / "log.csv"
    f.write_text("cust,prod,when\na,x,2020-01-01\nb,y,2020-01-02\n")
    res = runner.invoke(
        app, ["data", "info", str(f), "--column", "user=cust", "--column", "item=prod", "--column", "timestamp=when"]
    )
    assert res.exit_code == 0, res.output
    assert "n_interactions" in res.output
    res = runner.invoke(app, ["data", "info", str(f), "--column", "user"])
    assert res.exit_code == 2 and "ROLE=NAME" in res.stderr
