"""Robustness audits: history perturbation (top-K stability under edits of the query history),
poisoning (fake-user injection and retraining) and text attacks on LLM recommenders' item text,
one module each; ``_common`` is what they share (the items of raw ``target_items``, the
full-ranking rank of targets, top-K lists in batches) and ``_text_edits`` the item-text attacks."""

# the import order is the registration order (history_perturbation, poisoning, text_attack)
from trustrec.audit.robustness._common import target_item_indices, target_ranks
from trustrec.audit.robustness._text_edits import injection_instruction, neutral_twin
from trustrec.audit.robustness.history_perturbation import (
    PERTURBATIONS,
    HistoryPerturbationAudit,
    HistoryPerturbationConfig,
    perturb_histories,
    rank_biased_overlap,
)
from trustrec.audit.robustness.poisoning import (
    ATTACKS,
    PoisoningAudit,
    PoisoningConfig,
    fake_profiles,
    inject_fake_users,
)
from trustrec.audit.robustness.text_attack import (
    PROMOTIONAL_PHRASES,
    TEXT_ATTACKS,
    TextAttackAudit,
    TextAttackConfig,
    attack_item_text,
)

__all__ = [
    "ATTACKS",
    "PERTURBATIONS",
    "PROMOTIONAL_PHRASES",
    "TEXT_ATTACKS",
    "HistoryPerturbationAudit",
    "HistoryPerturbationConfig",
    "PoisoningAudit",
    "PoisoningConfig",
    "TextAttackAudit",
    "TextAttackConfig",
    "attack_item_text",
    "fake_profiles",
    "inject_fake_users",
    "injection_instruction",
    "neutral_twin",
    "perturb_histories",
    "rank_biased_overlap",
    "target_item_indices",
    "target_ranks",
]
