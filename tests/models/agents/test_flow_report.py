"""The trust report covers an agent: a FLOW run (tiny random LLM) through `run_experiment`, every
registered audit and the HTML/JSON report; what cannot apply to an agent says why."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from tests.audit.test_run_audits import atomic_folder
from trustrec.report import write_report
from trustrec.runs import run_audits, run_experiment

FLOW = {
    "model": "tiny-smollm2-random",
    "prior": {"name": "most_popular"},
    "n_candidates": 5,
    "max_rounds": 2,
    "reason_tokens": 3,
    "max_history_tokens": 48,
    "item_template": {"chat": False},
}


@pytest.mark.slow
def test_trust_report_covers_a_flow_agent(tmp_path):
    config = {
        "name": "flow",
        "dataset": {"name": str(atomic_folder(tmp_path))},
        "model": {"name": "flow", "params": FLOW},
        "eval": {"metrics": ["ndcg@10", "hr@10"], "n_boot": 20},
    }
    run = run_experiment(config, tmp_path / "runs", progress=False, log=lambda *_: None).path
    index = run_audits(run, progress=False, log=lambda *_: None)
    entries = {e["name"]: e for e in index["audits"]}
    statuses = {e["status"] for e in entries.values()}
    assert "error" not in statuses, {n: e["summary"] for n, e in entries.items() if e["status"] == "error"}
    ran = [n for n, e in entries.items() if e["status"] != "not_applicable"]
    assert {"item_exposure", "user_fairness", "history_perturbation", "text_attack"} <= set(ran)
    for e in entries.values():
        if e["status"] == "not_applicable":
            assert e["summary"], f"{e['name']} is not applicable without a reason"
    path = write_report(run)
    report = json.loads((run / "report.json").read_text())
    assert path.is_file() and report["run"]["model"] == "flow"
    assert {a["name"] for a in report["audits"]} == set(entries)
