"""``trustrec audit``: run the trust audits that apply to a finished run or to a model trustrec did not
train (``--model external.yaml --out DIR``), or list them all."""

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
    model: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None,
        "--model",
        "-m",
        help="Instead of RUN_DIR: a YAML naming a model trustrec did not train (an external adapter: "
        "external_scorer, external_ranker, external_topk_file, external_endpoint, or any registered model), "
        "its dataset and split; the model is fitted on the split and audited into --out.",
    ),
    out: Path | None = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        None, "--out", "-o", help="With --model: the folder the audits go to (new, empty, or from an earlier --model)."
    ),
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
        "a Ray task; starts a local Ray instance unless --address names a cluster; needs the 'ray' extra).",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="With --executor ray: the Ray cluster to run on ('auto': the one `ray start` "
        "left on this machine; HOST:PORT: a head node; ray://HOST:10001: a Ray client server).",
    ),
):
    """Run the audits that apply to a run's model (results go to RUN_DIR/audits/), or to a model
    trustrec did not train (--model YAML; results go to --out)."""
    from trustrec._safeio import load_yaml
    from trustrec.errors import ConfigError

    if list_:
        console.print(_list_table())
        return
    if model is not None and run_dir is not None:
        raise ConfigError("trustrec audit: give a RUN_DIR or --model YAML, not both")
    if model is not None and out is None:
        raise ConfigError("trustrec audit --model: give --out, the folder the audits go to")
    if model is None and out is not None:
        raise ConfigError("trustrec audit: --out goes with --model (a run's audits go to RUN_DIR/audits/)")
    if run_dir is None and model is None:
        raise ConfigError("trustrec audit: give a RUN_DIR or --model YAML (or --list to see the audits)")
    overrides: dict[str, Any] = {}
    if params is not None:
        if not params.exists():
            raise ConfigError(f"{params}: no such audit parameter file")
        overrides = load_yaml(params, what="an audit parameter file") or {}
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ConfigError(f"{params}: expected a mapping of audit name -> mapping of parameters")
    from trustrec.parallel import resolve_executor
    from trustrec.runs import audit_external, load_external_config, run_audits

    config = load_external_config(model) if model is not None else None  # a bad YAML fails before any work
    runner = resolve_executor(executor, address=address)  # a missing extra fails here, before any work
    kwargs: dict[str, Any] = {
        "dimensions": dimension or None,
        "names": name or None,
        "params": overrides,
        "log": lambda *_: None,
        "executor": runner,
    }
    try:
        if config is not None and out is not None:
            index = audit_external(config, out, **kwargs)
            written = out
        else:
            assert run_dir is not None  # checked above
            index = run_audits(run_dir, **kwargs)
            written = run_dir / "audits"
    finally:
        if hasattr(runner, "shutdown"):
            runner.shutdown()
    console.print(audit_table(index["audits"], f"audits of {index['run']} ({index['model']} on {index['dataset']})"))
    console.print(f"written: {escape(str(written))}", highlight=False, soft_wrap=True)


app.command("audit")(audit)
