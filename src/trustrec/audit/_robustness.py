"""Compatibility shim: the robustness audits live in :mod:`trustrec.audit.robustness` (one module per audit)."""

from trustrec.audit.robustness import *  # noqa: F403
from trustrec.audit.robustness import __all__  # noqa: F401
