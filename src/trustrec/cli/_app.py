"""The root command group, its options and the consoles every command prints to."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from typer.core import TyperGroup

from trustrec._version import __version__
from trustrec.cli._errors import FRAMEWORK_EXCEPTIONS, report_error

__all__ = ["DataDir", "app", "console", "err_console"]


class _Commands(TyperGroup):
    """The root command group: every command's errors end as one line and an exit code (see
    :mod:`trustrec.cli`)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FRAMEWORK_EXCEPTIONS:
            raise
        except Exception as exc:
            if os.environ.get("TRUSTREC_DEBUG"):
                raise
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="trustrec",
    help="Build, evaluate, audit and harden LLM-empowered recommender systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Commands,
)
console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Folder holding dataset folders (overrides TRUSTREC_DATA).")


def _version_callback(value: bool):
    if value:
        console.print(f"trustrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
):
    """trustrec: accuracy and trust of recommenders, on real data."""
