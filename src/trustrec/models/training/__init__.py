"""The training layer: one epoch loop with callbacks (early stopping, progress, checkpoints)
shared by the torch classic models and the LLM recommenders; the LLM trainer (prompt variants
per example, per-token weights, composable loss terms); approximate unlearning as a training
method."""

from trustrec.models.training.llm import (
           IGNORE,
           CausalLMLoss,
           DistillationLoss,
           ListRewardLoss,
           LLMTrainer,
           LossContext,
           LossTerm,
           PairwisePreferenceLoss,
           PromptVariant,
           TrainingExample,
           causal_lm_loss,
           collate_examples,
           distillation_loss,
           preference_loss,
           reinforce_loss,
           sequence_logprobs,
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

__all__ = ["Callback", "EpochLoop", "EarlyStopping", "ProgressBar", "Checkpoint", "load_checkpoint",
           "early_stopping_from", "progress_from",
           "IGNORE", "PromptVariant", "TrainingExample", "LossContext", "LossTerm", "CausalLMLoss",
           "PairwisePreferenceLoss", "DistillationLoss", "ListRewardLoss", "LLMTrainer", "collate_examples",
           "causal_lm_loss", "sequence_logprobs", "preference_loss", "distillation_loss", "reinforce_loss"]
from trustrec.models.training.unlearning import approximate_unlearn, supports_approximate_unlearning

__all__ += ["approximate_unlearn", "supports_approximate_unlearning"]
from trustrec.models.training.rollout import Rollout, RolloutSampler

__all__ += ["Rollout", "RolloutSampler"]
