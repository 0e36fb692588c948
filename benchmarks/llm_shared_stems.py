"""Shared prompt stems in ``LocalBackend`` scoring: on vs off, on two real LLM-audit workloads.

Prompts of one scoring call that start with the same tokens (``min_shared_prefix`` or more) run
that stem once; each prompt then runs only its own remainder on a copy of the stem's KV cache
(its continuations, as before, on copies of the whole prompt's cache). Peer: the same backend
with stems off (``min_shared_prefix`` larger than any prompt), i.e. every distinct prompt run in
full, which is what trustrec did before. Same model object on both sides; the scores are checked
to agree (max abs difference printed).

Workloads (ml-100k, leave-one-out, SASRec-free: MostPopular retrieves the 20 candidates):

* **ranker**: the LLM ranker (SmolLM2-135M-Instruct) ranking ``--users`` test users with its
  default 3 candidate orders per user (position-bias averaging): the 3 prompts share the system
  text and the history, and differ from the candidate list on;
* **deletion**: the explainability audit's deletion test of each user's top item (3 cited and
  2x3 random history items removed or kept; each edited history re-ranks the 20 candidates): edited
  histories agree up to their first edit. (The attribution before it scores one continuation per
  prompt; those prompts are read in full in batches either way, so it is computed once, untimed.)

    python benchmarks/llm_shared_stems.py --users 6

Prints a table, writes benchmarks/results/llm_shared_stems.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line

OUT = Path(__file__).parent / "results" / "llm_shared_stems.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    from trustrec.audit import attribute, deletion_test
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models import FitOptions, compose, make_model
    from trustrec.models.llm import LocalBackend

    console = Console()
    split = split_leave_one_out(load_dataset("ml-100k"))
    retriever = make_model("most_popular").fit(split, FitOptions(progress=False))
    ranker = compose("llm_ranker", split, retriever=retriever, model=args.model)
    queries = split.eval_set("test").queries[: args.users]
    shared = ranker.backend
    _ = shared.model  # load once, outside the timings

    def backend(stems: bool) -> LocalBackend:
        b = LocalBackend(args.model, batch_size=ranker.config.batch_size, min_shared_prefix=32 if stems else 10**9)
        b._model, b._tokenizer = shared.model, shared.tokenizer
        return b

    ranker.recommend(queries[:1], 1)  # warm-up
    attribution = attribute(ranker, queries, ranker.recommend(queries, 1).items)
    workloads = {
        "ranker": lambda: ranker.score_candidates(queries, 10).llm,
        "deletion": lambda: np.stack(
            [
                deletion_test(ranker, queries, attribution, steps=(3,), n_random=2).ranks[v]
                for v in ("remove_cited", "remove_random", "keep_cited", "keep_random")
            ]
        ),
    }
    rows = []
    for name, work in workloads.items():
        seconds, values = {}, {}
        for stems in (False, True):
            ranker._backend = backend(stems)
            started = time.perf_counter()
            values[stems] = np.asarray(work(), dtype=np.float64)
            seconds[stems] = time.perf_counter() - started
        both = ~np.isnan(values[True]) & ~np.isnan(values[False])
        diff = float(np.abs(values[True][both] - values[False][both]).max()) if both.any() else float("nan")
        rows.append(
            {
                "workload": name,
                "users": args.users,
                "stems_off_s": seconds[False],
                "stems_on_s": seconds[True],
                "speedup": seconds[False] / seconds[True],
                "max_abs_diff": diff,
                "same_nan_pattern": bool((np.isnan(values[True]) == np.isnan(values[False])).all()),
            }
        )
    ranker._backend = shared
    table = Table(
        title=f"LocalBackend shared stems, {args.model}, ml-100k, {args.users} users, {args.threads} threads",
        header_style="bold",
    )
    for col in ("workload", "stems off s", "stems on s", "speedup", "max |diff|"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["workload"],
            f"{r['stems_off_s']:.1f}",
            f"{r['stems_on_s']:.1f}",
            f"x{r['speedup']:.2f}",
            f"{r['max_abs_diff']:.1e}",
        )
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "llm_shared_stems",
                "command": command_line(),
                "platform": platform.platform(terse=True),
                "args": vars(args),
                "rows": rows,
            },
            indent=1,
        )
    )
    console.print(f"written: {OUT.relative_to(Path(__file__).parent.parent)}", markup=False)


if __name__ == "__main__":
    main()
