"""The BIGRec / D3 protocol end to end: a fine-tuned generative SmolLM2 against MostPopular,
SASRec and the zero-shot LLM, D3's decoding claims, factuality and popularity amplification.

One command runs the protocol on a dataset (a named one, or any BIGRec/D3 folder given by path):

    python benchmarks/generative_d3.py --dataset amazon-industrial --seeds 0 1 2

Per seed: the ``global_positions`` split (a D3 folder's shipped valid/test rows as given, the
training examples rebuilt from the log), one fixed sample of test rows (``--test-rows``, the same
for every model) and of validation rows (``--valid-rows``), exact-title-match HR/NDCG@1,3,5,10
(``evaluate(item_classes=title_classes(...))``, seen items not masked, as the papers do), and
bootstrap CIs over rows. Models: MostPopular; the fine-tuned generative SmolLM2 (BIGRec prompt,
answer ``"title"`` + newline + eos, loss on the answer only, ``--train-examples`` examples sampled
from all positions, 1 epoch, lr 3e-4, 20 warm-up steps, bf16 autocast, length bucketing);
SASRec (fitted as the fine-tuned model's D3 assistant, seed 0). The zero-shot SmolLM2 (the same
model, no fine-tuning) is evaluated on seed 0.

Decoding switches (seed 0, on the one fine-tuned model, ``with_decoding``): D3's summed
log-probability (length penalty 0), BIGRec's mean (length penalty 1), D3's assistant (SASRec,
``--guidance``), and BIGRec's free generation grounded by LM hidden states with the popularity
gamma tuned on the validation rows. The switch with the best validation NDCG@10 is "chosen".
Paired differences (sum - mean, assistant - no assistant) have bootstrap CIs over the test rows.

Factuality (seed 0): ``--gen-beams`` free beams per test row from the fine-tuned and the
zero-shot model, classified by the hallucination audit's rules (out-of-catalog, near miss,
already seen, repeated, malformed, valid) with CIs over rows; the grounded and constrained
settings are the mitigations. Popularity (seed 0): training data vs zero-shot vs fine-tuned
top-10 lists: share per 5 popularity groups, exposure Gini, popularity lift; and Δlog p per
answer token (fine-tuned minus base) of the test targets by popularity group.

Prints tables; writes ``benchmarks/results/generative_d3_<dataset>.json`` after every stage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _command import command_line

from trustrec.audit._factuality import category_rates, classify_generations, per_user_rates
from trustrec.data import load_dataset, load_path, make_split, position_eval_set
from trustrec.eval import (
    bootstrap_ci,
    evaluate,
    exposure_gini,
    mean_estimate,
    paired_estimate,
    popularity_groups,
    popularity_lift,
    title_classes,
)
from trustrec.models import FitOptions, make_model

KS = (1, 3, 5, 10)
RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str):
    path = Path(name)
    return load_path(path) if path.exists() else load_dataset(name)


def _generative(args, seed: int, *, epochs: int, assistant: bool):
    params = {
        "template": {"preset": "bigrec"},
        "answer_format": '"{title}"\n',
        "targets_per_user": None,
        "max_history_items": 10,
        "max_history_tokens": args.history_tokens,
        "max_train_examples": args.train_examples,
        "epochs": epochs,
        "learning_rate": 3e-4,
        "warmup_steps": 20,
        "batch_size": 8,
        "autocast": "bfloat16",
        "length_bucketing": True,
        "num_beams": 10,
        "inference_batch_size": 8,
        "max_new_tokens": args.max_new_tokens,
    }
    if assistant:
        params["assistant"] = {"name": "sasrec", "params": {}}
    return make_model("llm_generative", **params)


def _evaluate(model, eval_set, classes, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    metrics = [f"{m}@{k}" for k in KS for m in ("ndcg", "hr")]
    result = evaluate(
        model,
        eval_set,
        metrics=metrics,
        exclude_seen=False,
        item_classes=classes,
        seed=seed,
        progress=False,
        keep_topk=True,
    )
    return result.to_dict(), result.per_user["ndcg@10"].to_numpy(), result.topk.items


def _row(name: str, res: dict) -> str:
    m = res["metrics"]
    cells = [f"{m[f'ndcg@{k}']['mean']:.4f}" for k in KS] + [f"{m[f'hr@{k}']['mean']:.4f}" for k in KS]
    ci = m["ndcg@10"]
    return f"{name:<34} " + " ".join(cells) + f"   ndcg@10 CI [{ci['ci_low']:.4f}, {ci['ci_high']:.4f}]"


def _paired(a: np.ndarray, b: np.ndarray, seed: int, what: str) -> dict:
    return paired_estimate(a, b, n_boot=1000, seed=seed, description=what, test=True).to_dict()


def _popularity(lists: dict[str, np.ndarray], histories, popularity: np.ndarray, n_items: int) -> dict:
    groups = popularity_groups(popularity, 5)
    out = {}
    for name, items in lists.items():
        valid = items >= 0
        counts = np.array([(groups[items[valid]] == g).sum() for g in range(5)], np.float64)
        share = (counts / max(1, counts.sum())).tolist()
        entry = {"group_share": share, "gini@10": float(exposure_gini(items, n_items))}
        if name != "training data":
            profile = np.array([popularity[h].mean() if len(h) else np.nan for h in histories])
            rec = np.array([popularity[r[r >= 0]].mean() if (r >= 0).any() else np.nan for r in items])
            lift = popularity_lift(rec, profile)
            entry["popularity_lift"] = float(np.nanmean(lift))
            entry["popularity_lift_ci"] = list(bootstrap_ci(lift, n_boot=1000, seed=0))
        out[name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-industrial")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-examples", type=int, default=768)
    parser.add_argument("--test-rows", type=int, default=200)
    parser.add_argument("--valid-rows", type=int, default=40)
    parser.add_argument("--history-tokens", type=int, default=160)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gen-beams", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=0.5)
    parser.add_argument("--stages", nargs="+", default=["base", "switches", "factuality", "popularity", "seeds"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    name = Path(args.dataset).name if Path(args.dataset).exists() else args.dataset
    out_path = RESULTS / f"generative_d3_{name}.json"
    report: dict = {"command": command_line(), "settings": vars(args), "stages": {}}

    def save():
        out_path.write_text(json.dumps(report, indent=1, default=float))

    dataset = _load(args.dataset)
    split = make_split(dataset, "global_positions")
    classes = title_classes(dataset.items["title"].tolist() if "title" in dataset.items else [None] * dataset.n_items)
    rng = np.random.default_rng(0)
    test_all, valid_all = position_eval_set(split, "test"), position_eval_set(split, "valid")
    test = test_all[np.sort(rng.choice(len(test_all), min(args.test_rows, len(test_all)), replace=False))]
    valid = valid_all[np.sort(rng.choice(len(valid_all), min(args.valid_rows, len(valid_all)), replace=False))]
    report["split"] = split.describe()
    report["sample"] = {"test_rows": len(test), "valid_rows": len(valid), "test_rows_all": len(test_all)}
    print(split.notes[0])
    print(f"test sample: {len(test)} of {len(test_all)} rows; valid sample: {len(valid)}")
    header = f"{'model':<34} " + " ".join(f"N@{k:<4}" for k in KS) + " " + " ".join(f"H@{k:<4}" for k in KS)
    per_row: dict[str, np.ndarray] = {}
    lists: dict[str, np.ndarray] = {}
    results: dict[str, dict] = {}
    tuned = None

    def record(label: str, model, eval_set=test, seed: int = 0):
        t0 = time.time()
        res, ndcg, top = _evaluate(model, eval_set, classes, seed)
        res["seconds"] = round(time.time() - t0, 1)
        results[label], per_row[label], lists[label] = res, ndcg, top
        print(_row(label, res), f"({res['seconds']} s)", flush=True)
        report["stages"].setdefault("accuracy", {})[label] = res
        save()

    print(header)
    if "base" in args.stages:
        pop = make_model("most_popular").fit(split, FitOptions(progress=False, seed=0))
        record("MostPopular", pop)
        t0 = time.time()
        tuned = _generative(args, 0, epochs=1, assistant=True).fit(split, FitOptions(progress=True, seed=0))
        tuned.cast("bfloat16")  # decoding in bf16 (trained in float32 with bf16 autocast)
        report["stages"]["training_seed0"] = {"seconds": round(time.time() - t0, 1), "history": tuned.history_}
        record("SASRec (the assistant, seed 0)", tuned.assistant_)
        record("SmolLM2 fine-tuned, D3 sum (seed 0)", tuned)
        zero = _generative(args, 0, epochs=0, assistant=False).fit(split, FitOptions(progress=False, seed=0))
        zero.cast("bfloat16")
        record("SmolLM2 zero-shot, D3 sum", zero)
    if "switches" in args.stages and tuned is not None:
        mean = tuned.with_decoding(length_penalty=1.0)
        guided = tuned.with_decoding(guidance=args.guidance)
        record("SmolLM2 fine-tuned, BIGRec mean (seed 0)", mean)
        record(f"SmolLM2 fine-tuned, assistant g={args.guidance} (seed 0)", guided)
        table = tuned.tune_grounding(valid.queries, valid.targets.values)
        grounded = tuned.with_decoding(
            decoding="unconstrained", grounding="hidden_state", grounding_gamma=tuned.config.grounding_gamma
        )
        tuned = tuned.with_decoding(grounding_gamma=0.0)
        report["stages"]["grounding_gamma"] = table.to_dict(orient="records")
        record("SmolLM2 fine-tuned, BIGRec grounding (seed 0)", grounded)
        choices = {"sum": tuned, "mean": mean, "assistant": guided, "grounding": grounded}
        valid_scores = {k: _evaluate(m, valid, classes, 0)[0]["metrics"]["ndcg@10"]["mean"] for k, m in choices.items()}
        report["stages"]["switches_valid_rows"] = len(valid)
        chosen = max(valid_scores, key=valid_scores.get)
        sw = {
            "valid_ndcg@10": valid_scores,
            "chosen_on_valid": chosen,
            "sum_minus_mean": _paired(
                per_row["SmolLM2 fine-tuned, D3 sum (seed 0)"],
                per_row["SmolLM2 fine-tuned, BIGRec mean (seed 0)"],
                1,
                "NDCG@10, D3 sum minus BIGRec mean",
            ),
            "assistant_minus_none": _paired(
                per_row[f"SmolLM2 fine-tuned, assistant g={args.guidance} (seed 0)"],
                per_row["SmolLM2 fine-tuned, D3 sum (seed 0)"],
                2,
                "NDCG@10, assistant minus g=1",
            ),
        }
        report["stages"]["switches"] = sw
        save()
        print("validation NDCG@10 per switch:", {k: round(v, 4) for k, v in valid_scores.items()}, "->", chosen)
        for key in ("sum_minus_mean", "assistant_minus_none"):
            e = sw[key]
            print(f"{key}: {e['value']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}] p={e.get('p_value')}")
    if "factuality" in args.stages and tuned is not None:
        fact = {}
        histories = test.queries.histories.rows()
        for label, model in (("fine-tuned", tuned), ("zero-shot", zero)):
            t0 = time.time()
            gens = model.generate_titles(test.queries, n=args.gen_beams)
            texts = [[model.read_answer(t) for t, _ in row] for row in gens]
            for mode in ("exact", "hidden_state"):
                table = classify_generations(texts, model.grounder(mode), histories)
                rates = per_user_rates(table)
                fact[f"{label} / {mode}"] = {
                    c: mean_estimate(rates[c].to_numpy(), n_boot=1000, seed=0).to_dict() for c in rates.columns
                }
                fact[f"{label} / {mode}"]["pooled"] = category_rates(table).to_dict()
            fact[f"{label} seconds"] = round(time.time() - t0, 1)
            fact[f"{label} examples"] = [row[:3] for row in texts[:5]]
        report["stages"]["factuality"] = fact
        save()
        for key, value in fact.items():
            if isinstance(value, dict) and "pooled" in value:
                print(f"{key:<28}", {k: round(v, 3) for k, v in value["pooled"].items()})
    if "popularity" in args.stages and tuned is not None:
        popularity = np.bincount(split.train.item, minlength=dataset.n_items).astype(np.float64)
        rows = test.queries.histories.rows()
        top_lists = {
            "training data": np.concatenate(rows)[:, None] if rows else np.zeros((0, 1), np.int64),
            "zero-shot": lists["SmolLM2 zero-shot, D3 sum"],
            "fine-tuned": lists["SmolLM2 fine-tuned, D3 sum (seed 0)"],
            "SASRec": lists["SASRec (the assistant, seed 0)"],
        }
        pop_report = _popularity(top_lists, rows, popularity, dataset.n_items)
        groups = popularity_groups(popularity, 5)
        targets = test.targets.values
        shift = tuned.answer_losses(test.queries, targets, base=True) - tuned.answer_losses(test.queries, targets)
        pop_report["delta_logp_per_token_by_group"] = {
            int(g): {
                "mean": float(np.nanmean(shift[groups[targets] == g])) if (groups[targets] == g).any() else None,
                "n": int((groups[targets] == g).sum()),
            }
            for g in range(5)
        }
        report["stages"]["popularity"] = pop_report
        save()
        for key, value in pop_report.items():
            print(key, value)
    if "seeds" in args.stages:
        for seed in [s for s in args.seeds if s != 0]:
            t0 = time.time()
            model = _generative(args, seed, epochs=1, assistant=False).fit(split, FitOptions(progress=True, seed=seed))
            model.cast("bfloat16")
            report["stages"][f"training_seed{seed}"] = {"seconds": round(time.time() - t0, 1)}
            record(f"SmolLM2 fine-tuned, D3 sum (seed {seed})", model, seed=seed)
        labels = [k for k in results if k.startswith("SmolLM2 fine-tuned, D3 sum (seed")]
        means = [results[k]["metrics"]["ndcg@10"]["mean"] for k in labels]
        mp = results["MostPopular"]["metrics"]["ndcg@10"]["mean"] if "MostPopular" in results else float("nan")
        report["stages"]["over_seeds"] = {
            "ndcg@10_per_seed": dict(zip(labels, means)),
            "mean": float(np.mean(means)) if means else None,
            "ratio_to_mostpopular": float(np.mean(means) / mp) if means and mp > 0 else None,
        }
        save()
        print("fine-tuned NDCG@10 over seeds:", [round(m, 4) for m in means], "MostPopular:", round(mp, 4))
    print(f"wrote {out_path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
