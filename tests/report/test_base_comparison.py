"""A run next to its base run in one report (``trustrec report RUN --base BASE``)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.audit import AuditResult, Estimate, Verdict
from trustrec.cli import app
from trustrec.errors import ConfigError, DataError
from trustrec.report import build_report, write_report

from .conftest import HOSTILE, make_run

runner = CliRunner()


@pytest.fixture
def runs(tmp_path):
    """A base run and a changed one: half the base's NDCG@10 for every user, the fairness audit
    passing where the base failed with a smaller gap, one audit only in the changed run."""
    base = make_run(tmp_path / "b", name="base")
    changed = make_run(tmp_path / "c", name="pruned")
    base_metrics = json.loads((base / "metrics.json").read_text())
    (base / "metrics.json").write_text(json.dumps({**base_metrics, "run": "base"}))
    metrics = json.loads((changed / "metrics.json").read_text())
    metrics.update(run="pruned", model=f"pruned {HOSTILE}")
    (changed / "metrics.json").write_text(json.dumps(metrics))
    per_user = pd.read_parquet(changed / "per_user.parquet")
    per_user["ndcg@10"] *= 0.5
    per_user.to_parquet(changed / "per_user.parquet")
    audits = changed / "audits"
    gap = AuditResult.load(audits / "user_group_gap")
    gap = dataclasses.replace(
        gap,
        estimates={**gap.estimates, "ndcg@10 gap": Estimate(0.02, 0.0, 0.05, 943, 0.2, "gap")},
        verdict=Verdict("pass"),
    )
    shutil.rmtree(audits / "user_group_gap")
    gap.save(audits / "user_group_gap")
    extra = AuditResult.not_applicable("text_attack", "robustness", "no item text")
    extra.save(audits / "text_attack")
    index = json.loads((audits / "index.json").read_text())
    for entry in index["audits"]:
        if entry["name"] == "user_group_gap":
            entry["status"] = "pass"
    index["audits"].append(
        {"name": "text_attack", "dimension": "robustness", "status": "not_applicable", "dir": "text_attack"}
    )
    (audits / "index.json").write_text(json.dumps(index))
    return base, changed


def test_accuracy_is_paired_on_common_users_and_audits_matched_by_name(runs):
    base, changed = runs
    data, html = build_report(changed, base=base)
    b = data["base"]
    assert (b["run"], b["base_run"]) == ("pruned", "base")
    assert b["accuracy"]["paired"] is True
    (row,) = b["accuracy"]["rows"]  # the one per-user metric both runs stored
    base_ndcg = pd.read_parquet(base / "per_user.parquet")["ndcg@10"]
    assert row["metric"] == "ndcg@10" and row["users"] == 5
    assert row["base"]["mean"] == pytest.approx(base_ndcg.mean())
    assert row["change"] == pytest.approx(-0.5 * base_ndcg.mean())
    assert 0 < row["p_t"] < 0.05
    audits = {a["audit"]: a for a in b["audits"]}
    gap = audits["user_group_gap"]
    assert (gap["base_status"], gap["status"], gap["direction"]) == ("fail", "pass", "better")
    estimates = {e["name"]: e for e in gap["estimates"]}
    assert estimates["ndcg@10 gap"]["change"] == pytest.approx(0.02 - 0.04)
    assert estimates["ndcg@10 gap"]["run"] == {"mean": 0.02, "ci_low": 0.0, "ci_high": 0.05}
    assert estimates["ndcg@10 ratio"]["change"] == pytest.approx(0.0)
    assert audits["item_exposure"]["direction"] == "same"
    assert (audits["text_attack"]["base_status"], audits["text_attack"]["direction"]) == (
        "not_audited",
        "not comparable",
    )
    assert audits["text_attack"]["estimates"] == []
    fairness = {r["dimension"]: r for r in b["scorecard"]}["fairness"]
    assert (fairness["base"], fairness["run"], fairness["direction"]) == ("fail", "warn", "better")
    assert 'id="base"' in html and "Next to its base" in html
    assert HOSTILE not in html  # the model name is escaped like every other text
    assert json.dumps(data, allow_nan=False)  # report.json stays strict JSON


def test_without_base_the_report_is_unchanged(runs):
    _, changed = runs
    data, html = build_report(changed)
    assert data["base"] is None and 'id="base"' not in html


def test_a_base_without_per_user_table_is_compared_on_stored_means_and_says_so(runs):
    base, changed = runs
    (base / "per_user.parquet").unlink()
    b = build_report(changed, base=base)[0]["base"]
    assert b["accuracy"]["paired"] is False
    assert any("not paired user by user" in n for n in b["notes"])
    rows = {r["metric"]: r for r in b["accuracy"]["rows"]}
    assert set(rows) == {"ndcg@10", "recall@10", "mrr@10"}  # metrics.json of both (same stored means)
    assert rows["ndcg@10"]["change"] == pytest.approx(0.0) and rows["ndcg@10"]["p_t"] is None
    assert rows["mrr@10"]["base"]["ci_low"] is None  # a CI the run did not store stays absent


def test_bad_bases_are_clear_errors(runs, tmp_path):
    base, changed = runs
    with pytest.raises(ConfigError, match="the base is the run itself"):
        build_report(changed, base=changed)
    with pytest.raises(DataError, match="no such run directory"):
        build_report(changed, base=tmp_path / "nope")
    metrics = json.loads((base / "metrics.json").read_text())
    (base / "metrics.json").write_text(json.dumps({**metrics, "dataset": "amazon-games"}))
    with pytest.raises(DataError, match="on the same data"):
        build_report(changed, base=base)
    assert not (changed / "report.html").exists()


def test_an_unaudited_base_shows_its_audits_as_not_audited(tmp_path, runs):
    _, changed = runs
    bare = make_run(tmp_path / "bare", audited=False, name="bare-base")
    b = build_report(changed, base=bare)[0]["base"]
    assert {a["base_status"] for a in b["audits"]} == {"not_audited"}
    assert any("the base (bare-base) is not audited" in n for n in b["notes"])


def test_cli_base_option_prints_the_comparison(runs):
    base, changed = runs
    res = runner.invoke(app, ["report", str(changed), "--base", str(base)])
    assert res.exit_code == 0, res.output
    for word in ("next to its base", "ndcg@10", "user_group_gap", "better", "written:"):
        assert word in res.output, word
    assert json.loads((changed / "report.json").read_text())["base"]["base_run"] == "base"
    res = runner.invoke(app, ["report", str(changed), "--base", str(changed)])
    assert res.exit_code == 2 and "the base is the run itself" in res.stderr


def test_write_report_with_base_writes_both_files(runs, tmp_path):
    base, changed = runs
    out = write_report(changed, tmp_path / "out" / "r.html", base=base)
    assert json.loads(out.with_suffix(".json").read_text())["base"]["accuracy"]["paired"] is True
