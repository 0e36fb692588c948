"""A run next to its base run: a pruned, steered, aligned or otherwise changed model beside the
model it came from, in one report.

Accuracy is compared user by user on the users both runs evaluated (:func:`trustrec.runs.
compare_runs`: B - A with paired t and Wilcoxon tests); where a run has no per-user table, the
two runs' stored means are shown side by side without a test, and a note says so. Audits are
matched by name: each one's status in both runs, and every estimate both runs measured with its
value and CI in each and the change. The audits ran on each run's own sample, so the change of an
estimate carries no test of its own: its two CIs are what the report shows.
"""

from __future__ import annotations

from typing import Any

from trustrec.errors import ConfigError, DataError
from trustrec.report._data import RunContents, finite_number

__all__ = ["VERDICT_RANK", "base_comparison"]

# Statuses with an order of merit. Others (no_threshold, not_applicable, error, not_audited)
# say the two verdicts cannot be ranked against each other.
VERDICT_RANK = {"fail": 0, "warn": 1, "pass": 2}


def base_comparison(contents: RunContents, base: RunContents) -> dict[str, Any]:
    """``contents`` (the run) next to ``base`` (the run it is compared with), as plain data.

    Parameters
    ----------
    contents : RunContents
        The run the report is about (e.g. the pruned model).
    base : RunContents
        The run it came from (e.g. the unpruned model).

    Returns
    -------
    dict
        ``run``, ``model``, ``base_run``, ``base_model``; ``accuracy`` (rows: ``metric``,
        ``users``, ``base`` and ``run`` means with CIs, ``change``, ``p_t``, ``p_wilcoxon``;
        ``paired``: whether the rows are paired on common users); ``scorecard`` (per dimension,
        the worst status in each run); ``audits`` (per audit name: both statuses, ``direction``
        one of better / worse / same / not comparable, and ``estimates``: each estimate both
        runs measured, with its value and CI in each and the change); ``notes``.

    Raises
    ------
    ConfigError
        When the base is the run itself.
    DataError
        When the two runs are on different datasets.
    """
    if contents.path.resolve() == base.path.resolve():
        raise ConfigError(f"--base {base.path}: the base is the run itself; give the run this one is compared with")
    dataset, base_dataset = (c.metrics.get("dataset") for c in (contents, base))
    if dataset != base_dataset:
        raise DataError(
            f"{contents.path} is on dataset {dataset!r} and its base {base.path} on {base_dataset!r}: "
            "a model is compared with its base on the same data"
        )
    notes: list[str] = []
    accuracy, paired = _accuracy(contents, base, notes)
    audits = _audits(contents, base)
    from trustrec.report._data import dimensions_of, worst_status

    scorecard = []
    for dim in dict.fromkeys(dimensions_of(base) + dimensions_of(contents)):
        statuses = [[e.status for e in c.audits if e.dimension == dim] for c in (base, contents)]
        if any(statuses):
            base_worst, worst = ((worst_status(s) or "error") if s else "not_audited" for s in statuses)
            scorecard.append(
                {"dimension": dim, "base": base_worst, "run": worst, "direction": _direction(base_worst, worst)}
            )
    for name, c in (("the run", contents), ("the base", base)):
        if c.index is None:
            notes.append(f"{name} ({c.path.name}) is not audited: its audits show as not audited")
    return {
        "run": contents.metrics.get("run") or contents.path.name,
        "model": contents.metrics.get("model"),
        "base_run": base.metrics.get("run") or base.path.name,
        "base_model": base.metrics.get("model"),
        "base_path": str(base.path),
        "accuracy": {"paired": paired, "rows": accuracy},
        "scorecard": scorecard,
        "audits": audits,
        "notes": notes,
    }


def _accuracy(contents: RunContents, base: RunContents, notes: list[str]) -> tuple[list[dict], bool]:
    from trustrec.runs import compare_runs

    try:
        frame = compare_runs(base.path, contents.path)
    except DataError as exc:
        notes.append(
            f"accuracy is not paired user by user ({exc}); the stored means of both runs are shown, without a test"
        )
    else:
        rows = [
            {
                "metric": str(metric),
                "users": int(r.n_users),
                "base": _mean(r.a_mean, r.a_ci_low, r.a_ci_high),
                "run": _mean(r.b_mean, r.b_ci_low, r.b_ci_high),
                "change": finite_number(r.diff_b_minus_a),
                "p_t": finite_number(r.t_pvalue),
                "p_wilcoxon": finite_number(r.wilcoxon_pvalue),
            }
            for metric, r in frame.iterrows()
        ]
        return rows, True
    stored = [c.metrics.get("metrics") or {} for c in (base, contents)]
    rows = []
    for metric in (m for m in stored[1] if m in stored[0]):
        b, r = (s[metric] if isinstance(s[metric], dict) else {} for s in stored)
        bm, rm = finite_number(b.get("mean")), finite_number(r.get("mean"))
        rows.append(
            {
                "metric": metric,
                "users": None,
                "base": _mean(bm, b.get("ci_low"), b.get("ci_high")),
                "run": _mean(rm, r.get("ci_low"), r.get("ci_high")),
                "change": None if bm is None or rm is None else rm - bm,
                "p_t": None,
                "p_wilcoxon": None,
            }
        )
    return rows, False


def _audits(contents: RunContents, base: RunContents) -> list[dict]:
    run_entries = {e.name: e for e in contents.audits}
    base_entries = {e.name: e for e in base.audits}
    out = []
    for name in dict.fromkeys([*run_entries, *base_entries]):
        entry, base_entry = run_entries.get(name), base_entries.get(name)
        status = entry.status if entry else "not_audited"
        base_status = base_entry.status if base_entry else "not_audited"
        estimates = []
        if entry and base_entry and entry.result is not None and base_entry.result is not None:
            theirs = base_entry.result.estimates
            for key, est in entry.result.estimates.items():
                other = theirs.get(key)
                if other is None:
                    continue
                value, base_value = finite_number(est.value), finite_number(other.value)
                estimates.append(
                    {
                        "name": key,
                        "base": _mean(base_value, other.ci_low, other.ci_high),
                        "run": _mean(value, est.ci_low, est.ci_high),
                        "change": None if value is None or base_value is None else value - base_value,
                    }
                )
        out.append(
            {
                "audit": name,
                "dimension": (entry or base_entry).dimension,  # type: ignore[union-attr]  # one of them exists
                "base_status": base_status,
                "status": status,
                "direction": _direction(base_status, status),
                "estimates": estimates,
            }
        )
    return out


def _direction(base_status: str, status: str) -> str:
    if base_status == status:
        return "same"
    if base_status in VERDICT_RANK and status in VERDICT_RANK:
        return "better" if VERDICT_RANK[status] > VERDICT_RANK[base_status] else "worse"
    return "not comparable"


def _mean(value: Any, low: Any, high: Any) -> dict[str, float | None]:
    return {"mean": finite_number(value), "ci_low": finite_number(low), "ci_high": finite_number(high)}
