"""Re-export shim: the privacy defences live in :mod:`trustrec.mitigate.defences.privacy`."""

from trustrec.mitigate.defences.privacy import (
    drop_items,
    generalise_item_text,
    keep_probability,
    minimise_history,
    noise_training,
    randomise_interactions,
    randomised_response,
    revealing_items,
    sensitive_mask,
)

__all__ = [
    "drop_items",
    "generalise_item_text",
    "keep_probability",
    "minimise_history",
    "noise_training",
    "randomise_interactions",
    "randomised_response",
    "revealing_items",
    "sensitive_mask",
]
