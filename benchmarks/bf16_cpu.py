"""bfloat16 against float32 on this CPU, end to end: LLM scoring, LLM training steps, SASRec.

The CPU has AMX bf16 units (a 2048x2048 bf16 matmul runs several times the float32 rate); what
counts is what a recommender gets from them. Three workloads, each run in both dtypes in this
one process, interleaved (float32, bfloat16, float32, bfloat16 ...) so that machine noise hits
both sides alike; the figure reported is the ratio of the medians.

1. **LLM ranker scoring** (SmolLM2-135M-Instruct, ``LocalBackend(dtype=...)``): ``--users``
   ml-100k test users, each with the ranker's prompt (history + 20 MostPopular candidates) and
   the 20 candidate titles as continuations. Throughput (pairs/s), the log-probability gap to
   float32, and ranking agreement of the 20 candidates per user: Kendall's tau-b and top-10
   overlap against the float32 order, and each dtype's HR@10 / NDCG@10 of the held-out item
   when it is among the candidates.
2. **LLM fine-tuning steps** (the generative recommender's causal-LM loss): forward + backward
   + AdamW step on ``--train-batches`` batches of 8 ml-100k (prompt, next title) examples;
   steps/s and the loss gap at the same weights.
3. **SASRec** (torch, 2 threads): full-catalog scoring of the test users under
   ``torch.autocast("cpu", bfloat16)`` against float32: throughput and top-10 agreement.

    python benchmarks/bf16_cpu.py --users 100 --train-batches 6 --repeats 2

Prints a table, writes benchmarks/results/bf16_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line

from trustrec.data import load_dataset, split_leave_one_out
from trustrec.eval import rank_biased_overlap
from trustrec.models import FitOptions, make_model
from trustrec.models.llm import LocalBackend, PromptCatalog, build_prompt

DTYPES = ("float32", "bfloat16")


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def scoring_workload(split, n_users: int, tokenizer):
    from trustrec.models import compose

    pop = make_model("most_popular").fit(split, FitOptions(progress=False))
    ranker = compose("llm_ranker", split, retriever=pop)
    template, catalog = ranker.config.prompt_template(), PromptCatalog(ranker.catalog_)
    texts = catalog.texts(template)
    test = split.eval_set("test")
    queries = test.queries[:n_users]
    heads = pop.recommend(queries, 20).items
    prompts = [
        build_prompt(queries.query(q), catalog, template, tokenizer, max_history_tokens=256, candidates=heads[q]).text
        for q in range(n_users)
    ]
    conts = [[texts[i] for i in heads[q]] for q in range(n_users)]
    targets = [set(test.targets.row(q).tolist()) for q in range(n_users)]
    return prompts, conts, heads, targets


def ranking_quality(scores: list[np.ndarray], heads: np.ndarray, targets: list[set]) -> dict[str, float]:
    hits, ndcg = [], []
    for s, cands, t in zip(scores, heads, targets):
        order = cands[np.argsort(-s, kind="stable")][:10]
        rel = np.array([i in t for i in order], float)
        hits.append(rel.max(initial=0.0))
        ndcg.append(float((rel / np.log2(np.arange(2, 12))).sum()))
    return {"hr@10": float(np.mean(hits)), "ndcg@10": float(np.mean(ndcg))}


def bench_scoring(split, args, console) -> dict:
    backends = {d: LocalBackend(args.model, dtype=d, batch_size=8) for d in DTYPES}
    prompts, conts, heads, targets = scoring_workload(split, args.users, backends["float32"].tokenizer)
    for b in backends.values():
        b.score_continuations(prompts[:1], conts[:1])  # warm-up, not timed
    times = {d: [] for d in DTYPES}
    scores = {}
    for _ in range(args.repeats):
        for d in DTYPES:
            started = time.perf_counter()
            scores[d] = backends[d].score_continuations(prompts, conts)
            times[d].append(time.perf_counter() - started)
    n_pairs = sum(len(c) for c in conts)
    gap = np.concatenate([np.abs(a - b) for a, b in zip(scores["bfloat16"], scores["float32"])])
    taus = [_kendall(a, b) for a, b in zip(scores["bfloat16"], scores["float32"])]
    top10 = [
        len(set(np.argsort(-a, kind="stable")[:10]) & set(np.argsort(-b, kind="stable")[:10])) / 10
        for a, b in zip(scores["bfloat16"], scores["float32"])
    ]
    rbo = [
        rank_biased_overlap(np.argsort(-a, kind="stable"), np.argsort(-b, kind="stable"), p=0.9)
        for a, b in zip(scores["bfloat16"], scores["float32"])
    ]
    out = {
        "n_users": args.users,
        "n_pairs": n_pairs,
        "pairs_per_s": {d: n_pairs / float(np.median(times[d])) for d in DTYPES},
        "seconds": times,
        "speedup_bf16": float(np.median(times["float32"]) / np.median(times["bfloat16"])),
        "logprob_abs_gap_mean": float(gap.mean()),
        "logprob_abs_gap_p95": float(np.quantile(gap, 0.95)),
        "kendall_tau_mean": float(np.nanmean(taus)),
        "top10_overlap_mean": float(np.mean(top10)),
        "rbo_0.9_mean": float(np.mean(rbo)),
        "quality": {d: ranking_quality(scores[d], heads, targets) for d in DTYPES},
    }
    console.print(f"scoring: x{out['speedup_bf16']:.2f} bf16/fp32, tau {out['kendall_tau_mean']:.3f}")
    return out


def bench_training(split, args, console) -> dict:
    import torch

    from trustrec.models.training import causal_lm_loss, collate_examples

    tok = LocalBackend(args.model).tokenizer
    train = split.train_dataset()
    titles = train.items["title"].astype(str).tolist()
    rows = train.histories().rows()
    rng = np.random.default_rng(0)
    examples = []
    for seq in (rows[i] for i in rng.choice(len(rows), 8 * args.train_batches, replace=False)):
        history = ", ".join(titles[int(i)] for i in seq[-11:-1])
        prompt = tok(f"A user watched: {history}. Next they watch:", add_special_tokens=True)["input_ids"]
        answer = tok(" " + titles[int(seq[-1])], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        examples.append((list(prompt), answer))
    batches = [
        collate_examples(examples[i : i + 8], tok.pad_token_id or tok.eos_token_id) for i in range(0, len(examples), 8)
    ]
    models = {d: LocalBackend(args.model, dtype=d).model for d in DTYPES}
    with torch.no_grad():  # the same starting weights in both dtypes
        ref = dict(models["float32"].named_parameters())
        for name, p in models["bfloat16"].named_parameters():
            p.copy_(ref[name].to(p.dtype))
    first_loss = {}
    for d, m in models.items():
        with torch.no_grad():
            b = batches[0]
            out = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
            first_loss[d] = float(causal_lm_loss(out.logits.float(), b["labels"]))
    optims = {d: torch.optim.AdamW(m.parameters(), lr=1e-5) for d, m in models.items()}
    times = {d: [] for d in DTYPES}
    for _ in range(args.repeats):
        for d, m in models.items():
            m.train()
            started = time.perf_counter()
            for b in batches:
                out = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
                loss = causal_lm_loss(out.logits.float(), b["labels"])
                optims[d].zero_grad()
                loss.backward()
                optims[d].step()
            times[d].append(time.perf_counter() - started)
    out = {
        "n_batches": len(batches),
        "batch_size": 8,
        "steps_per_s": {d: len(batches) / float(np.median(times[d])) for d in DTYPES},
        "seconds": times,
        "speedup_bf16": float(np.median(times["float32"]) / np.median(times["bfloat16"])),
        "loss_at_same_weights": first_loss,
        "loss_abs_gap": abs(first_loss["bfloat16"] - first_loss["float32"]),
    }
    console.print(f"training: x{out['speedup_bf16']:.2f} bf16/fp32, loss gap {out['loss_abs_gap']:.4f}")
    return out


def bench_sasrec(split, args, console) -> dict:
    import torch

    model = make_model("sasrec", epochs=args.sasrec_epochs).fit(split, FitOptions(progress=False, seed=0))
    queries = split.eval_set("test").queries
    model.score(queries[:64])  # warm-up
    times = {d: [] for d in DTYPES}
    scores = {}
    for _ in range(args.repeats):
        for d in DTYPES:
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=d == "bfloat16"):
                scores[d] = np.asarray(model.score(queries), np.float64)
            times[d].append(time.perf_counter() - started)
    top = {d: np.argsort(-scores[d], axis=1, kind="stable")[:, :10] for d in DTYPES}
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top["float32"], top["bfloat16"])]))
    out = {
        "n_users": len(queries),
        "users_per_s": {d: len(queries) / float(np.median(times[d])) for d in DTYPES},
        "seconds": times,
        "speedup_bf16": float(np.median(times["float32"]) / np.median(times["bfloat16"])),
        "top10_overlap_mean": overlap,
    }
    console.print(f"sasrec scoring: x{out['speedup_bf16']:.2f} bf16/fp32, top-10 overlap {overlap:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--train-batches", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sasrec-epochs", type=int, default=5)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bf16_cpu.json")
    args = ap.parse_args()
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(args.threads)
    console = Console(width=170)
    split = split_leave_one_out(load_dataset("ml-100k"))
    result = {
        "scoring": bench_scoring(split, args, console),
        "training": bench_training(split, args, console),
        "sasrec": bench_sasrec(split, args, console),
    }
    table = Table(
        title=f"bfloat16 vs float32 on {platform.processor() or platform.machine()}, {args.threads} threads "
        f"(median of {args.repeats}, interleaved)",
        header_style="bold",
    )
    for col in ("workload", "float32", "bfloat16", "bf16 speed-up", "agreement with float32"):
        table.add_column(col, justify="right")
    s, t, r = result["scoring"], result["training"], result["sasrec"]
    table.add_row(
        f"LLM scoring, {s['n_users']} users x 20 (pairs/s)",
        f"{s['pairs_per_s']['float32']:.1f}",
        f"{s['pairs_per_s']['bfloat16']:.1f}",
        f"x{s['speedup_bf16']:.2f}",
        f"tau {s['kendall_tau_mean']:.3f}, top-10 {s['top10_overlap_mean']:.3f}, "
        f"|dlogp| {s['logprob_abs_gap_mean']:.3f}; NDCG@10 {s['quality']['float32']['ndcg@10']:.4f} vs "
        f"{s['quality']['bfloat16']['ndcg@10']:.4f}",
    )
    table.add_row(
        f"LLM training, {t['n_batches']} x 8 (steps/s)",
        f"{t['steps_per_s']['float32']:.2f}",
        f"{t['steps_per_s']['bfloat16']:.2f}",
        f"x{t['speedup_bf16']:.2f}",
        f"loss gap {t['loss_abs_gap']:.4f} at the same weights",
    )
    table.add_row(
        f"SASRec scoring, {r['n_users']} users (users/s)",
        f"{r['users_per_s']['float32']:.0f}",
        f"{r['users_per_s']['bfloat16']:.0f}",
        f"x{r['speedup_bf16']:.2f}",
        f"top-10 overlap {r['top10_overlap_mean']:.3f}",
    )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "bf16_cpu",
                "command": command_line(),
                "machine": platform.platform(),
                "torch": torch.__version__,
                "args": {k: str(v) for k, v in vars(args).items() if k != "out"},
                **result,
            },
            indent=1,
        )
    )
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
