"""Robustness audits of LLM recommenders against manipulated item text."""
