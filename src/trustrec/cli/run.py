"""``trustrec run CONFIG``: train and evaluate one model as a config says."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from trustrec.cli._app import app, console
from trustrec.cli._render import metrics_table

__all__ = ["run_cmd"]


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Run config (YAML): dataset, split, model, fit, eval, seed."),  # noqa: B008  # typer declares parameters by their defaults
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the run directory."),  # noqa: B008  # typer declares parameters by their defaults
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a finished run of this name (another config, or data changed since), with its audits and report.",
    ),
):
    """Train and evaluate one model as a config says; writes a run directory atomically.

    A finished run of the same config on the same data is reused as it is."""
    from trustrec.runs import run_experiment

    res = run_experiment(config, out, overwrite=overwrite)
    metrics = list(res.metrics["metrics"])
    console.print(
        metrics_table(
            {res.metrics["model"]: res.metrics["metrics"]},
            metrics,
            f"run {res.metrics['run']} ({res.metrics['dataset']})",
        )
    )
    if res.metrics["aggregates"]:
        console.print(escape(", ".join(f"{k} {v:.4f}" for k, v in res.metrics["aggregates"].items())))
    console.print(f"written: {escape(str(res.path))}", highlight=False, soft_wrap=True)
