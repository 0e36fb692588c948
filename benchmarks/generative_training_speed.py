"""Fine-tuning throughput of the generative recommender on this machine, before and after.

The same BIGRec / D3 training examples (amazon-industrial, every position, history <= 10, the
BIGRec prompt, answer ``"title"`` + newline + eos) are trained by the real SmolLM2-135M under four
settings, in this one process, each from the same fresh weights and the same example order:

1. before: float32, plain shuffled batches, the whole history in the prompt (today's defaults);
2. + bf16 autocast (AMX);
3. + length bucketing (less padding);
4. + a 160-token history budget (the oldest titles dropped first; shorter prompts).

Examples/s counts forward + backward + AdamW steps only (loading and tokenizing excluded), and the
mean training loss over the same examples shows what each change does to the loss curve.

    python benchmarks/generative_training_speed.py --examples 64 --repeats 1

Prints a table; writes ``benchmarks/results/generative_training_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _command import command_line

from trustrec.data import load_dataset, make_split
from trustrec.models import FitOptions, make_model

SETTINGS = [
    ("before: float32, plain batches, full history", {"autocast": "off", "length_bucketing": False}, None),
    ("+ bf16 autocast", {"autocast": "bfloat16", "length_bucketing": False}, None),
    ("+ length bucketing", {"autocast": "bfloat16", "length_bucketing": True}, None),
    ("+ 160-token history budget", {"autocast": "bfloat16", "length_bucketing": True}, 160),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-industrial")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from trustrec.models.training import LLMTrainer
    from trustrec.models.training.llm import CausalLMLoss

    split = make_split(load_dataset(args.dataset), "global_positions")
    rows = []
    for repeat in range(args.repeats):
        for label, switches, budget in SETTINGS:
            model = make_model(
                "llm_generative",
                template={"preset": "bigrec"},
                answer_format='"{title}"\n',
                targets_per_user=None,
                max_history_items=10,
                max_history_tokens=budget,
                max_train_examples=args.examples,
                epochs=0,
            ).fit(split, FitOptions(progress=False, seed=0))
            examples = model.training_examples(split.train_dataset(), np.random.default_rng(0))
            trainer = LLMTrainer(
                model.lm_,
                pad_id=model._pad_id(),
                losses=[CausalLMLoss()],
                learning_rate=3e-4,
                batch_size=args.batch_size,
                autocast=None if switches["autocast"] == "off" else "bfloat16",
                length_bucketing=switches["length_bucketing"],
            )
            tokens = sum(len(p) + len(a) for p, a in examples)
            started = time.perf_counter()
            loss = trainer.train_epoch(examples, np.random.default_rng(1))
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "setting": label,
                    "repeat": repeat,
                    "examples": len(examples),
                    "tokens_per_example": tokens / len(examples),
                    "seconds": seconds,
                    "examples_per_s": len(examples) / seconds,
                    "mean_loss": loss,
                }
            )
            print(
                f"{label:<48} {len(examples) / seconds:6.2f} ex/s  loss {loss:.3f}  ({tokens / len(examples):.0f} tokens/ex)"
            )
    by = {}
    for r in rows:
        by.setdefault(r["setting"], []).append(r["examples_per_s"])
    base = np.median(by[SETTINGS[0][0]])
    summary = {k: {"examples_per_s": float(np.median(v)), "speedup": float(np.median(v) / base)} for k, v in by.items()}
    print()
    print(f"{'setting':<48} {'ex/s':>7} {'x before':>9}")
    for k, v in summary.items():
        print(f"{k:<48} {v['examples_per_s']:7.2f} {v['speedup']:9.2f}")
    out = Path(__file__).resolve().parent / "results" / "generative_training_speed.json"
    out.write_text(json.dumps({"command": command_line(), "rows": rows, "summary": summary}, indent=1))
    print(f"wrote {out.relative_to(out.parent.parent.parent)}")


if __name__ == "__main__":
    main()
