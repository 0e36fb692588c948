"""Optional dependency groups ("extras"): which are installed, and a clear error naming what to
install before any long work starts."""

from __future__ import annotations

import re
from importlib import metadata

from trustrec.errors import TrustrecError

__all__ = ["missing_from_extra", "require_extra"]


def _extra_requirements(extra: str) -> list[str]:
    """Distribution names the installed trustrec declares for ``extra``."""
    try:
        requires = metadata.requires("trustrec") or []
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return []
    names = []
    for req in requires:
        spec, _, marker = req.partition(";")
        if re.search(r"extra\s*==\s*['\"]" + re.escape(extra) + r"['\"]", marker):
            names.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return names


def missing_from_extra(extra: str) -> list[str]:
    """The distributions of ``extra`` that are not installed."""
    missing = []
    for name in _extra_requirements(extra):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:  # noqa: PERF203  # per package; a short, cold loop
            missing.append(name)
    return missing


def require_extra(extra: str, purpose: str) -> None:
    """Raise a one-line error naming the missing packages of ``extra`` and the install command."""
    missing = missing_from_extra(extra)
    if missing:
        raise TrustrecError(
            f"{purpose} needs the '{extra}' extra, missing {', '.join(missing)}: "
            f"pip install 'trustrec[{extra}]' (or python3 make.py demo, which installs it)"
        )
