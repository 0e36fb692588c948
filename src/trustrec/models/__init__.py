"""Recommenders: the protocol, the registry and the model families (classic, llm, agents)."""

from trustrec.models._base import FitOptions, Recommender, exclusion_mask
from trustrec.models._compose import ComposedRecommender, compose
from trustrec.models._protocols import (
    CAPABILITIES,
    BuildsPrompts,
    ReadsCandidates,
    ReadsItemText,
    ReadsOrderedCandidates,
    ScoresAnswers,
    ScoresCatalog,
    ScoresListedCandidates,
    SequenceLikelihood,
    Unlearnable,
    UserEmbeddings,
    UsesLLMBackend,
    capability_gap,
    declared_capabilities,
    has_capability,
)
from trustrec.models._registry import (
    ModelSpec,
    available_models,
    make_model,
    model_class,
    register_model,
)
from trustrec.models._topk import RawTopK, TopK, topk_from_scores

__all__ = [
    "Recommender",
    "FitOptions",
    "exclusion_mask",
    "ComposedRecommender",
    "compose",
    "RawTopK",
    "TopK",
    "topk_from_scores",
    "ModelSpec",
    "register_model",
    "model_class",
    "available_models",
    "make_model",
    "CAPABILITIES",
    "has_capability",
    "capability_gap",
    "declared_capabilities",
    "ScoresCatalog",
    "ReadsCandidates",
    "ReadsOrderedCandidates",
    "ScoresListedCandidates",
    "ReadsItemText",
    "BuildsPrompts",
    "UsesLLMBackend",
    "ScoresAnswers",
    "SequenceLikelihood",
    "Unlearnable",
    "UserEmbeddings",
]
