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

__all__ = ["Audit", "AuditConfig", "AuditInputs", "RetrainingAudit", "AuditResult", "Estimate", "Plot", "Threshold", "Verdict",
           "DIMENSIONS", "judge", "register_audit", "audit_class", "available_audits",
           "Attribution", "Deletion", "attribute", "deletion_test", "explain", "explanation_requests",
           "generate_explanations", "check_explanations"]
