"""Compare two runs user by user: means with CIs and paired tests (t and Wilcoxon)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trustrec._safeio import check_path_text, load_json, open_regular
from trustrec.errors import DataError
from trustrec.eval import paired_test

__all__ = ["compare_runs", "load_run", "schemes_side_by_side", "split_scheme"]


def load_run(path: str | Path) -> tuple[dict, pd.DataFrame]:
    """A finished run's ``metrics.json`` and ``per_user.parquet``; anything missing, corrupt or of
    the wrong shape is a DataError naming the file.

    Parameters
    ----------
    path : str or Path
        A finished run directory.

    Returns
    -------
    metrics : dict
        The contents of ``metrics.json``.
    per_user : pandas.DataFrame
        The per-user metrics (with a ``user_id`` column).

    Raises
    ------
    DataError
        When the folder is not a finished run, or a file is missing, corrupt or of the wrong
        shape.
    """
    check_path_text(path, "run directory")
    path = Path(path)
    if not path.is_dir():
        raise DataError(
            f"{path}: {'not a folder' if path.exists() else 'no such run directory'}; "
            "give a run directory written by `trustrec run`"
        )
    metrics_path, per_user_path = path / "metrics.json", path / "per_user.parquet"
    if not metrics_path.exists() or not per_user_path.exists():
        raise DataError(f"{path}: not a finished trustrec run (needs metrics.json and per_user.parquet)")
    meta = load_json(metrics_path, what="a run's metrics.json", error=DataError)
    if not isinstance(meta, dict) or not isinstance(meta.get("metrics"), dict):
        raise DataError(
            f"{metrics_path}: not a trustrec metrics file (expected a JSON object with a "
            "'metrics' mapping); rerun `trustrec run` to rewrite it"
        )
    with open_regular(per_user_path, what="a parquet file") as fh:
        try:
            per_user = pd.read_parquet(fh)
        except Exception as exc:  # noqa: BLE001  # pyarrow raises several types for a corrupt file
            raise DataError(
                f"{per_user_path}: cannot read as parquet ({_one_line(exc)}); rerun `trustrec run` to rewrite it"
            ) from None
    if "user_id" not in per_user.columns:
        raise DataError(f"{per_user_path}: has no 'user_id' column (columns: {list(per_user.columns)[:10]})")
    return meta, per_user


def _number(value) -> float | None:
    """A CI bound from metrics.json as a float, None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _one_line(exc) -> str:
    return " ".join(str(exc).split())[:300]


def split_scheme(label: str) -> tuple[str, str]:
    """``'recall@10 (ure)'`` -> ``('recall@10', 'ure')``; plain names are the full scheme.

    Parameters
    ----------
    label : str
        A metric column label, optionally suffixed with `` (<scheme>)``.

    Returns
    -------
    metric : str
        The metric without the scheme suffix.
    scheme : str
        The evaluation scheme (``"full"`` when there is no suffix).
    """
    from trustrec.eval import SCHEMES

    for scheme in SCHEMES[1:]:
        if label.endswith(f" ({scheme})"):
            return label[: -len(scheme) - 3], scheme
    return label, "full"


def compare_runs(run_a: str | Path, run_b: str | Path) -> pd.DataFrame:
    """One row per metric both runs measured, over the users both evaluated; ``scheme`` names the
    evaluation scheme of each row (full, traditional-random, ure) and ``base_metric`` the metric.

    Parameters
    ----------
    run_a, run_b : str or Path
        The two finished run directories.

    Returns
    -------
    pandas.DataFrame
        Indexed by metric: scheme, base metric, number of common users, each run's mean and CI,
        the difference B - A and the paired t and Wilcoxon p-values.

    Raises
    ------
    DataError
        When a run cannot be read, the runs are on different datasets, or they have no user or
        no per-user metric in common.
    """
    meta_a, users_a = load_run(run_a)
    meta_b, users_b = load_run(run_b)
    if meta_a.get("dataset") != meta_b.get("dataset"):
        raise DataError(f"runs are on different datasets: {meta_a.get('dataset')!r} vs {meta_b.get('dataset')!r}")
    metrics = [c for c in users_a.columns if isinstance(c, str) and "@" in c and c in users_b.columns]
    users_a, users_b = (u.assign(user_id=u["user_id"].astype(str)) for u in (users_a, users_b))
    joined = users_a.merge(users_b, on="user_id", suffixes=("_a", "_b"))
    if joined.empty:
        raise DataError("the two runs have no evaluated user in common")
    if not metrics:
        raise DataError(f"runs {Path(run_a)} and {Path(run_b)} have no per-user metric in common")
    rows = []
    for metric in metrics:
        a, b = (pd.to_numeric(joined[f"{metric}_{s}"], errors="coerce") for s in ("a", "b"))
        test = paired_test(a, b)
        ma, mb = meta_a["metrics"].get(metric), meta_b["metrics"].get(metric)
        ma, mb = (m if isinstance(m, dict) else {} for m in (ma, mb))
        base, scheme = split_scheme(metric)
        rows.append(
            {
                "metric": metric,
                "scheme": scheme,
                "base_metric": base,
                "n_users": test.n,
                "a_mean": test.mean_a,
                "a_ci_low": _number(ma.get("ci_low")),
                "a_ci_high": _number(ma.get("ci_high")),
                "b_mean": test.mean_b,
                "b_ci_low": _number(mb.get("ci_low")),
                "b_ci_high": _number(mb.get("ci_high")),
                "diff_b_minus_a": test.diff,
                "t_pvalue": test.t_pvalue,
                "wilcoxon_pvalue": test.wilcoxon_pvalue,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


def schemes_side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """From :func:`compare_runs`: one row per metric measured under more than one scheme, with each
    scheme's A and B means, B - A and whether the schemes agree on which run is better.

    Parameters
    ----------
    frame : pandas.DataFrame
        The output of :func:`compare_runs`.

    Returns
    -------
    pandas.DataFrame
        Indexed by base metric; empty when no metric was measured under several schemes.
    """
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
