"""RecICL's claim on a later time window: a model trained in in-context form adapts to interests
that moved, without any update, through demonstrations drawn from the new window.

    python benchmarks/recicl_later_window.py --dataset ml-100k --seeds 0 1 2 --train-examples 640

Protocol (REFERENCES.md §3, RecICL; the paper: Qwen1.5-0.5B on Amazon Books, earlier months
train, a later month tests). A global time split: the oldest ``1 - --later-frac`` of the
interactions train, the rest is the later window. Labels: rating >= 4 (TALLRec's rule). In the
later window, ``--users`` users with at least two events are sampled (seed 0, the same for every
arm and seed); each one's events after its first, up to ``--events-per-user``, are scored. Arms:

- ``recicl``: ``llm_recicl`` with 4 demonstrations, fine-tuned on ``--train-examples`` training
  events (BCE on the Yes logit); asked with demonstrations from the later window (the user's
  events strictly before each scored one);
- ``recicl, training-window demonstrations``: the same fitted model, demonstrations from the
  training window instead (what it would see without the new window: the adaptation control);
- ``tallrec``: the same budget and examples without demonstrations (TALLRec-style prompts);
- ``base + demonstrations``: the untrained LLM with the later-window demonstrations (seed 0).

Metrics: AUC over all scored events (CI: bootstrap over users), UAUC (mean per-user AUC over users
with both labels; CI over users), AUC on warm items (seen in the training window) and on cold
ones; the paired per-user difference recicl minus tallrec. Over seeds: Student-t intervals.
Cost: training seconds per example and scoring seconds per event, each arm beside ``tallrec``.

Prints tables; writes ``benchmarks/results/recicl_later_window_<dataset>.json`` after every arm.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _command import command_line

from trustrec.data import load_dataset, load_path, split_temporal
from trustrec.eval import grouped_auc, mean_estimate, paired_estimate, roc_auc, t_interval
from trustrec.mitigate.training.recicl import liked_by_rating
from trustrec.models import FitOptions, make_model

RESULTS = Path(__file__).resolve().parent / "results"


def _later_window(split, n_users: int, per_user: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(events to score, the later window's labelled log, the training window's labelled log)."""
    later = split.test.to_frame()
    train = split.train.to_frame()
    for frame in (later, train):
        frame["label"] = liked_by_rating(frame.pop("rating").to_numpy())
    later = later.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
    later["position"] = later.groupby("user").cumcount()
    counts = later.groupby("user").size()
    eligible = counts.index[counts >= 2].to_numpy()
    rng = np.random.default_rng(0)
    users = np.sort(rng.choice(eligible, min(n_users, len(eligible)), replace=False))
    events = later[later.user.isin(users) & (later.position >= 1) & (later.position <= per_user)]
    return events.reset_index(drop=True), later, train


def _cluster_auc_ci(scores, labels, users, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile interval of the pooled AUC under a bootstrap over users."""
    rng = np.random.default_rng(seed)
    owners, inverse = np.unique(users, return_inverse=True)
    by_user = [np.flatnonzero(inverse == u) for u in range(len(owners))]
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([by_user[u] for u in rng.integers(len(owners), size=len(owners))])
        values.append(roc_auc(scores[rows], labels[rows]))
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def _metrics(scores, events: pd.DataFrame, warm_items: np.ndarray, n_boot: int, seed: int) -> dict:
    labels, users = events["label"].to_numpy(bool), events["user"].to_numpy()
    per_user = grouped_auc(scores, labels, users)
    warm = np.isin(events["item"].to_numpy(), warm_items)
    uauc = mean_estimate(per_user["auc"].to_numpy(), n_boot=n_boot, seed=seed, description="UAUC")

    def finite(value: float) -> float | None:  # a sample without both labels has no AUC
        return float(value) if np.isfinite(value) else None

    out = {
        "auc": roc_auc(scores, labels),
        "auc_ci": _cluster_auc_ci(scores, labels, users, n_boot, seed),
        "uauc": uauc.to_dict(),
        "users_with_both_labels": int(per_user["auc"].notna().sum()),
        "auc_warm": finite(roc_auc(scores[warm], labels[warm])),
        "auc_cold": finite(roc_auc(scores[~warm], labels[~warm])),
        "n_events": len(events),
        "n_warm": int(warm.sum()),
        "n_cold": int((~warm).sum()),
        "per_user_auc": {int(u): finite(a) for u, a in zip(per_user["group"], per_user["auc"])},
    }
    return out


def _shown(value: float | None) -> float:
    return np.nan if value is None else value


def _model(args, *, demonstrations: int, epochs: int):
    return make_model(
        "llm_recicl",
        model=args.model,
        demonstrations=demonstrations,
        epochs=epochs,
        max_train_examples=args.train_examples,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        max_titles=args.max_titles,
        noun=args.noun,
        length_bucketing=True,
        autocast="auto",
        inference_batch_size=args.batch_size,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--train-examples", type=int, default=640)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--later-frac", type=float, default=0.2, help="share of the interactions in the later window")
    parser.add_argument("--users", type=int, default=100, help="later-window users scored")
    parser.add_argument("--events-per-user", type=int, default=10)
    parser.add_argument("--max-titles", type=int, default=10)
    parser.add_argument("--noun", default="movie")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    path = Path(args.dataset)
    dataset = load_path(path) if path.exists() else load_dataset(args.dataset)
    if dataset.interactions.rating is None:
        raise SystemExit(f"{dataset.name}: RecICL's labels here are ratings (>= 4); this dataset has none")
    split = split_temporal(dataset, valid_frac=0.0, test_frac=args.later_frac)
    events, later_log, train_log = _later_window(split, args.users, args.events_per_user)
    warm_items = np.unique(split.train.item)
    out_path = args.out or RESULTS / f"recicl_later_window_{dataset.name}.json"
    report: dict = {
        "command": command_line(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "protocol": {
            k: v for k, v in vars(args).items() if k not in ("out", "threads", "seeds") and not isinstance(v, Path)
        },
        "split": split.describe(),
        "sample": {
            "users": int(events["user"].nunique()),
            "events": len(events),
            "positive_share": float(events["label"].mean()),
            "warm_share": float(np.isin(events["item"], warm_items).mean()),
        },
        "arms": {},
    }

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1, default=float))

    print(
        f"later window from {split.params['test_from']}: {len(events)} events of {report['sample']['users']} users "
        f"({report['sample']['positive_share']:.2f} liked, {report['sample']['warm_share']:.2f} warm items)"
    )
    header = f"{'arm':<46} {'AUC':>7} {'UAUC':>7} {'warm':>7} {'cold':>7}  {'train s/ex':>10} {'score s/ev':>10}"
    print(header)

    def run(label: str, model, log: pd.DataFrame, seed: int, fit_seconds: float | None) -> dict:
        t0 = time.perf_counter()
        scores = model.predict(events, log)
        seconds = time.perf_counter() - t0
        entry = _metrics(scores, events, warm_items, args.n_boot, seed)
        n_examples = model.history_.get("n_examples") or 0
        entry.update(
            seed=seed,
            fit_seconds=fit_seconds,
            train_seconds_per_example=(fit_seconds / n_examples) if fit_seconds and n_examples else None,
            score_seconds_per_event=seconds / max(len(events), 1),
            training_counts=getattr(model, "recicl_counts_", None),
        )
        report["arms"][label] = entry
        save()
        per_ex = entry["train_seconds_per_example"]
        print(
            f"{label:<46} {entry['auc']:>7.4f} {entry['uauc']['value']:>7.4f} {_shown(entry['auc_warm']):>7.4f} "
            f"{_shown(entry['auc_cold']):>7.4f}  {per_ex if per_ex is None else round(per_ex, 3)!s:>10} "
            f"{entry['score_seconds_per_event']:>10.3f}",
            flush=True,
        )
        return entry

    base = _model(args, demonstrations=4, epochs=0).fit(split, FitOptions(seed=0, progress=False))
    run("base + demonstrations (seed 0)", base, later_log, 0, None)
    del base
    for seed in args.seeds:
        for name, k in (("recicl", 4), ("tallrec", 0)):
            t0 = time.perf_counter()
            model = _model(args, demonstrations=k, epochs=1).fit(split, FitOptions(seed=seed, progress=True))
            fit_seconds = time.perf_counter() - t0
            run(f"{name} (seed {seed})", model, later_log, seed, fit_seconds)
            if name == "recicl":
                run(f"recicl, training-window demonstrations (seed {seed})", model, train_log, seed, None)
            del model
        a, b = (report["arms"][f"{n} (seed {seed})"]["per_user_auc"] for n in ("recicl", "tallrec"))
        common = sorted(u for u in set(a) & set(b) if a[u] is not None and b[u] is not None)
        diff = paired_estimate(
            [a[u] for u in common],
            [b[u] for u in common],
            n_boot=args.n_boot,
            seed=seed,
            test=True,
            description="per-user AUC, recicl minus tallrec",
        )
        report.setdefault("paired", {})[f"seed {seed}"] = diff.to_dict()
        save()
        print(f"seed {seed}: per-user AUC recicl - tallrec {diff.value:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}]")
    over: dict = {}
    for name in ("recicl", "tallrec", "recicl, training-window demonstrations"):
        for metric in ("auc", "uauc"):
            values = [
                report["arms"][f"{name} (seed {s})"][metric]
                if metric == "auc"
                else report["arms"][f"{name} (seed {s})"][metric]["value"]
                for s in args.seeds
            ]
            over[f"{metric} [{name}]"] = {
                "per_seed": values,
                "mean": float(np.mean(values)),
                "ci": list(t_interval(values)) if len(values) > 1 else None,
            }
    report["over_seeds"] = over
    save()
    for key, value in over.items():
        ci = value["ci"]
        print(f"{key:<50} {value['mean']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    print(
        f"wrote {out_path.relative_to(RESULTS.parent.parent) if out_path.is_relative_to(RESULTS.parent.parent) else out_path}"
    )


if __name__ == "__main__":
    main()
