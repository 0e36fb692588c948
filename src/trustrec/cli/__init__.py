"""The ``trustrec`` command: parses arguments, calls the library, prints tables (thin by design).

One module per command (``data``, ``models``, ``report``, ``demo``, ``run``, ``compare``,
``audit``, ``serve``), each registering itself on :data:`app` when imported; the shared error handling is
:mod:`trustrec.cli._errors`, the root group and consoles :mod:`trustrec.cli._app`.

Exit codes, the same for every command: 0 success; 2 a user error (bad input, config or file:
any :class:`~trustrec.errors.TrustrecError`, a file that is missing, unreadable, a folder or not a
regular file, a bad option), reported as one line ``error: ...`` on stderr; 1 an unexpected internal
error, reported as one line that says so (set ``TRUSTREC_DEBUG=1`` to see the traceback).
Text from data (names, titles, paths, column names) is printed as plain text, never as rich markup.
"""

from __future__ import annotations

import os

from trustrec.cli._app import DataDir, app, console, err_console
from trustrec.cli._errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, classify_error, report_error
from trustrec.cli._render import audit_table, metrics_table, stats_table
from trustrec.errors import TrustrecError

# The commands, in the order `trustrec --help` lists them (commands, then the groups data and models).
from trustrec.cli import data, models, report, demo, run, compare, audit, serve  # noqa: F401  isort:skip

__all__ = [
    "EXIT_INTERNAL_ERROR",
    "EXIT_USER_ERROR",
    "DataDir",
    "app",
    "audit_table",
    "classify_error",
    "console",
    "err_console",
    "main",
    "metrics_table",
    "report_error",
    "stats_table",
]


def main():
    """The console script: errors end as one line and the exit code of the module documentation."""
    try:
        app()
    except (TrustrecError, OSError, ValueError) as exc:  # raised outside a command (e.g. while parsing)
        if os.environ.get("TRUSTREC_DEBUG"):
            raise
        raise SystemExit(report_error(exc)) from None


if __name__ == "__main__":
    main()
