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

Prints tables; writes ``benchmarks/results/generative_d3_<dataset>.json`` after every
evaluation. Stages may run in separate commands (``--stages seeds``): fitted models are saved
under ``benchmarks/.bench/`` (with the SASRec assistant) and loaded again, and an evaluation
already stored under the same protocol settings is reused rather than decoded again.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from _d3_protocol import d3_generative, d3_split, load_data, sampled_rows

from trustrec.audit import category_rates, classify_generations, per_user_rates
from trustrec.data import position_eval_set
from trustrec.eval import (
    bootstrap_ci,
    evaluate,
    exposure_gini,
    mean_estimate,
    paired_estimate,
    popularity_groups,
    popularity_lift,
    t_interval,
    title_classes,
)
from trustrec.models import FitOptions, Recommender, make_model

KS = (1, 3, 5, 10)
STAGES = ("base", "switches", "factuality", "popularity", "seeds")
SWITCHES = ("sum", "mean", "assistant", "grounding")
# The settings that change what an evaluation measures: stored results are reused only under these.
PROTOCOL_SETTINGS = (
    "dataset",
    "train_examples",
    "test_rows",
    "valid_rows",
    "fact_rows",
    "history_tokens",
    "max_new_tokens",
    "gen_beams",
    "guidance",
)
RESULTS = Path(__file__).resolve().parent / "results"


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
    parser.add_argument("--fact-rows", type=int, default=200, help="test rows of the factuality stage")
    parser.add_argument(
        "--factuality-models",
        nargs="+",
        default=["fine-tuned", "zero-shot"],
        choices=["fine-tuned", "zero-shot"],
        help="models the factuality stage decodes freely",
    )
    parser.add_argument("--history-tokens", type=int, default=160)
    parser.add_argument("--max-new-tokens", type=int, default=128, help="free-text budget (BIGRec's 128)")
    parser.add_argument("--gen-beams", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=0.5)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument(
        "--switches",
        nargs="+",
        default=list(SWITCHES),
        choices=SWITCHES,
        help="decoding switches compared (and chosen from on validation); grounding decodes free text, the slowest",
    )
    parser.add_argument(
        "--seed-switches",
        nargs="*",
        default=[],
        choices=SWITCHES,
        help="switches evaluated on every seed besides sum and the one chosen on validation",
    )
    parser.add_argument("--models", type=Path, default=None, help="where fitted models are kept between runs")
    parser.add_argument("--retrain", action="store_true", help="fit again even where a saved model exists")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    name = Path(args.dataset).name if Path(args.dataset).exists() else args.dataset
    out_path = RESULTS / f"generative_d3_{name}.json"
    models_dir = args.models or RESULTS.parent / ".bench" / f"generative_d3_{name}"
    # Stages may run in separate commands: evaluations already stored under the same protocol
    # settings are reused, so a later stage never re-decodes what an earlier one measured.
    protocol = {k: v for k, v in vars(args).items() if k in PROTOCOL_SETTINGS}
    report: dict = {"commands": [], "protocol": protocol, "stages": {}}
    if out_path.exists():
        previous = json.loads(out_path.read_text())
        if previous.get("protocol") == protocol:
            report = previous
    report["commands"] = [*report.get("commands", []), command_line()]
    from trustrec._device import bfloat16_is_fast

    # bf16 is chosen by measurement (fast with AMX / AVX512-BF16, emulated and slow on AVX2 only)
    report.setdefault("machines", []).append(
        {"processor": platform.processor() or platform.machine(), "bfloat16_is_fast": bfloat16_is_fast("cpu")}
    )

    def save():
        out_path.write_text(json.dumps(report, indent=1, default=float))

    dataset = load_data(args.dataset)
    split = d3_split(dataset)
    classes = title_classes(dataset.items["title"].tolist() if "title" in dataset.items else [None] * dataset.n_items)
    rng = np.random.default_rng(0)
    test = sampled_rows(split, "test", args.test_rows, rng)
    valid = sampled_rows(split, "valid", args.valid_rows, rng)
    fact_rows = sampled_rows(split, "test", args.fact_rows, rng)
    test_all = position_eval_set(split, "test")
    report["split"] = split.describe()
    report["sample"] = {
        "test_rows": len(test),
        "valid_rows": len(valid),
        "factuality_rows": len(fact_rows),
        "test_rows_all": len(test_all),
    }
    print(split.notes[0])
    print(f"test sample: {len(test)} of {len(test_all)} rows; valid sample: {len(valid)}; factuality: {len(fact_rows)}")
    header = f"{'model':<34} " + " ".join(f"N@{k:<4}" for k in KS) + " " + " ".join(f"H@{k:<4}" for k in KS)
    accuracy = report["stages"].setdefault("accuracy", {})
    fitted: dict = {}

    def tuned(seed: int):
        """The fine-tuned model of ``seed`` (with its SASRec assistant): loaded where saved, else fitted."""
        if seed in fitted:
            return fitted[seed]
        folder = models_dir / f"seed{seed}"
        wanted = d3_generative(args, epochs=1, assistant=True)
        model = None
        if folder.exists() and not args.retrain:
            model = Recommender.load(folder)
            if model.config != wanted.config:
                print(f"{folder}: saved with other settings; fitting again")
                model = None
        if model is None:
            t0 = time.time()
            model = wanted.fit(split, FitOptions(progress=True, seed=seed))
            report["stages"][f"training_seed{seed}"] = {
                "seconds": round(time.time() - t0, 1),
                "history": model.history_,
            }
            model.save(folder)
            save()
        fitted[seed] = model.cast(
            "auto"
        )  # bf16 decoding where bf16 is fast here (trained in float32, bf16 autocast if fast)
        return fitted[seed]

    def zero_shot():
        if "zero" not in fitted:
            model = d3_generative(args, epochs=0, assistant=False).fit(split, FitOptions(progress=False, seed=0))
            fitted["zero"] = model.cast("auto")
        return fitted["zero"]

    def record(label: str, make_model_, eval_set=test, seed: int = 0) -> dict:
        if label in accuracy and "per_row_ndcg@10" in accuracy[label]:
            print(_row(label, accuracy[label]), "(stored)", flush=True)
            return accuracy[label]
        model = make_model_()
        t0 = time.time()
        res, ndcg, top = _evaluate(model, eval_set, classes, seed)
        res["seconds"] = round(time.time() - t0, 1)
        res["per_row_ndcg@10"], res["top10"] = ndcg.tolist(), top.tolist()
        accuracy[label] = res
        print(_row(label, res), f"({res['seconds']} s)", flush=True)
        save()
        return res

    def per_row(label: str) -> np.ndarray:
        return np.asarray(accuracy[label]["per_row_ndcg@10"], np.float64)

    sum0, zero_label = "SmolLM2 fine-tuned, D3 sum (seed 0)", "SmolLM2 zero-shot, D3 sum"
    sasrec0 = "SASRec (the assistant, seed 0)"
    print(header)
    if "base" in args.stages:
        record("MostPopular", lambda: make_model("most_popular").fit(split, FitOptions(progress=False, seed=0)))
        record(sasrec0, lambda: tuned(0).assistant_)
        record(sum0, lambda: tuned(0))
        record(zero_label, zero_shot)

    def label(key: str, seed: int) -> str:
        names = {
            "sum": "D3 sum",
            "mean": "BIGRec mean",
            "assistant": f"assistant g={args.guidance}",
            "grounding": "BIGRec grounding",
        }
        return f"SmolLM2 fine-tuned, {names[key]} (seed {seed})"

    def grounding_gamma(seed: int) -> float:
        """BIGRec's popularity gamma for ``seed``'s model, tuned on the validation rows once."""
        key = "grounding_gamma_chosen" if seed == 0 else f"grounding_gamma_chosen_seed{seed}"
        if report["stages"].get(key) is None:
            table = tuned(seed).tune_grounding(valid.queries, valid.targets.values)
            report["stages"][key.replace("_chosen", "")] = table.to_dict(orient="records")
            report["stages"][key] = tuned(seed).config.grounding_gamma
            save()
        return report["stages"][key]

    def switch(key: str, seed: int):
        """The fine-tuned model of ``seed`` under one of the decoding switches."""
        if key == "sum":
            return tuned(seed).with_decoding(guidance=1.0, grounding_gamma=0.0)
        if key == "mean":
            return tuned(seed).with_decoding(guidance=1.0, length_penalty=1.0)
        if key == "assistant":
            return tuned(seed).with_decoding(guidance=args.guidance)
        return tuned(seed).with_decoding(
            decoding="unconstrained", grounding="hidden_state", grounding_gamma=grounding_gamma(seed)
        )

    switch_keys = tuple(k for k in SWITCHES if k in args.switches)
    if "switches" in args.stages:
        for key in switch_keys:
            record(label(key, 0), lambda key=key: switch(key, 0))
        valid_scores = {
            key: record(f"{key} (validation rows, seed 0)", lambda key=key: switch(key, 0), valid)["metrics"][
                "ndcg@10"
            ]["mean"]
            for key in switch_keys
        }
        chosen = max(valid_scores, key=valid_scores.get)
        sw: dict = {"valid_ndcg@10": valid_scores, "chosen_on_valid": chosen, "compared": list(switch_keys)}
        if {"sum", "mean"} <= set(switch_keys):
            sw["sum_minus_mean"] = _paired(
                per_row(sum0), per_row(label("mean", 0)), 1, "NDCG@10, D3 sum minus BIGRec mean"
            )
        if {"sum", "assistant"} <= set(switch_keys):
            sw["assistant_minus_none"] = _paired(
                per_row(label("assistant", 0)), per_row(sum0), 2, "NDCG@10, assistant minus g=1"
            )
        report["stages"]["switches"] = sw
        save()
        print("validation NDCG@10 per switch:", {k: round(v, 4) for k, v in valid_scores.items()}, "->", chosen)
        for key in ("sum_minus_mean", "assistant_minus_none"):
            if key not in sw:
                continue
            e = sw[key]
            print(f"{key}: {e['value']:+.4f} [{e['ci_low']:+.4f}, {e['ci_high']:+.4f}] p={e.get('p_value')}")
    if "factuality" in args.stages:
        fact = report["stages"].setdefault("factuality", {})
        histories = fact_rows.queries.histories.rows()
        for label, make in (("fine-tuned", lambda: tuned(0)), ("zero-shot", zero_shot)):
            if f"{label} / exact" in fact or label not in args.factuality_models:
                continue
            model = make()
            t0 = time.time()
            gens = model.generate_titles(fact_rows.queries, n=args.gen_beams)
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
            save()
        for key, value in fact.items():
            if isinstance(value, dict) and "pooled" in value:
                print(f"{key:<28}", {k: round(v, 3) for k, v in value["pooled"].items()})
    if "popularity" in args.stages:
        popularity = np.bincount(split.train.item, minlength=dataset.n_items).astype(np.float64)
        rows = test.queries.histories.rows()
        top_lists = {"training data": np.concatenate(rows)[:, None] if rows else np.zeros((0, 1), np.int64)}
        for key, stored, make in (
            ("zero-shot", zero_label, zero_shot),
            ("fine-tuned", sum0, lambda: tuned(0)),
            ("SASRec", sasrec0, lambda: tuned(0).assistant_),
        ):
            top_lists[key] = np.asarray(record(stored, make)["top10"], np.int64)
        pop_report = _popularity(top_lists, rows, popularity, dataset.n_items)
        groups = popularity_groups(popularity, 5)
        targets = test.targets.values
        model = tuned(0)
        shift = model.answer_losses(test.queries, targets, base=True) - model.answer_losses(test.queries, targets)
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
        # The sum decoding for every seed, and the switch chosen on seed 0's validation rows:
        # the target is the chosen switch's NDCG@10 over seeds against MostPopular.
        chosen = report["stages"].get("switches", {}).get("chosen_on_valid")
        keys = ["sum"] + ([chosen] if chosen not in (None, "sum") else [])
        keys += [k for k in args.seed_switches if k not in keys]
        for seed in args.seeds:
            for key in keys:
                record(label(key, seed), lambda key=key, seed=seed: switch(key, seed), seed=seed)
        mp_res = record(
            "MostPopular", lambda: make_model("most_popular").fit(split, FitOptions(progress=False, seed=0))
        )
        mp = mp_res["metrics"]["ndcg@10"]["mean"]
        over: dict = {"chosen_on_valid": chosen, "mostpopular_ndcg@10": mp}
        for key in keys:
            means = [accuracy[label(key, seed)]["metrics"]["ndcg@10"]["mean"] for seed in args.seeds]
            over[key] = {
                "ndcg@10_per_seed": dict(zip(map(str, args.seeds), means)),
                "mean": float(np.mean(means)),
                "ci_over_seeds": list(t_interval(means)),
                "ratio_to_mostpopular": float(np.mean(means) / mp) if mp > 0 else None,
            }
            print(f"fine-tuned ({key}) NDCG@10 over seeds:", [round(m, 4) for m in means], "MostPopular:", round(mp, 4))
        report["stages"]["over_seeds"] = over
        save()
    print(f"wrote {out_path.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
