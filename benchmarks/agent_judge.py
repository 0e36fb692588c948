"""Agent-as-judge on real data: does an LLM judge that looks things up (catalog records, the
user's history) before it decides tell true explanations from misleading ones better than a judge
that only reads the text? (AJ-Bench's claim, REFERENCES.md §3, on recommendation explanations.)

Protocol: leave-one-out split of ``--dataset``; ``--users`` test users drawn at random (seed 0);
for each, one templated explanation of the held-out item per planted kind (faithful, a citation
outside the history, an attribute neither the item nor the history has, a wrong year; kinds the
catalog cannot support are left out, e.g. amazon-games has no genres or years), labelled by
trustrec's catalog check (``check_explanations``). Both judges are the same LLM (``--model``,
default SmolLM2-135M-Instruct) asked "Is every fact in the explanation true?", the answer read from
the likelihoods of Yes and No; the tool judge's prompt adds what its look-ups returned (the
recommended item's record, each named title's record and whether the user interacted with it, the
history's genre counts and years). The JSON tool-choosing mode is not run here (a 135M model
writes no usable tool calls). ``--seeds`` re-draws the planted explanations.

Figures per judge: AUC of the misleading score, balanced accuracy, precision/recall/F1 at margin
0, false-positive rate; bootstrap 95% CIs over cases; tool judge - text judge paired (bootstrap CI
over cases, McNemar p for accuracy); flag rate per planted kind.

    python benchmarks/agent_judge.py --dataset ml-100k --users 200

Writes benchmarks/results/agent_judge_<dataset>.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)


def _records(frame) -> dict:
    return {
        name: {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
        for name, row in frame.to_dict("index").items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from trustrec.audit.explainability import (
        CatalogTools,
        ExplanationJudge,
        compare_judges,
        judge_agreement,
        planted_cases,
    )
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models.llm import LLMConnection

    torch.set_num_threads(args.threads)
    out_path = args.out or ROOT / "benchmarks" / "results" / f"agent_judge_{args.dataset}.json"
    started = time.perf_counter()
    dataset = load_dataset(args.dataset)
    evaluation = split_leave_one_out(dataset).eval_set("test")
    rows = np.sort(np.random.default_rng(0).choice(len(evaluation), min(args.users, len(evaluation)), replace=False))
    evaluation = evaluation[rows]
    held_out = evaluation.targets.values[evaluation.targets.indptr[:-1]]
    backend = LLMConnection(model=args.model).build_backend("cpu", owner="agent_judge")
    tokenizer = getattr(backend, "tokenizer", None)
    tools = CatalogTools.from_items(dataset.items)
    judges = {
        "text": ExplanationJudge(backend=backend, tokenizer=tokenizer),
        "tools": ExplanationJudge(backend=backend, tools=tools, tokenizer=tokenizer),
    }
    results: dict = {
        "command": command_line(),
        "dataset": args.dataset,
        "model": args.model,
        "users": len(evaluation),
        "seeds": args.seeds,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "gpu": None},
        "protocol": (
            "leave-one-out; random test users; one templated explanation of the held-out item per planted kind, "
            "labelled by check_explanations; both judges read Yes/No likelihoods of the same LLM; the tool judge "
            "also reads its look-ups (item record, named titles' records and history membership, history profile)"
        ),
        "runs": [],
    }
    for seed in range(args.seeds):
        cases = planted_cases(evaluation.queries.histories, held_out, dataset.items, seed=seed)
        frame = cases.to_frame()
        run: dict = {
            "seed": seed,
            "cases": len(cases),
            "misleading_share": float(cases.misleading.mean()),
            "cases_by_kind": frame.kind.value_counts().sort_index().to_dict(),
            "judges": {},
        }
        verdicts = {}
        for name, judge in judges.items():
            t0 = time.perf_counter()
            verdicts[name] = judge.judge(cases)
            seconds = time.perf_counter() - t0
            agreement = judge_agreement(cases, verdicts[name], n_boot=1000, seed=seed)
            flag_rate = frame.assign(flagged=verdicts[name].flagged).groupby("kind").flagged.mean().to_dict()
            run["judges"][name] = {
                "agreement": _records(agreement),
                "flag_rate_by_kind": flag_rate,
                "seconds": seconds,
                "ms_per_case": 1000 * seconds / len(cases),
            }
            console.print(
                f"seed {seed} {name:>5}: AUC {agreement.loc['auc', 'value']:.3f} "
                f"[{agreement.loc['auc', 'low']:.3f}, {agreement.loc['auc', 'high']:.3f}]  "
                f"balanced accuracy {agreement.loc['balanced_accuracy', 'value']:.3f}  ({seconds:.0f} s)"
            )
        run["tools_minus_text"] = _records(compare_judges(cases, verdicts["tools"], verdicts["text"], seed=seed))
        results["runs"].append(run)
    results["seconds"] = time.perf_counter() - started
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")

    for run in results["runs"]:
        table = Table(title=f"{args.dataset}: agent-as-judge, {run['cases']} cases, seed {run['seed']}")
        table.add_column("metric")
        for name in judges:
            table.add_column(f"{name} judge [95% CI]")
        table.add_column("tools - text [95% CI]")
        diff = run["tools_minus_text"]
        for metric in ("auc", "balanced_accuracy", "accuracy", "precision", "recall", "false_positive_rate", "f1"):
            cells = []
            for name in judges:
                e = run["judges"][name]["agreement"][metric]
                cells.append(f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]" if e["low"] is not None else "-")
            d = diff.get(metric)
            cells.append(f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "")
            table.add_row(metric, *cells)
        console.print(table)
        kinds = Table(title="flag rate by planted kind")
        kinds.add_column("kind")
        for name in judges:
            kinds.add_column(name)
        for kind in sorted(run["cases_by_kind"]):
            kinds.add_row(kind, *(f"{run['judges'][n]['flag_rate_by_kind'][kind]:.3f}" for n in judges))
        console.print(kinds)
    console.print(f"total {results['seconds']:.0f} s; wrote {out_path.name}")


if __name__ == "__main__":
    main()
