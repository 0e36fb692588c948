"""Full-ranking evaluation speed: trustrec's evaluator vs two common ways of writing it.

Peers, measured in the same run on the same scores:
- numpy argsort: mask seen items, sort every row fully (np.argsort), compute NDCG/HR/MRR@10
  vectorised; what a careful script does;
- per-user loop: one user at a time with np.argpartition, as many research codebases do.

Workloads: ml-100k (943 users x 1,682 items, EASE scores, real histories and targets) and an
ml-1m-sized synthetic matrix (6,040 x 3,706, random scores, ~165 history items per user).
Prints seconds (best of --repeat) and the ratios; all three must agree on the metric values.

    python benchmarks/eval_speed.py --repeat 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trustrec.data import EvalSet, QueryBatch, Ragged, load_dataset, split_leave_one_out
from trustrec.eval import evaluate
from trustrec.models import FitOptions, make_model
from trustrec.testing import PrecomputedScores


def numpy_argsort_eval(scores, es: EvalSet, k=10):
    s = np.array(scores, dtype=np.float64)
    s[es.queries.histories.row_ids(), es.queries.histories.values] = -np.inf
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    target = es.targets.to_dense_mask(s.shape[1])
    hits = np.take_along_axis(target, top, axis=1)
    n_rel = es.targets.lengths
    disc = 1 / np.log2(np.arange(2, k + 2))
    idcg = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    first = np.where(hits.any(1), 1 / (hits.argmax(1) + 1), 0)
    return {"ndcg@10": (hits @ disc / idcg).mean(), "hr@10": hits.any(1).mean(), "mrr@10": first.mean()}


def loop_eval(scores, es: EvalSet, k=10):
    ndcg, hr, mrr = [], [], []
    for u in range(len(es)):
        s = scores[u].astype(np.float64).copy()
        s[es.queries.histories.row(u)] = -np.inf
        part = np.argpartition(-s, k)[:k]
        top = part[np.lexsort((part, -s[part]))]
        rel = set(es.targets.row(u).tolist())
        gains = np.array([i in rel for i in top], dtype=float)
        idcg = (1 / np.log2(np.arange(2, min(len(rel), k) + 2))).sum()
        ndcg.append((gains / np.log2(np.arange(2, k + 2))).sum() / idcg)
        hr.append(gains.any())
        mrr.append(1 / (gains.argmax() + 1) if gains.any() else 0.0)
    return {"ndcg@10": np.mean(ndcg), "hr@10": np.mean(hr), "mrr@10": np.mean(mrr)}


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def workload_ml100k():
    ds = load_dataset("ml-100k")
    split = split_leave_one_out(ds)
    ease = make_model("ease").fit(split, FitOptions(progress=False))
    es = split.eval_set("test")
    scores = ease.score(es.queries).astype(np.float32)
    table = np.zeros((ds.n_users, ds.n_items), np.float32)
    table[es.queries.users] = scores
    return "ml-100k (943 x 1,682, EASE)", split.train_dataset(), table, es


def workload_ml1m_synthetic(seed=0):
    rng = np.random.default_rng(seed)
    n_users, n_items = 6040, 3706
    scores = rng.random((n_users, n_items), dtype=np.float32)
    lengths = rng.integers(20, 310, n_users)
    hist = [rng.choice(n_items, n, replace=False) for n in lengths]
    targets = [rng.choice(np.setdiff1d(np.arange(n_items), h), 1) for h in hist]
    from trustrec.testing import toy_dataset

    train = toy_dataset(n_users=n_users, n_items=n_items, n_inter=3 * n_users)
    es = EvalSet(QueryBatch(np.arange(n_users), Ragged.from_rows(hist)), Ragged.from_rows(targets), "test")
    return "ml-1m size (6,040 x 3,706, synthetic)", train, scores, es


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"full-ranking evaluation, NDCG/HR/MRR@10 (seconds, best of {args.repeat})", header_style="bold"
    )
    for col in ("workload", "trustrec", "numpy argsort", "per-user loop", "vs argsort", "vs loop", "ndcg@10 agree"):
        table.add_column(col, justify="right")
    for name, train, scores, es in (workload_ml100k(), workload_ml1m_synthetic()):
        model = PrecomputedScores(scores).fit(train, FitOptions(progress=False))
        t_ours, res = best_of(
            lambda: evaluate(
                model,  # noqa: B023  # best_of calls it now
                es,  # noqa: B023
                metrics=["ndcg@10", "hr@10", "mrr@10"],
                n_boot=0,
                batch_size=2048,
                progress=False,
            ),
            args.repeat,
        )
        t_np, ref = best_of(lambda: numpy_argsort_eval(scores[es.queries.users], es), args.repeat)  # noqa: B023  # best_of calls it now
        t_loop, ref2 = best_of(lambda: loop_eval(scores[es.queries.users], es), 1)  # noqa: B023  # best_of calls it now
        agree = all(abs(res.mean(m) - ref[m]) < 1e-9 and abs(res.mean(m) - ref2[m]) < 1e-9 for m in ref)
        table.add_row(
            name,
            f"{t_ours:.3f}",
            f"{t_np:.3f}",
            f"{t_loop:.3f}",
            f"{t_np / t_ours:.1f}x",
            f"{t_loop / t_ours:.1f}x",
            "yes" if agree else "NO",
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
