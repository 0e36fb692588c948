"""Compatibility shim: the fairness audits live in :mod:`trustrec.audit.fairness` (one module per audit)."""

from trustrec.audit.fairness import *  # noqa: F403
from trustrec.audit.fairness import __all__  # noqa: F401
