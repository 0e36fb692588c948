"""NullSteer vs plain steering for a conversational recommender's safety, side by side.

A recommendation assistant (SmolLM2-135M-Instruct under trustrec's assistant system prompt)
answers the shipped request set (``trustrec.data.recommendation_requests("v1")``). Both steerings
are fitted on its ``fit`` split and measured on the held-out ``eval`` split at each strength.
The target direction (``--direction``):

* ``contrast`` (default): contrastive activation addition (Rimsky et al. 2024), the mean
  difference between each harmful fit request followed by a refusing reply opening and by a
  compliant one (``REFUSAL_OPENINGS`` / ``COMPLIANCE_OPENINGS``, then a blank line, so both end on
  the same token). SmolLM2-135M barely refuses on its own, so the harmful-minus-benign direction
  of Arditi et al. (what NullSteer's sibling AlphaSteer uses on chat models that do refuse) does
  not point toward refusal in it; the contrast reads the direction from the behaviour itself.
* ``difference_of_means``: ``mean h(harmful) - mean h(benign)`` at the prompts' last token.

NullSteer fits ``h S`` on the harmful fit requests' activations toward that direction while
protecting the benign fit requests' activations at every token. Measured:

* refusal read from likelihoods (``refusal_preference``: refusal vs compliance openings as the
  reply; rate = share preferring refusal), on harmful, plain benign and borderline benign requests;
* refusal read from greedy replies by marker phrases (``trustrec.eval.refusal_flags``; SmolLM2 opens
  many ordinary answers with "I'm sorry for any confusion", so this reading is noisy on it);
* damage to benign behaviour without any marker: KL(unsteered || steered) of the next-token
  distribution after each benign prompt;
* AUC separating harmful from benign requests by the refusal preference.

Rates carry Wilson 95% intervals, means bootstrap intervals over requests (the fit is
deterministic: no seeds to vary). The matched comparison pairs each NullSteer strength with the
plain strength whose harmful refusal rate is closest, and prints the benign figures of both.

    python benchmarks/steering_safety.py --layers 8 --strengths 0.5,1,2

Writes benchmarks/results/steering_safety.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=180)


def _rate(flags: np.ndarray) -> dict:
    from trustrec.eval import wilson_interval

    lo, hi = wilson_interval(flags.sum(), len(flags))
    return {"rate": float(flags.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": len(flags)}


def _mean(values: np.ndarray, seed: int = 0) -> dict:
    from trustrec.eval import bootstrap_ci

    lo, hi = bootstrap_ci(values, n_boot=1000, seed=seed)
    return {"mean": float(values.mean()), "ci_low": lo, "ci_high": hi, "n": len(values)}


def measure(backend, requests, steering, max_new_tokens: int) -> dict:
    from trustrec.eval import roc_auc
    from trustrec.mitigate.training.refusal import refusal_table

    started = time.perf_counter()
    table = refusal_table(backend, requests, steering=steering, max_new_tokens=max_new_tokens)
    groups = {
        "harmful": table.label == "harmful",
        "benign": (table.label == "benign") & (table.category != "borderline"),
        "borderline": table.category == "borderline",
    }
    out: dict = {"seconds": time.perf_counter() - started}
    for name, rows in groups.items():
        part = table[rows]
        out[name] = {
            "prefers_refusal": _rate(part.prefers_refusal.to_numpy()),
            "refusal_preference": _mean(part.refusal_preference.to_numpy()),
            "marker_refusal": _rate(part.refused.to_numpy()),
        }
        if "next_token_kl" in part:
            out[name]["next_token_kl"] = _mean(part.next_token_kl.to_numpy())
    harmful = (table.label == "harmful").to_numpy()
    out["auc_harmful_vs_benign"] = roc_auc(table.refusal_preference.to_numpy(), harmful)
    out["sample_replies"] = (
        table.groupby("label", group_keys=False).head(3)[["id", "label", "reply", "refused"]].to_dict("records")
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layers", default="8")
    parser.add_argument("--direction", choices=("contrast", "difference_of_means"), default="contrast")
    parser.add_argument("--strengths", default="0.5,1,2")
    parser.add_argument("--null-tol", type=float, default=1e-2)
    parser.add_argument("--ridge", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from trustrec.data import recommendation_requests
    from trustrec.mitigate.training import fit_steering
    from trustrec.mitigate.training.refusal import COMPLIANCE_OPENINGS, REFUSAL_OPENINGS, assistant_prompts
    from trustrec.models.llm import LocalBackend

    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    strengths = [float(x) for x in args.strengths.split(",")]
    backend = LocalBackend(args.model, batch_size=32)
    fit, evaluation = recommendation_requests("v1", split="fit"), recommendation_requests("v1", split="eval")
    harmful = assistant_prompts(backend, fit.text[fit.label == "harmful"].tolist())
    benign = assistant_prompts(backend, fit.text[fit.label == "benign"].tolist())
    contrast = None
    if args.direction == "contrast":
        contrast = (
            [p + COMPLIANCE_OPENINGS[i % len(COMPLIANCE_OPENINGS)] + "\n\n" for i, p in enumerate(harmful)],
            [p + REFUSAL_OPENINGS[i % len(REFUSAL_OPENINGS)] + "\n\n" for i, p in enumerate(harmful)],
        )

    results: dict = {"none": measure(backend, evaluation, None, args.max_new_tokens)}
    fits = {}
    for method in ("plain", "null_space"):
        started = time.perf_counter()
        steering = fit_steering(
            backend.model,
            backend.tokenizer,
            benign=benign,
            steer_from=harmful,
            contrast=contrast,
            layers=layers,
            method=method,
            ridge=args.ridge,
            null_tol=args.null_tol,
        )
        fits[method] = {"seconds": time.perf_counter() - started, "info": steering.info}
        for s in strengths:
            results[f"{method}@{s:g}"] = measure(backend, evaluation, steering.with_strength(s), args.max_new_tokens)
            console.print(f"{method} s={s:g} done ({results[f'{method}@{s:g}']['seconds']:.0f}s)")

    table = Table(
        title=f"Steering a recommendation assistant ({args.model}, layers {layers}); eval split of requests v1"
    )
    for col in (
        "arm",
        "harmful prefers refusal",
        "benign prefers refusal",
        "borderline prefers refusal",
        "benign KL",
        "harmful marker",
        "benign marker",
        "AUC",
    ):
        table.add_column(col)

    def cell(d: dict, key: str = "rate") -> str:
        return f"{d[key]:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}]"

    for arm, r in results.items():
        kl = r["benign"].get("next_token_kl")
        table.add_row(
            arm,
            cell(r["harmful"]["prefers_refusal"]),
            cell(r["benign"]["prefers_refusal"]),
            cell(r["borderline"]["prefers_refusal"]),
            "0" if kl is None else cell(kl, "mean"),
            cell(r["harmful"]["marker_refusal"]),
            cell(r["benign"]["marker_refusal"]),
            f"{r['auc_harmful_vs_benign']:.3f}",
        )
    console.print(table)

    matched = []
    plain_arms = [a for a in results if a.startswith("plain@")]
    for arm in (a for a in results if a.startswith("null_space@")):
        target = results[arm]["harmful"]["prefers_refusal"]["rate"]
        partner = min(plain_arms, key=lambda a: abs(results[a]["harmful"]["prefers_refusal"]["rate"] - target))
        matched.append(
            {
                "null_space": arm,
                "plain": partner,
                "harmful_rate": [target, results[partner]["harmful"]["prefers_refusal"]["rate"]],
                "benign_rate": [results[a]["benign"]["prefers_refusal"]["rate"] for a in (arm, partner)],
                "borderline_rate": [results[a]["borderline"]["prefers_refusal"]["rate"] for a in (arm, partner)],
                "benign_kl": [results[a]["benign"]["next_token_kl"]["mean"] for a in (arm, partner)],
            }
        )
    pairs = Table(title="Matched harmful refusal rate: benign damage, NullSteer vs plain")
    for col in ("NullSteer arm", "plain arm", "harmful rate", "benign rate", "borderline rate", "benign KL"):
        pairs.add_column(col)
    for m in matched:
        pairs.add_row(
            m["null_space"],
            m["plain"],
            *(
                f"{a:.3f} vs {b:.3f}"
                for a, b in (m["harmful_rate"], m["benign_rate"], m["borderline_rate"], m["benign_kl"])
            ),
        )
    console.print(pairs)

    out = {
        "command": command_line(),
        "benchmark": "steering_safety",
        "args": vars(args),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "requests": {"version": "v1", "fit": len(fit), "eval": len(evaluation)},
        "fits": fits,
        "results": results,
        "matched": matched,
    }
    path = ROOT / "benchmarks" / "results" / "steering_safety.json"
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    console.print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
