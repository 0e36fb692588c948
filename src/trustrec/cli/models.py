"""``trustrec models``: list the registered LLMs and text encoders, fetch one into the cache.

Registered on the main command when imported.
"""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import app, console

__all__ = ["models_app"]

models_app = typer.Typer(
    help="Language models and text encoders: where each resolves from; fetch one.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list():
    """List registered models and where each would load from now (nothing is fetched)."""
    from trustrec.models.llm import list_models

    table = Table(title="registered models", header_style="bold")
    for col in ("name", "kind", "resolves from", "location"):
        table.add_column(col, overflow="fold")
    notes = []
    for row in list_models():
        table.add_row(*(escape(str(v)) for v in (row.name, row.kind, row.resolves_from, row.location)))
        if row.note:
            notes.append(f"{row.name}: {row.note}")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


@models_app.command("pull")
def models_pull(
    name: str = typer.Argument(..., help="A registered model name (see `trustrec models list`)."),
    force: bool = typer.Option(False, "--force", help="Fetch again even if the cache holds a complete copy."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
):
    """Fetch a model into the trustrec cache: download, verify the checksum, convert, record."""
    from trustrec.models.llm import list_models, pull_model

    started = time.perf_counter()
    folder = pull_model(name, force=force, progress=not quiet)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    console.print(escape(f"{name}: ready in {folder} ({size / 2**20:,.1f} MiB, {seconds:.1f} s)"), highlight=False)
    row = next(r for r in list_models() if r.name == name)
    if row.resolves_from in ("local", "hf-cache"):
        console.print(
            "[yellow]note:[/] "
            + escape(
                f"{name} currently loads from the {row.resolves_from} copy "
                f"{row.location}, which comes first in the resolution order"
            ),
            highlight=False,
        )
