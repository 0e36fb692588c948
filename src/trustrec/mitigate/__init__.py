"""Fairness mitigations: re-rankers that wrap a fitted recommender, and accuracy-vs-fairness
trade-off curves over their strength.

- :class:`CalibratedReranker`: calibrated recommendations (Steck, RecSys 2018).
- :class:`ExposureReranker`: popularity-aware xQuAD for long-tail or provider exposure
  (Abdollahpouri et al., FLAIRS 2019).
- :func:`tradeoff_curve`: NDCG/Recall vs the targeted fairness figure for a list of strengths,
  reusing one set of base candidates.
"""

from trustrec.mitigate._defences import FakeUserDetector, FakeUserDetectorConfig, detection_scores, user_profile_features
from trustrec.mitigate._rerank import (
    CalibratedReranker,
    CalibratedRerankerConfig,
    ExposureReranker,
    ExposureRerankerConfig,
    Reranker,
    RerankerConfig,
    TradeoffPoint,
    calibrated_rerank,
    minmax_relevance,
    summarise_tradeoff,
    tradeoff_curve,
    tradeoff_points,
    xquad_rerank,
)

__all__ = ["Reranker", "RerankerConfig", "CalibratedReranker", "CalibratedRerankerConfig", "ExposureReranker",
           "ExposureRerankerConfig", "calibrated_rerank", "xquad_rerank", "minmax_relevance", "TradeoffPoint",
           "tradeoff_points", "summarise_tradeoff", "tradeoff_curve",
           "FakeUserDetector", "FakeUserDetectorConfig", "user_profile_features", "detection_scores"]
