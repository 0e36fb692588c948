"""Exit codes and one-line error messages, the same for every command (see :mod:`trustrec.cli`)."""

from __future__ import annotations

import typer

from trustrec.errors import TrustrecError

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_USER_ERROR", "FRAMEWORK_EXCEPTIONS", "classify_error", "report_error"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _one_line(text: object, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def classify_error(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) of an exception that ended a command."""
    if isinstance(exc, TrustrecError):
        return EXIT_USER_ERROR, _one_line(exc)
    if isinstance(exc, OSError):
        what = {
            FileNotFoundError: "not found",
            PermissionError: "permission denied",
            IsADirectoryError: "is a folder, expected a file",
            NotADirectoryError: "a part of the path is not a folder",
        }.get(type(exc))
        name = exc.filename if exc.filename is not None else ""
        reason = what or exc.strerror or str(exc)
        return EXIT_USER_ERROR, _one_line(f"{name}: {reason}" if name else reason)
    if isinstance(exc, ValueError) and "null byte" in str(exc):
        return EXIT_USER_ERROR, "a name or path contains a NUL character (\\x00); remove it"
    if isinstance(exc, UnicodeError):
        return EXIT_USER_ERROR, _one_line(f"cannot decode text ({exc}); save the input as UTF-8")
    if isinstance(exc, MemoryError):
        return EXIT_INTERNAL_ERROR, "out of memory; use a smaller input or setting"
    return EXIT_INTERNAL_ERROR, _one_line(
        f"internal error ({type(exc).__name__}: {exc}); this is a bug in trustrec, please report it "
        "(TRUSTREC_DEBUG=1 shows the traceback)"
    )


def report_error(exc: BaseException) -> int:
    code, message = classify_error(exc)
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)
    return code


# Exceptions the command-line framework handles itself (exit, abort, usage errors such as a bad option).
FRAMEWORK_EXCEPTIONS = (
    typer.Exit,
    typer.Abort,
    *[c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"],
)
