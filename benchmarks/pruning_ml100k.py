"""PruneRec-style pruning of an LLM recommender on ml-100k: the base, the pruned model, and the pruned
model after distillation recovery, side by side on the same test users.

The recommender is trustrec's ``llm_ranker`` (SmolLM2-135M-Instruct re-ranking ItemKNN's top 20
into a top 10). The pruned arms are ``PrunedRecommender.from_fitted`` over the SAME fitted ranker:
query heads (evenly per key/value group) and MLP channels scored on ``--calibration-users``
training users' own prompts (``head_importance``, ``channel_importance``), pruned at
``--head-ratio`` / ``--channel-ratio``, then ``--hidden-ratio`` of the hidden dimensions (by
|gradient x activation|) and ``--layer-ratio`` of the layers removed whole (greedily, by validation
perplexity); the recovery arm then distils the unpruned model into the
pruned one on those prompts (0.2 CE + 0.8 KL on the answer tokens, ``--recovery-epochs``).

Each arm on the same sampled test users (leave-one-out by time):

* accuracy: NDCG@10, HR@10 with bootstrap CIs over users;
* an audit run unchanged on every arm (the fairness probe ``counterfactual_attributes``, gender:
  Jaccard@10 of the list when the query states each gender to the neutral list, SNSR), on
  ``--probe-users`` of the same users;
* cost: non-embedding parameters kept, fit seconds, and seconds per ranked query measured in this
  run (a ratio to the base, since machines are noisy).

    python benchmarks/pruning_ml100k.py --users 100 --probe-users 100 --calibration-users 16

Writes benchmarks/results/pruning_ml100k.json (no machine paths).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=180)
METRICS = ("ndcg@10", "hr@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--probe-users", type=int, default=100)
    parser.add_argument("--calibration-users", type=int, default=16)
    parser.add_argument("--head-ratio", type=float, default=1 / 3)
    parser.add_argument("--channel-ratio", type=float, default=0.25)
    parser.add_argument("--hidden-ratio", type=float, default=0.0, help="share of hidden dimensions then removed")
    parser.add_argument("--layer-ratio", type=float, default=0.0, help="share of layers then removed whole")
    parser.add_argument("--recovery-epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--n-candidates", type=int, default=20)
    parser.add_argument("--model", default=None, help="the ranker's LLM (default: llm_ranker's, SmolLM2-135M-Instruct)")
    parser.add_argument("--max-history-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pruning_ml100k.json")
    args = parser.parse_args()

    import torch

    from trustrec.audit import CounterfactualAttributeAudit
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.eval import evaluate
    from trustrec.mitigate.training import PrunedRecommender
    from trustrec.models import FitOptions, compose, make_model

    torch.set_num_threads(args.threads)
    split = split_leave_one_out(load_dataset("ml-100k"))
    test = split.eval_set("test")
    rows = np.sort(np.random.default_rng(args.seed).choice(len(test), min(args.users, len(test)), replace=False))
    sample = test[rows]
    options = FitOptions(seed=args.seed, threads=args.threads, progress=False)
    knn = make_model("item_knn").fit(split, options)
    llm = {} if args.model is None else {"model": args.model}
    ranker = compose(
        "llm_ranker",
        split,
        retriever=knn,
        n_candidates=args.n_candidates,
        n_permutations=1,
        max_history_tokens=args.max_history_tokens,
        **llm,
    )
    pruning = {
        "head_ratio": args.head_ratio,
        "channel_ratio": args.channel_ratio,
        "hidden_ratio": args.hidden_ratio,
        "layer_ratio": args.layer_ratio,
        "n_calibration_users": args.calibration_users,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
    }
    arms: dict = {"llm_ranker": (ranker, 0.0, {})}
    for name, epochs in (("pruned", 0), (f"pruned + recovery ({args.recovery_epochs} ep)", args.recovery_epochs)):
        if name != "pruned" and not epochs:
            continue
        started = time.perf_counter()
        model = PrunedRecommender.from_fitted(ranker, split, **pruning, recovery_epochs=epochs)
        arms[name] = (model, time.perf_counter() - started, model.pruning_info_)
        console.print(f"{name}: fitted in {arms[name][1]:.0f} s, kept {model.pruning_info_['kept_share']:.3f}")

    results, lists = {}, {}
    for name, (model, fit_seconds, info) in arms.items():
        started = time.perf_counter()
        accuracy = evaluate(model, sample, metrics=METRICS, n_boot=1000, seed=args.seed, keep_topk=True, progress=False)
        per_query = (time.perf_counter() - started) / len(sample)
        probe = CounterfactualAttributeAudit(
            attributes=("gender",), max_users=args.probe_users, k=10, n_boot=1000, seed=args.seed, max_snsr=None
        ).run(model, split, progress=False)
        lists[name] = np.asarray(accuracy.topk.items)
        results[name] = {
            "fit_seconds": fit_seconds,
            "seconds_per_query": per_query,
            "pruning_info": info,
            "accuracy": accuracy.to_dict()["metrics"],
            "probe": {k: dataclasses.asdict(v) for k, v in probe.estimates.items()},
            "probe_status": probe.verdict.status,
        }
        console.print(f"{name}: evaluated and audited in {time.perf_counter() - started:.0f} s")
    for name in results:
        results[name]["seconds_per_query_vs_base"] = (
            results[name]["seconds_per_query"] / results["llm_ranker"]["seconds_per_query"]
        )
        changed = (lists[name] != lists["llm_ranker"]).any(1)
        results[name]["lists_changed_share"] = float(changed.mean())

    table = Table(title=f"Pruning llm_ranker ({ranker.config.model}) on ml-100k, {len(sample)} test users")
    for col in (
        "arm",
        "kept params",
        "NDCG@10",
        "HR@10",
        "SNSR jaccard@10 [gender]",
        "s/query vs base",
        "lists changed",
    ):
        table.add_column(col)
    for name, r in results.items():
        ndcg, hr = r["accuracy"]["ndcg@10"], r["accuracy"]["hr@10"]
        snsr = r["probe"]["snsr jaccard@10 [gender]"]
        table.add_row(
            name,
            f"{r['pruning_info'].get('kept_share', 1.0):.3f}",
            f"{ndcg['mean']:.4f} [{ndcg['ci_low']:.4f}, {ndcg['ci_high']:.4f}]",
            f"{hr['mean']:.3f} [{hr['ci_low']:.3f}, {hr['ci_high']:.3f}]",
            f"{snsr['value']:.3f} [{snsr['ci_low']:.3f}, {snsr['ci_high']:.3f}]",
            f"{r['seconds_per_query_vs_base']:.2f}",
            f"{r['lists_changed_share']:.2f}",
        )
    console.print(table)
    out = {
        "command": command_line(),
        "benchmark": "pruning_ml100k",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "sample_users": [int(u) for u in sample.queries.users],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
