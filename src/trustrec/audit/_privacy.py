"""Compatibility shim: the privacy audits live in :mod:`trustrec.audit.privacy` (one module per audit)."""

from trustrec.audit.privacy import *  # noqa: F403
from trustrec.audit.privacy import __all__  # noqa: F401
