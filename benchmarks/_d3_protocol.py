"""The BIGRec / D3 protocol pieces the generative benchmarks share: the dataset, the fine-tuned
generative recommender's settings and the test rows every run of a dataset evaluates."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trustrec.data import EvalSet, Split, load_dataset, load_path, make_split, position_eval_set
from trustrec.models import make_model

__all__ = ["d3_generative", "d3_split", "load_data", "sampled_rows"]


def load_data(name: str):
    """A shipped dataset by name, or a dataset folder / file."""
    path = Path(name)
    return load_path(path) if path.exists() else load_dataset(name)


def d3_split(dataset) -> Split:
    """D3's split: global positions (the last 10% of events by time tested, the 10% before validated)."""
    return make_split(dataset, "global_positions")


def sampled_rows(split: Split, part: str, n: int, rng: np.random.Generator) -> EvalSet:
    """``n`` rows of the part's position eval set, drawn with ``rng`` and kept in order."""
    rows = position_eval_set(split, part)
    return rows[np.sort(rng.choice(len(rows), min(n, len(rows)), replace=False))]


def d3_generative(args: argparse.Namespace, *, epochs: int, assistant: bool, name: str = "llm_generative", **extra):
    """The generative recommender under the D3 protocol (every position, history of 10, lr 3e-4,
    20 warm-up steps, batch 8, 10 beams), with ``args``' history tokens, training examples and
    free-text budget."""
    params = {
        "template": {"preset": "bigrec"},
        "answer_format": '"{title}"\n',
        "targets_per_user": None,
        "max_history_items": 10,
        "max_history_tokens": args.history_tokens,
        "max_train_examples": args.train_examples,
        "epochs": epochs,
        "learning_rate": 3e-4,
        "warmup_steps": 20,
        "batch_size": 8,
        "autocast": "auto",
        "length_bucketing": True,
        "num_beams": 10,
        "inference_batch_size": 8,
        "max_new_tokens": args.max_new_tokens,
        **extra,
    }
    if assistant:
        params["assistant"] = {"name": "sasrec", "params": {}}
    return make_model(name, **params)
