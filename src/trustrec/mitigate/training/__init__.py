"""Trust-motivated changes to a trained LLM recommender (DESIGN.md "Wave 2 seams").

- :mod:`~trustrec.mitigate.training.alignment`: list-level alignment pieces (issue 22): rewards
  from trustrec's metrics (:class:`ListReward`), :func:`best_of_n`, static Best-of-N targets
  (:func:`bon_weights`), BLADE's adaptive target (:class:`BladeTarget`), RISER's routing
  (:func:`route_groups`, :func:`group_advantages`, :func:`capped_policy_loss`,
  :func:`first_occurrences`) and preference pairs (:func:`preference_pairs`); the loss terms
  :class:`BestOfNTargetLoss` (static BoN alignment, BLADE) and :class:`RiserLoss`;
  :mod:`~trustrec.mitigate.training.aligned`: :class:`AlignedGenerativeRecommender`
  (``llm_generative_aligned``), the generative recommender after SFT and one of static BoN,
  BLADE, RISER, GRPO or DPO over its own sampled lists, and Best-of-N at inference
  (:func:`best_of_n_lists`, :func:`sample_lists`, :func:`sample_items`).

- :mod:`~trustrec.mitigate.training.steering`: activation steering of a local LLM, NullSteer
  (null-space constrained, benign activations left unchanged) and plain difference-of-means
  steering: :func:`fit_steering`, :class:`ActivationSteering`, :func:`steered`.
- :mod:`~trustrec.mitigate.training.steered`: :class:`SteeredRecommender`, any local LLM
  recommender with a steering active on every model call (registered as ``steered``), and
  :class:`SteeredBackend`.
- :mod:`~trustrec.mitigate.training.pruning`: PruneRec's structural pruning (arXiv 2507.07064):
  :class:`PruningPlan` (what each layer keeps, grouped-query attention pruned evenly per
  key/value group), :func:`apply_plan` (a physically smaller copy), :func:`masked_forward` (the
  same computation on the unpruned model), :func:`drop_layers` and :func:`prune_hidden` (whole
  layers and hidden dimensions out of a pruned or unpruned model), :func:`save_pruned` /
  :func:`load_pruned`; :mod:`~trustrec.mitigate.training.pruning_criteria`: the criteria
  :func:`head_importance`, :func:`channel_importance`, :func:`hidden_importance`,
  :func:`plan_from_scores`, :func:`layer_removal_order`.
- :mod:`~trustrec.mitigate.training.pruned`: :class:`PrunedRecommender` (registered as
  ``pruned``), a fitted LLM recommender answering through its pruned model, with PruneRec's
  distillation recovery.
- :mod:`~trustrec.mitigate.training.cft`: CFT, counterfactual fine-tuning (arXiv 2410.22809):
  :func:`counterfactual_examples` (each example with and without its history, CFT's decaying
  token weights) and the loss terms :func:`cft_losses` / :class:`CounterfactualEffectLoss` for
  the LLM trainer.
- :mod:`~trustrec.mitigate.training.recicl`: RecICL (arXiv 2410.23136): :func:`recicl_prompt`
  (k demonstrations from the user's most recent earlier interactions, never the query item or
  the future), :func:`yes_logits` and the loss :class:`YesLogitLoss` (BCE on the raw Yes logit);
  :class:`RecICLRecommender` (``llm_recicl``), the recommender trained and asked that way.
- :mod:`~trustrec.mitigate.training.refusal`: the conversational safety use, replies of a
  recommendation assistant to the shipped harmful / benign request sets, refusal and
  over-refusal rates, with or without a steering.
"""

from trustrec.mitigate.training.aligned import (
    ALIGNMENT_METHODS,
    AlignedConfig,
    AlignedGenerativeRecommender,
    AlignmentConfig,
    best_of_n_lists,
    sample_items,
    sample_lists,
)
from trustrec.mitigate.training.alignment import (
    BestOfNTargetLoss,
    BladeTarget,
    ListReward,
    ListRewardConfig,
    RiserLoss,
    best_of_n,
    bon_weights,
    capped_policy_loss,
    effective_supervision,
    first_occurrences,
    group_advantages,
    midpoint_cdf,
    preference_pairs,
    route_groups,
    weighted_nll,
)
from trustrec.mitigate.training.cft import (
    CFT_BETA,
    CFT_EFFECT_WEIGHT,
    CFTConfig,
    CounterfactualEffectLoss,
    CounterfactualGenerativeRecommender,
    cft_losses,
    counterfactual_examples,
)
from trustrec.mitigate.training.pruned import PrunedConfig, PrunedRecommender
from trustrec.mitigate.training.pruning import (
    PruningPlan,
    apply_plan,
    drop_layers,
    load_pruned,
    masked_forward,
    prune_hidden,
    save_pruned,
)
from trustrec.mitigate.training.pruning_criteria import (
    channel_importance,
    head_importance,
    hidden_importance,
    layer_removal_order,
    plan_from_scores,
)
from trustrec.mitigate.training.recicl import (
    RECICL_DEMONSTRATIONS,
    RecICLConfig,
    RecICLPrompt,
    RecICLRecommender,
    YesLogitLoss,
    liked_by_rating,
    recicl_example,
    recicl_prompt,
    shared_prefix_yes_logits,
    yes_logits,
    yes_token_id,
)
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
    "ALIGNMENT_METHODS",
    "CFT_BETA",
    "CFT_EFFECT_WEIGHT",
    "RECICL_DEMONSTRATIONS",
    "ActivationSteering",
    "AlignedConfig",
    "AlignedGenerativeRecommender",
    "AlignmentConfig",
    "BestOfNTargetLoss",
    "BladeTarget",
    "CFTConfig",
    "CounterfactualEffectLoss",
    "CounterfactualGenerativeRecommender",
    "ListReward",
    "ListRewardConfig",
    "PrunedConfig",
    "PrunedRecommender",
    "PruningPlan",
    "RecICLConfig",
    "RecICLPrompt",
    "RecICLRecommender",
    "RiserLoss",
    "SteeredBackend",
    "SteeredConfig",
    "SteeredRecommender",
    "YesLogitLoss",
    "apply_plan",
    "best_of_n",
    "best_of_n_lists",
    "bon_weights",
    "capped_policy_loss",
    "cft_losses",
    "channel_importance",
    "collect_activations",
    "counterfactual_examples",
    "decoder_layers",
    "drop_layers",
    "effective_supervision",
    "first_occurrences",
    "fit_null_space_steering",
    "fit_steering",
    "group_advantages",
    "head_importance",
    "hidden_importance",
    "layer_removal_order",
    "liked_by_rating",
    "load_pruned",
    "masked_forward",
    "midpoint_cdf",
    "null_space_projector",
    "plan_from_scores",
    "preference_pairs",
    "prune_hidden",
    "recicl_example",
    "recicl_prompt",
    "route_groups",
    "sample_items",
    "sample_lists",
    "save_pruned",
    "shared_prefix_yes_logits",
    "steered",
    "weighted_nll",
    "yes_logits",
    "yes_token_id",
]
