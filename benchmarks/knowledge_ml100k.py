"""Knowledge hallucination of a real LLM recommender: does SmolLM2 know ml-100k's release years
and genres, before and after fine-tuning it as a generative recommender?

    python benchmarks/knowledge_ml100k.py --items 200                      # the zero-shot model
    python benchmarks/knowledge_ml100k.py --items 200 --fine-tune 640      # and a fine-tuned one

The ``knowledge_hallucination`` audit (factuality) asks the model behind ``llm_generative`` one
question per attribute for a seeded sample of catalog items ("In what year was "<title>"
released?", "What genre or category is "<title>"?"; the title's trailing "(YYYY)" removed) and
judges each greedy answer against the item table: correct, contradicts, or no answer. ``--chat`` asks
through the model's chat template instead of a plain completion prompt. The zero-shot arm is
SmolLM2 as it is (``epochs: 0``); ``--fine-tune N`` adds the model fine-tuned on N
next-title examples of the leave-one-out training data (1 epoch, lr 3e-4, the BIGRec prompt), so
the table shows what recommendation fine-tuning does to the model's catalog knowledge. Rates with
95% bootstrap CIs over the questioned items.

Prints a table; writes ``benchmarks/results/knowledge_ml100k.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _command import command_line

from trustrec.audit import audit_class
from trustrec.data import load_dataset, split_leave_one_out
from trustrec.models import FitOptions, make_model

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--fine-tune", type=int, default=0, help="next-title examples of the fine-tuned arm (0: none)")
    parser.add_argument("--chat", action="store_true", help="ask through the model's chat template")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "knowledge_ml100k.json")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    split = split_leave_one_out(load_dataset("ml-100k"))
    audit = audit_class("knowledge_hallucination")(
        n_items=args.items, n_boot=args.n_boot, seed=args.seed, chat=args.chat
    )
    base = {
        "model": args.model,
        "template": {"preset": "bigrec"},
        "answer_format": '"{title}"\n',
        "max_history_items": 10,
        "max_history_tokens": 160,
        "learning_rate": 3e-4,
        "warmup_steps": 20,
        "length_bucketing": True,
        "autocast": "auto",
    }
    asked = ", chat template" if args.chat else ""
    arms = {f"SmolLM2 zero-shot{asked}": {**base, "epochs": 0}}
    if args.fine_tune:
        arms[f"SmolLM2 fine-tuned ({args.fine_tune} examples){asked}"] = {
            **base,
            "epochs": 1,
            "max_train_examples": args.fine_tune,
            "targets_per_user": None,
        }
    report: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    if report.get("items") != args.items:  # another item sample: its arms are not comparable
        report = {}
    report = {
        "commands": [*report.get("commands", []), command_line()],
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "items": args.items,
        "arms": report.get("arms", {}),  # arms of earlier commands are kept
    }
    rates = ("correct_rate", "contradiction_rate", "no_answer_rate")
    print(f"{'arm':<36} {'attribute':<10} " + " ".join(f"{r:>24}" for r in rates))
    for label, params in arms.items():
        t0 = time.perf_counter()
        model = make_model("llm_generative", **params).fit(split, FitOptions(seed=args.seed, progress=True))
        fit_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = audit.run(model, split)
        entry = {
            "fit_seconds": fit_seconds,
            "audit_seconds": time.perf_counter() - t0,
            "status": result.verdict.status,
            "estimates": {k: e.to_dict() for k, e in result.estimates.items()},
            "examples": result.evidence["answers"].head(12).to_dict(orient="records"),
        }
        report["arms"][label] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
        for attribute in ("year", "genre"):
            cells = []
            for r in rates:
                e = result.estimates.get(f"{r} [{attribute}]")
                cells.append(f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]" if e is not None else "-")
            print(f"{label:<36} {attribute:<10} " + " ".join(f"{c:>24}" for c in cells), flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
