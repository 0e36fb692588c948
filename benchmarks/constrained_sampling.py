"""Trie-constrained sampling: trustrec's sampler (the prompt run once, its KV cache repeated for the
``n`` samples) next to Hugging Face ``generate(do_sample=True, num_return_sequences=n,
prefix_allowed_tokens_fn=...)`` (the prompt copied ``n`` times before its forward pass), on
SmolLM2-135M with the catalog titles and BIGRec-style prompts of a real dataset. Prints sampled
titles per second for both and the ratio, per ``n``.

    python benchmarks/constrained_sampling.py --dataset amazon-industrial --n 4 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _command import command_line
from _d3_protocol import load_data

from trustrec.models.llm import LocalBackend, TitleTrie, load_causal_lm


def hf_sample(model, tok, prompts, trie, n, seed):
    """The peer: ``generate`` with ``prefix_allowed_tokens_fn``, as trustrec sampled before."""
    import torch

    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    tok.padding_side = "left"
    out = []
    with torch.inference_mode():
        torch.manual_seed(seed)
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=True)
        width = enc["input_ids"].shape[1]

        def allowed(_batch_id, ids):
            return trie.allowed_tokens(ids[width:].tolist()) or [trie.end_id]

        generated = model.generate(
            **enc,
            do_sample=True,
            num_beams=1,
            num_return_sequences=n,
            max_new_tokens=trie.max_length,
            pad_token_id=pad,
            eos_token_id=trie.end_id,
            top_k=0,
            prefix_allowed_tokens_fn=allowed,
        )
        out = generated[:, width:].tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="amazon-industrial")
    parser.add_argument("--n", type=int, nargs="+", default=[4, 40], help="samples per prompt")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(command_line())
    dataset = load_data(args.dataset)
    titles = dataset.items["title"].astype(str).tolist()
    model, tok = load_causal_lm("smollm2-135m-instruct")
    trie = TitleTrie([f'"{t}"\n' for t in titles], tok)
    histories = dataset.histories()
    prompts = []
    for u in range(args.prompts):
        seen = ", ".join(f'"{titles[i]}"' for i in histories.row(u)[-10:])
        prompts.append(f"The user has bought: {seen}. The next item the user will buy:\n")
    backend = LocalBackend.from_model(model, tok)
    print(f"{len(prompts)} prompts of {args.dataset}, {trie.n_sequences} titles (longest {trie.max_length} tokens)")
    print(f"{'n':>4} {'trustrec titles/s':>18} {'HF generate titles/s':>21} {'ratio':>6}")
    for n in args.n:
        ours, peer = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            backend.sample_constrained(prompts, trie, n, seed=r, batch_size=len(prompts))
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hf_sample(model, tok, prompts, trie, n, seed=r)
            peer.append(time.perf_counter() - t0)
        titles_done = n * len(prompts)
        a, b = titles_done / np.median(ours), titles_done / np.median(peer)
        print(f"{n:>4} {a:>18.1f} {b:>21.1f} {a / b:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
