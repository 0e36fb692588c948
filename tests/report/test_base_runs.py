"""A pruned LLM recommender's run reported next to its base's run, end to end: both runs fitted
and evaluated by ``run_experiment``, audited by ``run_audits``, reported with ``base=``."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.audit.test_run_audits import atomic_folder
from tests.mitigate.test_steering import RANKER
from trustrec.report import write_report
from trustrec.runs import run_audits, run_experiment

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.mark.slow
def test_pruned_run_next_to_its_base_run(tmp_path):
    dataset = {"name": str(atomic_folder(tmp_path))}
    evaluation = {"metrics": ["ndcg@10", "hr@10"], "n_boot": 20}
    base = run_experiment(
        {"name": "ranker", "dataset": dataset, "model": RANKER, "eval": evaluation}, tmp_path / "runs", **QUIET
    ).path
    pruned_model = {
        "name": "pruned",
        "params": {"base": RANKER, "head_ratio": 0.5, "channel_ratio": 0.5, "n_calibration_users": 8, "batch_size": 4},
    }
    pruned = run_experiment(
        {"name": "ranker-pruned", "dataset": dataset, "model": pruned_model, "eval": evaluation},
        tmp_path / "runs",
        **QUIET,
    ).path
    audits = {
        "names": ["item_exposure", "counterfactual_attributes"],
        "params": {"counterfactual_attributes": {"max_users": 20}},
    }
    for run in (base, pruned):
        run_audits(run, **audits, **QUIET)
    html = write_report(pruned, base=base)
    data = json.loads(html.with_suffix(".json").read_text())["base"]
    assert (data["model"], data["base_model"]) == ("pruned", "llm_ranker")
    assert data["accuracy"]["paired"] and {r["metric"] for r in data["accuracy"]["rows"]} >= {"ndcg@10", "hr@10"}
    users = {r["users"] for r in data["accuracy"]["rows"]}
    assert users == {len(pd.read_parquet(base / "per_user.parquet"))}  # every evaluated user, paired
    by_name = {a["audit"]: a for a in data["audits"]}
    assert set(by_name) == {"item_exposure", "counterfactual_attributes"}
    exposure = {e["name"]: e for e in by_name["item_exposure"]["estimates"]}
    assert exposure  # the same estimates measured on both runs, side by side
    estimates = [e for a in data["audits"] for e in a["estimates"]]
    assert all(e["base"]["mean"] is not None for e in exposure.values())
    # pruning half the heads and channels changed what the model ranks: it shows in the comparison
    changes = [r["change"] for r in data["accuracy"]["rows"]] + [e["change"] for e in estimates]
    assert any(c not in (None, 0.0) for c in changes), changes
    assert 'id="base"' in html.read_text()
