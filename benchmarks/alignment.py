"""List-level alignment of the fine-tuned generative recommender (issue 22): the SFT model, Best-of-N
at inference, static Best-of-N alignment, BLADE, RISER, plain GRPO and DPO, every method starting
from one saved SFT model (the D3 protocol's, ``benchmarks/generative_d3.py``) and taking the same
number of updates on the same training users.

Printed and written to ``results/alignment_<dataset>.json``: NDCG@10 and HR@10 with CIs and the
paired change against SFT (bootstrap CI, paired t and Wilcoxon), exposure Gini@10, APLT@10
(share of long-tail items), novelty@10 and, where the items have a group column, ILD@10; the
alignment's cost (seconds, titles sampled) and Best-of-N's (titles sampled per user); per step the
effective supervision of static BoN and BLADE (the signal BLADE says static BoN loses), and the
share of RISER / GRPO groups with no learning signal. Reward hacking is watched on the quarter of
users whose lists moved most from SFT's (lowest top-10 overlap): their NDCG@10 next to SFT's.

    python benchmarks/alignment.py --dataset amazon-industrial --seeds 0 \\
        --start-from benchmarks/.bench/generative_d3_amazon-industrial/seed0

The SFT model must have been fitted by ``generative_d3.py`` on the same dataset (its split and
settings); test rows are drawn as there (the same 150 rows with the same ``--test-rows``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from _d3_protocol import d3_split, load_data, sampled_rows

from trustrec.data import guess_item_group_column
from trustrec.eval import (
    aplt,
    bootstrap_ci,
    exposure_gini,
    hit_rate,
    hits_matrix,
    intra_list_diversity,
    item_user_counts,
    item_vectors_from_groups,
    long_tail_mask,
    ndcg,
    novelty,
    paired_estimate,
)
from trustrec.mitigate.training import ALIGNMENT_METHODS, ListReward, best_of_n_lists
from trustrec.models import FitOptions, Recommender, make_model

RESULTS = Path(__file__).resolve().parent / "results"
# Arguments that choose what runs, not what a measurement means: a stored result made under the
# other arguments is reused (its arms are not measured again).
NOT_SETTINGS = ("start_from", "models", "dataset", "methods", "seeds", "bon_n", "threads", "plot")
K = 10


def _list_metrics(items: np.ndarray, test, context: dict) -> dict:
    """Per-row and mean metrics of ``(n_rows, K)`` lists."""
    hits = hits_matrix(items, test.targets, context["n_items"])
    rows = {
        "ndcg@10": ndcg(hits, test.targets.lengths),
        "hr@10": hit_rate(hits, test.targets.lengths),
        "aplt@10": aplt(items, context["tail"]),
        "novelty@10": np.nan_to_num(novelty(items, context["user_counts"], context["n_users"]), nan=0.0),
    }
    if context["vectors"] is not None:
        rows["ild@10"] = np.nan_to_num(intra_list_diversity(items, context["vectors"]), nan=0.0)
    out = {
        name: {"mean": float(v.mean()), "ci": [float(x) for x in bootstrap_ci(v, n_boot=1000, seed=0)]}
        for name, v in rows.items()
    }
    out["gini@10"] = {"mean": float(exposure_gini(items, context["n_items"]))}
    out["per_row_ndcg@10"] = rows["ndcg@10"].tolist()
    out["top10"] = items.tolist()
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each row's list ``a`` that is also in ``b``'s row."""
    shared = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
    return shared.any(2).sum(1) / np.maximum((a >= 0).sum(1), 1)


def _row(name: str, m: dict) -> str:
    cells = [
        f"{m[k]['mean']:.4f}" if k in m else "   n/a" for k in ("ndcg@10", "hr@10", "gini@10", "aplt@10", "ild@10")
    ]
    ci = m["ndcg@10"]["ci"]
    return f"{name:<26} " + "  ".join(cells) + f"   NDCG CI [{ci[0]:.4f}, {ci[1]:.4f}]"


def _figure(arms: dict, path: Path) -> None:
    """Per training step: the effective supervision of static BoN and BLADE, the mean rollout
    reward, and the share of RISER / GRPO groups without a learning signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    panels = (("supervision", "effective supervision (TV from uniform)"), ("reward", "mean rollout reward"))
    for ax, (key, title) in zip(axes, panels):
        for label, arm in arms.items():
            values = arm.get("alignment", {}).get(key)
            if values:
                ax.plot(range(1, len(values) + 1), [np.nan if v is None else v for v in values], label=label)
        ax.set(title=title, xlabel="update")
    for label, arm in arms.items():
        values = arm.get("alignment", {}).get("non_learnable_share")
        if values:
            axes[2].plot(range(1, len(values) + 1), values, label=label)
    axes[2].set(title="groups without learning signal", xlabel="update", ylim=(-0.05, 1.05))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-industrial")
    parser.add_argument("--start-from", type=Path, default=None, help="the saved SFT model (generative_d3.py's)")
    parser.add_argument("--methods", nargs="+", default=list(ALIGNMENT_METHODS), choices=ALIGNMENT_METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-rows", type=int, default=150)
    parser.add_argument("--users", type=int, default=48, help="training users aligned on")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--n-rollouts", type=int, default=4, help="N lists (or items) sampled per user and step")
    parser.add_argument("--list-length", type=int, default=3, help="titles per sampled list in training")
    parser.add_argument("--fairness", type=float, default=0.1, help="weight of the reward's exposure term")
    parser.add_argument("--diversity", type=float, default=0.0)
    parser.add_argument("--novelty", type=float, default=0.0)
    parser.add_argument("--bon-n", type=int, default=4, help="N of Best-of-N at inference (0: skip)")
    parser.add_argument("--models", type=Path, default=None, help="where aligned models are saved")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="only draw the figure of a stored result")
    args = parser.parse_args()
    if args.plot:
        _figure(json.loads(args.plot.read_text())["arms"], args.plot.with_suffix(".png"))
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_data(args.dataset)
    name = Path(args.dataset).name if Path(args.dataset).exists() else args.dataset
    start_from = args.start_from or RESULTS.parent / ".bench" / f"generative_d3_{name}" / "seed0"
    sft = Recommender.load(start_from)
    if sft.name != "llm_generative":
        raise SystemExit(f"{start_from}: holds a {sft.name} model, not the SFT llm_generative")
    split = d3_split(dataset)
    train = split.train_dataset()
    test = sampled_rows(split, "test", args.test_rows, np.random.default_rng(0))  # generative_d3's rows
    popularity = np.bincount(train.interactions.item, minlength=train.n_items).astype(np.float64)
    column = guess_item_group_column(train.items)
    context = {
        "n_items": train.n_items,
        "n_users": train.n_users,
        "tail": long_tail_mask(popularity),
        "user_counts": item_user_counts(train.interactions.user, train.interactions.item, train.n_items),
        "vectors": item_vectors_from_groups(train.items, column)[0] if column else None,
    }
    reward_config = {
        "k": args.list_length,
        "accuracy": 1.0,
        "fairness": args.fairness,
        "diversity": args.diversity if column else 0.0,
        "novelty": args.novelty,
    }
    report: dict = {
        "command": command_line(),
        "machine": platform.processor() or platform.machine(),
        "dataset": name,
        "start_from": start_from.name,
        "test_rows": len(test),
        "settings": {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS},
        "reward": reward_config,
        "ild": f"items' {column!r} column" if column else "not measured: the items have no group column",
        "arms": {},
    }
    RESULTS.mkdir(exist_ok=True)
    out_path = RESULTS / f"alignment_{name}.json"
    if out_path.exists():
        stored = json.loads(out_path.read_text())
        if {k: stored.get(k) for k in ("settings", "reward", "start_from", "test_rows")} == {
            k: report[k] for k in ("settings", "reward", "start_from", "test_rows")
        }:
            report["arms"] = stored["arms"]
            report["command"] = [*np.atleast_1d(stored["command"]).tolist(), report["command"]]

    def save() -> None:
        out_path.write_text(json.dumps(report, indent=1, default=float))

    print(f"{len(test)} test rows of {name}; SFT from {start_from}")
    print(f"{'arm':<26} {'NDCG@10':>6} {'HR@10':>6} {'Gini':>6} {'APLT':>6} {'ILD':>6}")
    arms = report["arms"]
    if "SFT" in arms:
        sft_items = np.asarray(arms["SFT"]["top10"])
        print(_row("SFT", arms["SFT"]), "(stored)", flush=True)
    else:
        t0 = time.time()
        sft_items = sft.recommend(test.queries, K, exclude_seen=False).items
        arms["SFT"] = {**_list_metrics(sft_items, test, context), "eval_seconds": round(time.time() - t0, 1)}
        print(_row("SFT", arms["SFT"]), flush=True)
    save()
    base_rows = np.asarray(arms["SFT"]["per_row_ndcg@10"])

    def compare(label: str, items: np.ndarray, seed: int) -> None:
        m = arms[label]
        rows = np.asarray(m["per_row_ndcg@10"])
        m["minus_sft"] = paired_estimate(
            rows, base_rows, n_boot=1000, seed=seed, description=f"{label} - SFT", test=True
        ).to_dict()
        moved = _overlap(items, sft_items)
        most = np.argsort(moved, kind="stable")[: max(1, len(moved) // 4)]
        m["most_moved_quarter"] = {
            "rows": len(most),
            "mean_overlap_with_sft": float(moved[most].mean()),
            "ndcg@10": float(rows[most].mean()),
            "sft_ndcg@10": float(base_rows[most].mean()),
        }

    if args.bon_n >= 2 and f"BoN@{args.bon_n} inference (oracle)" not in arms:
        reward = ListReward.from_dataset({**reward_config, "k": K}, train)
        t0 = time.time()
        best, cost = best_of_n_lists(sft, test.queries, test.targets, reward, args.bon_n, K, seed=0)
        label = f"BoN@{args.bon_n} inference (oracle)"
        arms[label] = {**_list_metrics(best, test, context), "cost": cost}
        compare(label, best, 0)
        print(_row(label, arms[label]), f"({cost['per_user']} titles/user)", flush=True)
        save()
    for seed in args.seeds:
        for method in args.methods:
            label = f"{method} (seed {seed})"
            if label in arms:
                print(_row(label, arms[label]), "(stored)", flush=True)
                continue
            sft_params = sft.config.model_dump()
            model = make_model(
                "llm_generative_aligned",
                **sft_params,
                start_from=str(start_from),
                alignment={
                    "method": method,
                    "users": args.users,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "learning_rate": args.learning_rate,
                    "n_rollouts": args.n_rollouts,
                    "list_length": args.list_length,
                    "reward": reward_config,
                },
            )
            model.fit(split, FitOptions(seed=seed, progress=True))
            t0 = time.time()
            items = model.recommend(test.queries, K, exclude_seen=False).items
            arms[label] = {
                **_list_metrics(items, test, context),
                "eval_seconds": round(time.time() - t0, 1),
                "alignment": model.alignment_,
            }
            compare(label, items, seed)
            d = arms[label]["minus_sft"]
            p = "n/a" if d["p_value"] is None else f"{d['p_value']:.3f}"
            print(
                _row(label, arms[label]),
                f"| -SFT {d['value']:+.4f} p {p}"
                f" | {model.alignment_['seconds']:.0f} s, {model.alignment_['titles_sampled']} titles",
                flush=True,
            )
            if args.models:
                model.save(args.models / f"{name}_{method}_seed{seed}")
            save()
    figure = out_path.with_suffix(".png")
    _figure(arms, figure)
    print(f"written {out_path} and {figure.name}")


if __name__ == "__main__":
    main()
