"""Faithfulness of recommendation explanations on ml-100k, and cold-item accuracy.

1. Fits ItemKNN and SASRec (``--sasrec-epochs``) on the leave-one-out split of ml-100k.
2. Runs the ``explanation_faithfulness`` audit on a seeded sample of ``--users`` test users: each
   user's top-1 item is attributed to history items (ItemKNN: leave-one-out; SASRec: leave-one-out
   and gradient x input), the ``--cited`` most attributed items are removed (or kept alone), and the
   item's full-catalog rank drop is compared with removing (keeping) as many random history items.
   Prints cited vs random rank drops, comprehensiveness / sufficiency with CIs and p-values, the
   share of items pushed out of the top-10, the deletion curve, and the time each audit took.
3. With ``--cold-start``: the ``cold_start`` audit on SASRec, with ItemKNN, MostPopular and the
   text-encoder TextKNN (all-MiniLM-L6-v2 over titles; skipped with a warning when the encoder is
   not available offline) as references on the same users with cold targets (<= 10 training
   interactions).

    TRUSTREC_DATA=../shared/data python benchmarks/explainability_ml100k.py --users 200 --sasrec-epochs 20
    python benchmarks/explainability_ml100k.py --data-dir ../shared/data --cold-start

Writes benchmarks/results/explainability_ml100k.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _command import command_line
from rich.console import Console
from rich.table import Table

from trustrec.audit import ColdStartAudit
from trustrec.audit.explainability import ExplanationFaithfulnessAudit
from trustrec.data import load_dataset, split_leave_one_out
from trustrec.models import FitOptions, make_model

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)
ESTIMATES = (
    "rank_drop [remove cited]",
    "rank_drop [remove random]",
    "comprehensiveness",
    "rank_drop [keep cited]",
    "rank_drop [keep random]",
    "sufficiency",
    "leaves_top10 [remove cited]",
    "leaves_top10 [remove random]",
)


def _fmt(e) -> str:
    if e is None or e.value is None:
        return "-"
    ci = "" if e.ci_low is None else f" [{e.ci_low:.2f}, {e.ci_high:.2f}]"
    p = "" if e.p_value is None else f" p={e.p_value:.2g}"
    return f"{e.value:.3f}{ci}{p}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TRUSTREC_DATA"))
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--cited", type=int, default=3)
    parser.add_argument("--n-random", type=int, default=3)
    parser.add_argument("--sasrec-epochs", type=int, default=20)
    parser.add_argument("--cold-start", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "explainability_ml100k.json"))
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set TRUSTREC_DATA to the folder holding ml-100k")

    ds = load_dataset("ml-100k", data_dir=args.data_dir)
    split = split_leave_one_out(ds)
    options = FitOptions(seed=args.seed, progress=False)
    fits, models = {}, {}
    for name, params in (("item_knn", {}), ("sasrec", {"epochs": args.sasrec_epochs})):
        t0 = time.perf_counter()
        models[name] = make_model(name, **params).fit(split, options)
        fits[name] = time.perf_counter() - t0
        console.print(f"fitted {name} in {fits[name]:.1f} s")

    steps = sorted({1, 2, 3, 5, 10, args.cited})
    rows, results = [], {}
    for name, method in (("item_knn", "leave_one_out"), ("sasrec", "leave_one_out"), ("sasrec", "gradient")):
        audit = ExplanationFaithfulnessAudit(
            method=method,
            max_users=args.users,
            n_cited=args.cited,
            steps=steps,
            n_random=args.n_random,
            n_boot=1000,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        res = audit.run(models[name], split)
        seconds = time.perf_counter() - t0
        label = f"{name} / {method}"
        results[label] = {
            "seconds": seconds,
            "summary": res.summary,
            "warnings": list(res.warnings),
            "estimates": {k: v.to_dict() for k, v in res.estimates.items()},
            "deletion_curve": res.evidence["deletion_curve"].to_dict(orient="records"),
            "sufficiency_curve": res.evidence["sufficiency_curve"].to_dict(orient="records"),
            "settings": {
                k: res.settings[k]
                for k in ("method", "n_pairs_explained", "n_users", "n_pairs_at_n_cited", "request_counts")
            },
        }
        rows.append((label, res, seconds))

    table = Table(
        title=f"explanation faithfulness on ml-100k: top-1 of {args.users} test users, "
        f"{args.cited} cited vs random history items (full-catalog rank drop; 95% CI)"
    )
    table.add_column("estimate", no_wrap=True)
    for label, _, _ in rows:
        table.add_column(label)
    for est in ESTIMATES:
        table.add_row(est, *[_fmt(res.estimates.get(est)) for _, res, _ in rows])
    table.add_row("audit seconds", *[f"{s:.1f}" for _, _, s in rows])
    console.print(table)
    curve = Table(title="deletion curve: mean rank drop after removing m history items (cited / random)")
    curve.add_column("m")
    for label, _, _ in rows:
        curve.add_column(label)
    for m in steps:
        cells = []
        for _, res, _ in rows:
            frame = res.evidence["deletion_curve"]
            got = {r.variant: r.rank_drop for r in frame[frame.n_items == m].itertuples()}
            cells.append(f"{got.get('remove cited', float('nan')):.2f} / {got.get('remove random', float('nan')):.2f}")
        curve.add_row(str(m), *cells)
    console.print(curve)

    cold = None
    if args.cold_start:
        audit = ColdStartAudit(
            max_train_interactions=10,
            n_boot=1000,
            seed=args.seed,
            compare_with=[{"name": "item_knn"}, {"name": "most_popular"}, {"name": "text_knn"}],
        )
        t0 = time.perf_counter()
        res = audit.run(models["sasrec"], split)
        seconds = time.perf_counter() - t0
        console.print(f"cold start ({seconds:.1f} s): {res.summary}")
        for w in res.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        console.print(res.evidence["by_model"].to_string(index=False))
        cold = {
            "seconds": seconds,
            "summary": res.summary,
            "warnings": list(res.warnings),
            "by_model": res.evidence["by_model"].to_dict(orient="records"),
            "estimates": {k: v.to_dict() for k, v in res.estimates.items()},
        }

    out = {
        "command": command_line(),
        "dataset": "ml-100k",
        "split": "leave_one_out",
        "users": args.users,
        "cited": args.cited,
        "n_random": args.n_random,
        "sasrec_epochs": args.sasrec_epochs,
        "seed": args.seed,
        "fit_seconds": fits,
        "faithfulness": results,
        "cold_start": cold,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    console.print(f"wrote {Path(args.out).relative_to(ROOT) if Path(args.out).is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
