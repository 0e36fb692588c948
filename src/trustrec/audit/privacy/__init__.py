"""Privacy audits: membership inference (with canary exposure and the randomised-response
defence), attribute inference (with history minimisation) and unlearning, one module each;
the per-user loss they share is :func:`next_item_losses` (``_common``)."""

# the import order is the registration order (membership, attribute, unlearning)
from trustrec.audit.privacy._common import next_item_losses  # noqa: I001
from trustrec.audit.privacy.membership_inference import (
    FPRS,
    MembershipInferenceAudit,
    MembershipInferenceConfig,
    canary_exposure,
    random_sequences,
)
from trustrec.audit.privacy.attribute_inference import AttributeInferenceAudit, AttributeInferenceConfig
from trustrec.audit.privacy.unlearning import UnlearningAudit, UnlearningConfig, js_divergence
from trustrec.eval import macro_ovr_auc, roc_auc, tpr_at_fpr  # re-exported: they lived here

__all__ = [
    "FPRS",
    "AttributeInferenceAudit",
    "AttributeInferenceConfig",
    "MembershipInferenceAudit",
    "MembershipInferenceConfig",
    "UnlearningAudit",
    "UnlearningConfig",
    "canary_exposure",
    "js_divergence",
    "macro_ovr_auc",
    "next_item_losses",
    "random_sequences",
    "roc_auc",
    "tpr_at_fpr",
]
