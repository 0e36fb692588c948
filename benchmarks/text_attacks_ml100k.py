"""Text attacks on an LLM ranker over ml-100k (issue 7): how far each attack pushes its target, and
which defence holds, next to the text-blind retriever it re-ranks (the peer: it cannot be moved by
text at all, so its lift is 0 by construction and the LLM's lift is the price of reading text).

The ranker is SmolLM2-135M-Instruct (``--model``) scoring ``--n-candidates`` candidates (the user's
held-out item, the attacked target for exposed users, random unseen items) for ``--users`` seeded
test users, after a MostPopular retriever (``--retriever``). Every attack of the ``text_attack``
audit is measured undefended, with the prompt's injection guard (``flag``, ``strip``) and with
retriever fusion (w = 0.5). The injection detector's false-positive rate is measured on the whole
ml-100k catalog. Prints one table and writes benchmarks/results/text_attacks_ml100k.json.

    python benchmarks/text_attacks_ml100k.py --users 40
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _command import command_line
from rich.console import Console
from rich.table import Table

from trustrec.audit import TextAttackAudit
from trustrec.data import load_dataset, split_leave_one_out
from trustrec.models import FitOptions, make_model

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--targets", type=int, default=10)
    ap.add_argument("--n-candidates", type=int, default=20)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--permutations", type=int, default=1)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--retriever", default="most_popular")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "text_attacks_ml100k.json"))
    args = ap.parse_args()
    console = Console()

    ds = load_dataset("ml-100k")
    split = split_leave_one_out(ds)
    t0 = time.perf_counter()
    ranker = make_model(
        "llm_ranker",
        model=args.model,
        retriever={"name": args.retriever},
        n_candidates=args.n_candidates,
        n_permutations=args.permutations,
    ).fit(split, FitOptions(seed=0, progress=False))
    audit = TextAttackAudit(
        max_users=args.users, n_targets=args.targets, k=args.k, n_candidates=args.n_candidates, n_boot=500
    )
    result = audit.run(ranker, split, progress=True)
    seconds = time.perf_counter() - t0
    table = result.evidence["by_setting"]

    out = Table(
        title=f"text attacks on llm_ranker ({args.model}) vs its text-blind retriever, ml-100k, "
        f"{result.settings['n_exposed']} exposed / {result.settings['n_untouched']} untouched users"
    )
    for col in ("attack", "defence", "target rate", "clean", "lift", "95% CI", "p", "rank gain", "untouched NDCG drop"):
        out.add_column(col, justify="left" if col in ("attack", "defence") else "right")
    for row in table.itertuples():
        if row.attack == "clean":
            continue
        ci = "" if row.ci_low is None or row.ci_low != row.ci_low else f"{row.ci_low:+.2f}..{row.ci_high:+.2f}"
        out.add_row(
            row.attack,
            row.defence,
            f"{row.target_rate:.3f}",
            f"{row.clean_rate:.3f}",
            f"{row.target_lift:+.3f}",
            ci,
            "" if row.p_value is None or row.p_value != row.p_value else f"{row.p_value:.2g}",
            f"{row.rank_gain:+.2f}",
            f"{row.ndcg_drop_untouched:+.4f}",
        )
    console.print(out)
    console.print(
        f"peer: the {args.retriever} retriever alone reads no item text, so every attack's lift on it is "
        "+0.000 by construction",
        markup=False,
    )
    detector = result.evidence["detector"]
    fpr = result.estimates["detector_false_positive_rate"]
    console.print(
        "injection detector: flagged share of attacked texts "
        + ", ".join(f"{r.attack} {r.flagged_share:.2f}" for r in detector.itertuples())
        + f"; false positives on the clean catalog {fpr.value:.4f} of {fpr.n} titles",
        markup=False,
    )
    console.print(f"audit time {seconds:.0f} s, {result.settings['n_llm_scores']} LLM candidate scores", markup=False)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "command": command_line(),
                "machine": {"python": platform.python_version(), "processor": platform.machine()},
                "seconds": seconds,
                "settings": {k: v for k, v in result.settings.items() if k not in ("config", "model_config")},
                "by_setting": table.to_dict("records"),
                "detector": detector.to_dict("records"),
                "detector_false_positive_rate": fpr.value,
                "summary": result.summary,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
