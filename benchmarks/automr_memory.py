"""AutoMR on real data: which older items join the recent ones in an LLM ranker's prompt, at the
same prompt budget: the most recent ones (recent-only), random memory items, the memory items
closest in text to the recent ones (semantic), and the ones AutoMR's trained retriever picks.

Protocol (REFERENCES.md §3, AutoMR, arXiv 2412.17593): leave-one-out split of ``--dataset``;
``--users`` test users drawn at random (seeded) among those with at least
``n_recent + max_memory`` history items (long histories, where memory can matter); per user 20
candidates, the held-out item plus 19 random items the user never interacted with; the LLM
(``--model``, default SmolLM2-135M-Instruct) ranks them from a prompt showing ``n_recent`` recent
items plus ``n_memory`` items from the user's memory (the ``max_memory`` items before them). The
retriever is trained on ``--train-users`` training users (their last training item as the
answer), its targets the LLM's own loss reductions, SASRec proposing the annotation prompt's
candidates. Recall@10 and NDCG@10 over the 20 candidates, with bootstrap 95% CIs over users; each
arm against recent-only as a paired difference (Wilcoxon p-value). ``--seeds`` repeats the
seeded parts (the retriever's training users and its fit, the random draw; the test users and
candidates stay fixed) and reports the mean and the per-seed figures.

    python benchmarks/automr_memory.py --dataset ml-100k --users 200

Writes benchmarks/results/automr_<dataset>.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from _estimates import mean_ci, paired_ci
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)
ARMS = ("recent", "random", "semantic", "learned")


def long_history_users(eval_set, n: int, min_length: int, n_items: int, rng):
    """``n`` test queries with ``min_length``+ history items, each with 20 candidates (the target
    and 19 random unseen items), and their targets."""
    from trustrec.data import QueryBatch, Ragged

    lengths = eval_set.queries.histories.lengths
    usable = np.flatnonzero(lengths >= min_length)
    rows = np.sort(rng.choice(usable, size=min(n, len(usable)), replace=False))
    queries = eval_set.queries[rows]
    targets = np.array([int(eval_set.targets.row(int(r))[0]) for r in rows])
    candidates = []
    for q in range(len(queries)):
        seen = np.union1d(queries.histories.row(q), [targets[q]])
        pool = np.setdiff1d(np.arange(n_items), seen)
        candidates.append(np.concatenate([[targets[q]], rng.choice(pool, size=19, replace=False)]))
    return QueryBatch(queries.users, queries.histories, candidates=Ragged.from_rows(candidates)), targets


def hit_and_ndcg(items: np.ndarray, targets: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    hit = items[:, :k] == targets[:, None]
    rank = hit.argmax(1)
    found = hit.any(1)
    return found.astype(float), np.where(found, 1.0 / np.log2(rank + 2), 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--train-users", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n-recent", type=int, default=10)
    ap.add_argument("--n-memory", type=int, default=5)
    ap.add_argument("--max-memory", type=int, default=30)
    ap.add_argument("--sasrec-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models import FitOptions, make_model
    from trustrec.models.agents import MemoryRanker

    torch.set_num_threads(args.threads)
    out_path = args.out or ROOT / "benchmarks" / "results" / f"automr_{args.dataset}.json"
    started = time.perf_counter()
    split = split_leave_one_out(load_dataset(args.dataset))
    n_items = split.dataset.n_items
    queries, targets = long_history_users(
        split.eval_set("test"), args.users, args.n_recent + args.max_memory, n_items, np.random.default_rng(0)
    )
    console.print(f"[bold]{args.dataset}[/]: {len(queries)} test users with long histories; fitting SASRec")
    retriever = make_model("sasrec", epochs=args.sasrec_epochs).fit(split, FitOptions(seed=0, progress=False))
    settings = {
        "model": args.model,
        "n_recent": args.n_recent,
        "n_memory": args.n_memory,
        "max_memory": args.max_memory,
        "train_users": args.train_users,
        "n_permutations": 1,
        "max_history_tokens": None,
    }
    per_seed: dict[str, list] = {arm: [] for arm in ARMS}
    training, seconds = [], {}
    for seed in range(args.seeds):
        for arm in ARMS:
            if seed > 0 and arm in ("recent", "semantic"):  # nothing seeded: the seed-0 figures
                per_seed[arm].append(per_seed[arm][0])
                continue
            t0 = time.perf_counter()
            model = MemoryRanker(**settings, selection=arm).with_fitted(retriever=retriever)
            model.fit(split, FitOptions(seed=seed, progress=True))
            fit_s = time.perf_counter() - t0
            if arm == "learned":
                training.append({"seed": seed, **model.memory_training_, "seconds": fit_s})
            t1 = time.perf_counter()
            items = model.recommend(queries, 10).items
            seconds[f"{arm}_seed{seed}"] = {"fit": fit_s, "rank": time.perf_counter() - t1}
            hits, ndcg = hit_and_ndcg(np.asarray(items), targets)
            per_seed[arm].append({"recall": hits, "ndcg": ndcg})
            console.print(f"seed {seed} {arm:>8}: Recall@10 {hits.mean():.3f}  NDCG@10 {ndcg.mean():.3f}")

    results: dict = {
        "command": command_line(),
        "dataset": args.dataset,
        "model": args.model,
        "users": len(queries),
        "seeds": args.seeds,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "gpu": None},
        "protocol": (
            f"leave-one-out; test users with >= {args.n_recent + args.max_memory} history items; 20 candidates "
            f"(held-out + 19 random unseen); prompt = {args.n_recent} recent + {args.n_memory} memory items "
            f"(memory = the {args.max_memory} items before them); retriever trained on {args.train_users} "
            "training users; SASRec proposes the annotation prompts' candidates"
        ),
        "arms": {},
        "retriever_training": [
            {k: v for k, v in t.items() if k != "kl"} | {"kl_first": t["kl"][0], "kl_last": t["kl"][-1]}
            for t in training
        ],
        "seconds": {**seconds, "total": time.perf_counter() - started},
    }
    base = per_seed["recent"][0]
    for arm in ARMS:
        runs = per_seed[arm]
        entry = {}
        for metric in ("recall", "ndcg"):
            mean_over_seeds = np.mean([r[metric] for r in runs], axis=0)  # per user, averaged over seeds
            entry[metric] = mean_ci(mean_over_seeds, 0)
            entry[f"{metric}_per_seed"] = [float(r[metric].mean()) for r in runs]
            entry[f"{metric}_minus_recent"] = paired_ci(mean_over_seeds, base[metric], 0)
        results["arms"][arm] = entry
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")

    def fmt(e: dict) -> str:
        p = f" p={e['p_value']:.3g}" if e.get("p_value") is not None else ""
        return f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]{p}"

    table = Table(title=f"AutoMR on {args.dataset}: {len(queries)} users, {args.model}, {args.seeds} seeds")
    for column in (
        "memory selection",
        "Recall@10",
        "NDCG@10",
        "Recall@10 - recent",
        "NDCG@10 - recent",
        "per seed NDCG",
    ):
        table.add_column(column)
    for arm, e in results["arms"].items():
        table.add_row(
            arm,
            fmt(e["recall"]),
            fmt(e["ndcg"]),
            fmt(e["recall_minus_recent"]),
            fmt(e["ndcg_minus_recent"]),
            ", ".join(f"{v:.3f}" for v in e["ndcg_per_seed"]),
        )
    console.print(table)
    shown = out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path.name
    console.print(f"total {results['seconds']['total']:.0f} s; wrote {shown}")


if __name__ == "__main__":
    main()
