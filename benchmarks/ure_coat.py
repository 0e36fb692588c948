"""URE vs the traditional random-exposure scheme on Coat (issue 10).

1. **Semi-synthetic check of unbiasedness** (``trustrec.eval.fit_ground_truth`` /
   ``draw_world``): a fully-exposed relevance matrix from an MF fitted on all of Coat's ratings,
   and per seed a popularity-biased (plus self-selection) training log and a random-exposure test
   set of 16 items per user drawn from it. The baselines are trained on each world; each scheme's
   Recall@K is compared with the true fully-exposed Recall@K: mean error (estimate - truth), mean
   absolute error, and Kendall tau between the scheme's ordering of the models and the true one.
2. **Real Coat**: every baseline under the traditional scheme, URE and the ordinary full ranking,
   with 95% bootstrap CIs over users, and where the schemes order the models differently.

Baselines: MF (binary relevance, rating >= 4) naive; IPS with Coat's / the world's true
propensities ('given'), with popularity and naive-Bayes estimates; doubly robust with 'given'
and popularity propensities; MostPopular and ItemKNN (fitted on the positive train ratings).

    python benchmarks/ure_coat.py                   # 20 seeds, K = 5, 10, 20 (a few minutes on 2 cores)
    python benchmarks/ure_coat.py --seeds 5         # quicker

Writes benchmarks/results/ure_coat.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console()

BASELINES = {
    "MF naive": ("mf", {"method": "naive"}),
    "MF-IPS given": ("mf", {"method": "ips", "propensity": "given"}),
    "MF-IPS popularity": ("mf", {"method": "ips", "propensity": "popularity"}),
    "MF-IPS naive-Bayes": ("mf", {"method": "ips", "propensity": "naive_bayes"}),
    "MF-DR given": ("mf", {"method": "dr", "propensity": "given"}),
    "MF-DR popularity": ("mf", {"method": "dr", "propensity": "popularity"}),
    "MostPopular": ("most_popular", {}),
    "ItemKNN": ("item_knn", {}),
}
SCHEMES = ("traditional-random", "ure", "full")


def fit_baseline(label: str, split, seed: int):
    """Fit one baseline on the split's train part. MostPopular and ItemKNN see only the positive
    train ratings (popularity of liked items); the MF family sees every rating."""
    from trustrec.data import Interactions
    from trustrec.models import FitOptions, make_model

    name, params = BASELINES[label]
    model = make_model(name, **params)
    train = split.train_dataset()
    if name != "mf":
        inter = train.interactions
        keep = inter.rating >= split.params["positive_threshold"]
        train = train.with_interactions(
            Interactions(inter.user[keep], inter.item[keep], inter.timestamp[keep], inter.rating[keep])
        )
    return model.fit(train, FitOptions(seed=seed, progress=False))


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    tau = kendalltau(a, b).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def semi_synthetic(coat, n_seeds: int, ks: list[int], labels: list[str]) -> dict:
    from trustrec.data import split_random_exposure
    from trustrec.eval import (
        SemiSyntheticConfig,
        draw_world,
        evaluate_schemes,
        fit_ground_truth,
        true_recall,
    )

    config = SemiSyntheticConfig()
    t0 = time.perf_counter()
    truth = fit_ground_truth(coat, config, seed=0)
    metrics = [f"recall@{k}" for k in ks]
    records = []  # one per (seed, model)
    for seed in range(n_seeds):
        world = draw_world(coat, truth, config, seed=seed)
        split = split_random_exposure(world.dataset, cold_test_items="keep")
        for label in labels:
            model = fit_baseline(label, split, seed)
            rec = {"seed": seed, "model": label, "true": true_recall(model, world, ks)}
            res = evaluate_schemes(model, split, SCHEMES, metrics=metrics, n_boot=0, progress=False)
            for scheme, r in res.items():
                rec[scheme] = {k: float(r.summary["mean"].iloc[i]) for i, k in enumerate(ks)}
            records.append(rec)
        console.print(
            f"  seed {seed}: world has {world.dataset.n_interactions} train ratings "
            f"({float(world.relevance.mean()):.3f} relevant), {time.perf_counter() - t0:.0f}s so far"
        )
    table = {}
    for scheme in SCHEMES:
        for k in ks:
            err = np.array([r[scheme][k] - r["true"][k] for r in records])
            taus = []
            for seed in range(n_seeds):
                rows = [r for r in records if r["seed"] == seed]
                taus.append(kendall([r[scheme][k] for r in rows], [r["true"][k] for r in rows]))
            table[f"{scheme}|{k}"] = {
                "scheme": scheme,
                "k": k,
                "mean_error": float(err.mean()),
                "mae": float(np.abs(err).mean()),
                "kendall_tau": float(np.mean(taus)),
                "kendall_tau_sd": float(np.std(taus)),
            }
    per_model = {}
    for label in labels:
        rows = [r for r in records if r["model"] == label]
        per_model[label] = {f"{s}@{k}": float(np.mean([r[s][k] for r in rows])) for s in ("true", *SCHEMES) for k in ks}
    return {
        "config": config.model_dump(),
        "n_seeds": n_seeds,
        "ks": ks,
        "models": labels,
        "table": table,
        "per_model_mean": per_model,
        "seconds": time.perf_counter() - t0,
    }


def real_coat(coat, ks: list[int], labels: list[str], n_boot: int) -> dict:
    from trustrec.data import split_random_exposure
    from trustrec.eval import evaluate_schemes

    split = split_random_exposure(coat)
    metrics = [f"recall@{k}" for k in ks] + [f"precision@{k}" for k in ks]
    out, counts, clipping = {}, {}, {}
    for label in labels:
        model = fit_baseline(label, split, 0)
        res = evaluate_schemes(model, split, SCHEMES, metrics=metrics, n_boot=n_boot, progress=False)
        out[label] = {
            m: {
                "mean": float(r.summary.loc[m, "mean"]),
                "ci_low": float(r.summary.loc[m, "ci_low"]),
                "ci_high": float(r.summary.loc[m, "ci_high"]),
                "n_users": int(r.summary.loc[m, "n_users"]),
            }
            for r in res.values()
            for m in r.summary.index
        }
        counts = {s: r.counts for s, r in res.items()}
        if hasattr(model, "propensity_summary_"):
            clipping[label] = {k: v for k, v in model.propensity_summary_.items() if k != "propensity"}
    disagreements = {}
    for k in ks:
        order = {}
        for scheme in SCHEMES:
            col = f"recall@{k}" + ("" if scheme == "full" else f" ({scheme})")
            order[scheme] = sorted(labels, key=lambda m: -out[m][col]["mean"])
        pairs = []
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                ta = (
                    out[a][f"recall@{k} (traditional-random)"]["mean"]
                    - out[b][f"recall@{k} (traditional-random)"]["mean"]
                )
                ua = out[a][f"recall@{k} (ure)"]["mean"] - out[b][f"recall@{k} (ure)"]["mean"]
                if ta * ua < 0:
                    pairs.append([a, b] if ua > 0 else [b, a])  # [better by URE, better by traditional]
        tied = {
            scheme: len(
                {
                    round(out[m][f"recall@{k}" + ("" if scheme == "full" else f" ({scheme})")]["mean"], 12)
                    for m in labels
                }
            )
            == 1
            for scheme in SCHEMES
        }
        disagreements[k] = {
            "order": order,
            "all_tied": tied,
            "pairs_ordered_differently": pairs,
            "kendall_tau_traditional_vs_ure": kendall(
                [out[m][f"recall@{k} (traditional-random)"]["mean"] for m in labels],
                [out[m][f"recall@{k} (ure)"]["mean"] for m in labels],
            ),
        }
    return {
        "split": split.describe(),
        "results": out,
        "counts": counts,
        "propensity_clipping": clipping,
        "rank_disagreements": disagreements,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--data-dir", default=None, help="folder holding coat/ (default: TRUSTREC_DATA)")
    args = parser.parse_args()
    from trustrec.data import load_dataset

    coat = load_dataset("coat", data_dir=args.data_dir)
    labels = list(BASELINES)
    t0 = time.perf_counter()
    console.print(f"[bold]semi-synthetic[/] ({args.seeds} seeds, K = {args.ks})")
    semi = semi_synthetic(coat, args.seeds, args.ks, labels)
    table = Table(
        title="Semi-synthetic Coat: scheme's Recall@K vs the true fully-exposed Recall@K "
        f"({args.seeds} seeds x {len(labels)} models)"
    )
    for col in ("K", "scheme", "mean error", "MAE", "MAE / traditional", "Kendall tau"):
        table.add_column(col, justify="right")
    targets = {}
    for k in args.ks:
        trad = semi["table"][f"traditional-random|{k}"]
        for scheme in SCHEMES:
            row = semi["table"][f"{scheme}|{k}"]
            table.add_row(
                str(k),
                scheme,
                f"{row['mean_error']:+.4f}",
                f"{row['mae']:.4f}",
                f"{row['mae'] / trad['mae']:.3f}",
                f"{row['kendall_tau']:.3f}",
            )
        ure = semi["table"][f"ure|{k}"]
        targets[k] = {
            "mae_ratio_ure_vs_traditional": ure["mae"] / trad["mae"],
            "mae_target_met": ure["mae"] <= trad["mae"] / 3,
            "tau_ure": ure["kendall_tau"],
            "tau_traditional": trad["kendall_tau"],
            "tau_target_met": ure["kendall_tau"] >= trad["kendall_tau"],
        }
    console.print(table)
    pm = Table(title="Semi-synthetic: mean Recall over seeds per model (true vs schemes)")
    pm.add_column("model")
    for k in args.ks:
        for s in ("true", "traditional-random", "ure"):
            pm.add_column(f"{s}@{k}", justify="right")
    for label, row in semi["per_model_mean"].items():
        pm.add_row(label, *[f"{row[f'{s}@{k}']:.4f}" for k in args.ks for s in ("true", "traditional-random", "ure")])
    console.print(pm)

    console.print("[bold]real Coat[/]")
    real = real_coat(coat, args.ks, labels, args.n_boot)
    for k in args.ks:
        t = Table(title=f"Coat (random-exposure test, positives = rating >= 4): Recall@{k} and Precision@{k}, 95% CI")
        for col in ("model", "traditional-random", "URE", "full ranking", "P traditional", "P URE"):
            t.add_column(col, justify="right")

        def fmt(r):
            return f"{r['mean']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"

        for label in labels:
            r = real["results"][label]
            t.add_row(
                label,
                fmt(r[f"recall@{k} (traditional-random)"]),
                fmt(r[f"recall@{k} (ure)"]),
                fmt(r[f"recall@{k}"]),
                fmt(r[f"precision@{k} (traditional-random)"]),
                fmt(r[f"precision@{k} (ure)"]),
            )
        console.print(t)
        d = real["rank_disagreements"][k]
        tied_note = (
            "  (all tied: K >= the 16 exposed items, Recall is 1 for every user)"
            if d["all_tied"]["traditional-random"]
            else ""
        )
        console.print(f"  K={k}: order by traditional: {d['order']['traditional-random']}{tied_note}")
        console.print(f"  K={k}: order by URE:         {d['order']['ure']}")
        console.print(
            f"  K={k}: Kendall tau(traditional, URE) = {d['kendall_tau_traditional_vs_ure']:.3f}; "
            f"{len(d['pairs_ordered_differently'])} model pairs ordered differently"
        )
    console.print("propensity clipping:", real["propensity_clipping"])
    console.print("targets:", targets)
    result = {
        "benchmark": "ure_coat",
        "command": command_line(),
        "dataset": "coat (TRUSTREC_DATA)",
        "semi_synthetic": semi,
        "real_coat": real,
        "targets": targets,
        "seconds": time.perf_counter() - t0,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    out = ROOT / "benchmarks" / "results" / "ure_coat.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    console.print("wrote benchmarks/results/ure_coat.json")


if __name__ == "__main__":
    main()
