"""NullSteer vs plain steering against an LLM recommender's sensitivity to stated user attributes,
side by side, on ml-100k.

The recommender is trustrec's ``llm_ranker`` (SmolLM2-135M-Instruct re-ranking ItemKNN's top 20
candidates into a top 10, so set overlap can move; its prompt has a profile line when the query
states attributes). Steered copies
(``SteeredRecommender.from_fitted``: the same fitted ranker, nothing refitted) are fitted on
training users' prompts: the prompt stating the user's own gender, age and occupation is steered
toward the same prompt without them; NullSteer leaves the neutral prompts' activations at every
token (near) unchanged. Each arm is measured on the SAME sampled test users:

* the FaiRLLM probe (``counterfactual_attributes`` audit, gender): Jaccard@10 of the list when the
  query states each gender to the neutral list, SNSR / SNSV over the values, CIs over users;
* accuracy on neutral queries (NDCG@10, HR@10; leave-one-out by time, full ranking, seen items
  masked), CIs over users, and the share of users whose neutral list changed at all.

The claim checked: steering lowers SNSR; NullSteer keeps neutral accuracy (and neutral lists)
where plain steering, which moves every query, may not.

    python benchmarks/steering_fairness_ml100k.py --users 100 --layers 15 --strengths 1

Writes benchmarks/results/steering_fairness_ml100k.json (no machine paths).
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="15")
    parser.add_argument("--strengths", default="1")
    parser.add_argument("--n-candidates", type=int, default=20)
    parser.add_argument("--fit-users", type=int, default=200)
    parser.add_argument("--null-tol", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "steering_fairness_ml100k.json")
    args = parser.parse_args()

    import torch

    from trustrec.audit import CounterfactualAttributeAudit
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.eval import evaluate
    from trustrec.mitigate.training import SteeredRecommender
    from trustrec.models import FitOptions, compose, make_model

    torch.set_num_threads(args.threads)
    layers = tuple(int(x) for x in args.layers.split(","))
    strengths = [float(x) for x in args.strengths.split(",")]
    split = split_leave_one_out(load_dataset("ml-100k"))
    test = split.eval_set("test")
    rows = np.sort(np.random.default_rng(args.seed).choice(len(test), min(args.users, len(test)), replace=False))
    sample = test[rows]  # the users the audit samples with the same seed
    options = FitOptions(seed=args.seed, threads=args.threads, progress=False)
    knn = make_model("item_knn").fit(split, options)
    ranker = compose(
        "llm_ranker", split, retriever=knn, n_candidates=args.n_candidates, n_permutations=1, max_history_tokens=128
    )

    arms: dict = {"llm_ranker": (ranker, 0.0, {})}
    for method in ("plain", "null_space"):
        started = time.perf_counter()
        fitted = SteeredRecommender.from_fitted(
            ranker,
            split,
            method=method,
            layers=layers,
            strength=strengths[0],
            attributes=("gender", "age", "occupation"),
            n_fit_users=args.fit_users,
            null_tol=args.null_tol,
            seed=args.seed,
        )
        seconds = time.perf_counter() - started
        for s in strengths:
            arm = fitted.with_strength(s)
            arms[f"{method}@{s:g}"] = (arm, seconds, fitted.steering_info_)

    results, neutral_lists = {}, {}
    for name, (model, fit_seconds, info) in arms.items():
        started = time.perf_counter()
        accuracy = evaluate(model, sample, metrics=METRICS, n_boot=1000, seed=args.seed, keep_topk=True, progress=False)
        probe = CounterfactualAttributeAudit(
            attributes=("gender",), max_users=args.users, k=10, n_boot=1000, seed=args.seed, max_snsr=None
        ).run(model, split, progress=False)
        neutral_lists[name] = np.asarray(accuracy.topk.items)
        results[name] = {
            "fit_seconds": fit_seconds,
            "seconds": time.perf_counter() - started,
            "steering_info": info,
            "accuracy": accuracy.to_dict()["metrics"],
            "probe": {k: dataclasses.asdict(v) for k, v in probe.estimates.items()},
            "probe_status": probe.verdict.status,
        }
        console.print(f"{name}: done in {results[name]['seconds']:.0f} s")
    base_lists = neutral_lists["llm_ranker"]
    for name in results:
        changed = (neutral_lists[name] != base_lists).any(1)
        results[name]["neutral_lists_changed"] = {"share": float(changed.mean()), "n": len(changed)}

    table = Table(title=f"Steering llm_ranker (SmolLM2) on ml-100k, {len(sample)} test users, layers {list(layers)}")
    for col in (
        "arm",
        "SNSR jaccard@10 [gender]",
        "SNSR prag*@10 [gender]",
        "mean jaccard@10",
        "NDCG@10",
        "HR@10",
        "neutral lists changed",
    ):
        table.add_column(col)
    for name, r in results.items():
        snsr, prag = r["probe"]["snsr jaccard@10 [gender]"], r["probe"]["snsr prag_star@10 [gender]"]
        ndcg, hr = r["accuracy"]["ndcg@10"], r["accuracy"]["hr@10"]
        table.add_row(
            name,
            f"{snsr['value']:.3f} [{snsr['ci_low']:.3f}, {snsr['ci_high']:.3f}]",
            f"{prag['value']:.3f} [{prag['ci_low']:.3f}, {prag['ci_high']:.3f}]",
            f"{r['probe']['mean jaccard@10 [gender]']['value']:.3f}",
            f"{ndcg['mean']:.4f} [{ndcg['ci_low']:.4f}, {ndcg['ci_high']:.4f}]",
            f"{hr['mean']:.3f} [{hr['ci_low']:.3f}, {hr['ci_high']:.3f}]",
            f"{r['neutral_lists_changed']['share']:.2f}",
        )
    console.print(table)
    out = {
        "command": command_line(),
        "benchmark": "steering_fairness_ml100k",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "sample_users": [int(u) for u in sample.queries.users],
        "results": results,
    }
    args.out.write_text(json.dumps(out, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
