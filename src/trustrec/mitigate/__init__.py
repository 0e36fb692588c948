"""Fairness mitigations: re-rankers that wrap a fitted recommender, and accuracy-vs-fairness
trade-off curves over their strength.

- :class:`CalibratedReranker`: calibrated recommendations (Steck, RecSys 2018).
- :class:`ExposureReranker`: popularity-aware xQuAD for long-tail or provider exposure
  (Abdollahpouri et al., FLAIRS 2019).
- :class:`TriRecReranker` / :func:`trirec_rerank`: TriRec's stage-2 platform re-ranking
  (arXiv 2603.10673): greedy per position, relevance vs popularity-group gaps (DGU / MGU)
  carried across users, times an expected-item-utility factor.
- :func:`tradeoff_curve`: NDCG/Recall vs the targeted fairness figure for a list of strengths,
  reusing one set of base candidates.
- Control: :func:`parse_constraint` turns a request's text into structured constraints
  (:class:`ExcludeGroups`, :class:`IncludeGroups`, :class:`YearRange`, :class:`SimilarTo`,
  :class:`Different`) that :class:`ConstrainedRecommender` enforces for any model;
  :class:`PlatformRules` (blocked items, exposure caps) are enforced by
  :class:`RuleEnforcedRecommender`.
- Privacy: :func:`randomised_response` / :func:`noise_training` (noise on histories at a stated
  epsilon), :func:`drop_items` / :func:`generalise_item_text` / :func:`minimise_history` (history
  minimisation in prompts) and :func:`forget` (forget requests: exact retraining or approximate
  unlearning by gradient ascent).
- Arms: every mitigation an audit measures is registered by name in :data:`MITIGATIONS`
  (:func:`register_mitigation`, :class:`MitigationArm`; kinds and call interfaces in
  :mod:`trustrec._arms`); audits name arms in their configs and never import this package.
  Data and privacy defences and the trade-off comparisons live in :mod:`trustrec.mitigate.defences`.
"""

from trustrec._arms import (
    ARM_KINDS,
    MITIGATIONS,
    MitigationArm,
    available_mitigations,
    register_mitigation,
)
from trustrec.mitigate._rerank import (
    CalibratedReranker,
    CalibratedRerankerConfig,
    ExposureReranker,
    ExposureRerankerConfig,
    Reranker,
    RerankerConfig,
    calibrated_rerank,
    minmax_relevance,
    xquad_rerank,
)
from trustrec.mitigate._trirec import TriRecReranker, TriRecRerankerConfig, TriRecResult, trirec_rerank
from trustrec.mitigate._unlearning import UNLEARNING_METHODS, forget, remove_users, resolve_users
from trustrec.mitigate._wrap import WrapperRecommender
from trustrec.mitigate.control import (
    ConstrainedConfig,
    ConstrainedRecommender,
    Constraint,
    ControlCatalog,
    Different,
    ExcludeGroups,
    IncludeGroups,
    ParsedConstraint,
    PlatformRules,
    RuleEnforcedConfig,
    RuleEnforcedRecommender,
    SimilarTo,
    YearRange,
    allowed_items,
    enforce_rules,
    parse_constraint,
)
from trustrec.mitigate.defences import (
    FakeUserDetector,
    FakeUserDetectorConfig,
    detection_scores,
    drop_items,
    generalise_item_text,
    keep_probability,
    minimise_history,
    noise_training,
    randomise_interactions,
    randomised_response,
    revealing_items,
    sensitive_mask,
    user_profile_features,
)
from trustrec.mitigate.defences.tradeoff import TradeoffPoint, summarise_tradeoff, tradeoff_curve, tradeoff_points
from trustrec.models.llm import (  # the item-text defence lives with prompts
    find_injections,
    guard_text,
)

__all__ = [
    "ARM_KINDS",
    "MITIGATIONS",
    "UNLEARNING_METHODS",
    "CalibratedReranker",
    "CalibratedRerankerConfig",
    "ConstrainedConfig",
    "ConstrainedRecommender",
    "Constraint",
    "ControlCatalog",
    "Different",
    "ExcludeGroups",
    "ExposureReranker",
    "ExposureRerankerConfig",
    "FakeUserDetector",
    "FakeUserDetectorConfig",
    "IncludeGroups",
    "MitigationArm",
    "ParsedConstraint",
    "PlatformRules",
    "Reranker",
    "RerankerConfig",
    "RuleEnforcedConfig",
    "RuleEnforcedRecommender",
    "SimilarTo",
    "TradeoffPoint",
    "TriRecReranker",
    "TriRecRerankerConfig",
    "TriRecResult",
    "WrapperRecommender",
    "YearRange",
    "allowed_items",
    "available_mitigations",
    "calibrated_rerank",
    "detection_scores",
    "drop_items",
    "enforce_rules",
    "find_injections",
    "forget",
    "generalise_item_text",
    "guard_text",
    "keep_probability",
    "minimise_history",
    "minmax_relevance",
    "noise_training",
    "parse_constraint",
    "randomise_interactions",
    "randomised_response",
    "register_mitigation",
    "remove_users",
    "resolve_users",
    "revealing_items",
    "sensitive_mask",
    "summarise_tradeoff",
    "tradeoff_curve",
    "tradeoff_points",
    "trirec_rerank",
    "user_profile_features",
    "xquad_rerank",
]
