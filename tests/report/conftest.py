"""A synthetic but realistic run directory: metrics, environment, config, per-user table and
audits on several dimensions with every plot kind, a not-applicable audit, NaN values, an empty
table, a plot over missing columns and hostile text in evidence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trustrec.audit import AuditResult, Estimate, Plot, Verdict

HOSTILE = "<script>alert(1)</script>"
HOSTILE_TITLE = f'Toy Story {HOSTILE} & "friends" $5 $'


def _metrics() -> dict:
    return {
        "run": "ml-100k-sasrec",
        "model": "sasrec",
        "dataset": "ml-100k",
        "metrics": {
            "ndcg@10": {"mean": 0.1234, "ci_low": 0.118, "ci_high": 0.129, "n_users": 943},
            "recall@10": {"mean": 0.2201, "ci_low": 0.21, "ci_high": 0.23, "n_users": 943},
            "mrr@10": {"mean": 0.0912, "ci_low": None, "ci_high": None, "n_users": 943},
        },
        "aggregates": {"coverage@10": 0.31, "gini@10": 0.87},
        "counts": {"n_users": 943, "n_items": 1682},
        "settings": {"part": "test", "k": [10], "n_boot": 200, "sampled_negatives": None},
        "fit_history": [{"epoch": 1, "loss": 1.2}],
        "timings_s": {"data": 0.5, "fit": 12.0, "evaluate": 1.1},
    }


def _environment() -> dict:
    return {
        "python": "3.11.2",
        "platform": "Linux-x86_64",
        "packages": {"numpy": "2.1.0", "torch": "2.4.0"},
        "seed": 42,
        "config_digest": "abc123",
        "dataset": {
            "name": "ml-100k",
            "fingerprint": "f" * 16,
            "source": "local",
            "stats": {"n_users": 943, "n_items": 1682, "n_interactions": 100000},
        },
        "split": {"method": "leave_one_out", "n_test": 943},
    }


def _audits() -> list[AuditResult]:
    rng = np.random.default_rng(0)
    groups = pd.DataFrame(
        {
            "group": ["young", "middle", "old", "(missing)"],
            "ndcg@10": [0.14, 0.12, np.nan, 0.10],
            "ci_low": [0.12, 0.10, np.nan, None],
            "ci_high": [0.16, 0.14, np.nan, None],
            "n_users": [300, 400, 5, 238],
        }
    )
    by_metric = pd.DataFrame(
        {
            "group": ["young", "old"] * 2,
            "metric": ["ndcg", "ndcg", "recall", "recall"],
            "value": [0.14, 0.11, 0.25, 0.2],
        }
    )
    share = np.sort(rng.pareto(1.5, 300))
    lorenz = pd.DataFrame(
        {
            "item_share": np.linspace(0, 1, 301),
            "exposure_share": np.concatenate([[0.0], np.cumsum(share) / share.sum()]),
        }
    )
    items = pd.DataFrame(
        {
            "item": np.arange(300),
            "title": [HOSTILE_TITLE] + [f"Movie {i}" for i in range(1, 300)],
            "exposure": rng.integers(0, 50, 300),
        }
    )
    fairness = AuditResult(
        "user_group_gap",
        "fairness",
        {
            "ndcg@10 gap": Estimate(0.04, 0.01, 0.07, 943, 0.003, "largest between-group NDCG@10 gap"),
            "ndcg@10 ratio": Estimate(0.71, 0.6, 0.83, 943, None, "worst group / best group"),
        },
        {"groups": groups, "by_metric": by_metric},
        {"k": 10, "group_column": "age"},
        Verdict("fail", ("ndcg@10 ratio = 0.71 breaks >= 0.8",)),
        ("group 'old' has 5 users (< 20): no CI",),
        (
            Plot("bar", "groups", "group", "ndcg@10", "NDCG@10 by age group", ci_low="ci_low", ci_high="ci_high"),
            Plot("bar", "by_metric", "group", "value", "accuracy by group and metric", series="metric"),
        ),
        "NDCG@10 differs by 0.04 between age groups",
    )
    exposure = AuditResult(
        "item_exposure",
        "fairness",
        {"gini": Estimate(0.87, 0.85, 0.89, 1682), "bad": Estimate(float("nan"))},
        {"lorenz": lorenz, "items": items},
        {"k": 10},
        Verdict("warn", ("gini = 0.87 breaks <= 0.8; the CI reaches the limit",)),
        (),
        (
            Plot("lorenz", "lorenz", "item_share", "exposure_share", "Lorenz curve of exposure"),
            Plot("scatter", "items", "item", "exposure", "exposure per item", x_label="item index"),
            Plot("bar", "items", "title", "exposure", f"exposure by title {HOSTILE}"),
        ),
        "exposure is concentrated on few items",
    )
    tradeoff = pd.DataFrame(
        {
            "strength": [0.0, 0.1, 0.2, 0.3] * 2,
            "ndcg@10": [0.12, 0.11, np.nan, 0.08, 0.12, 0.09, np.nan, 0.05],
            "attack": ["random"] * 4 + ["popular"] * 4,
        }
    )
    robustness = AuditResult(
        "shilling_attack",
        "robustness",
        {"ndcg drop": Estimate(0.04, 0.02, 0.06, 943, 1e-5)},
        {"curve": tradeoff, "empty": pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=float)})},
        {"n_fake_users": 50},
        Verdict("pass"),
        (),
        (
            Plot("line", "curve", "strength", "ndcg@10", "NDCG@10 under attack", series="attack"),
            Plot("line", "empty", "x", "y", "an empty curve"),
            Plot("bar", "curve", "no_such_column", "ndcg@10", "a plot over a missing column"),
        ),
        "an attack of 50 fake users moves NDCG@10 by 0.04",
    )
    privacy = AuditResult.not_applicable("membership_inference", "privacy", "the model has no scores to probe")
    return [fairness, exposure, robustness, privacy]


def make_run(root: Path, *, audited: bool = True, name: str = "ml-100k-sasrec") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(_metrics(), indent=1))
    (run / "environment.json").write_text(json.dumps(_environment(), indent=1))
    (run / "config.yaml").write_text(
        yaml.safe_dump({"dataset": {"name": "ml-100k"}, "model": {"name": "sasrec"}, "seed": 42})
    )
    pd.DataFrame(
        {"user": np.arange(5), "user_id": [str(i) for i in range(5)], "ndcg@10": np.linspace(0, 1, 5)}
    ).to_parquet(run / "per_user.parquet")
    if audited:
        entries = []
        for result in _audits():
            result.save(run / "audits" / result.audit)
            entries.append(
                {
                    "name": result.audit,
                    "dimension": result.dimension,
                    "status": result.verdict.status,
                    "summary": result.summary,
                    "dir": result.audit,
                }
            )
        index = {
            "run": name,
            "model": "sasrec",
            "dataset": "ml-100k",
            "created": "2025-01-02T03:04:05+00:00",
            "trail": {
                "data": {"interactions_fingerprint": "f" * 16, "items_sha256": "a" * 64},
                "model": {"files": {"state.safetensors": "b" * 64}},
                "seed": 42,
                "versions": {"trustrec": "0.1.0", "numpy": "2.1.0"},
            },
            "audits": entries,
        }
        (run / "audits" / "index.json").write_text(json.dumps(index, indent=1))
    return run


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run(tmp_path)


@pytest.fixture
def bare_run_dir(tmp_path) -> Path:
    return make_run(tmp_path, audited=False)
