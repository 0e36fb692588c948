"""The trust report covers an agent: a FLOW run (tiny random LLM) through ``run_experiment``,
every registered audit and the HTML/JSON report. Audits that cannot apply to an agent say why;
the prompt-sensitivity audit is one of them (FLOW's texts are not a ``PromptTemplate``, so a
paraphrased template would never reach it and a "stable" verdict would claim what was not
measured). Settings are cut (24 users, one budget) so the test fits CI on a CPU."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from tests.audit.test_run_audits import atomic_folder
from trustrec.audit import available_audits
from trustrec.report import write_report
from trustrec.runs import run_audits, run_experiment

FLOW = {
    "model": "tiny-smollm2-random",
    "prior": {"name": "most_popular"},
    "n_candidates": 4,
    "max_rounds": 2,
    "reasons": False,
    "max_history_tokens": 32,
    "template": {"chat": False},
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
    params = {name: {"max_users": 16} for name in available_audits()}
    params["history_perturbation"].update({"budgets": [0.2], "targeting": ["random"]})
    params["poisoning"].update({"budgets": [0.05], "attacks": ["random"]})
    params["feedback_loop"].update({"rounds": 2})
    index = run_audits(run, progress=False, log=lambda *_: None, params=params)
    entries = {e["name"]: e for e in index["audits"]}
    assert set(entries) == set(available_audits())
    errors = {n: e["summary"] for n, e in entries.items() if e["status"] == "error"}
    assert not errors, errors
    ran = {n for n, e in entries.items() if e["status"] != "not_applicable"}
    assert {"history_perturbation", "text_attack", "item_exposure", "user_fairness", "feedback_loop"} <= ran
    assert entries["prompt_sensitivity"]["status"] == "not_applicable"
    assert "reads no prompt" in entries["prompt_sensitivity"]["summary"]
    for e in entries.values():
        if e["status"] == "not_applicable":
            assert e["summary"], f"{e['name']} is not applicable without a reason"
    path = write_report(run)
    report = json.loads((run / "report.json").read_text())
    assert path.is_file() and report["model"] == "flow" and report["audited"] is True
    assert [a["audit"] for a in report["audits"]] == [e["name"] for e in index["audits"]]
    card = {row["dimension"]: row for row in report["scorecard"]}
    assert card["safety"]["n_audits"] >= 1 and card["robustness"]["worst_status"] != "not_audited"
