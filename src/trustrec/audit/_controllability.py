"""Controllability audits: user constraints, platform rules, prompt sensitivity and position bias."""
