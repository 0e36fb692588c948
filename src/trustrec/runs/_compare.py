"""Compare two runs user by user: means with CIs and paired tests (t and Wilcoxon)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trustrec.errors import DataError
from trustrec.eval import paired_test

__all__ = ["compare_runs", "load_run", "schemes_side_by_side", "split_scheme"]


def load_run(path: str | Path) -> tuple[dict, pd.DataFrame]:
    path = Path(path)
    metrics_path, per_user_path = path / "metrics.json", path / "per_user.parquet"
    if not metrics_path.exists() or not per_user_path.exists():
        raise DataError(f"{path}: not a finished trustrec run (needs metrics.json and per_user.parquet)")
    return json.loads(metrics_path.read_text()), pd.read_parquet(per_user_path)


def split_scheme(label: str) -> tuple[str, str]:
    """``'recall@10 (ure)'`` -> ``('recall@10', 'ure')``; plain names are the full scheme."""
    from trustrec.eval import SCHEMES

    for scheme in SCHEMES[1:]:
        if label.endswith(f" ({scheme})"):
            return label[: -len(scheme) - 3], scheme
    return label, "full"


def compare_runs(run_a: str | Path, run_b: str | Path) -> pd.DataFrame:
    """One row per metric both runs measured, over the users both evaluated; ``scheme`` names the
    evaluation scheme of each row (full, traditional-random, ure) and ``base_metric`` the metric."""
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
        base, scheme = split_scheme(metric)
        rows.append({
            "metric": metric, "scheme": scheme, "base_metric": base, "n_users": test.n,
            "a_mean": test.mean_a, "a_ci_low": ma.get("ci_low"), "a_ci_high": ma.get("ci_high"),
            "b_mean": test.mean_b, "b_ci_low": mb.get("ci_low"), "b_ci_high": mb.get("ci_high"),
            "diff_b_minus_a": test.diff, "t_pvalue": test.t_pvalue, "wilcoxon_pvalue": test.wilcoxon_pvalue,
        })
    return pd.DataFrame(rows).set_index("metric")


def schemes_side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """From :func:`compare_runs`: one row per metric measured under more than one scheme, with each
    scheme's A and B means, B - A and whether the schemes agree on which run is better."""
    rows = []
    for base, group in frame.reset_index().groupby("base_metric", sort=False):
        if group["scheme"].nunique() < 2:
            continue
        row = {"metric": base}
        signs = []
        for _, r in group.iterrows():
            row[f"a [{r.scheme}]"] = r.a_mean
            row[f"b [{r.scheme}]"] = r.b_mean
            row[f"b - a [{r.scheme}]"] = r.diff_b_minus_a
            signs.append(0 if r.diff_b_minus_a == 0 else (1 if r.diff_b_minus_a > 0 else -1))
        row["schemes_agree"] = len(set(signs)) == 1
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()
