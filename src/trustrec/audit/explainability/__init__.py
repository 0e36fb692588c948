"""Explainability audits: attributions, generated explanations and their faithfulness. The
attribution functions live in ``attribution``, the checks of generated text in
``explanation_checks`` and the audit in ``faithfulness``; ``_session`` is what they share."""

from trustrec.audit.explainability._session import (
    ATTRIBUTION_METHODS,
    REQUEST_STATUSES,
    Attribution,
    Deletion,
)
from trustrec.audit.explainability.attribution import (
    EXPLANATION_TEMPLATE,
    attribute,
    deletion_test,
    explain,
    explanation_requests,
    generate_explanations,
)
from trustrec.audit.explainability.explanation_checks import check_explanations
from trustrec.audit.explainability.faithfulness import (
    ExplanationFaithfulnessAudit,
    ExplanationFaithfulnessConfig,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "EXPLANATION_TEMPLATE",
    "REQUEST_STATUSES",
    "Attribution",
    "Deletion",
    "ExplanationFaithfulnessAudit",
    "ExplanationFaithfulnessConfig",
    "attribute",
    "check_explanations",
    "deletion_test",
    "explain",
    "explanation_requests",
    "generate_explanations",
]
