"""Compare two runs user by user: means with CIs and paired tests (t and Wilcoxon)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trustrec.errors import DataError
from trustrec.eval import paired_test

__all__ = ["compare_runs", "load_run"]


def load_run(path: str | Path) -> tuple[dict, pd.DataFrame]:
    path = Path(path)
    metrics_path, per_user_path = path / "metrics.json", path / "per_user.parquet"
    if not metrics_path.exists() or not per_user_path.exists():
        raise DataError(f"{path}: not a finished trustrec run (needs metrics.json and per_user.parquet)")
    return json.loads(metrics_path.read_text()), pd.read_parquet(per_user_path)


def compare_runs(run_a: str | Path, run_b: str | Path) -> pd.DataFrame:
    """One row per metric both runs measured, over the users both evaluated."""
    meta_a, users_a = load_run(run_a)
    meta_b, users_b = load_run(run_b)
    if meta_a.get("dataset") != meta_b.get("dataset"):
        raise DataError(f"runs are on different datasets: {meta_a.get('dataset')!r} vs {meta_b.get('dataset')!r}")
    joined = users_a.merge(users_b, on="user_id", suffixes=("_a", "_b"))
    if joined.empty:
        raise DataError("the two runs have no evaluated user in common")
    rows = []
    for metric in [c for c in users_a.columns if "@" in c and c in users_b.columns]:
        test = paired_test(joined[f"{metric}_a"], joined[f"{metric}_b"])
        ma, mb = meta_a["metrics"].get(metric, {}), meta_b["metrics"].get(metric, {})
        rows.append({
            "metric": metric, "n_users": test.n,
            "a_mean": test.mean_a, "a_ci_low": ma.get("ci_low"), "a_ci_high": ma.get("ci_high"),
            "b_mean": test.mean_b, "b_ci_low": mb.get("ci_low"), "b_ci_high": mb.get("ci_high"),
            "diff_b_minus_a": test.diff, "t_pvalue": test.t_pvalue, "wilcoxon_pvalue": test.wilcoxon_pvalue,
        })
    return pd.DataFrame(rows).set_index("metric")
