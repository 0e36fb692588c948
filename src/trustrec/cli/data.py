"""``trustrec data list`` and ``trustrec data info``: registered datasets, statistics of any dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import DataDir, app, console
from trustrec.cli._render import stats_table

__all__ = ["data_app", "data_info", "data_list"]

data_app = typer.Typer(help="Inspect datasets: registered names or your own files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list(
    data_dir: Path | None = DataDir,
    all: bool = typer.Option(False, "--all", help="Also list every dataset of RecBole's atomic zoo."),
):
    """List registered datasets and where each would load from now."""
    from trustrec.data import registry, resolve_dataset

    table = Table(title="registered datasets", header_style="bold")
    for col in ("name", "resolves from", "location", "description"):
        table.add_column(col, overflow="fold")
    hidden = 0
    for name, entry in registry().items():
        if "recbole-zoo" in entry.tags and not all:
            hidden += 1
            continue
        kind, where = resolve_dataset(name, data_dir=data_dir)
        table.add_row(*(escape(str(v)) for v in (name, kind, where, entry.description)))
    console.print(table)
    if hidden:
        console.print(f"... and {hidden} datasets of RecBole's atomic zoo (use --all to list them).")


@data_app.command("info")
def data_info(
    name_or_path: str = typer.Argument(..., help="A registered name (see `data list`) or a file/folder."),
    data_dir: Path | None = DataDir,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the statistics as JSON here."),  # noqa: B008  # typer declares parameters by their defaults
    format: str | None = typer.Option(
        None, "--format", help="Force a format for a path: atomic, movielens, coat, bigrec, amazon, tabular."
    ),
    column: list[str] = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        [], "--column", help="For tables: ROLE=NAME, roles user, item, timestamp, rating (repeat the option)."
    ),
):
    """Load a dataset (registered name, or any file/folder) and print its statistics."""
    from trustrec._cache import atomic_write_text
    from trustrec.data import load_dataset, load_path
    from trustrec.errors import ConfigError

    columns = {}
    for item in column:
        role, sep, col = item.partition("=")
        if not sep or not role or not col:
            raise ConfigError(f"--column expects ROLE=NAME (e.g. user=customer), got {item!r}")
        columns[role.strip()] = col.strip()
    if format or columns:
        ds = load_path(name_or_path, format=format, columns=columns or None)
    else:
        ds = load_dataset(name_or_path, data_dir=data_dir)
    stats = ds.stats()
    console.print(stats_table(stats, f"dataset {ds.name}"))
    if json_out:
        atomic_write_text(json_out, json.dumps(stats, indent=1))
