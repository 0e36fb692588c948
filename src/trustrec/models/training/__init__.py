"""The training layer: one epoch loop with callbacks (early stopping, progress, checkpoints)
shared by the torch classic models and the LLM recommenders; the LLM trainer (prompt variants
per example, per-token weights, composable loss terms: causal LM, pairwise preference,
distillation, list-level reward given by the caller; the plain objectives under them;
per-token weight schemes); the rollout sampler (seeded samples per
query through an LLM backend, free or trie-constrained); approximate unlearning as a training
method."""

from trustrec.models.training.llm import (
    CausalLMLoss,
    DistillationLoss,
    ListRewardLoss,
    LLMTrainer,
    LossContext,
    LossTerm,
    PairwisePreferenceLoss,
    PromptVariant,
    TrainingExample,
)
from trustrec.models.training.loop import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochLoop,
    ProgressBar,
    early_stopping_from,
    load_checkpoint,
    progress_from,
)
from trustrec.models.training.objectives import (
    IGNORE,
    causal_lm_loss,
    collate_examples,
    distillation_loss,
    preference_loss,
    reinforce_loss,
    sequence_logprobs,
    token_logprobs,
)
from trustrec.models.training.rollout import Rollout, RolloutSampler, shared_prompt_logprobs
from trustrec.models.training.token_weights import (
    TOKEN_WEIGHT_SCHEMES,
    critical_token_weights,
    linear_decay_token_weights,
    token_weight_scheme,
    uniform_token_weights,
)
from trustrec.models.training.unlearning import approximate_unlearn, supports_approximate_unlearning

__all__ = [
    "IGNORE",
    "TOKEN_WEIGHT_SCHEMES",
    "Callback",
    "CausalLMLoss",
    "Checkpoint",
    "DistillationLoss",
    "EarlyStopping",
    "EpochLoop",
    "LLMTrainer",
    "ListRewardLoss",
    "LossContext",
    "LossTerm",
    "PairwisePreferenceLoss",
    "ProgressBar",
    "PromptVariant",
    "Rollout",
    "RolloutSampler",
    "TrainingExample",
    "approximate_unlearn",
    "causal_lm_loss",
    "collate_examples",
    "critical_token_weights",
    "distillation_loss",
    "early_stopping_from",
    "linear_decay_token_weights",
    "load_checkpoint",
    "preference_loss",
    "progress_from",
    "reinforce_loss",
    "sequence_logprobs",
    "shared_prompt_logprobs",
    "supports_approximate_unlearning",
    "token_logprobs",
    "token_weight_scheme",
    "uniform_token_weights",
]
