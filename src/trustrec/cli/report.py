"""``trustrec report RUN_DIR``: write a run's trust report (HTML + JSON) and print its scorecard.

Registered on the main command when imported.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import app, console

__all__ = ["base_table", "report", "scorecard_table"]

_STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "error": "magenta",
    "no_threshold": "cyan",
    "not_applicable": "dim",
    "not_audited": "dim",
}


def _status(status: str) -> str:
    return f"[{_STYLE.get(status, 'magenta')}]{escape(status.replace('_', ' '))}[/]"


def scorecard_table(data: dict) -> Table:
    """The scorecard of a report's data: one row per trust dimension."""
    table = Table(
        title=escape(f"trust scorecard: {data['run']} ({data['model']} on {data['dataset']})"), header_style="bold"
    )
    table.add_column("dimension")
    table.add_column("audits", justify="right")
    table.add_column("worst")
    table.add_column("audits and status", overflow="fold")
    for row in data["scorecard"]:
        audits = ", ".join(f"{escape(a['name'])} {_status(a['status'])}" for a in row["audits"])
        table.add_row(
            escape(row["dimension"]),
            str(row["n_audits"]),
            _status(row["worst_status"]) if row["n_audits"] else _status("not_audited"),
            audits or "-",
        )
    return table


def base_table(comparison: dict) -> Table:
    """A report's comparison with its base run: accuracy rows, then each audit's verdict in both."""
    table = Table(title=escape(f"{comparison['run']} next to its base {comparison['base_run']}"), header_style="bold")
    for col in ("measure", "base", "this run", "change"):
        table.add_column(col, justify="right" if col != "measure" else "left")

    def value(m: dict) -> str:
        if m["mean"] is None:
            return "-"
        ci = f" [{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] is not None and m["ci_high"] is not None else ""
        return f"{m['mean']:.4f}{ci}"

    for r in comparison["accuracy"]["rows"]:
        change = "-" if r["change"] is None else f"{r['change']:+.4f}"
        if r["p_t"] is not None:
            change += f" (p {r['p_t']:.3g})"
        table.add_row(escape(r["metric"]), value(r["base"]), value(r["run"]), change)
    for a in comparison["audits"]:
        table.add_row(escape(a["audit"]), _status(a["base_status"]), _status(a["status"]), escape(a["direction"]))
    return table


def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `trustrec run` (audited or not)."),  # noqa: B008  # typer declares parameters by their defaults
    out: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None, "--out", help="HTML file to write (default RUN_DIR/report.html); report.json goes beside it."
    ),
    base: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None,
        "--base",
        help="A run to show this one next to (the model it was pruned, steered or otherwise changed from).",
    ),
):
    """Write the trust report of a run: report.html (self-contained) and report.json."""
    import json

    from trustrec.report import write_report

    path = write_report(run_dir, out, base=base)  # errors: one line, exit code 2 (trustrec.cli)
    data = json.loads(path.with_suffix(".json").read_text())
    console.print(scorecard_table(data))
    if data.get("base"):
        console.print(base_table(data["base"]))
    for note in [*data["notes"], *(data.get("base") or {}).get("notes", [])]:
        console.print(f"[yellow]note:[/] {escape(str(note))}", highlight=False)
    console.print(escape(f"written: {path} and {path.with_suffix('.json').name}"), highlight=False, soft_wrap=True)


app.command("report")(report)
