"""Controllability and position bias on ml-100k (issue 9, items 5-7).

Classic models (MostPopular, ItemKNN; all 943 test users for ``platform_rules``, a seeded sample of
``--classic-users`` for ``user_control``): constraint satisfaction unconstrained vs filtered, NDCG
kept on compatible targets, latency of control; platform-rule violations before/after
enforcement and the accuracy they cost.

The LLM ranker (SmolLM2-135M-Instruct, ``--model``, re-ranking ``--n-candidates`` MostPopular
candidates, history cut to ``--max-history-tokens``): ``user_control`` prompted only vs prompted +
filtered (``--llm-kinds`` requests of ``--llm-users`` seeded test users), ``prompt_sensitivity``
over the five shipped paraphrases (``--llm-users``), and ``position_bias`` (``--bias-users``) with
single-order vs permutation-averaged ranking (``--permutations`` orders) and its cost in model
calls. On a CPU the LLM part dominates (every candidate of every prompt is scored). Prints one
table per part and writes benchmarks/results/controllability_ml100k.json.

    python benchmarks/controllability_ml100k.py --llm-users 10 --bias-users 40 --n-candidates 5
    python benchmarks/controllability_ml100k.py --skip-llm
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _command import command_line
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trustrec.audit import Estimate
from trustrec.audit.controllability import (
    PlatformRulesAudit,
    PositionBiasAudit,
    PromptSensitivityAudit,
    UserControlAudit,
)
from trustrec.data import load_dataset, split_leave_one_out
from trustrec.models import FitOptions, compose, make_model

ROOT = Path(__file__).resolve().parent.parent


def _fmt(est) -> str:
    if est is None or est.value is None:
        return "-"
    ci = f" [{est.ci_low:.3f}, {est.ci_high:.3f}]" if est.ci_low is not None else ""
    p = f" p={est.p_value:.2g}" if est.p_value is not None else ""
    return f"{est.value:.3f}{ci}{p}"


def _timed(audit, model, split):
    t0 = time.perf_counter()
    result = audit.run(model, split)
    return result, time.perf_counter() - t0


def _record(result, seconds) -> dict:
    return {
        "seconds": seconds,
        "summary": result.summary,
        "verdict": result.verdict.to_dict(),
        "warnings": list(result.warnings),
        "settings": json.loads(json.dumps(dict(result.settings), default=str)),
        "estimates": {k: v.to_dict() for k, v in result.estimates.items()},
        "evidence": {
            name: json.loads(frame.to_json(orient="records"))
            for name, frame in result.evidence.items()
            if name in ("satisfaction", "cost", "curve", "per_template", "violations")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classic-users", type=int, default=200)
    ap.add_argument("--llm-users", type=int, default=40)
    ap.add_argument("--bias-users", type=int, default=80)
    ap.add_argument("--llm-kinds", nargs="+", default=["exclude_genre", "year_before"])
    ap.add_argument(
        "--llm-k",
        type=int,
        default=2,
        help="list length for the LLM's user_control and "
        "prompt_sensitivity; below --n-candidates, or the ranker can only reorder a fixed set",
    )
    ap.add_argument(
        "--llm-audits",
        nargs="+",
        default=["position_bias", "prompt_sensitivity", "user_control"],
        help="LLM parts to run; the others are kept from an existing --out file",
    )
    ap.add_argument("--max-history-tokens", type=int, default=128)
    ap.add_argument("--n-candidates", type=int, default=10)
    ap.add_argument("--permutations", type=int, default=3)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "controllability_ml100k.json"))
    args = ap.parse_args()
    console = Console(width=200)
    ds = load_dataset("ml-100k")
    split = split_leave_one_out(ds)
    results: dict = {
        "dataset": "ml-100k",
        "split": "leave_one_out",
        "machine": platform.platform(),
        "processor": platform.processor(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "classic": {},
        "llm": {},
    }

    table = Table(
        title=f"user_control and platform_rules on ml-100k ({args.classic_users} users for user_control, "
        "all 943 for platform_rules)"
    )
    for col in (
        "model",
        "satisfaction@10 unconstrained",
        "filtered",
        "post_filtered",
        "NDCG kept (filtered)",
        "latency x (filtered)",
        "violations base -> enforced",
        "NDCG kept (rules)",
        "s",
    ):
        table.add_column(col)
    fitted = {}
    for name in ("most_popular", "item_knn"):
        model = fitted[name] = make_model(name).fit(split, FitOptions(seed=0, progress=False))
        control, t_c = _timed(UserControlAudit(max_users=args.classic_users, k=args.k, n_boot=500), model, split)
        rules, t_r = _timed(PlatformRulesAudit(k=args.k, n_boot=500), model, split)
        e, r = control.estimates, rules.estimates
        cost = control.evidence["cost"].set_index("condition")
        sat = [_fmt(e[f"satisfaction@{args.k} [{c}]"]) for c in ("unconstrained", "filtered", "post_filtered")]
        table.add_row(
            name,
            *map(escape, sat),
            _fmt(e[f"ndcg@{args.k} retained [filtered]"]),
            f"{cost.loc['filtered', 'overhead']:.1f}",
            f"{r['violation_share [base]'].value:.3f} -> {r['violation_share [enforced]'].value:.3f}",
            _fmt(r[f"ndcg@{args.k} retained"]),
            f"{t_c + t_r:.1f}",
        )
        results["classic"][name] = {"user_control": _record(control, t_c), "platform_rules": _record(rules, t_r)}
    console.print(table)

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out_path.read_text()).get("llm", {}) if out_path.exists() else {}

    def save() -> None:
        out_path.write_text(json.dumps({"command": command_line(), **results}, indent=1, default=str))

    save()
    if not args.skip_llm:
        t0 = time.perf_counter()
        ranker = compose(
            "llm_ranker",
            split,
            retriever=fitted["most_popular"],
            model=args.model,
            n_candidates=args.n_candidates,
            n_permutations=1,
            max_history_tokens=args.max_history_tokens,
        )
        _ = ranker.backend  # load the LLM once, before the timings
        results["llm"] = {**previous, "model": args.model, "load_seconds": time.perf_counter() - t0}
        k = args.llm_k
        audits = {
            "position_bias": PositionBiasAudit(
                max_users=args.bias_users, n_candidates=args.n_candidates, n_permutations=args.permutations, n_boot=500
            ),
            "prompt_sensitivity": PromptSensitivityAudit(max_users=args.llm_users, k=k, n_boot=500),
            "user_control": UserControlAudit(
                max_users=args.llm_users, k=k, kinds=tuple(args.llm_kinds), modes=("candidates",), n_boot=500
            ),
        }
        done = {}
        for name, audit in audits.items():  # the most informative first; saved as each ends
            if name not in args.llm_audits:
                continue
            done[name], seconds = _timed(audit, ranker, split)
            results["llm"][name] = _record(done[name], seconds)
            save()
            console.print(f"{name}: {done[name].summary} ({seconds:.0f} s)")
        out = Table(
            title=f"llm_ranker ({args.model}) on ml-100k: {args.llm_users} users "
            f"({args.bias_users} for position bias), {args.n_candidates} candidates, k={k}"
        )
        out.add_column("estimate")
        out.add_column("value \\[95% CI]")
        rows = [("user_control", f"satisfaction@{k} [{c}]") for c in ("unconstrained", "prompted", "filtered")]
        rows += [("user_control", f"ndcg@{k} retained [filtered]"), ("user_control", f"ndcg@{k} retained [prompted]")]
        rows += [
            ("prompt_sensitivity", n)
            for n in (
                f"jaccard@{k} to default",
                "rbo to default",
                f"jaccard@{k} pairwise",
                f"ndcg@{k} spread",
                f"hr@{k} spread",
                "top1_agreement",
            )
        ]
        rows += [
            ("position_bias", n)
            for n in (
                "target_top1_rate [single order]",
                "target_top1_rate [averaged]",
                "target_top1_spread [single order]",
                "target_top1_spread [averaged]",
                "top1_position_tv [single order]",
                "top1_position_tv [averaged]",
                "top1_listed_first [single order]",
                "top1_listed_first [averaged]",
                "model_calls [single order]",
                "model_calls [averaged]",
                "kendall_tau across orders",
            )
        ]
        for audit_name, name in rows:
            est = results["llm"].get(audit_name, {}).get("estimates", {}).get(name)
            out.add_row(escape(f"{audit_name}: {name}"), escape(_fmt(None if est is None else Estimate(**est))))
        console.print(out)
    save()
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
