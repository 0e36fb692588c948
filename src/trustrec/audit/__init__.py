"""Trust audits: one protocol (``Audit.run(model, split) -> AuditResult``), a registry by name,
and one module per dimension. ``run_audits`` audits a finished run directory."""

from trustrec.audit._base import (
    Audit,
    AuditConfig,
    AuditInputs,
    RetrainingAudit,
    audit_class,
    available_audits,
    register_audit,
)
from trustrec.audit._factuality import category_rates, classify_generations, per_user_rates
from trustrec.audit._result import (
    DIMENSIONS,
    AuditResult,
    Estimate,
    Plot,
    Threshold,
    Verdict,
    judge,
)
from trustrec.audit.explainability import (
    Attribution,
    Deletion,
    attribute,
    check_explanations,
    deletion_test,
    explain,
    explanation_requests,
    generate_explanations,
)

__all__ = [
    "DIMENSIONS",
    "Attribution",
    "Audit",
    "AuditConfig",
    "AuditInputs",
    "AuditResult",
    "Deletion",
    "Estimate",
    "Plot",
    "RetrainingAudit",
    "Threshold",
    "Verdict",
    "attribute",
    "audit_class",
    "available_audits",
    "category_rates",
    "check_explanations",
    "classify_generations",
    "deletion_test",
    "explain",
    "explanation_requests",
    "generate_explanations",
    "judge",
    "per_user_rates",
    "register_audit",
]


def __getattr__(name: str):
    """Audit classes by class name (``from trustrec.audit import PoisoningAudit``), found through
    the registry, so importing the package does not import every audit module."""
    if name.startswith("_") or not name.endswith("Audit"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for cls in available_audits().values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
