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
from trustrec.models.external import (
    ExternalEndpoint,
    ExternalGenerative,
    ExternalQueries,
    ExternalRanker,
    ExternalScorer,
    ExternalTopKFile,
)

__all__ = [
    "CAPABILITIES",
    "BuildsPrompts",
    "ComposedRecommender",
    "ExternalEndpoint",
    "ExternalGenerative",
    "ExternalQueries",
    "ExternalRanker",
    "ExternalScorer",
    "ExternalTopKFile",
    "FitOptions",
    "ModelSpec",
    "RawTopK",
    "ReadsCandidates",
    "ReadsItemText",
    "ReadsOrderedCandidates",
    "Recommender",
    "ScoresAnswers",
    "ScoresCatalog",
    "ScoresListedCandidates",
    "SequenceLikelihood",
    "TopK",
    "Unlearnable",
    "UserEmbeddings",
    "UsesLLMBackend",
    "available_models",
    "capability_gap",
    "compose",
    "declared_capabilities",
    "exclusion_mask",
    "has_capability",
    "make_model",
    "model_class",
    "register_model",
    "topk_from_scores",
]
