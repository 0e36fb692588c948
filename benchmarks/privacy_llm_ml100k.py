"""Membership inference on the fine-tuned generative LLM recommender (issue 9), ml-100k.

SmolLM2-135M-Instruct fine-tuned (full SFT, answer-only loss) on the member users' last training
item (``targets_per_user=1``: one example per member, ``--epochs`` passes), on a seeded sample of
``--users`` ml-100k users (leave-one-out split). Half of the eligible users are members, half are
non-members; every one is attacked. Two attacks on the loss of that example:

* **loss attack**: the fine-tuned model's per-token loss of the answer title;
* **reference-calibrated attack**: that loss minus the loss of the *untuned base LLM* on the same
  prompt and title (Carlini et al., S&P 2022; Mattern et al., ACL 2023 findings use a reference
  model the same way): it removes how hard a title is to predict in the first place.

Issue target: the calibrated attack beats the loss attack on the fine-tuned LLM (the published
direction of effect); the script reports the paired AUC difference with its bootstrap CI and says
whether it holds. Measured (3 epochs, 360 users): it does *not* hold in that regime — the loss
attack reaches AUC 0.93, the calibrated one 0.85 (paired gain -0.08, CI excludes 0): after three
passes over 180 examples the members' losses are low whatever the title, so subtracting the base
model's title difficulty only adds its noise. Difficulty calibration is known to help where
memorisation is weak (one pass over many examples); ``--epochs 1`` measures that regime, and it
does not hold there either: loss AUC 0.81, calibrated 0.74 (gain -0.07, CI [-0.13, -0.005]).
With 180 single-example members the SFT target memorises each title in one pass already.
Canary exposure: ``--canaries`` random sequences inserted as extra users.

The MIA audit retrains its target from ``model_spec``, so the model handed to the audit is fitted
on 8 examples only (the audit reads its split and config, never its weights).

    python benchmarks/privacy_llm_ml100k.py --users 360 --epochs 3

Writes benchmarks/results/privacy_llm_ml100k_e<epochs>.json (no machine paths). CPU figures on ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _command import command_line
from privacy_ml100k import report_figures

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import torch

    from trustrec.audit.privacy import MembershipInferenceAudit
    from trustrec.data import load_dataset, sample_users, split_leave_one_out
    from trustrec.models import FitOptions, make_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=360, help="seeded ml-100k user sample")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--history-tokens", type=int, default=64)
    ap.add_argument("--canaries", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = sample_users(load_dataset("ml-100k"), args.users, seed=args.seed)
    split = split_leave_one_out(ds)
    params = {
        "model": "smollm2-135m-instruct",
        "max_history_tokens": args.history_tokens,
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": 8,
        "targets_per_user": 1,
        "max_train_examples": None,
        "inference_batch_size": 16,
    }
    print(
        f"ml-100k sample: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions; "
        f"llm_generative {params}"
    )
    shell = make_model("llm_generative", **{**params, "epochs": 1, "max_train_examples": 8}).fit(
        split, FitOptions(seed=args.seed, progress=False, threads=args.threads)
    )
    audit = MembershipInferenceAudit(
        model_spec={"name": "llm_generative", "params": params},
        reference="base_llm",
        n_canaries=args.canaries,
        n_candidates=args.candidates,
        n_boot=1000,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    res = audit.run(shell, split, progress=True)
    took = time.perf_counter() - t0
    names = [
        "auc [loss]",
        "auc [calibrated]",
        "auc_gain [calibrated - loss]",
        "tpr@1%fpr [loss]",
        "tpr@1%fpr [calibrated]",
        "tpr@0.1%fpr [loss]",
        "tpr@0.1%fpr [calibrated]",
        "canary_exposure",
        "canary_exposure [control]",
        "canary_exposure_max",
    ]
    figures = report_figures(res, names, "membership inference on the fine-tuned LLM", took)
    gain = figures["auc_gain [calibrated - loss]"]
    beats = gain is not None and gain["ci_low"] is not None and gain["ci_low"] > 0
    print(
        f"\ntarget — calibrated attack beats the loss attack (CI of the paired gain above 0): "
        f"{'yes' if beats else 'no'}"
    )
    out = {
        "command": command_line(),
        "platform": platform.platform(terse=True),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "dataset": f"ml-100k, {args.users}-user sample (seed {args.seed})",
        "split": "leave_one_out",
        "model": "llm_generative",
        "params": params,
        "seed": args.seed,
        "seconds": took,
        "summary": res.summary,
        "estimates": figures,
        "warnings": list(res.warnings),
        "settings": {
            k: res.settings[k]
            for k in (
                "reference",
                "n_members",
                "n_non_members",
                "n_reference_users",
                "n_attacked",
                "positions",
                "fit_seconds",
            )
        },
        "targets": {"calibrated_beats_loss": beats},
    }
    path = ROOT / "benchmarks" / "results" / f"privacy_llm_ml100k_e{args.epochs}.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
