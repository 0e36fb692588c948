"""Every trust dimension audited on ml-100k, timed (issue 9 targets).

1. **SASRec** (``configs/sasrec-ml100k.yaml`` with ``--epochs`` / ``--stride``): ``trustrec run``,
   then ``trustrec audit`` with every registered audit, retraining audits included, then
   ``trustrec report``. Prints each audit's time, verdict and summary, the time per dimension,
   and the target: all six dimensions answered (at least one audit in each measured something,
   i.e. did not answer "not applicable") in under 600 s, training included. The peer is the run itself (fit + evaluate): the audit/run ratio.
2. **LLM ranker** (SmolLM2-135M-Instruct re-ranking the same SASRec's top-``--llm-candidates``):
   every audit on a seeded sample of ``--llm-users`` test users (``audit_model`` in memory, the
   retraining audits retrain the retriever and re-rank the sample); target under 1800 s.

``--plan`` picks the audit settings: ``default`` (every audit at its defaults) or ``budgeted``
(the grid-shaped audits cut to one point: poisoning at a single 3% budget instead of 1/3/5%,
feedback loop 3 rounds instead of 5; for the LLM part also history perturbation at the 20% budget
only and deletion faithfulness at 3 cited items with 2 random draws; every other audit at its
defaults). The overrides are written with the results, so a reader sees what was run.

    python benchmarks/all_dimensions_ml100k.py --plan budgeted
    python benchmarks/all_dimensions_ml100k.py --llm-only --llm-users 20
    python benchmarks/all_dimensions_ml100k.py --llm-only --llm-users 10 --llm-audits explanation_faithfulness
    python benchmarks/all_dimensions_ml100k.py --rederive     # derived flags from the stored entries only

Writes benchmarks/results/all_dimensions_ml100k.json (no machine paths; each part records the
exact command that produced it) and leaves the run directories (with audits and report.html)
under ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import yaml
from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "all_dimensions_ml100k.json"
console = Console()

PLANS = {
    "default": {},
    "budgeted": {
        "poisoning": {"budgets": [0.03]},
        "feedback_loop": {"rounds": 3},
        # the LLM part only (each setting re-asks the LLM about every sampled user): history
        # edits at the headline 20% budget only; deletion faithfulness at the cited count only
        "history_perturbation": {"budgets": [0.2]},
        "explanation_faithfulness": {"steps": [3], "n_random": 2},
    },
}
LLM_ONLY = ("history_perturbation", "explanation_faithfulness")  # SASRec keeps their defaults
SIX = ("robustness", "fairness", "controllability", "explainability", "factuality", "privacy")


def _table(title: str, entries: list[dict]) -> Table:
    table = Table(title=title, header_style="bold")
    for col in ("dimension", "audit", "verdict", "seconds", "summary"):
        table.add_column(col, overflow="fold", justify="right" if col == "seconds" else "left")
    for e in sorted(entries, key=lambda e: (e["dimension"], e["name"])):
        table.add_row(e["dimension"], e["name"], e["status"], f"{e['seconds']:.1f}", e["summary"][:160])
    return table


def _by_dimension(entries: list[dict]) -> dict:
    out = {}
    for e in entries:
        d = out.setdefault(e["dimension"], {"seconds": 0.0, "audits": 0, "applicable": 0})
        d["seconds"] += e["seconds"]
        d["audits"] += 1
        d["applicable"] += e["status"] != "not_applicable"
    return out


def _answered(by_dim: dict) -> dict:
    """A dimension is answered when at least one of its audits measured something (a status other
    than ``not_applicable``). Audits that only say why they do not apply (SASRec returns catalog
    indices, so the hallucination audit has nothing to measure) leave the dimension unanswered:
    the reason is reported, but it is not a measurement."""
    return {d: by_dim.get(d, {}).get("applicable", 0) > 0 for d in SIX}


def _derive(part: dict, limit_s: float, *, every_audit: bool) -> None:
    """Recompute a part's derived figures from its stored audit entries (an earlier run's too)."""
    part["by_dimension"] = _by_dimension(part["audits"])
    part["answered"] = _answered(part["by_dimension"])
    part["measured"] = {d: part["by_dimension"].get(d, {}).get("applicable", 0) for d in SIX}
    part["not_answered"] = {
        d: sorted(e["name"] for e in part["audits"] if e["dimension"] == d)
        for d, ok in part["answered"].items()
        if not ok
    }
    seconds = part["seconds"]["total"] if isinstance(part["seconds"], dict) else part["seconds"]
    part["target_met"] = bool(all(part["answered"].values()) and seconds < limit_s and every_audit)


def _derive_all(result: dict) -> None:
    for key, part in result.items():
        if key == "sasrec":
            _derive(part, 600, every_audit=True)
        elif key == "llm_ranker":
            _derive(part, 1800, every_audit=True)
        elif key.startswith("llm_ranker_subset"):
            _derive(part, 1800, every_audit=False)  # a subset of audits never meets the every-audit target


def sasrec_part(args, overrides: dict) -> tuple[dict, Path]:
    from trustrec.report import write_report
    from trustrec.runs import load_run_config, run_audits, run_experiment

    config = yaml.safe_load((ROOT / "configs" / "sasrec-ml100k.yaml").read_text())
    config["model"]["params"] = {"epochs": args.epochs, "window_stride": args.stride}
    config["name"] = f"sasrec-ml100k-e{args.epochs}-s{args.stride}"
    config["seed"] = args.seed
    run_dir = args.runs / load_run_config(config).run_name()
    t0 = time.perf_counter()
    run_experiment(config, args.runs, progress=True, log=lambda *_: None, overwrite=True)
    t_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = run_audits(run_dir, params=overrides, progress=True, log=lambda *_: None)
    t_audit = time.perf_counter() - t0
    t0 = time.perf_counter()
    html = write_report(run_dir)
    t_report = time.perf_counter() - t0
    entries = index["audits"]
    console.print(_table(f"SASRec on ml-100k, every audit ({args.plan} plan)", entries))
    total = t_run + t_audit + t_report
    console.print(
        f"SASRec run (fit + evaluate) {t_run:.0f} s; every audit {t_audit:.0f} s "
        f"(audit/run ratio {t_audit / t_run:.1f}); report {t_report:.1f} s; total {total:.0f} s",
        markup=False,
    )
    part = {
        "command": command_line(),
        "config": config["model"],
        "seconds": {"run": t_run, "audits": t_audit, "report": t_report, "total": total},
        "audits": entries,
    }
    _derive(part, 600, every_audit=True)
    console.print(
        f"dimensions answered (an audit measured): {part['answered']}; audits that measured per "
        f"dimension: {part['measured']}; target all six in < 600 s: "
        f"{'met' if part['target_met'] else 'NOT met'}",
        markup=False,
    )
    sections = {p.split('"', 1)[0]: p for p in html.read_text().split('<section id="dim-')[1:]}
    part["report_figures_by_dimension"] = {d: sections[d].count("<svg") for d in sections}
    console.print(f"report sections (figures drawn): {part['report_figures_by_dimension']}", markup=False)
    return part, run_dir


def llm_part(args, overrides: dict, sasrec_dir: Path) -> dict:
    from trustrec.models import Recommender, compose
    from trustrec.runs import audit_model, audit_plan, load_run_config, prepare_data

    _, split = prepare_data(load_run_config(sasrec_dir / "config.yaml"))
    sasrec = Recommender.load(sasrec_dir / "checkpoint")
    ranker = compose("llm_ranker", split, retriever=sasrec, n_candidates=args.llm_candidates)
    from trustrec.audit import available_audits

    names = args.llm_audits.split(",") if args.llm_audits else list(available_audits())
    params = {name: {**overrides.get(name, {}), "max_users": args.llm_users, "seed": args.seed} for name in names}
    plan = audit_plan(names=names if args.llm_audits else None, params=params)
    t0 = time.perf_counter()
    entries, _ = audit_model(
        ranker, split, plan, out=args.runs / "llm-ranker-audits", progress=True, log=lambda *_: None
    )
    took = time.perf_counter() - t0
    console.print(
        _table(
            f"LLM ranker (SmolLM2 over SASRec top-{args.llm_candidates}), {args.llm_users} sampled test users", entries
        )
    )
    part = {
        "command": command_line(),
        "users": args.llm_users,
        "candidates": args.llm_candidates,
        "audits_run": names,
        "seconds": took,
        "audits": entries,
    }
    _derive(part, 1800, every_audit=not args.llm_audits)
    scope = f"audits {','.join(names)}" if args.llm_audits else "every audit"
    console.print(
        f"LLM ranker, {scope} on {args.llm_users} users: {took:.0f} s; dimensions answered (an audit "
        f"measured): {part['answered']}; target (every audit) < 1800 s: "
        f"{'met' if part['target_met'] else 'NOT met'}",
        markup=False,
    )
    return part


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-all-dimensions")
    ap.add_argument("--plan", choices=sorted(PLANS), default="budgeted")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--stride", type=int, default=50, help="SASRec window_stride")
    ap.add_argument("--llm-users", type=int, default=20)
    ap.add_argument("--llm-candidates", type=int, default=20)
    ap.add_argument("--llm-audits", default="", help="comma-separated audits for the LLM part (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--llm-only", action="store_true", help="Only the LLM part, merged into the results file.")
    ap.add_argument(
        "--rederive",
        action="store_true",
        help="Run nothing: recompute the answered / target flags from the stored audit entries.",
    )
    args = ap.parse_args()
    if args.rederive:
        result = json.loads(RESULTS.read_text())
        _derive_all(result)
        RESULTS.write_text(json.dumps(result, indent=1, default=float))
        for key, part in result.items():
            if isinstance(part, dict) and "answered" in part:
                console.print(f"{key}: answered {part['answered']}; target met {part['target_met']}", markup=False)
        return
    overrides = PLANS[args.plan]
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.llm_only else {}
    result.update(
        {
            "platform": platform.platform(terse=True),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "seed": args.seed,
        }
    )
    if not args.llm_only:
        sasrec_overrides = {k: v for k, v in overrides.items() if k not in LLM_ONLY}
        result["sasrec"], sas_dir = sasrec_part(args, sasrec_overrides)
        result["sasrec"]["plan"] = {"name": args.plan, "overrides": sasrec_overrides}
    else:
        from trustrec.runs import load_run_config

        config = yaml.safe_load((ROOT / "configs" / "sasrec-ml100k.yaml").read_text())
        config["name"] = f"sasrec-ml100k-e{args.epochs}-s{args.stride}"
        sas_dir = args.runs / load_run_config(config).run_name()
    if not args.skip_llm:  # a run of some audits only is kept apart from the every-audit run
        key = f"llm_ranker_subset_{args.llm_users}_users" if args.llm_audits else "llm_ranker"
        result[key] = llm_part(args, overrides, sas_dir)
        result[key]["plan"] = {"name": args.plan, "overrides": overrides}
    _derive_all(result)  # derived figures, from the measured entries (an earlier run's too)
    RESULTS.write_text(json.dumps(result, indent=1, default=float))
    console.print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
