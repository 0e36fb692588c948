"""TriRec on real data: self-promoting item agents (stage 1) and the platform re-ranking (stage 2),
per promotion mode, with the promotional claims the item agents make checked against the catalog.

Protocol (REFERENCES.md §3, TriRec, arXiv 2603.10673; code Marfekey/TriRec): leave-one-out split
of ``--dataset``; ``--users`` test users drawn at random (seed 0); per user 10 candidates, the
held-out item plus 9 SASRec negatives (SASRec's top 10 unseen items without the held-out one, as
the code draws them), listed in a seeded shuffle. Stage 1 (``trirec``): each item agent writes
an ad (``--modes``: none = the raw catalog text, generic, grounded, full) and the user agent (the
same local LLM, ``--model``, default SmolLM2-135M-Instruct) scores each candidate by
``log p(Yes) - log p(No)``. Stage 2: ``trirec_rerank`` over the stage-1 lists (relevance = the
stage-1 scores; 8 popularity groups and p_train from the training interactions; no CTR, so EIU is
not reported). Users are served in row order, the platform state carried across them.

Figures (bootstrap 95% CIs over users; paired differences against ``none`` with the Wilcoxon
p-value): NDCG@10 and MRR of stage 1 and stage 2, DGU, MGU and exposure Gini of the served lists
(one value per run, no CI), the held-out item's stage-1 score lift over ``none``, and the ads'
claims checked by ``check_explanations`` (share of ads that claim an attribute or year no item
of the user's history or the ad's item has, or name a title outside the history). SASRec's own
order of the same candidates is the reference. The paper's claim: self-promotion (full) improves
accuracy and fairness together over no promotion.

    python benchmarks/trirec_agents.py --dataset ml-100k --users 200

Writes benchmarks/results/trirec_<dataset>.json (no machine paths).
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
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=170)
MODES = ("none", "generic", "grounded", "full")


def sasrec_candidates(sasrec, queries, targets):
    """The held-out item plus SASRec's 9 best other unseen items, per user."""
    from trustrec.data import QueryBatch, Ragged

    top = sasrec.recommend(queries, 10, exclude_seen=True).items
    rows = []
    for q, target in enumerate(targets):
        negatives = [int(i) for i in top[q] if i >= 0 and i != target][:9]
        rows.append(np.array([target, *negatives], np.int64))
    return QueryBatch(queries.users, queries.histories, candidates=Ragged.from_rows(rows))


def rank_metrics(lists: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hit = lists == targets[:, None]
    position = np.where(hit.any(1), hit.argmax(1), -1)
    found = position >= 0
    ndcg = np.where(found, 1.0 / np.log2(position + 2.0), 0.0)
    mrr = np.where(found, 1.0 / (position + 1.0), 0.0)
    return ndcg, mrr


def platform_figures(lists, item_groups, p_train, n_items) -> dict:
    from trustrec.eval import dgu, exposure_gini, mgu

    return {
        "dgu": dgu(lists, item_groups, p_train),
        "mgu": mgu(lists, item_groups, p_train),
        "gini": exposure_gini(lists, n_items),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--ad-tokens", type=int, default=64)
    ap.add_argument("--alpha-max", type=float, default=0.5)
    ap.add_argument("--sasrec-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from trustrec.audit.explainability import check_explanations
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.eval import train_group_distribution, trirec_groups
    from trustrec.mitigate import trirec_rerank
    from trustrec.models import FitOptions, make_model
    from trustrec.models.agents import TriRecRecommender

    torch.set_num_threads(args.threads)
    modes = [m for m in args.modes.split(",") if m]
    out_path = args.out or ROOT / "benchmarks" / "results" / f"trirec_{args.dataset}.json"
    started = time.perf_counter()
    dataset = load_dataset(args.dataset)
    split = split_leave_one_out(dataset)
    evaluation = split.eval_set("test")
    usable = np.flatnonzero(evaluation.queries.histories.lengths > 0)
    rows = np.sort(np.random.default_rng(0).choice(usable, min(args.users, len(usable)), replace=False))
    evaluation = evaluation[rows]
    targets = evaluation.targets.values[evaluation.targets.indptr[:-1]].astype(np.int64)
    console.print(f"[bold]{args.dataset}[/]: {len(rows)} test users, 10 candidates each; fitting SASRec")
    sasrec = make_model("sasrec", epochs=args.sasrec_epochs).fit(split, FitOptions(seed=0, progress=False))
    queries = sasrec_candidates(sasrec, evaluation.queries, targets)
    train = split.train_dataset()
    exposure = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)
    item_groups = trirec_groups(exposure, 8)
    p_train = train_group_distribution(exposure, item_groups, 8)

    sasrec_lists = sasrec.recommend(queries, 10, exclude_seen=True).items
    results: dict = {
        "command": command_line(),
        "dataset": args.dataset,
        "model": args.model,
        "users": len(rows),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "gpu": None},
        "protocol": (
            "leave-one-out; 10 candidates (held-out + 9 SASRec negatives), seeded shuffle; stage 1 = item agents' "
            "ads + user agent's log p(Yes) - log p(No); stage 2 = trirec_rerank (8 popularity groups, no CTR, "
            f"alpha_max {args.alpha_max}); the user agent reads the 20 most recent history items"
        ),
        "reference_sasrec": {
            **{k: mean_ci(v, 0) for k, v in zip(("ndcg", "mrr"), rank_metrics(sasrec_lists, targets), strict=True)},
            **platform_figures(sasrec_lists, item_groups, p_train, train.n_items),
        },
        "modes": {},
    }
    per_mode: dict[str, dict] = {}
    for mode in modes:
        t0 = time.perf_counter()
        model = TriRecRecommender(promotion=mode, model=args.model, ad_tokens=args.ad_tokens).with_fitted(prior=sasrec)
        model.fit(split, FitOptions(seed=0, progress=False))
        rounds = model.promote(queries)
        seconds = time.perf_counter() - t0
        stage1 = np.stack([r.ranking() for r in rounds])
        stage1_scores = np.stack([np.sort(r.scores)[::-1] for r in rounds])
        stage2 = np.asarray(
            trirec_rerank(stage1, stage1_scores, item_groups, p_train, 10, alpha_max=args.alpha_max).items
        )
        target_score = np.array([r.scores[r.listed.tolist().index(t)] for r, t in zip(rounds, targets, strict=True)])
        ads = [list(r.ads) for r in rounds]
        checks = check_explanations(ads, np.stack([r.listed for r in rounds]), queries.histories, dataset.items)
        claims = checks.groupby("row").agg(
            misleading=("misleading", "mean"),
            outside=("n_named_outside", lambda s: float((s > 0).mean())),
            unsupported=("unsupported_attributes", lambda s: float((s != "").mean())),
            bad_year=("unsupported_years", lambda s: float((s != "").mean())),
        )
        n1, m1 = rank_metrics(stage1, targets)
        n2, m2 = rank_metrics(stage2, targets)
        per_mode[mode] = {"ndcg1": n1, "mrr1": m1, "ndcg2": n2, "mrr2": m2, "target_score": target_score}
        results["modes"][mode] = {
            "stage1": {"ndcg": mean_ci(n1, 0), "mrr": mean_ci(m1, 0)},
            "stage1_platform": platform_figures(stage1, item_groups, p_train, train.n_items),
            "stage2": {"ndcg": mean_ci(n2, 0), "mrr": mean_ci(m2, 0)},
            "stage2_platform": platform_figures(stage2, item_groups, p_train, train.n_items),
            "target_score": mean_ci(target_score, 0),
            "ad_claims": {k: mean_ci(claims[k].to_numpy(), 0) for k in claims.columns},
            "ad_example": ads[0][0][:300],
            "seconds": seconds,
        }
        if mode != "none" and "none" in per_mode:
            base = per_mode["none"]
            results["modes"][mode]["vs_none"] = {
                k: paired_ci(per_mode[mode][k], base[k], 0) for k in ("ndcg1", "ndcg2", "target_score")
            }
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=float) + "\n")  # each finished mode kept
        console.print(
            f"{mode:>8}: stage-1 NDCG@10 {n1.mean():.3f}, stage-2 {n2.mean():.3f}; misleading ads "
            f"{claims['misleading'].mean():.3f}; {seconds:.0f} s"
        )
    results["seconds"] = time.perf_counter() - started
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=float) + "\n")

    def fmt(e: dict) -> str:
        return f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"

    table = Table(title=f"{args.dataset}: TriRec, {len(rows)} users, 10 candidates")
    for col in ("arm", "stage-1 NDCG@10", "stage-2 NDCG@10", "stage-2 MRR", "DGU", "MGU", "Gini", "misleading ads"):
        table.add_column(col)
    ref = results["reference_sasrec"]
    table.add_row(
        "SASRec order",
        fmt(ref["ndcg"]),
        "",
        fmt(ref["mrr"]),
        f"{ref['dgu']:.3f}",
        f"{ref['mgu']:.3f}",
        f"{ref['gini']:.3f}",
        "",
    )
    for mode, e in results["modes"].items():
        p = e["stage2_platform"]
        table.add_row(
            mode,
            fmt(e["stage1"]["ndcg"]),
            fmt(e["stage2"]["ndcg"]),
            fmt(e["stage2"]["mrr"]),
            f"{p['dgu']:.3f}",
            f"{p['mgu']:.3f}",
            f"{p['gini']:.3f}",
            fmt(e["ad_claims"]["misleading"]),
        )
    console.print(table)
    lifts = Table(title="against no promotion (paired over users)")
    for col in ("mode", "stage-1 NDCG@10", "stage-2 NDCG@10", "held-out item's score"):
        lifts.add_column(col)
    for mode, e in results["modes"].items():
        if "vs_none" in e:
            v = e["vs_none"]
            lifts.add_row(
                mode,
                *(
                    f"{v[k]['value']:+.3f} [{v[k]['ci_low']:+.3f}, {v[k]['ci_high']:+.3f}] p={v[k]['p_value']:.3g}"
                    for k in ("ndcg1", "ndcg2", "target_score")
                ),
            )
    console.print(lifts)
    console.print(f"total {results['seconds']:.0f} s; wrote {out_path.name}")


if __name__ == "__main__":
    main()
