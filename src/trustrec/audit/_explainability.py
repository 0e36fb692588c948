"""Explainability audits: attributions, generated explanations and their faithfulness."""
