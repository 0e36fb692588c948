"""Constrained beam search: trustrec vs Hugging Face ``generate`` on ml-100k, SmolLM2-135M, CPU.

For a fixed, seeded sample of ml-100k test users (leave-one-out split), one prompt per user:

    "The user watched these movies, oldest first:\\n<title 1>\\n...\\n<title 10>\\nNext movie:"

(a plain f-string: the last 10 history titles, oldest first; ``build_prompt`` cuts histories by
tokens, not by item count, so it is not used here). Every catalog title (all 1,682 items) goes
into one :class:`TitleTrie` with a leading space (the model writes " <title>" after the colon),
ended by the tokenizer's eos token.

Timed, same beams (``--beams``, default 10), top-10 items:

* trustrec ``constrained_beam_search(num_beams=10, top_k=10, batch_size=--batch)``;
* HF ``model.generate(prefix_allowed_tokens_fn=...)`` with the settings that make HF rank by
  summed log-prob (``length_penalty=0.0, early_stopping="never", do_sample=False,
  num_return_sequences=num_beams``, eos/pad = trie end marker, ``max_new_tokens=trie.max_length``;
  off-trie filler beams get the end marker and are dropped when mapping to items), run one
  prompt at a time and batched (``--batch`` prompts, left padding). The faster HF variant is the
  peer; both are reported.

Agreement: per user, whether the top-10 item lists are identical (trustrec vs each HF variant),
and the largest absolute difference of the sequence log-probs of matching ranks.

    python benchmarks/constrained_beam_vs_hf.py --users 16 --batch 8

Each side is warmed up on one prompt first (not timed). torch runs with ``--threads`` (2) threads
under ``torch.inference_mode``. Prints a table, writes
benchmarks/results/constrained_beam_vs_hf.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line

ROOT = Path(__file__).resolve().parent.parent


def make_prompts(ds, histories, users, n_hist: int) -> list[str]:
    titles = ds.items["title"].tolist()
    prompts = []
    for u in users:
        hist = [int(i) for i in histories.row(int(u))][-n_hist:]
        lines = "\n".join(str(titles[i]) for i in hist)
        prompts.append(f"The user watched these movies, oldest first:\n{lines}\nNext movie:")
    return prompts


def hf_search(model, tok, prompts, trie, num_beams, top_k, batch_size):
    """HF beam search constrained by ``prefix_allowed_tokens_fn``; per prompt (item, score) lists."""
    old_side, old_pad = tok.padding_side, tok.pad_token
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    results = []
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True)
            plen = enc["input_ids"].shape[1]
            out = model.generate(
                **enc,
                num_beams=num_beams,
                num_return_sequences=num_beams,
                do_sample=False,
                prefix_allowed_tokens_fn=lambda b, seq: trie.allowed_tokens(seq[plen:].tolist()) or [trie.end_id],  # noqa: B023  # used within this iteration
                length_penalty=0.0,
                early_stopping="never",
                max_new_tokens=trie.max_length,
                eos_token_id=trie.end_id,
                pad_token_id=trie.end_id,
                output_scores=True,
                return_dict_in_generate=True,
                temperature=None,
                top_p=None,
                top_k=None,
            )
            seqs = out.sequences[:, plen:].tolist()
            scores = out.sequences_scores.tolist()
            for p in range(len(chunk)):
                res, seen = [], set()
                for r in range(p * num_beams, (p + 1) * num_beams):
                    gen = seqs[r]
                    gen = gen[: gen.index(trie.end_id) + 1] if trie.end_id in gen else gen
                    items = trie.items_of(gen)
                    if items and scores[r] > -1e8 and items[0] not in seen:
                        seen.add(items[0])
                        res.append((items[0], scores[r]))
                results.append(res[:top_k])
    finally:
        tok.padding_side, tok.pad_token = old_side, old_pad
    return results


def agreement(ours, theirs):
    exact = sum([i for i, _ in a] == [i for i, _ in b] for a, b in zip(ours, theirs))
    diffs = [abs(x - y) for a, b in zip(ours, theirs) for (i, x), (j, y) in zip(a, b) if i == j]
    return int(exact), float(max(diffs)) if diffs else float("nan")


def timed(fn):
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--beams", type=int, default=10)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--history", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k/ (default: TRUSTREC_DATA, then the cache)")
    p.add_argument("--skip-hf-single", action="store_true", help="skip HF one-prompt-at-a-time")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "constrained_beam_vs_hf.json")
    args = p.parse_args()

    import torch
    import transformers

    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models.llm import TitleTrie, constrained_beam_search, load_causal_lm

    torch.set_num_threads(args.threads)
    ds = load_dataset("ml-100k", data_dir=args.data_dir)
    queries = split_leave_one_out(ds).eval_set("test").queries
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(len(queries), size=min(args.users, len(queries)), replace=False))
    prompts = make_prompts(ds, queries.histories, users, args.history)

    model, tok = load_causal_lm(args.model)
    model.eval()
    trie = TitleTrie(ds.items["title"].tolist(), tok, prefix=" ")
    nb, k, bs = args.beams, args.top_k, args.batch

    runs = {}
    with torch.inference_mode():
        constrained_beam_search(model, tok, prompts[:1], trie, num_beams=nb, top_k=k, batch_size=1)
        hf_search(model, tok, prompts[:1], trie, nb, k, 1)
        ours, t = timed(
            lambda: constrained_beam_search(model, tok, prompts, trie, num_beams=nb, top_k=k, batch_size=bs)
        )
        runs["trustrec"] = {"seconds": t, "batch_size": bs, "results": ours}
        if not args.skip_hf_single:
            res, t = timed(lambda: hf_search(model, tok, prompts, trie, nb, k, 1))
            runs["hf_single"] = {"seconds": t, "batch_size": 1, "results": res}
        if bs > 1:
            res, t = timed(lambda: hf_search(model, tok, prompts, trie, nb, k, bs))
            runs["hf_batched"] = {"seconds": t, "batch_size": bs, "results": res}

    n = len(prompts)
    for name, r in runs.items():
        r["users_per_s"] = n / r["seconds"]
        if name != "trustrec":
            r["exact_match"], r["max_score_diff"] = agreement(ours, r["results"])
    hf_names = [name for name in runs if name.startswith("hf_")]
    peer = max(hf_names, key=lambda name: runs[name]["users_per_s"])

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Constrained beam search, {args.model}, ml-100k, {n} test users, "
        f"{nb} beams, top-{k}, trie of {trie.n_items} titles (max {trie.max_length} tokens), "
        f"CPU {args.threads} threads"
    )
    for col in ["side", "batch", "seconds", "users/s", "trustrec / this", "top-10 identical", "max |Δ logp|"]:
        table.add_column(col, justify="left" if col == "side" else "right")
    ts = runs["trustrec"]["users_per_s"]
    for name, r in runs.items():
        label = {
            "trustrec": "trustrec constrained_beam_search",
            "hf_single": "HF generate, 1 prompt at a time",
            "hf_batched": "HF generate, batched, left padded",
        }[name]
        if name == peer:
            label += " (peer)"
        table.add_row(
            label,
            str(r["batch_size"]),
            f"{r['seconds']:.2f}",
            f"{r['users_per_s']:.2f}",
            "-" if name == "trustrec" else f"{ts / r['users_per_s']:.2f}x",
            "-" if name == "trustrec" else f"{r['exact_match']}/{n}",
            "-" if name == "trustrec" else f"{r['max_score_diff']:.2e}",
        )
    Console(width=200).print(table)

    report = {
        "command": command_line(),
        "config": {
            "model": args.model,
            "users": n,
            "user_indices": users.tolist(),
            "seed": args.seed,
            "beams": nb,
            "top_k": k,
            "batch_size": bs,
            "history": args.history,
            "threads": args.threads,
            "n_titles": trie.n_items,
            "trie_sequences": trie.n_sequences,
            "trie_max_length": trie.max_length,
            "prompt_format": "The user watched these movies, oldest first:\\n<titles>\\nNext movie:",
            "title_prefix": " ",
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "peer": peer,
        "speedup_vs_peer": ts / runs[peer]["users_per_s"],
        "runs": {name: {key: v for key, v in r.items() if key != "results"} for name, r in runs.items()},
        "top_items": {name: [[[int(i), float(s)] for i, s in res] for res in r["results"]] for name, r in runs.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
