"""Compatibility shim: the explainability audits live in :mod:`trustrec.audit.explainability`
(one module per audit)."""

from trustrec.audit.explainability import *  # noqa: F403
from trustrec.audit.explainability import __all__  # noqa: F401
from trustrec.audit.explainability._session import DELETION_VARIANTS, Method  # noqa: F401
from trustrec.audit.explainability.explanation_checks import ATTRIBUTE_SYNONYMS  # noqa: F401
