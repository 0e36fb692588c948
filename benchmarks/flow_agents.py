"""FLOW on real data: the recommendation agent with and without the feedback loop, and the user
agent as a simulator with and without it (the paper's two claims), side by side.

Protocol (REFERENCES.md §3, FLOW, arXiv 2410.20027): leave-one-out split; ``--users`` test users
drawn at random (seeded); per user 20 candidates, the held-out item plus 19 random items the
user never interacted with, listed in a seeded shuffle; SASRec (trained on the split) is the
prior. Both agents run on the same local LLM (``--model``, default SmolLM2-135M-Instruct) with
``decision="scored"``: the recommendation agent's choice is the candidate whose title is most
likely as its answer, the user agent's the likelier of "Yes" and "No"; short reasons are
generated (``--reason-tokens``) and kept in both agents' memories; the 10 most recent history
items are shown (``--history-items``). At most 5 rounds.

A 135M model prefers "No" to every item (log p(Yes) - log p(No) < 0 throughout), so the user
agent's threshold is calibrated first, as for any classifier read from LM likelihoods (Zhao et
al. 2021, "Calibrate before use"): on ``--calibration-users`` users of the **validation** part
(their validation item as "liked", a random unseen item as "disliked"), the threshold with the
best accuracy. Test users are never used to choose it.

Figures (bootstrap 95% CIs over users; paired differences with the Wilcoxon p-value):

* HR@1 of the recommendation agent alone (its first proposal), with the loop (the accepted item
  or the last proposal), of the prior alone (SASRec's top candidate) and chance (1/20);
* the user agent as a simulator on balanced items (per user the held-out item, "liked", and one
  of the 19 random candidates, "disliked"): accuracy, precision, recall and F1, alone (history
  and prior view only) and with the loop (carrying its memory of the user's episode);
* bias: mean training popularity percentile of the recommended item, and the share recommended
  from the first listed position (chance 1/20), alone vs with the loop.

    python benchmarks/flow_agents.py --dataset ml-100k --users 200

Writes benchmarks/results/flow_<dataset>.json and the episodes as
benchmarks/results/flow_<dataset>_episodes.jsonl (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from _command import command_line
from _estimates import mean_ci, paired_ci
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)


def _classification(pred: np.ndarray, truth: np.ndarray, seed: int) -> dict:
    """Accuracy, precision, recall and F1 of yes/no answers, with bootstrap CIs over users (each
    user contributes one liked and one disliked item, resampled together)."""
    from trustrec.eval import bootstrap_rows, percentile_ci

    def scores(p: np.ndarray, t: np.ndarray) -> np.ndarray:
        tp = (p & t).sum(-1)
        fp = (p & ~t).sum(-1)
        fn = (~p & t).sum(-1)
        acc = (p == t).mean(-1)
        prec = np.divide(tp, tp + fp, out=np.full(tp.shape, np.nan), where=(tp + fp) > 0)
        rec = np.divide(tp, tp + fn, out=np.full(tp.shape, np.nan), where=(tp + fn) > 0)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.full(tp.shape, np.nan), where=(2 * tp + fp + fn) > 0)
        return np.stack([acc, prec, rec, f1], -1)

    n_users = pred.shape[0]
    point = scores(pred.reshape(1, -1), truth.reshape(1, -1))[0]
    rows = bootstrap_rows(n_users, 2000, seed)  # (n_boot, n_users)
    boot = scores(pred[rows].reshape(len(rows), -1), truth[rows].reshape(len(rows), -1))
    out: dict[str, Any] = {}
    for j, name in enumerate(("accuracy", "precision", "recall", "f1")):
        lo, hi = percentile_ci(boot[:, j][~np.isnan(boot[:, j])])
        out[name] = {"value": float(point[j]), "ci_low": lo, "ci_high": hi}
    out["yes_rate"] = float(pred.mean())
    return out


def balanced_pairs(queries, targets, n_items: int, rng):
    """Per query: 20 candidates (the target + 19 random unseen items) and one of the 19 as the
    disliked item."""
    from trustrec.data import QueryBatch, Ragged

    candidates, negatives = [], []
    for q in range(len(queries)):
        seen = set(queries.histories.row(q).tolist()) | {int(targets[q])}
        pool = np.setdiff1d(np.arange(n_items), np.fromiter(seen, np.int64))
        neg = rng.choice(pool, size=19, replace=False)
        negatives.append(int(neg[0]))
        candidates.append(np.concatenate([[targets[q]], neg]))
    return QueryBatch(queries.users, queries.histories, candidates=Ragged.from_rows(candidates)), candidates, negatives


def sample_users(eval_set, n: int, rng):
    usable = np.flatnonzero(eval_set.queries.histories.lengths > 0)
    rows = np.sort(rng.choice(usable, size=min(n, len(usable)), replace=False))
    targets = np.array([int(eval_set.targets.row(int(r))[0]) for r in rows])
    return eval_set.queries[rows], targets


def judge_pairs(flow, queries, targets, negatives, memories=None):
    """The user agent's margins on each query's liked and disliked item (no reasons generated)."""
    import dataclasses

    from trustrec.data import QueryBatch

    prior_orders, _ = flow.candidate_lists(flow._prepare(queries))
    views = flow.prior_views(queries, prior_orders)
    agent = dataclasses.replace(flow.user_agent(), reasons=False)
    both = QueryBatch.from_queries([*queries, *queries])
    items = np.concatenate([targets, negatives])
    return agent.judge(both, items, priors=views * 2, memories=None if memories is None else memories * 2).margin


def calibrate(flow, split, n_users: int, seed: int) -> tuple[float, dict]:
    """The user agent's Yes/No threshold with the best accuracy on balanced validation pairs."""
    rng = np.random.default_rng(seed + 1000)
    queries, targets = sample_users(split.eval_set("valid"), n_users, rng)
    queries, _, negatives = balanced_pairs(queries, targets, flow.n_items_, rng)
    margins = judge_pairs(flow, queries, targets, np.array(negatives))
    truth = np.r_[np.ones(len(targets), bool), np.zeros(len(targets), bool)]
    cuts = np.unique(margins)
    mids = np.r_[cuts[0] - 1, (cuts[1:] + cuts[:-1]) / 2, cuts[-1] + 1]
    accuracy = ((margins[None, :] > mids[:, None]) == truth[None, :]).mean(1)
    best = int(np.argmax(accuracy))
    return float(mids[best]), {"accuracy": float(accuracy[best]), "users": len(targets), "threshold": float(mids[best])}


def add_flow_arguments(ap: argparse.ArgumentParser) -> None:
    """The FLOW settings every FLOW benchmark takes."""
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reason-tokens", type=int, default=12)
    ap.add_argument("--reasons", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument(
        "--score-reduction", choices=("mean", "sum"), default="mean", help="how a candidate's likelihood is read"
    )
    ap.add_argument("--history-items", type=int, default=10)
    ap.add_argument("--calibration-users", type=int, default=100)
    ap.add_argument("--sasrec-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)


def calibrated_flow(split, args) -> tuple[Any, dict]:
    """SASRec as the prior, the user agent's threshold calibrated on validation users, and the
    fitted FLOW recommender that uses both; with the calibration record."""
    from trustrec.models import FitOptions, make_model
    from trustrec.models.agents import FlowRecommender

    options = FitOptions(seed=args.seed, progress=False)
    prior = make_model("sasrec", epochs=args.sasrec_epochs).fit(split, options)
    settings = {
        "model": args.model,
        "max_rounds": args.rounds,
        "reasons": args.reasons,
        "reason_tokens": args.reason_tokens,
        "max_history_items": args.history_items,
        "score_reduction": args.score_reduction,
    }
    calibrating = FlowRecommender(**settings).with_fitted(prior=prior).fit(split, options)
    threshold, calibration = calibrate(calibrating, split, args.calibration_users, args.seed)
    flow = FlowRecommender(**settings, accept_margin=threshold).with_fitted(prior=prior).fit(split, options)
    return flow, calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flow_arguments(ap)
    args = ap.parse_args()

    import torch

    from trustrec.data import load_dataset, split_leave_one_out

    torch.set_num_threads(args.threads)
    out_path = args.out or ROOT / "benchmarks" / "results" / f"flow_{args.dataset}.json"
    started = time.perf_counter()
    split = split_leave_one_out(load_dataset(args.dataset))
    train = split.train_dataset()
    eval_set = split.eval_set("test")
    rng = np.random.default_rng(args.seed)
    queries, targets = sample_users(eval_set, args.users, rng)
    n_items = train.n_items
    queries, candidates, negatives = balanced_pairs(queries, targets, n_items, rng)
    console.print(f"[bold]{args.dataset}[/]: {len(queries)} users, 20 candidates each; fitting SASRec")
    flow, calibration = calibrated_flow(split, args)
    threshold = calibration["threshold"]
    console.print(f"user agent threshold {threshold:.3f} (validation accuracy {calibration['accuracy']:.3f})")
    t0 = time.perf_counter()
    _, episodes = flow.recommend_with_episodes(queries, 20)
    episode_seconds = time.perf_counter() - t0

    first = np.array([e.first_item for e in episodes])
    final = np.array([e.final_item for e in episodes])
    prior_top1 = np.array([e.prior_order[0] for e in episodes])
    hit_alone = (first == targets).astype(float)
    hit_loop = (final == targets).astype(float)
    hit_prior = (prior_top1 == targets).astype(float)
    n_rounds = np.array([len(e.rounds) for e in episodes], float)
    accepted = np.array([e.accepted for e in episodes], float)

    # the user agent as a simulator: one liked and one disliked item per user
    t1 = time.perf_counter()
    truth = np.concatenate([np.ones(len(targets), bool), np.zeros(len(targets), bool)])
    negatives = np.array(negatives)
    alone = judge_pairs(flow, queries, targets, negatives) > threshold
    loop = judge_pairs(flow, queries, targets, negatives, [list(e.user_memory) for e in episodes]) > threshold
    judge_seconds = time.perf_counter() - t1

    pop = np.bincount(train.interactions.item, minlength=n_items).astype(float)
    from scipy.stats import rankdata

    pop_pct = (rankdata(pop, method="average") - 1) / max(n_items - 1, 1)
    pos_first = np.array([e.listed[0] for e in episodes])
    results = {
        "command": command_line(),
        "dataset": args.dataset,
        "model": args.model,
        "users": len(queries),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "gpu": None},
        "protocol": "leave-one-out; 20 candidates (held-out + 19 random unseen), seeded shuffle; SASRec prior; "
        f"decision=scored; at most {args.rounds} rounds; last {args.history_items} history items; "
        f"reasons of {args.reason_tokens} tokens; user-agent threshold calibrated on validation users",
        "calibration": calibration,
        "hr@1": {
            "rec_agent_alone": mean_ci(hit_alone, args.seed),
            "flow_loop": mean_ci(hit_loop, args.seed),
            "prior_sasrec": mean_ci(hit_prior, args.seed),
            "chance": 1 / 20,
            "loop_minus_alone": paired_ci(hit_loop, hit_alone, args.seed),
            "loop_relative_change": float(hit_loop.mean() / hit_alone.mean() - 1) if hit_alone.mean() > 0 else None,
        },
        "episodes": {
            "acceptance_rate": mean_ci(accepted, args.seed),
            "mean_rounds": mean_ci(n_rounds, args.seed),
            "rec_reply_errors": sum(r.rec_error is not None for e in episodes for r in e.rounds),
            "user_reply_errors": sum(r.user_error is not None for e in episodes for r in e.rounds),
        },
        "user_simulator": {
            "alone": _classification(alone.reshape(2, -1).T, truth.reshape(2, -1).T, args.seed),
            "with_loop": _classification(loop.reshape(2, -1).T, truth.reshape(2, -1).T, args.seed),
            "accuracy_loop_minus_alone": paired_ci(
                (loop == truth).reshape(2, -1).mean(0), (alone == truth).reshape(2, -1).mean(0), args.seed
            ),
        },
        "bias": {
            "popularity_percentile": {
                "alone": mean_ci(pop_pct[first], args.seed),
                "loop": mean_ci(pop_pct[final], args.seed),
                "loop_minus_alone": paired_ci(pop_pct[final], pop_pct[first], args.seed),
                "candidates": mean_ci(np.array([pop_pct[c].mean() for c in candidates]), args.seed),
            },
            "first_listed_share": {
                "alone": mean_ci((first == pos_first).astype(float), args.seed),
                "loop": mean_ci((final == pos_first).astype(float), args.seed),
                "chance": 1 / 20,
            },
        },
        "seconds": {
            "episodes": episode_seconds,
            "simulator": judge_seconds,
            "total": time.perf_counter() - started,
        },
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    with out_path.with_name(out_path.stem + "_episodes.jsonl").open("w") as f:
        for e, t in zip(episodes, targets):
            f.write(json.dumps({**e.to_dict(), "target": int(t)}) + "\n")

    def fmt(e: dict) -> str:
        lo, hi = e.get("ci_low"), e.get("ci_high")
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        p = f" p={e['p_value']:.3g}" if e.get("p_value") is not None else ""
        return f"{e['value']:.3f}{ci}{p}"

    table = Table(title=f"FLOW on {args.dataset}: {len(queries)} users, {args.model}")
    table.add_column("figure")
    table.add_column("alone")
    table.add_column("with the loop")
    table.add_column("loop - alone")
    h = results["hr@1"]
    table.add_row("rec agent HR@1", fmt(h["rec_agent_alone"]), fmt(h["flow_loop"]), fmt(h["loop_minus_alone"]))
    table.add_row("prior (SASRec) HR@1 / chance", fmt(h["prior_sasrec"]), f"{h['chance']:.3f}", "")
    us = results["user_simulator"]
    for name in ("accuracy", "precision", "recall", "f1"):
        diff = fmt(us["accuracy_loop_minus_alone"]) if name == "accuracy" else ""
        table.add_row(f"user agent {name}", fmt(us["alone"][name]), fmt(us["with_loop"][name]), diff)
    table.add_row("user agent yes-rate", f"{us['alone']['yes_rate']:.3f}", f"{us['with_loop']['yes_rate']:.3f}", "")
    b = results["bias"]
    pp = b["popularity_percentile"]
    table.add_row("popularity percentile", fmt(pp["alone"]), fmt(pp["loop"]), fmt(pp["loop_minus_alone"]))
    fl = b["first_listed_share"]
    table.add_row("chosen from first listed (chance 0.05)", fmt(fl["alone"]), fmt(fl["loop"]), "")
    ep = results["episodes"]
    table.add_row("acceptance rate / mean rounds", fmt(ep["acceptance_rate"]), fmt(ep["mean_rounds"]), "")
    console.print(table)
    shown = out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path.name
    console.print(f"episodes {episode_seconds:.0f} s, simulator {judge_seconds:.0f} s; wrote {shown}")


if __name__ == "__main__":
    main()
