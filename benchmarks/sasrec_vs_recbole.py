"""SASRec: trustrec vs RecBole 1.2.1 on the same ml-100k leave-one-out split.

Same hyper-parameters (max length 50, 2 blocks, 2 heads, 64 dims, inner 256, dropout 0.5/0.5,
Adam lr 1e-3, no weight decay, CE over all items), same epoch budget, the same training targets
(every next item of every user's training sequence, once per epoch) and the same number of
optimiser steps per epoch (RecBole: ceil(97,171 prefix examples / 2,048); trustrec: its windows
split into as many batches), full-ranking test evaluation.

Protocol: RecBole's full ranking for sequential models does not mask the user's history, so
the comparison uses the same (unmasked) ranking on both sides; trustrec's default, with seen
items masked, is reported next to it (ml-100k has no repeat consumption, so masking can only
raise the figures).

Both sides read one atomic file written here, whose timestamps are the chronological rank of
each interaction (ties in ml-100k's seconds broken by file order), so the two leave-one-out
splits are identical; the script checks that against the split RecBole reports.

    python benchmarks/sasrec_vs_recbole.py --epochs 20 --seeds 0 1 2 --recbole-seeds 2020

RecBole runs in its own virtualenv (.bench/recbole-venv, built on first use). Prints one table
with both sides and the ratios, and writes benchmarks/results/sasrec_vs_recbole.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _command import command_line  # noqa: E402  # a sibling module, importable once its folder is on sys.path
from _recbole_env import ensure_recbole_venv  # noqa: E402

SASREC = {
    "max_len": 50,
    "embedding_size": 64,
    "n_blocks": 2,
    "n_heads": 2,
    "inner_size": 256,
    "dropout": 0.5,
    "attn_dropout": 0.5,
    "learning_rate": 1e-3,
    "reg": 0.0,
}
RECBOLE_BATCH = 2048
METRICS = ["ndcg@10", "hr@10", "mrr@10"]


def write_ordered_atomic(ds, folder: Path) -> Path:
    """ml-100k as one atomic .inter whose timestamps are the chronological rank (no ties)."""
    inter = ds.interactions
    order = inter.chronological_order()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    d = folder / "ml-100k"
    d.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "user_id:token": ds.user_ids[inter.user],
            "item_id:token": ds.item_ids[inter.item],
            "rating:float": inter.rating,
            "timestamp:float": rank,
        }
    )
    frame.to_csv(d / "ml-100k.inter", sep="\t", index=False)
    return folder


def mean_ci(values):
    """Mean over seeds with a 95% t-interval (NaN interval for a single seed)."""
    from trustrec.eval import t_interval

    return float(np.mean(values)), t_interval(values)


def run_trustrec(data_dir: Path, epochs: int, seeds: list[int], threads: int | None) -> dict:
    import torch

    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.eval import evaluate_split
    from trustrec.models import FitOptions, make_model

    if threads:
        torch.set_num_threads(threads)
    from trustrec.models.classic._sasrec import _windows

    ds = load_dataset(data_dir / "ml-100k")
    split = split_leave_one_out(ds)
    probe = make_model("sasrec", **SASREC)
    windows = len(_windows(split.train_dataset().histories(), probe.config.max_len, probe._stride)[0])
    targets = int(np.maximum(split.train_dataset().histories().lengths - 1, 0).sum())
    steps = -(-targets // RECBOLE_BATCH)
    batch = -(-windows // steps)
    print(
        f"  {targets} training targets; RecBole: {steps} steps of {RECBOLE_BATCH}; "
        f"trustrec: {windows} windows in batches of {batch}",
        flush=True,
    )
    runs = []
    for seed in seeds:
        model = make_model("sasrec", epochs=epochs, batch_size=batch, **SASREC)
        t0 = time.perf_counter()
        model.fit(split, FitOptions(seed=seed, progress=False))
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = evaluate_split(model, split, metrics=METRICS, n_boot=0, exclude_seen=False, progress=False)
        eval_s = time.perf_counter() - t0
        ci = evaluate_split(model, split, metrics=METRICS, n_boot=1000, seed=seed, exclude_seen=False, progress=False)
        masked = evaluate_split(model, split, metrics=METRICS, n_boot=0, progress=False)
        runs.append(
            {
                "seed": seed,
                "fit_s": fit_s,
                "epoch_s": model.history_["epoch_seconds"],
                "eval_s": eval_s,
                "test": {m: res.mean(m) for m in METRICS},
                "test_ci_users": {m: [ci.summary.loc[m, "ci_low"], ci.summary.loc[m, "ci_high"]] for m in METRICS},
                "test_seen_masked": {m: masked.mean(m) for m in METRICS},
            }
        )
        print(f"  trustrec seed {seed}: {runs[-1]['test']}  fit {fit_s:.1f}s", flush=True)
    users = split.dataset.user_ids[split.test.user]
    split_map = dict(zip(users, split.dataset.item_ids[split.test.item]))
    return {"runs": runs, "split_test": split_map}


def run_recbole(data_dir: Path, epochs: int, seeds: list[int], threads: int | None, work: Path) -> dict:
    py = ensure_recbole_venv(ROOT)
    runs = []
    for seed in seeds:
        out = work / f"recbole_seed{seed}.json"
        cmd = [
            str(py),
            str(ROOT / "benchmarks" / "_recbole_runner.py"),
            "--data-dir",
            str(data_dir),
            "--dataset",
            "ml-100k",
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--split-out",
            str(work / "recbole_split.tsv"),
        ]
        if threads:
            cmd += ["--threads", str(threads)]
        print(f"  recbole seed {seed}: running ({epochs} epochs; minutes per epoch on a small CPU)", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        runs.append(json.loads(out.read_text()))
        print(f"  recbole seed {seed}: {runs[-1]['test']}", flush=True)
    split = pd.read_csv(work / "recbole_split.tsv", sep="\t", dtype=str)
    return {"runs": runs, "split_test": dict(zip(split["user"], split["test_item"]))}


def summarise(ours: dict, peer: dict) -> dict:
    rows = {}
    for metric in METRICS:
        a = mean_ci([r["test"][metric] for r in ours["runs"]])
        b = mean_ci([r["test"][metric] for r in peer["runs"]])
        rows[metric] = {"trustrec": a, "recbole": b, "ratio": a[0] / b[0] if b[0] else float("nan")}
    for metric in METRICS:
        a = mean_ci([r["test_seen_masked"][metric] for r in ours["runs"]])
        rows[f"{metric} (trustrec default: seen masked)"] = {
            "trustrec": a,
            "recbole": (float("nan"), None),
            "ratio": float("nan"),
        }
    ep_ours = float(np.median([s for r in ours["runs"] for s in r["epoch_s"]]))
    ep_peer = float(np.median([s for r in peer["runs"] for s in r["epoch_train_s"]]))
    ev_ours = float(np.median([r["eval_s"] for r in ours["runs"]]))
    ev_peer = float(np.median([r["test_eval_s"] for r in peer["runs"]]))
    rows["train s/epoch"] = {"trustrec": (ep_ours, None), "recbole": (ep_peer, None), "ratio": ep_peer / ep_ours}
    rows["test eval s"] = {"trustrec": (ev_ours, None), "recbole": (ev_peer, None), "ratio": ev_peer / ev_ours}
    return rows


def print_table(rows: dict, n_ours: int, n_peer: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"SASRec on ml-100k, LOO by time, full ranking, history not masked as in RecBole "
        f"(trustrec: {n_ours} seeds, RecBole: {n_peer}; 95% t-interval over seeds)",
        header_style="bold",
    )
    for col in ("figure", "trustrec", "RecBole 1.2.1", "trustrec / RecBole (time: RecBole / trustrec)"):
        table.add_column(col, justify="right")

    def fmt(v):
        if np.isnan(v[0]):
            return "-"
        return f"{v[0]:.4f}" + (f" [{v[1][0]:.4f}, {v[1][1]:.4f}]" if v[1] and not np.isnan(v[1][0]) else "")

    for name, r in rows.items():
        if name in ("train s/epoch", "test eval s"):
            table.add_row(name, f"{r['trustrec'][0]:.2f}", f"{r['recbole'][0]:.2f}", f"{r['ratio']:.1f}x faster")
        else:
            table.add_row(
                name, fmt(r["trustrec"]), fmt(r["recbole"]), "-" if np.isnan(r["ratio"]) else f"{r['ratio']:.2f}"
            )
    Console(width=150).print(table)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recbole-seeds", type=int, nargs="+", default=[2020])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", type=Path, default=None, help="folder with ml-100k/ (default: registry)")
    p.add_argument(
        "--skip-recbole",
        type=Path,
        default=None,
        help="reuse RecBole result JSONs from this folder instead of running it",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sasrec_vs_recbole.json")
    args = p.parse_args(argv)

    from trustrec.data import load_dataset

    work = ROOT / ".bench" / "sasrec_vs_recbole"
    work.mkdir(parents=True, exist_ok=True)
    source = load_dataset("ml-100k", data_dir=args.data_dir)
    data_dir = write_ordered_atomic(source, work / "data")

    print("trustrec:", flush=True)
    ours = run_trustrec(data_dir, args.epochs, args.seeds, args.threads)
    print("RecBole:", flush=True)
    if args.skip_recbole:
        peer_runs = [json.loads(p.read_text()) for p in sorted(args.skip_recbole.glob("recbole_seed*.json"))]
        split = pd.read_csv(args.skip_recbole / "recbole_split.tsv", sep="\t", dtype=str)
        peer = {"runs": peer_runs, "split_test": dict(zip(split["user"], split["test_item"]))}
    else:
        peer = run_recbole(data_dir, args.epochs, args.recbole_seeds, args.threads, work)
    same = sum(ours["split_test"].get(u) == i for u, i in peer["split_test"].items())
    print(f"split check: {same} of {len(peer['split_test'])} test items identical", flush=True)
    rows = summarise(ours, peer)
    print_table(rows, len(ours["runs"]), len(peer["runs"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command_line(None if argv is None else [sys.argv[0], *argv]),
        "epochs": args.epochs,
        "hyper_parameters": SASREC,
        "split_identical_users": same,
        "summary": rows,
        "trustrec": ours["runs"],
        "recbole": peer["runs"],
    }
    args.out.write_text(json.dumps(report, indent=1, default=float))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
