"""Trust-motivated changes to a trained LLM recommender (DESIGN.md "Wave 2 seams").

- :mod:`~trustrec.mitigate.training.steering`: activation steering of a local LLM, NullSteer
  (null-space constrained, benign activations left unchanged) and plain difference-of-means
  steering: :func:`fit_steering`, :class:`ActivationSteering`, :func:`steered`.
- :mod:`~trustrec.mitigate.training.steered`: :class:`SteeredRecommender`, any local LLM
  recommender with a steering active on every model call (registered as ``steered``), and
  :class:`SteeredBackend`.
- :mod:`~trustrec.mitigate.training.refusal`: the conversational safety use, replies of a
  recommendation assistant to the shipped harmful / benign request sets, refusal and
  over-refusal rates, with or without a steering.
"""

from trustrec.mitigate.training.steered import SteeredBackend, SteeredConfig, SteeredRecommender
from trustrec.mitigate.training.steering import (
    ActivationSteering,
    collect_activations,
    decoder_layers,
    fit_null_space_steering,
    fit_steering,
    null_space_projector,
    steered,
)

__all__ = [
    "ActivationSteering",
    "SteeredBackend",
    "SteeredConfig",
    "SteeredRecommender",
    "collect_activations",
    "decoder_layers",
    "fit_null_space_steering",
    "fit_steering",
    "null_space_projector",
    "steered",
]
