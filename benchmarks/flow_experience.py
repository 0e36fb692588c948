"""Reflective experience (R²-Mem) for FLOW's recommendation agent on real data: do episodes get
shorter and better when the agent starts with lessons distilled from earlier users' episodes?

Protocol: FLOW as in ``flow_agents.py`` (leave-one-out split, 20 candidates = the held-out item
plus 19 random unseen items, SASRec prior, ``decision="scored"``, the user agent's Yes/No
threshold calibrated on validation users, at most ``--rounds`` rounds). Experience: episodes of
``--experience-users`` other users on the **validation** part (their validation item is the item
they want; no test user is among them), each round scored by the rubric (``StepRubric``), one
lesson per episode (``--reflector``: template, or the same LLM writing it), keyed by the user's
profile over the text encoder's item embeddings (``--encoder``). Test: ``--users`` test users,
the same episodes without and with the ``--lessons`` most similar users' lessons.

Figures (bootstrap 95% CIs over users; paired differences with the Wilcoxon p-value): HR@1 of
the recommended item and of the first proposal, rounds per episode, acceptance rate. R²-Mem's
claim, transferred: with experience, episodes are shorter and better.

    python benchmarks/flow_experience.py --dataset ml-100k --users 200 --experience-users 200

Writes benchmarks/results/flow_experience_<dataset>.json (no machine paths).
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
from flow_agents import add_flow_arguments, balanced_pairs, calibrated_flow, sample_users
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=150)


def episode_figures(episodes, targets: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "hr@1": (np.array([e.final_item for e in episodes]) == targets).astype(float),
        "first_hr@1": (np.array([e.first_item for e in episodes]) == targets).astype(float),
        "rounds": np.array([len(e.rounds) for e in episodes], float),
        "accepted": np.array([e.accepted for e in episodes], float),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_flow_arguments(ap)
    ap.add_argument("--experience-users", type=int, default=200)
    ap.add_argument("--lessons", type=int, default=3)
    ap.add_argument("--reflector", choices=("template", "llm"), default="template")
    ap.add_argument("--encoder", default="all-minilm-l6-v2")
    args = ap.parse_args()

    import torch

    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models.agents import ExperienceBank
    from trustrec.models.llm import item_text_embeddings

    torch.set_num_threads(args.threads)
    out_path = args.out or ROOT / "benchmarks" / "results" / f"flow_experience_{args.dataset}.json"
    started = time.perf_counter()
    split = split_leave_one_out(load_dataset(args.dataset))
    train = split.train_dataset()
    rng = np.random.default_rng(args.seed)
    queries, targets = sample_users(split.eval_set("test"), args.users, rng)
    queries, _, _ = balanced_pairs(queries, targets, train.n_items, rng)
    valid = split.eval_set("valid")
    others = valid[np.flatnonzero(~np.isin(valid.queries.users, queries.users))]
    past_queries, past_targets = sample_users(others, args.experience_users, rng)
    past_queries, _, _ = balanced_pairs(past_queries, past_targets, train.n_items, rng)
    console.print(
        f"[bold]{args.dataset}[/]: {len(queries)} test users, {len(past_queries)} experience users (validation "
        "part, disjoint), 20 candidates each; fitting SASRec"
    )
    flow, calibration = calibrated_flow(split, args)
    console.print(f"user agent threshold {calibration['threshold']:.3f}; experience episodes")

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    past = flow.run_episodes(past_queries)
    seconds["experience_episodes"] = time.perf_counter() - t0
    vectors = item_text_embeddings(train, args.encoder, progress=False)
    t0 = time.perf_counter()
    bank = ExperienceBank.from_episodes(
        past,
        past_queries,
        past_targets,
        flow._view(),
        vectors,
        reflector=args.reflector,
        backend=flow.backend if args.reflector == "llm" else None,
    )
    seconds["reflection"] = time.perf_counter() - t0
    console.print(f"{len(bank)} lessons from {len(past)} episodes; test episodes without and with them")
    t0 = time.perf_counter()
    without = episode_figures(flow.run_episodes(queries), targets)
    seconds["test_without"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    guided = flow.with_experience(bank, args.lessons).run_episodes(queries)
    seconds["test_with"] = time.perf_counter() - t0
    with_lessons = episode_figures(guided, targets)
    past_figures = episode_figures(past, past_targets)

    results = {
        "command": command_line(),
        "dataset": args.dataset,
        "model": args.model,
        "users": len(queries),
        "experience_users": len(past_queries),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "gpu": None},
        "protocol": "FLOW as flow_agents.py (20 candidates, SASRec prior, scored decisions, calibrated user agent, "
        f"at most {args.rounds} rounds); experience = episodes of disjoint validation users, rubric-scored rounds, "
        f"{args.reflector} lessons keyed by {args.encoder} profiles; {args.lessons} lessons per test episode",
        "calibration": calibration,
        "experience": {
            "lessons": len(bank),
            "episode_hr@1": mean_ci(past_figures["hr@1"], args.seed),
            "lesson_examples": bank.lessons["lesson"].head(3).tolist(),
        },
        "without": {k: mean_ci(v, args.seed) for k, v in without.items()},
        "with": {k: mean_ci(v, args.seed) for k, v in with_lessons.items()},
        "with_minus_without": {k: paired_ci(with_lessons[k], without[k], args.seed) for k in without},
        "example_lessons_shown": list(guided[0].lessons) if guided else [],
        "seconds": {**seconds, "total": time.perf_counter() - started},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=float) + "\n")

    def fmt(e: dict) -> str:
        return f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"

    table = Table(title=f"{args.dataset}: FLOW with reflective experience, {len(queries)} test users")
    for col in ("figure", "without lessons", "with lessons", "with - without (p)"):
        table.add_column(col)
    for k in without:
        d = results["with_minus_without"][k]
        table.add_row(
            k,
            fmt(results["without"][k]),
            fmt(results["with"][k]),
            f"{d['value']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] p={d['p_value']:.3g}",
        )
    console.print(table)
    console.print(f"total {results['seconds']['total']:.0f} s; wrote {out_path.name}")


if __name__ == "__main__":
    main()
