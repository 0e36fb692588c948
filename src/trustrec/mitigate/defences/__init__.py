"""Data and privacy defences, their arms for audits, and trade-off comparisons of mitigations.

- :mod:`.detection`: unsupervised fake-user (shilling) detection (:class:`FakeUserDetector`);
- :mod:`.privacy`: randomised response and history minimisation;
- :mod:`.tradeoff`: accuracy-vs-fairness trade-off curves of the re-rankers;
- :mod:`.arms`: the built-in mitigation arms (:func:`builtin_arms`) that
  :data:`trustrec.mitigate.MITIGATIONS` loads on first lookup.
"""

from trustrec.mitigate.defences.arms import (
    HistoryMinimisation,
    InjectionGuard,
    RandomisedResponse,
    builtin_arms,
)
from trustrec.mitigate.defences.detection import (
    FakeUserDetector,
    FakeUserDetectorConfig,
    detection_scores,
    user_profile_features,
)
from trustrec.mitigate.defences.privacy import (
    drop_items,
    generalise_item_text,
    keep_probability,
    minimise_history,
    noise_training,
    randomise_interactions,
    randomised_response,
    revealing_items,
    sensitive_mask,
)
from trustrec.mitigate.defences.tradeoff import (
    RerankerArm,
    TradeoffPoint,
    compare_tradeoff,
    summarise_tradeoff,
    tradeoff_curve,
    tradeoff_points,
)

__all__ = [
    "FakeUserDetector",
    "FakeUserDetectorConfig",
    "HistoryMinimisation",
    "InjectionGuard",
    "RandomisedResponse",
    "RerankerArm",
    "TradeoffPoint",
    "builtin_arms",
    "compare_tradeoff",
    "detection_scores",
    "drop_items",
    "generalise_item_text",
    "keep_probability",
    "minimise_history",
    "noise_training",
    "randomise_interactions",
    "randomised_response",
    "revealing_items",
    "sensitive_mask",
    "summarise_tradeoff",
    "tradeoff_curve",
    "tradeoff_points",
    "user_profile_features",
]
