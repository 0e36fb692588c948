"""Fairness audits: user groups (consumer side), item exposure and popularity (provider side),
calibration, counterfactual sensitive-attribute probing of models that read attributes, and cold
items, one module each. (The position bias of LLM rankers, also a fairness audit, lives in
:mod:`trustrec.audit.controllability`, whose machinery it shares; ``fairness_mitigations`` in
``audit._mitigations``.)"""

# the import order is the registration order
# (user_fairness, item_exposure, calibration, counterfactual_attributes, cold_start,
# popularity_amplification, finetune_token_shift)
from trustrec.audit.fairness.user_fairness import UserFairnessAudit, UserFairnessConfig  # noqa: I001
from trustrec.audit.fairness.item_exposure import ItemExposureAudit, ItemExposureConfig
from trustrec.audit.fairness.calibration import CalibrationAudit, CalibrationConfig
from trustrec.audit.fairness.counterfactual_attributes import (
    CounterfactualAttributeAudit,
    CounterfactualConfig,
    reads_query_attributes,
)
from trustrec.audit.fairness.cold_start import ColdStartAudit, ColdStartConfig
from trustrec.audit.fairness.popularity_amplification import (
    FinetuneTokenShiftAudit,
    FinetuneTokenShiftConfig,
    PopularityAmplificationAudit,
    PopularityAmplificationConfig,
)

__all__ = [
    "CalibrationAudit",
    "CalibrationConfig",
    "ColdStartAudit",
    "ColdStartConfig",
    "CounterfactualAttributeAudit",
    "CounterfactualConfig",
    "FinetuneTokenShiftAudit",
    "FinetuneTokenShiftConfig",
    "ItemExposureAudit",
    "ItemExposureConfig",
    "PopularityAmplificationAudit",
    "PopularityAmplificationConfig",
    "UserFairnessAudit",
    "UserFairnessConfig",
    "reads_query_attributes",
]
