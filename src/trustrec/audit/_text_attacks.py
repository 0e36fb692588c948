"""Compatibility shim: the text-attack audit lives in :mod:`trustrec.audit.robustness.text_attack`."""

from trustrec.audit.robustness.text_attack import *  # noqa: F403
from trustrec.audit.robustness.text_attack import __all__  # noqa: F401
