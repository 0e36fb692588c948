"""The exact command a benchmark was run with, for its results file (and the README to quote).

``command_line()`` is ``python benchmarks/<script>.py`` followed by the arguments as typed
(``sys.argv``), so a reader re-runs exactly what produced the stored figures. Paths inside the
repository are written relative to its root and paths outside it as ``<outside>/<name>``, so no
machine path reaches a results file.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["command_line"]


def _clean(arg: str) -> str:
    key, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if value.startswith(("/", "~")):
        path = Path(value).expanduser().resolve()
        try:
            value = str(path.relative_to(ROOT))
        except ValueError:
            value = f"<outside>/{path.name}"
    return f"{key}{eq}{value}"


def command_line(argv: list[str] | None = None) -> str:
    """``python benchmarks/<script> <args>`` for ``argv`` (default ``sys.argv``)."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else ROOT / "benchmarks" / "unknown.py"
    try:
        shown = str(script.relative_to(ROOT)) if script.is_file() else f"benchmarks/{script.name}"
    except ValueError:
        shown = f"benchmarks/{script.name}"
    return shlex.join(["python", shown, *(_clean(a) for a in argv[1:])])
