"""The training layer: one epoch loop with callbacks (early stopping, progress, checkpoints)
shared by the torch classic models and the LLM recommenders; the LLM trainer (prompt variants
per example, per-token weights, composable loss terms); the rollout sampler; approximate
unlearning as a training method."""

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
           "early_stopping_from", "progress_from"]
