"""The aligned generative recommender on the real SmolLM2 (slow): every alignment method takes a few
updates from one saved SFT model on ml-100k; an aligned run is reported next to its SFT run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trustrec.mitigate.training import ALIGNMENT_METHODS
from trustrec.models import FitOptions, make_model

pytestmark = pytest.mark.slow

SMOLLM2_SFT = {
    "model": "smollm2-135m-instruct",
    "lora": {"r": 4},
    "epochs": 1,
    "max_train_examples": 16,
    "max_history_items": 5,
    "max_history_tokens": 96,
    "batch_size": 4,
    "num_beams": 5,
    "learning_rate": 3e-4,
}


@pytest.mark.realdata
def test_every_method_takes_a_few_steps_on_smollm2(shared_data, tmp_path):
    from trustrec.data import load_dataset, split_leave_one_out

    split = split_leave_one_out(load_dataset("ml-100k", data_dir=shared_data))
    sft = make_model("llm_generative", **SMOLLM2_SFT).fit(split, FitOptions(seed=0, progress=False))
    folder = sft.save(tmp_path / "sft")
    queries = split.eval_set("test").queries[:4]
    for method in ALIGNMENT_METHODS:
        model = make_model(
            "llm_generative_aligned",
            **SMOLLM2_SFT,
            start_from=str(folder),
            alignment={
                "method": method,
                "users": 4,
                "n_rollouts": 2,
                "list_length": 2,
                "batch_size": 2,
                "reward": {"k": 2, "fairness": 0.2, "diversity": 0.2},  # ml-100k's genres feed diversity
            },
        ).fit(split, FitOptions(seed=0, progress=False))
        record = model.alignment_
        assert record["steps"] == 2 and np.isfinite(record["loss"]).all(), (method, record)
        top = model.recommend(queries, 5).items
        assert top.shape == (4, 5) and (top >= 0).all(), method


def test_an_aligned_run_is_reported_next_to_its_sft_run(tmp_path):
    from tests.audit.test_run_audits import atomic_folder
    from trustrec.report import write_report
    from trustrec.runs import run_audits, run_experiment

    quiet = {"progress": False, "log": lambda *_: None}
    dataset = {"name": str(atomic_folder(tmp_path))}
    evaluation = {"metrics": ["ndcg@10", "hr@10"], "n_boot": 20}
    sft_params = {
        "model": "tiny-smollm2-random",
        "epochs": 1,
        "max_train_examples": 16,
        "num_beams": 10,
        "learning_rate": 3e-3,
    }
    runs = tmp_path / "runs"
    sft = run_experiment(
        {
            "name": "sft",
            "dataset": dataset,
            "model": {"name": "llm_generative", "params": sft_params},
            "eval": evaluation,
        },
        runs,
        **quiet,
    ).path
    aligned_model = {
        "name": "llm_generative_aligned",
        "params": {
            **sft_params,
            "start_from": str(sft / "checkpoint"),
            "alignment": {"method": "blade", "users": 8, "n_rollouts": 3, "list_length": 3, "learning_rate": 1e-2},
        },
    }
    aligned = run_experiment(
        {"name": "blade", "dataset": dataset, "model": aligned_model, "eval": evaluation}, runs, **quiet
    ).path
    for run in (sft, aligned):
        run_audits(run, names=["item_exposure"], **quiet)
    html = write_report(aligned, base=sft)
    data = json.loads(html.with_suffix(".json").read_text())["base"]
    assert (data["model"], data["base_model"]) == ("llm_generative_aligned", "llm_generative")
    assert data["accuracy"]["paired"]
    assert [a["audit"] for a in data["audits"]] == ["item_exposure"]
    assert 'id="base"' in html.read_text()
