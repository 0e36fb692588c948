"""The poisoning grid audit (attacks x budgets, one retraining per cell) on ml-100k, run by the
serial executor and by the Ray executor on a local multi-process Ray instance, side by side: wall
time of each, the speed-up against the number of Ray worker CPUs, and whether the two results
are identical (every estimate, every evidence table).

The audit goes through :func:`trustrec.runs.audit_model`, as ``trustrec audit --executor ray``
does: the audit is one Ray task and each cell of the grid (one attack at one budget: inject fake users,
retrain the model, rank the genuine test users) a nested task. The model is retrained from
its spec in each cell, so the grid is embarrassingly parallel and the ideal speed-up is the number
of CPUs Ray gets (at most the machine's cores) against a serial run whose fits use one thread each,
as each Ray task's do. Serially, torch spreads one fit over all cores instead: that run is the
reference, and on a machine with few cores it leaves Ray little to gain. Ray's own start-up (a local instance) is timed
apart and included in the Ray wall time, as a user pays it.

    python benchmarks/ray_grid_audit.py --model bpr_mf --num-cpus 2 --attacks random,bandwagon,sequential --budgets 0.01,0.05

Writes benchmarks/results/ray_grid_audit.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=160)


def _identical(a, b) -> list[str]:
    """Where two audit results differ (empty: identical estimates and evidence tables)."""
    import pandas as pd

    diffs = []
    if a.estimates != b.estimates:
        diffs.append("estimates")
    if a.verdict != b.verdict:
        diffs.append("verdict")
    for name in sorted(set(a.evidence) | set(b.evidence)):
        left, right = a.evidence.get(name), b.evidence.get(name)
        if left is None or right is None:
            diffs.append(f"evidence {name} (missing on one side)")
            continue
        if "fit_seconds" in left.columns:  # each cell's own training time: the one thing timed
            left, right = left.drop(columns="fit_seconds"), right.drop(columns="fit_seconds")
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=True)
        except AssertionError:
            diffs.append(f"evidence {name}")
    return diffs


def _torch_threads(_) -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    import ray
    import torch

    from trustrec.audit import PoisoningAudit
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models import FitOptions, make_model
    from trustrec.parallel import RayExecutor, SerialExecutor
    from trustrec.runs import audit_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="bpr_mf", help="a registered model name (retrained in every cell)")
    ap.add_argument("--attacks", default="random,average,bandwagon,segment,sequential")
    ap.add_argument("--budgets", default="0.01,0.03,0.05")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray instance")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    attacks, budgets = args.attacks.split(","), [float(b) for b in args.budgets.split(",")]

    ds = load_dataset("ml-100k")
    split = split_leave_one_out(ds)
    model = make_model(args.model).fit(split, FitOptions(progress=False, seed=args.seed))
    audit = PoisoningAudit(attacks=attacks, budgets=budgets, n_boot=200, seed=args.seed)
    n_cells = len(attacks) * len(budgets)

    def quiet(*_):
        return None

    console.print(
        f"ml-100k leave-one-out; {args.model} retrained in {n_cells} cells ({len(attacks)} attacks x "
        f"{len(budgets)} budgets) plus one clean retrain; Ray: a local instance with {args.num_cpus} CPUs"
    )

    t0 = time.perf_counter()
    (serial,) = audit_model(model, split, [audit], progress=False, log=quiet, executor=SerialExecutor())[1]
    t_serial = time.perf_counter() - t0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per fit, as each Ray task gets (Ray sets OMP_NUM_THREADS=1)
    try:
        t0 = time.perf_counter()
        (serial_one,) = audit_model(model, split, [audit], progress=False, log=quiet, executor=SerialExecutor())[1]
        t_serial_one = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)

    executor = RayExecutor(num_cpus=args.num_cpus, init_kwargs={"log_to_driver": False})
    t0 = time.perf_counter()
    (task_threads,) = executor.map(_torch_threads, [0])  # starts the local instance: timed apart
    t_start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        (through_ray,) = audit_model(model, split, [audit], progress=False, log=quiet, executor=executor)[1]
        t_grid = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 0))
    finally:
        executor.shutdown()
    diffs = _identical(serial, through_ray) + [f"{d} (one-thread serial)" for d in _identical(serial, serial_one)]
    t_ray = t_start + t_grid
    # the clean retrain runs before the grid, alone: n_cells + 1 fits in 1 + ceil(n_cells / cpus) rounds
    ideal = (n_cells + 1) / (1 + math.ceil(n_cells / max(cpus, 1)))

    table = Table(title=f"poisoning grid audit ({n_cells} cells, {args.model}) on ml-100k")
    for col in ("executor", "resources", "wall s", "speed-up vs serial", "vs 1-thread serial (ideal)", "results"):
        table.add_column(col)
    verdict = "identical" if not diffs else "DIFFER: " + ", ".join(diffs)
    table.add_row(f"serial, {threads} torch threads per fit", "1 process", f"{t_serial:.1f}", "1.00x", "", "reference")
    table.add_row(
        "serial, 1 torch thread per fit",
        "1 process",
        f"{t_serial_one:.1f}",
        f"{t_serial / t_serial_one:.2f}x",
        "1.00x",
        "",
    )
    table.add_row(
        f"ray, {task_threads} torch thread(s) per task",
        f"{cpus} CPUs",
        f"{t_grid:.1f}",
        f"{t_serial / t_grid:.2f}x",
        f"{t_serial_one / t_grid:.2f}x (ideal {ideal:.2f}x)",
        verdict,
    )
    table.add_row(
        "ray, with its start-up",
        f"{cpus} CPUs",
        f"{t_ray:.1f}",
        f"{t_serial / t_ray:.2f}x",
        "",
        f"start {t_start:.1f} s",
    )
    console.print(table)

    out = {
        "command": command_line(),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "dataset": "ml-100k",
        "split": "leave_one_out",
        "model": args.model,
        "attacks": attacks,
        "budgets": budgets,
        "n_cells": n_cells,
        "ray_cpus": cpus,
        "serial_torch_threads": threads,
        "serial_seconds": t_serial,
        "serial_one_thread_seconds": t_serial_one,
        "ray_task_torch_threads": task_threads,
        "ray_start_seconds": t_start,
        "ray_grid_seconds": t_grid,
        "speedup_grid": t_serial / t_grid,
        "speedup_with_start": t_serial / t_ray,
        "speedup_grid_vs_one_thread_serial": t_serial_one / t_grid,
        "ideal_speedup_vs_one_thread_serial": ideal,
        "identical_results": not diffs,
        "differences": diffs,
        "summary": serial.summary,
    }
    path = ROOT / "benchmarks" / "results" / "ray_grid_audit.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"written: {path.relative_to(ROOT)}")
    if diffs:
        raise SystemExit(f"serial and Ray results differ: {diffs}")


if __name__ == "__main__":
    main()
