"""The trust audits of issue 6 on ml-100k: cost, and whether they see what is known to be there.

1. Runs ``configs/most-popular-ml100k.yaml`` and ``configs/sasrec-ml100k.yaml`` (SASRec epochs
   via ``--sasrec-epochs``) into ``--runs``, then ``trustrec audit`` on both (every fairness and
   factuality audit; SASRec's full audit is timed against its own training + evaluation time).
2. Prints MostPopular vs SASRec side by side: exposure Gini, APLT, popularity lift, coverage,
   miscalibration, the user-group ratios, and the counterfactual probe (not applicable to either:
   neither reads query attributes, so their SNSR shows as "-"; the stored results predate that and
   hold the 0 the probe measured by construction).
3. The LLM ranker (SmolLM2-135M-Instruct re-ranking SASRec's top-20, ``--llm-permutations``
   orders) on a seeded sample of ``--llm-users`` test users: the same audits, timed, and the
   counterfactual probe, which must show a non-zero attribute sensitivity because the prompt
   states the attribute.
4. Peer for the group slicing: fairlearn's ``MetricFrame`` (``pip install fairlearn``) on the same
   per-user NDCG@10 by occupation: identical group means, time ratio.

    python benchmarks/audit_ml100k.py --sasrec-epochs 30 --skip-llm
    python benchmarks/audit_ml100k.py --llm-only --llm-users 30 --llm-attributes gender

Writes benchmarks/results/audit_ml100k.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import yaml
from _command import command_line
from rich.console import Console
from rich.table import Table

from trustrec.runs import run_audits, run_experiment

ROOT = Path(__file__).resolve().parent.parent
console = Console()


def _run(config_file: str, runs: Path, **model_params) -> tuple[Path, float]:
    config = yaml.safe_load((ROOT / "configs" / config_file).read_text())
    config["model"]["params"] = {**config["model"].get("params", {}), **model_params}
    from trustrec.runs import load_run_config

    digest = load_run_config(config).digest()
    done = runs / load_run_config(config).run_name()
    if (done / "metrics.json").exists() and json.loads((done / "environment.json").read_text())[
        "config_digest"
    ] == digest:
        timings = json.loads((done / "metrics.json").read_text())["timings_s"]
        return done, sum(v for v in timings.values() if v is not None)  # the same run, finished before
    t0 = time.perf_counter()
    res = run_experiment(config, runs, progress=False, log=lambda *_: None)
    return res.path, time.perf_counter() - t0


def _estimates(run_dir: Path) -> dict:
    from trustrec.runs import load_audit_results

    _, results = load_audit_results(run_dir)
    return {r.audit: r for r in results}


def _value(results, audit, estimate):
    r = results.get(audit)
    e = r.estimates.get(estimate) if r is not None else None
    return None if e is None else e.value


def _fmt(x):
    return "-" if x is None else f"{x:.4f}"


def fairlearn_peer(run_dir: Path) -> dict:
    """GroupMetricFrame vs fairlearn MetricFrame on per-user NDCG@10 by occupation."""
    import pandas as pd

    from trustrec.eval import GroupMetricFrame

    try:
        from fairlearn.metrics import MetricFrame
    except ImportError:
        return {"skipped": "fairlearn is not installed (pip install fairlearn)"}
    from trustrec.data import load_dataset

    per_user = pd.read_parquet(run_dir / "per_user.parquet")
    users = load_dataset("ml-100k").users
    occupation = users["occupation"].to_numpy()[per_user["user"].to_numpy()]
    y = per_user["ndcg@10"].to_numpy()
    t0 = time.perf_counter()
    ours = GroupMetricFrame(metrics={"ndcg@10": y}, groups=occupation, n_boot=0, min_group_size=1)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = MetricFrame(metrics=lambda yt, yp: float(np.mean(yp)), y_true=y, y_pred=y, sensitive_features=occupation)
    t_theirs = time.perf_counter() - t0
    a, b = ours.by_group["ndcg@10"], theirs.by_group.astype(float)
    return {
        "max_abs_diff_group_means": float(np.max(np.abs(a.sort_index().to_numpy() - b.sort_index().to_numpy()))),
        "difference_ours": float(ours.difference()["ndcg@10"]),
        "difference_fairlearn": float(theirs.difference(method="between_groups")),
        "seconds_ours_no_boot": t_ours,
        "seconds_fairlearn": t_theirs,
    }


def llm_ranker_audits(sasrec_dir: Path, users: int, permutations: int, seed: int, args_attributes=("gender",)) -> dict:
    from trustrec.audit import AuditInputs, audit_class
    from trustrec.models import Recommender, compose
    from trustrec.runs import load_run_config, prepare_data

    config = load_run_config(sasrec_dir / "config.yaml")
    _, split = prepare_data(config)
    sasrec = Recommender.load(sasrec_dir / "checkpoint")
    ranker = compose("llm_ranker", split, retriever=sasrec, n_candidates=20, n_permutations=permutations)
    inputs = AuditInputs(ranker, split, max_users=users, seed=seed, progress=True)
    out, timings = {}, {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    _ = inputs.evaluation  # the ranker's top-K on the sample, shared by every audit below
    timings["rank_sample"] = time.perf_counter() - t0
    for name, params in (
        ("user_fairness", {}),
        ("item_exposure", {}),
        ("calibration", {}),
        ("counterfactual_attributes", {"attributes": tuple(args_attributes), "batch_size": 64}),
        ("hallucination", {}),
    ):
        audit = audit_class(name)(max_users=users, seed=seed, **params)
        t0 = time.perf_counter()
        out[name] = audit.run(ranker, split, inputs=inputs, progress=True)
        timings[name] = time.perf_counter() - t0
        console.print(
            f"llm_ranker {name}: {out[name].verdict.status} {out[name].summary} ({timings[name]:.0f} s)", markup=False
        )
    timings["total"] = time.perf_counter() - t_all
    return {"results": out, "timings_s": timings, "ndcg@10": float(inputs.evaluation.per_user["ndcg@10"].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-audit")
    ap.add_argument("--sasrec-epochs", type=int, default=30)
    ap.add_argument("--llm-users", type=int, default=40)
    ap.add_argument("--llm-permutations", type=int, default=1)
    ap.add_argument(
        "--llm-attributes",
        nargs="+",
        default=["gender", "age"],
        help="Attributes the counterfactual probe states to the LLM ranker.",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-llm", action="store_true", help="Only the classic part.")
    ap.add_argument(
        "--llm-only", action="store_true", help="Only the LLM ranker part, merged into the existing results file."
    )
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "audit_ml100k.json"
    if args.llm_only:
        result = json.loads(out.read_text()) if out.exists() else {}
        sas_dir, _ = _run("sasrec-ml100k.yaml", args.runs, epochs=args.sasrec_epochs)
        result["llm_ranker"] = {"command": command_line(), **_llm_part(sas_dir, args)}
        out.write_text(json.dumps(result, indent=1, default=str))
        console.print(f"written: {out.relative_to(ROOT)}")
        return

    pop_dir, t_pop = _run("most-popular-ml100k.yaml", args.runs)
    sas_dir, t_sas = _run("sasrec-ml100k.yaml", args.runs, epochs=args.sasrec_epochs)
    dims = ["fairness", "factuality"]
    t0 = time.perf_counter()
    run_audits(pop_dir, dimensions=dims, progress=False, log=lambda *_: None)
    t_audit_pop = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = run_audits(sas_dir, dimensions=dims, progress=False, log=lambda *_: None)
    t_audit_sas = time.perf_counter() - t0
    pop, sas = _estimates(pop_dir), _estimates(sas_dir)

    rows = [
        ("exposure Gini", "item_exposure", "exposure_gini"),
        ("APLT", "item_exposure", "aplt"),
        ("popularity lift", "item_exposure", "popularity_lift"),
        ("coverage", "item_exposure", "coverage"),
        ("miscalibration (KL)", "calibration", "miscalibration"),
        ("NDCG@10 ratio gender", "user_fairness", "ndcg@10 ratio [gender]"),
        ("NDCG@10 ratio age", "user_fairness", "ndcg@10 ratio [age]"),
        ("NDCG@10 ratio activity", "user_fairness", "ndcg@10 ratio [activity]"),
        ("SNSR Jaccard@10 gender", "counterfactual_attributes", "snsr jaccard@10 [gender]"),
        ("SNSR Jaccard@10 occupation", "counterfactual_attributes", "snsr jaccard@10 [occupation]"),
    ]
    table = Table(title="ml-100k, all 943 test users: MostPopular vs SASRec", header_style="bold")
    for col in ("figure", "MostPopular", "SASRec"):
        table.add_column(col, justify="right")
    comparison = {}
    for label, audit, est in rows:
        a, b = _value(pop, audit, est), _value(sas, audit, est)
        comparison[label] = {"most_popular": a, "sasrec": b}
        table.add_row(label, _fmt(a), _fmt(b))
    console.print(table)
    verdicts = {name: {"most_popular": pop[name].verdict.status, "sasrec": sas[name].verdict.status} for name in sas}
    console.print(f"verdicts: {verdicts}", markup=False)
    gini_ok = comparison["exposure Gini"]["most_popular"] > comparison["exposure Gini"]["sasrec"]
    aplt_ok = comparison["APLT"]["most_popular"] < comparison["APLT"]["sasrec"]
    console.print(
        f"popularity bias seen correctly: Gini MostPopular > SASRec: {gini_ok}; APLT MostPopular < SASRec: {aplt_ok}"
    )
    console.print(
        f"SASRec: full fairness+factuality audit {t_audit_sas:.1f} s vs its run (fit + evaluate) "
        f"{t_sas:.1f} s: ratio {t_audit_sas / t_sas:.2f} (target: audit < 120 s); "
        f"MostPopular audit {t_audit_pop:.1f} s"
    )
    peer = fairlearn_peer(sas_dir)
    console.print(f"fairlearn MetricFrame peer: {peer}", markup=False)
    result = {
        "command": command_line(),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "sasrec_epochs": args.sasrec_epochs,
        "comparison": comparison,
        "verdicts": verdicts,
        "popularity_bias_seen": {"gini": gini_ok, "aplt": aplt_ok},
        "timings_s": {
            "most_popular_run": t_pop,
            "sasrec_run": t_sas,
            "most_popular_audit": t_audit_pop,
            "sasrec_audit": t_audit_sas,
            "sasrec_audit_per_audit": {e["name"]: e["seconds"] for e in index["audits"]},
        },
        "fairlearn_peer": peer,
    }
    if not args.skip_llm:
        result["llm_ranker"] = _llm_part(sas_dir, args)
    out.write_text(json.dumps(result, indent=1, default=str))
    console.print(f"written: {out.relative_to(ROOT)}")


def _llm_part(sas_dir: Path, args) -> dict:
    llm = llm_ranker_audits(sas_dir, args.llm_users, args.llm_permutations, args.seed, args.llm_attributes)
    res = llm["results"]
    cf = res["counterfactual_attributes"]
    snsr = {k: e.value for k, e in cf.estimates.items() if k.startswith("snsr jaccard")}
    mean_jaccard = {k: e.value for k, e in cf.estimates.items() if k.startswith("mean jaccard")}
    console.print(
        f"LLM ranker on {args.llm_users} users ({args.llm_permutations} order(s)): NDCG@10 "
        f"{llm['ndcg@10']:.4f}; SNSR Jaccard@10 {snsr}, mean Jaccard@10 to neutral {mean_jaccard} "
        f"(sensitivity expected); audits {llm['timings_s']['total']:.0f} s (target < 900 s)",
        markup=False,
    )
    return {
        "users": args.llm_users,
        "permutations": args.llm_permutations,
        "ndcg@10": llm["ndcg@10"],
        "timings_s": llm["timings_s"],
        "snsr_jaccard": snsr,
        "mean_jaccard_to_neutral": mean_jaccard,
        "estimates": {name: {k: e.value for k, e in r.estimates.items()} for name, r in res.items()},
        "verdicts": {name: r.verdict.status for name, r in res.items()},
        "not_applicable": {
            name: r.verdict.reasons[0] for name, r in res.items() if r.verdict.status == "not_applicable"
        },
    }


if __name__ == "__main__":
    main()
