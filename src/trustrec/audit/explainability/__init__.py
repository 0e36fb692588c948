"""Explainability audits: attributions, generated explanations and their faithfulness. The
attribution functions live in ``attribution``, the checks of generated text in
``explanation_checks``, the audit in ``faithfulness``, the explanation judges (agent-as-judge) in
``judges`` and their labelled cases in ``judge_cases``; ``_session`` is what they share."""

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
from trustrec.audit.explainability.explanation_checks import CatalogFacts, check_explanations
from trustrec.audit.explainability.faithfulness import (
    ExplanationFaithfulnessAudit,
    ExplanationFaithfulnessConfig,
)
from trustrec.audit.explainability.judge_cases import PLANTED_KINDS, JudgeCases, checked_cases, planted_cases
from trustrec.audit.explainability.judges import (
    CatalogTools,
    ExplanationJudge,
    JudgePrompts,
    JudgeVerdicts,
    compare_judges,
    judge_agreement,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "EXPLANATION_TEMPLATE",
    "PLANTED_KINDS",
    "REQUEST_STATUSES",
    "Attribution",
    "CatalogFacts",
    "CatalogTools",
    "Deletion",
    "ExplanationFaithfulnessAudit",
    "ExplanationFaithfulnessConfig",
    "ExplanationJudge",
    "JudgeCases",
    "JudgePrompts",
    "JudgeVerdicts",
    "attribute",
    "check_explanations",
    "checked_cases",
    "compare_judges",
    "deletion_test",
    "explain",
    "explanation_requests",
    "generate_explanations",
    "judge_agreement",
    "planted_cases",
]
