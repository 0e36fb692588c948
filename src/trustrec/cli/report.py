"""``trustrec report RUN_DIR``: write a run's trust report (HTML + JSON) and print its scorecard.

Registered on the main command when imported.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import app, console

__all__ = ["report", "scorecard_table"]

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


def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `trustrec run` (audited or not)."),  # noqa: B008  # typer declares parameters by their defaults
    out: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None, "--out", help="HTML file to write (default RUN_DIR/report.html); report.json goes beside it."
    ),
):
    """Write the trust report of a run: report.html (self-contained) and report.json."""
    import json

    from trustrec.report import write_report

    path = write_report(run_dir, out)  # errors: one line, exit code 2 (trustrec.cli)
    data = json.loads(path.with_suffix(".json").read_text())
    console.print(scorecard_table(data))
    for note in data["notes"]:
        console.print(f"[yellow]note:[/] {escape(str(note))}", highlight=False)
    console.print(escape(f"written: {path} and {path.with_suffix('.json').name}"), highlight=False, soft_wrap=True)


app.command("report")(report)
