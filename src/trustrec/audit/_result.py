"""What an audit returns: named estimates with CIs, evidence tables, the settings used, and a
verdict against thresholds. Plain data that saves to JSON + parquet and loads back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from trustrec._cache import atomic_write_bytes, atomic_write_text
from trustrec.errors import DataError
from trustrec.eval import Estimate

__all__ = ["DIMENSIONS", "AuditResult", "Estimate", "Plot", "Threshold", "Verdict", "judge"]

DIMENSIONS = ("robustness", "fairness", "controllability", "explainability", "factuality", "privacy", "safety")
Status = Literal["pass", "warn", "fail", "not_applicable", "no_threshold"]


class Threshold(BaseModel):
    """A rule on one estimate: ``value op limit`` must hold (e.g. ``ndcg@10 ratio >= 0.8``).
    When the estimate carries a p-value (a test of "no effect"), a breach with ``p >= alpha`` is
    only a warning: a gap between noisy groups is not evidence of unfairness by itself.

    Parameters
    ----------
    estimate : str
        Name of the estimate judged (a key of ``AuditResult.estimates``).
    op : {"<=", ">="}
        How the value must compare with ``limit``.
    limit : float
        The bound the value must respect.
    alpha : float
        Significance level: a breach whose estimate has a p-value ``>= alpha`` only warns
        (between 0 and 1, default 0.05).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    estimate: str
    op: Literal["<=", ">="]
    limit: float
    alpha: float = Field(0.05, gt=0, lt=1)


@dataclass(frozen=True)
class Verdict:
    """``fail``: the whole CI breaks a threshold (or the value, when there is no CI) and, for an
    estimate with a p-value, the test is significant; ``warn``: the value breaks it but the CI
    reaches back over the limit or the test is not significant; ``pass``: all thresholds hold;
    ``no_threshold``: nothing to judge; ``not_applicable``: the audit does not apply (reasons say
    why).

    Parameters
    ----------
    status : {"pass", "warn", "fail", "not_applicable", "no_threshold"}
        The outcome.
    reasons : tuple of str
        One line per threshold broken or not checked (for ``not_applicable``: why the audit
        does not apply).
    """

    status: Status
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict.

        Returns
        -------
        dict
            ``{"status": ..., "reasons": [...]}``.
        """
        return {"status": self.status, "reasons": list(self.reasons)}


def judge(estimates: Mapping[str, Estimate], thresholds: Iterable[Threshold]) -> Verdict:
    """The verdict of ``estimates`` against ``thresholds`` (see :class:`Verdict`).

    Parameters
    ----------
    estimates : mapping of str to Estimate
        The estimates by name.
    thresholds : iterable of Threshold
        The rules; an estimate that is missing or has no value is reported in the reasons and
        not judged.

    Returns
    -------
    Verdict
        The worst status over the thresholds (``fail`` over ``warn`` over ``pass``);
        ``no_threshold`` when there are no thresholds.
    """
    thresholds = list(thresholds)
    if not thresholds:
        return Verdict("no_threshold")
    worst: Status = "pass"
    reasons: list[str] = []
    for t in thresholds:
        est = estimates.get(t.estimate)
        if est is None or est.value is None:
            reasons.append(f"{t.estimate}: not measured, threshold {t.op} {t.limit:g} not checked")
            continue
        ok = est.value <= t.limit if t.op == "<=" else est.value >= t.limit
        if ok:
            continue
        bound = est.ci_low if t.op == "<=" else est.ci_high
        clear = bound is None or (bound > t.limit if t.op == "<=" else bound < t.limit)
        significant = est.p_value is None or est.p_value < t.alpha
        status: Status = "fail" if clear and significant else "warn"
        ci = "" if est.ci_low is None else f" (CI {est.ci_low:.4g} to {est.ci_high:.4g})"
        reasons.append(
            f"{t.estimate} = {est.value:.4g}{ci} breaks {t.op} {t.limit:g}"
            + ("" if clear else "; the CI reaches the limit")
            + ("" if significant else f"; not significant (p = {est.p_value:.3g})")
        )
        if status == "fail" or worst == "pass":
            worst = status
    return Verdict(worst, tuple(reasons))


@dataclass(frozen=True)
class Plot:
    """A figure the report draws from one evidence table: ``kind`` is ``bar`` (``y`` with optional
    ``ci_low``/``ci_high``, one bar per ``x``, optionally one colour per ``series``), ``line``
    (``y`` against ``x``, one line per ``series``) or ``lorenz`` (``y`` against ``x`` with the
    equality diagonal) or ``scatter``.

    Parameters
    ----------
    kind : {"bar", "line", "lorenz", "scatter"}
        The kind of figure.
    table : str
        Name of the evidence table drawn (a key of ``AuditResult.evidence``).
    x, y : str
        Columns of the table on the horizontal and vertical axes.
    title : str
        The figure's title.
    series : str or None
        Column whose values split the rows into bars of one colour or lines; None: one series.
    ci_low, ci_high : str or None
        Columns of the confidence interval's bounds (bar plots); None: no error bars.
    x_label, y_label : str or None
        Axis labels; None: the column names.
    """

    kind: Literal["bar", "line", "lorenz", "scatter"]
    table: str
    x: str
    y: str
    title: str
    series: str | None = None
    ci_low: str | None = None
    ci_high: str | None = None
    x_label: str | None = None
    y_label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields.

        Returns
        -------
        dict
        """
        return asdict(self)


@dataclass(frozen=True, eq=False)
class AuditResult:
    """The outcome of one audit run. ``evidence`` tables are per user / item / group rows;
    ``settings`` holds the exact config, model and data the estimates came from.

    Parameters
    ----------
    audit : str
        Name of the audit.
    dimension : str
        Its trust dimension, one of ``DIMENSIONS``.
    estimates : mapping of str to Estimate
        Named estimates with their CIs, sample sizes and p-values.
    evidence : mapping of str to DataFrame
        Evidence tables by name (per user / item / group rows).
    settings : mapping
        The exact config, model and data the estimates came from.
    verdict : Verdict
        The estimates judged against the thresholds.
    warnings : tuple of str
        Caveats of the run (small groups, skipped parts ...).
    plots : tuple of Plot
        Figures the report draws, each from one evidence table.
    summary : str
        One line on the outcome.

    Raises
    ------
    DataError
        If ``dimension`` is unknown or a plot reads an evidence table that is not there.
    """

    audit: str
    dimension: str
    estimates: Mapping[str, Estimate]
    evidence: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    verdict: Verdict = Verdict("no_threshold")
    warnings: tuple[str, ...] = ()
    plots: tuple[Plot, ...] = ()
    summary: str = ""

    def __post_init__(self):
        if self.dimension not in DIMENSIONS:
            raise DataError(f"AuditResult {self.audit!r}: unknown dimension {self.dimension!r}; one of {DIMENSIONS}")
        for p in self.plots:
            if p.table not in self.evidence:
                raise DataError(
                    f"AuditResult {self.audit!r}: plot {p.title!r} reads evidence {p.table!r}, "
                    f"which is not among {sorted(self.evidence)}"
                )
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "plots", tuple(self.plots))

    @classmethod
    def not_applicable(cls, audit: str, dimension: str, reason: str, settings=None) -> AuditResult:
        """The result of an audit that does not apply: no estimates, verdict ``not_applicable``.

        Parameters
        ----------
        audit : str
            Name of the audit.
        dimension : str
            Its trust dimension.
        reason : str
            Why it does not apply.
        settings : mapping or None
            The settings of the run.

        Returns
        -------
        AuditResult
        """
        return cls(
            audit,
            dimension,
            {},
            settings=settings or {},
            verdict=Verdict("not_applicable", (reason,)),
            summary=f"not applicable: {reason}",
        )

    def estimate_frame(self) -> pd.DataFrame:
        """The estimates as a table.

        Returns
        -------
        DataFrame
            One row per estimate: estimate, value, ci_low, ci_high, n, p_value, description.
        """
        rows = [{"estimate": k, **v.to_dict()} for k, v in self.estimates.items()]
        return pd.DataFrame(rows, columns=["estimate", "value", "ci_low", "ci_high", "n", "p_value", "description"])

    def to_dict(self, *, evidence_rows: int | None = None) -> dict[str, Any]:
        """JSON-ready dict of the result.

        Parameters
        ----------
        evidence_rows : int or None
            Evidence tables are given as records, the first ``evidence_rows`` rows of each (all
            when None), with their full row count.

        Returns
        -------
        dict
        """
        evidence = {}
        for name, frame in self.evidence.items():
            shown = frame if evidence_rows is None else frame.head(evidence_rows)
            evidence[name] = {
                "n_rows": len(frame),
                "columns": [str(c) for c in frame.columns],
                "records": json.loads(shown.to_json(orient="records")),
            }
        return {
            "audit": self.audit,
            "dimension": self.dimension,
            "summary": self.summary,
            "verdict": self.verdict.to_dict(),
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
            "settings": json.loads(json.dumps(dict(self.settings), default=str)),
            "warnings": list(self.warnings),
            "plots": [p.to_dict() for p in self.plots],
            "evidence": evidence,
        }

    def save(self, directory: str | Path) -> Path:
        """Save to ``directory``: ``result.json`` (everything but full evidence) and one parquet
        file per evidence table.

        Parameters
        ----------
        directory : str or Path
            Where to save (created if missing).

        Returns
        -------
        Path
            The directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in self.evidence.items():
            atomic_write_bytes(directory / f"{name}.parquet", frame.to_parquet(index=False))
        atomic_write_text(directory / "result.json", json.dumps(self.to_dict(evidence_rows=50), indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> AuditResult:
        """Load a result saved with :meth:`save`.

        Parameters
        ----------
        directory : str or Path
            The result's directory.

        Returns
        -------
        AuditResult

        Raises
        ------
        DataError
            If the directory holds no ``result.json``.
        """
        directory = Path(directory)
        path = directory / "result.json"
        if not path.exists():
            raise DataError(f"{directory}: no result.json; not a saved audit result")
        data = json.loads(path.read_text())
        evidence = {}
        for name in data.get("evidence", {}):
            file = directory / f"{name}.parquet"
            evidence[name] = pd.read_parquet(file) if file.exists() else pd.DataFrame(data["evidence"][name]["records"])
        return cls(
            data["audit"],
            data["dimension"],
            {k: Estimate(**v) for k, v in data["estimates"].items()},
            evidence,
            data["settings"],
            Verdict(data["verdict"]["status"], tuple(data["verdict"]["reasons"])),
            tuple(data.get("warnings", ())),
            tuple(Plot(**p) for p in data.get("plots", ())),
            data.get("summary", ""),
        )
