"""Compatibility shim: the controllability audits live in :mod:`trustrec.audit.controllability`
(one module per audit)."""

from trustrec.audit.controllability import *  # noqa: F403
from trustrec.audit.controllability import __all__  # noqa: F401
from trustrec.audit.controllability.user_control import ConstraintKind  # noqa: F401
