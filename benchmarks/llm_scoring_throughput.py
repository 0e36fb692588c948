"""Scoring throughput of ``LocalBackend`` for batch sizes 1..32, prompt KV reuse vs full reads.

Workload (what an LLM ranker sends): ``--prompts`` ml-100k ranking prompts (a test user's last
history items and 20 candidate titles from MostPopular, built by the ranker's own template) and,
per prompt, its 20 candidate titles as continuations. SmolLM2-135M-Instruct, float32, CPU.

For each batch size, two ways to score the same (prompt, continuation) pairs:

* ``prefix_cache=True`` (trustrec's default): the prompt runs once, its KV cache is copied for
  each batch of continuations;
* ``prefix_cache=False`` (the peer: what a plain batched scorer does): every pair is read in full,
  right padded, sorted by length.

Throughput is counted in pair tokens per second (prompt + continuation tokens of every pair, the
work a plain scorer must do), and in pairs per second. Both sides are checked to give the same
log-probabilities (max abs difference printed). Each setting is warmed up once (not timed).

    python benchmarks/llm_scoring_throughput.py --prompts 4

Prints a table, writes benchmarks/results/llm_scoring_throughput.json.
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
from trustrec.models import FitOptions, compose, make_model
from trustrec.models.llm import LocalBackend, PromptCatalog, build_prompt


def workload(n_prompts: int, backend: LocalBackend):
    split = split_leave_one_out(load_dataset("ml-100k"))
    pop = make_model("most_popular").fit(split, FitOptions(progress=False))
    ranker = compose("llm_ranker", split, retriever=pop)
    template = ranker.config.prompt_template()
    catalog = PromptCatalog(ranker.catalog_)
    texts = catalog.texts(template)
    queries = split.eval_set("test").queries[:n_prompts]
    heads = pop.recommend(queries, 20).items
    prompts, conts = [], []
    for q in range(n_prompts):
        query = queries.query(q)
        prompts.append(
            build_prompt(query, catalog, template, backend.tokenizer, max_history_tokens=256, candidates=heads[q]).text
        )
        conts.append([texts[i] for i in heads[q]])
    return prompts, conts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--batches", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "llm_scoring_throughput.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    base = LocalBackend(args.model)
    prompts, conts = workload(args.prompts, base)
    tok = base.tokenizer
    p_len = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    c_len = [[len(tok(c, add_special_tokens=False)["input_ids"]) for c in cs] for cs in conts]
    pair_tokens = sum(p * len(cs) + sum(cs) for p, cs in zip(p_len, c_len))
    n_pairs = sum(len(cs) for cs in conts)
    rows = []
    for batch in args.batches:
        timings, results = {}, {}
        for cached in (True, False):
            b = LocalBackend(args.model, batch_size=batch, prefix_cache=cached)
            b._model, b._tokenizer = base.model, base.tokenizer
            b.score_continuations(prompts[:1], conts[:1])  # warm-up
            started = time.perf_counter()
            results[cached] = b.score_continuations(prompts, conts)
            timings[cached] = time.perf_counter() - started
        diff = max(float(np.abs(a - b).max()) for a, b in zip(results[True], results[False]))
        row = {
            "batch_size": batch,
            "kv_reuse_s": timings[True],
            "full_reads_s": timings[False],
            "kv_reuse_tokens_per_s": pair_tokens / timings[True],
            "full_reads_tokens_per_s": pair_tokens / timings[False],
            "kv_reuse_pairs_per_s": n_pairs / timings[True],
            "full_reads_pairs_per_s": n_pairs / timings[False],
            "speedup": timings[False] / timings[True],
            "max_abs_logprob_diff": diff,
        }
        rows.append(row)
        console.print(
            f"batch {batch}: KV reuse {row['kv_reuse_tokens_per_s']:,.0f} tok/s, full reads "
            f"{row['full_reads_tokens_per_s']:,.0f} tok/s, x{row['speedup']:.2f}"
        )
    table = Table(
        title=f"LocalBackend scoring, {args.model}, {len(prompts)} prompts (mean {np.mean(p_len):.0f} "
        f"tokens) x 20 candidates, {args.threads} threads",
        header_style="bold",
    )
    for col in (
        "batch",
        "KV reuse tok/s",
        "full reads tok/s",
        "KV reuse pairs/s",
        "full reads pairs/s",
        "speedup",
        "max |diff|",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["batch_size"]),
            f"{r['kv_reuse_tokens_per_s']:,.0f}",
            f"{r['full_reads_tokens_per_s']:,.0f}",
            f"{r['kv_reuse_pairs_per_s']:.1f}",
            f"{r['full_reads_pairs_per_s']:.1f}",
            f"x{r['speedup']:.2f}",
            f"{r['max_abs_logprob_diff']:.1e}",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "llm_scoring_throughput",
                "command": command_line(),
                "machine": platform.platform(),
                "args": {k: str(v) for k, v in vars(args).items() if k != "out"},
                "prompt_tokens": p_len,
                "pair_tokens": pair_tokens,
                "n_pairs": n_pairs,
                "rows": rows,
            },
            indent=1,
        )
    )
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
