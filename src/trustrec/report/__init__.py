"""The trust report of a run directory: ``report.html`` (one self-contained page: accuracy, a
scorecard over the trust dimensions, each audit's verdict, estimates, figures and evidence, the
audit trail) and ``report.json`` (the same content as data).

>>> from trustrec.report import write_report
>>> write_report("runs/ml-100k-sasrec")            # doctest: +SKIP
PosixPath('runs/ml-100k-sasrec/report.html')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trustrec.report._compare import VERDICT_RANK, base_comparison
from trustrec.report._data import (
    STATUS_ORDER,
    AuditEntry,
    RunContents,
    collect_run,
    report_data,
    worst_status,
)
from trustrec.report._html import render_html
from trustrec.report._plots import RenderedPlot, render_plot

__all__ = [
    "EVIDENCE_ROWS",
    "STATUS_ORDER",
    "VERDICT_RANK",
    "AuditEntry",
    "RenderedPlot",
    "RunContents",
    "base_comparison",
    "build_report",
    "collect_run",
    "render_plot",
    "worst_status",
    "write_report",
]

EVIDENCE_ROWS = 20  # rows of each evidence table shown in the page and kept in report.json


def build_report(
    run_dir: str | Path, *, evidence_rows: int = EVIDENCE_ROWS, base: str | Path | None = None
) -> tuple[dict[str, Any], str]:
    """The report of ``run_dir``, without writing anything.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (what ``trustrec run`` wrote).
    evidence_rows : int
        Rows of each evidence table shown in the page and kept in the data.
    base : str, Path or None
        A run to show this one next to (the model it was pruned, steered or otherwise changed
        from): accuracy paired user by user, and each audit's verdict and estimates in both runs.

    Returns
    -------
    data : dict
        What ``report.json`` holds.
    html : str
        The page.

    Raises
    ------
    ConfigError
        If ``base`` is the run itself.
    DataError
        If ``run_dir`` or ``base`` is missing or not a finished run (no ``metrics.json``), or the
        two runs are on different datasets.
    """
    contents = collect_run(run_dir)
    data = report_data(contents, evidence_rows=evidence_rows, base=None if base is None else collect_run(base))
    return data, render_html(contents, data)


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    evidence_rows: int = EVIDENCE_ROWS,
    base: str | Path | None = None,
) -> Path:
    """Write the report of ``run_dir`` and return the HTML file's path.

    ``out`` is the HTML file (default ``RUN_DIR/report.html``); ``report.json`` goes beside it
    with the same stem. Both writes are atomic. A run without ``audits/`` is reported as not
    audited yet; an audit whose result cannot be loaded is shown with the error.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (what ``trustrec run`` wrote).
    out : str, Path or None
        The HTML file to write; None: ``RUN_DIR/report.html``.
    evidence_rows : int
        Rows of each evidence table shown in the page and kept in ``report.json``.
    base : str, Path or None
        A run to show this one next to (see :func:`build_report`).

    Returns
    -------
    Path
        The HTML file's path.

    Raises
    ------
    ConfigError
        If ``out`` names a ``.json`` file, or ``base`` is the run itself.
    DataError
        If ``run_dir`` or ``base`` is missing or not a finished run (no ``metrics.json``), or the
        two runs are on different datasets.
    """
    from trustrec._cache import atomic_write_text

    out = Path(run_dir) / "report.html" if out is None else Path(out)
    if out.suffix.lower() == ".json":
        from trustrec.errors import ConfigError

        raise ConfigError(f"out={str(out)!r}: name the HTML file (e.g. report.html); the JSON goes beside it")
    data, html = build_report(run_dir, evidence_rows=evidence_rows, base=base)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps(data, indent=1, allow_nan=False))
    atomic_write_text(out, html)
    return out
