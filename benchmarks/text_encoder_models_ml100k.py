"""Item-text (MiniLM) recommenders on ml-100k next to their ID-only peers, full test set.

Leave-one-out split of ml-100k (by time), full-catalog ranking, seen items masked, all 943 test
users, 95% bootstrap CIs, seed 0:

* ``text_knn`` (no training; default and with ``popularity_weight=0.3``) vs ``most_popular``;
* ``sasrec_text`` vs ``sasrec``, both ``--epochs`` (default 10) with identical settings.

    python benchmarks/text_encoder_models_ml100k.py --epochs 10

Prints a table and the text/ID NDCG@10 ratios; writes
benchmarks/results/text_encoder_models_ml100k.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _command import command_line

from trustrec.data import load_dataset, split_leave_one_out
from trustrec.eval import evaluate_split
from trustrec.models import FitOptions, make_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "text_encoder_models_ml100k.json")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console()
    split = split_leave_one_out(load_dataset("ml-100k"))
    runs = [
        ("most_popular", {}),
        ("text_knn", {}),
        ("text_knn", {"popularity_weight": 0.3}),
        ("sasrec", {"epochs": args.epochs}),
        ("sasrec_text", {"epochs": args.epochs}),
    ]
    results = {}
    for name, params in runs:
        label = name + "".join(f" {k}={v}" for k, v in params.items() if k != "epochs")
        started = time.perf_counter()
        model = make_model(name, **params).fit(split, FitOptions(seed=0, threads=args.threads))
        fit_s = time.perf_counter() - started
        res = evaluate_split(model, split, metrics=["ndcg@10", "hr@10"], n_boot=1000).to_dict()
        results[label] = {"params": params, "fit_s": fit_s, **res}
        m = res["metrics"]
        console.print(f"{label}: ndcg@10 {m['ndcg@10']['mean']:.4f} hr@10 {m['hr@10']['mean']:.4f} (fit {fit_s:.0f} s)")
    table = Table(title="ml-100k LOO test, 943 users, full ranking (95% bootstrap CI)", header_style="bold")
    for col in ("model", "NDCG@10", "HR@10", "fit s"):
        table.add_column(col, justify="right")
    for label, r in results.items():
        cells = [
            f"{r['metrics'][m]['mean']:.4f} [{r['metrics'][m]['ci_low']:.4f}, {r['metrics'][m]['ci_high']:.4f}]"
            for m in ("ndcg@10", "hr@10")
        ]
        table.add_row(label, *cells, f"{r['fit_s']:.0f}")
    console.print(table)
    ndcg = {label: r["metrics"]["ndcg@10"]["mean"] for label, r in results.items()}
    ratios = {
        "sasrec_text/sasrec": ndcg["sasrec_text"] / ndcg["sasrec"],
        "text_knn popularity_weight=0.3/most_popular": ndcg["text_knn popularity_weight=0.3"] / ndcg["most_popular"],
    }
    for k, v in ratios.items():
        console.print(f"NDCG@10 {k} = {v:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "text_encoder_models_ml100k",
                "command": command_line(),
                "machine": platform.platform(),
                "epochs": args.epochs,
                "results": results,
                "ndcg_ratios": ratios,
            },
            indent=1,
        )
    )
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
