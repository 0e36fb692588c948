"""``trustrec audit``: run the trust audits that apply to a finished run, or list them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import app, console
from trustrec.cli._render import audit_table

__all__ = ["audit", "audit_table"]


def _list_table() -> Table:
    from trustrec.audit import available_audits

    table = Table(title="registered audits", header_style="bold")
    table.add_column("dimension", no_wrap=True)
    table.add_column("audit", no_wrap=True)
    for col in ("measures", "needs"):
        table.add_column(col, overflow="fold")
    for cls in sorted(available_audits().values(), key=lambda c: (c.dimension, c.name)):
        table.add_row(cls.dimension, cls.name, cls.description, cls.needs)
    return table


def audit(
    run_dir: Path | None = typer.Argument(None, help="A finished run directory (from `trustrec run`)."),  # noqa: B008  # typer declares parameters by their defaults
    dimension: list[str] = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        [],
        "--dimension",
        "-d",
        help="Only audits of this dimension "
        "(repeatable): robustness, fairness, controllability, explainability, "
        "factuality, privacy, safety.",
    ),
    name: list[str] = typer.Option([], "--audit", "-a", help="Only this audit (repeatable)."),  # noqa: B008  # typer declares parameters by their defaults
    params: Path | None = typer.Option(None, "--params", help="YAML mapping audit name -> config overrides."),  # noqa: B008  # typer declares parameters by their defaults
    list_: bool = typer.Option(False, "--list", help="List every audit with its dimension and what it needs."),
    executor: str = typer.Option(
        "serial",
        "--executor",
        help="Where the audits run: serial, or ray (each audit "
        "a Ray task; starts a local Ray instance; needs the 'ray' extra).",
    ),
):
    """Run the audits that apply to a run's model; results go to RUN_DIR/audits/."""
    from trustrec._safeio import load_yaml
    from trustrec.errors import ConfigError

    if list_:
        console.print(_list_table())
        return
    if run_dir is None:
        raise ConfigError("trustrec audit: give a RUN_DIR (or --list to see the audits)")
    overrides: dict[str, Any] = {}
    if params is not None:
        if not params.exists():
            raise ConfigError(f"{params}: no such audit parameter file")
        overrides = load_yaml(params, what="an audit parameter file") or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError(f"{params}: expected a mapping of audit name -> mapping of parameters")
    from trustrec.parallel import resolve_executor
    from trustrec.runs import run_audits

    runner = resolve_executor(executor)  # a missing extra fails here, before any work
    try:
        index = run_audits(
            run_dir,
            dimensions=dimension or None,
            names=name or None,
            params=overrides,
            log=lambda *_: None,
            executor=runner,
        )
    finally:
        if hasattr(runner, "shutdown"):
            runner.shutdown()
    console.print(audit_table(index["audits"], f"audits of {index['run']} ({index['model']} on {index['dataset']})"))
    console.print(f"written: {escape(str(run_dir / 'audits'))}", highlight=False, soft_wrap=True)


app.command("audit")(audit)
