"""LLM recommenders on ml-100k next to their peers, on one fixed user sample.

Leave-one-out split of ml-100k (by time). CPU time is scarce, so the LLM models are scored on a
fixed, seeded sample of ``--users`` test users (default 200); every model is evaluated on exactly
that sample, full-catalog ranking, seen items masked, 95% bootstrap CIs:

* ``most_popular`` and ``sasrec`` (``--sasrec-epochs``, default 20): the peers;
* ``llm_generative``: SmolLM2-135M-Instruct fine-tuned (full SFT, answer-only loss) on
  ``--sft-examples`` (history -> next title) examples from the training part, top-10 by beam
  search constrained to the title trie (every answer is a catalog item);
* ``llm_ranker``: SmolLM2-135M-Instruct zero-shot re-ranking the SAME fitted SASRec's top-20,
  3 cyclic candidate orders averaged; ``llm_ranker+fusion``: the same scores z-fused with
  SASRec's (weight 0.5). The position-bias report of the ranker is printed too.

    python benchmarks/llm_recommenders_ml100k.py --users 200

For the rankers, "fit s" is the LLM's candidate scoring time (SASRec's own fit is on its row).
Prints a table of NDCG@10 / HR@10 and the LLM/peer ratios; writes
benchmarks/results/llm_recommenders_ml100k.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line

from trustrec.data import load_dataset, split_leave_one_out
from trustrec.eval import evaluate
from trustrec.models import FitOptions, compose, make_model

METRICS = ["ndcg@10", "hr@10", "mrr@10"]


def _fixed(top, sub, split):
    """A model whose top-10 for each sampled user is ``top`` (rank scores; others far below)."""
    from trustrec.testing import PrecomputedScores

    table = np.full((split.train_dataset().n_users, split.train_dataset().n_items), -1e9)
    rows = np.repeat(sub.queries.users, top.k)
    ranks = np.tile(np.arange(top.k, 0, -1, dtype=np.float64), len(sub))
    valid = top.items.ravel() >= 0
    table[rows[valid], top.items.ravel()[valid]] = ranks[valid]
    return PrecomputedScores(table).fit(split, FitOptions(progress=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sasrec-epochs", type=int, default=20)
    ap.add_argument("--sft-examples", type=int, default=1500)
    ap.add_argument("--sft-epochs", type=int, default=1)
    ap.add_argument("--sft-lr", type=float, default=5e-5)
    ap.add_argument("--sft-history-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", nargs="*", default=[], help="models to leave out (sasrec also drops the rankers)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm_recommenders_ml100k.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    split = split_leave_one_out(load_dataset("ml-100k"))
    test = split.eval_set("test")
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(len(test), min(args.users, len(test)), replace=False))
    sub = test[sample]
    options = FitOptions(seed=args.seed, threads=args.threads)
    results: dict[str, dict] = {}

    def run(name, model, fit_seconds):
        started = time.perf_counter()
        res = evaluate(model, sub, metrics=METRICS, n_boot=1000)
        results[name] = {"fit_s": fit_seconds, "eval_s": time.perf_counter() - started, **res.to_dict()}
        m = res.to_dict()["metrics"]
        console.print(
            f"{name}: ndcg@10 {m['ndcg@10']['mean']:.4f}  hr@10 {m['hr@10']['mean']:.4f}  "
            f"(fit {fit_seconds:.0f} s, eval {results[name]['eval_s']:.0f} s)"
        )

    def fitted(name, **params):
        started = time.perf_counter()
        model = make_model(name, **params).fit(split, options)
        return model, time.perf_counter() - started

    pop, s = fitted("most_popular")
    run("most_popular", pop, s)
    if "sasrec" not in args.skip:
        sasrec, s = fitted("sasrec", epochs=args.sasrec_epochs)
        run("sasrec", sasrec, s)
    if "llm_ranker" not in args.skip and "sasrec" not in args.skip:
        # the LLM scores the candidates once; both variants (LLM alone, fused with SASRec) rank
        # from those scores, and each variant's top-10 lists are evaluated as a fixed table
        started = time.perf_counter()
        ranker = compose("llm_ranker", split, retriever=sasrec, n_candidates=20, n_permutations=3)
        scored = ranker.score_candidates(sub.queries, 10)
        llm_s = time.perf_counter() - started
        run("llm_ranker", _fixed(ranker.rank(scored, 10), sub, split), llm_s)
        results["llm_ranker"]["position_bias"] = scored.bias
        run("llm_ranker+fusion", _fixed(ranker.rank(scored, 10, retriever_weight=0.5), sub, split), llm_s)
    if "llm_generative" not in args.skip:
        gen, s = fitted(
            "llm_generative",
            max_train_examples=args.sft_examples,
            epochs=args.sft_epochs,
            learning_rate=args.sft_lr,
            batch_size=8,
            max_history_tokens=args.sft_history_tokens,
            targets_per_user=3,
            num_beams=10,
            inference_batch_size=8,
        )
        results.setdefault("_sft", {})["loss"] = gen.history_["loss"]
        run("llm_generative", gen, s)

    table = Table(
        title=f"ml-100k LOO test, {len(sub)} sampled users (seed {args.seed}), full ranking", header_style="bold"
    )
    for col in ("model", "NDCG@10 [95% CI]", "HR@10 [95% CI]", "fit s", "eval s"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        if name.startswith("_"):
            continue
        cells = []
        for metric in ("ndcg@10", "hr@10"):
            m = r["metrics"][metric]
            cells.append(f"{m['mean']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]")
        table.add_row(name, *cells, f"{r['fit_s']:.0f}", f"{r['eval_s']:.0f}")
    console.print(table)
    ratios = {}
    for a, b in (
        ("llm_generative", "most_popular"),
        ("llm_generative", "sasrec"),
        ("llm_ranker", "sasrec"),
        ("llm_ranker+fusion", "sasrec"),
    ):
        if a in results and b in results:
            x, y = results[a]["metrics"]["ndcg@10"]["mean"], results[b]["metrics"]["ndcg@10"]["mean"]
            ratios[f"{a}/{b}"] = x / y if y else None
            console.print(f"NDCG@10 {a} / {b} = {ratios[f'{a}/{b}']:.2f}")
    if "llm_ranker" in results:
        b = results["llm_ranker"]["position_bias"]
        console.print(
            f"ranker position bias: top-1 listed first {b['top1_first_listed']:.3f} (chance "
            f"{b['top1_first_listed_chance']:.3f}), top-1 agreement across orders "
            f"{b['top1_agreement']:.3f}, Kendall tau {b['kendall_tau']:.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "llm_recommenders_ml100k",
        "command": command_line(),
        "args": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "machine": platform.platform(),
        "sample_users": sample.tolist(),
        "results": results,
        "ndcg_ratios": ratios,
    }
    args.out.write_text(json.dumps(payload, indent=1, default=float))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
