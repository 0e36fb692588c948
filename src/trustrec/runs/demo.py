"""The demo as a library call: ml-100k's statistics and leave-one-out split, MostPopular vs SASRec
accuracy (two run directories), one test user's history next to the top-10 of SASRec, the LLM
ranker and the generative LLM, then every trust audit of both runs and their trust reports.

:func:`run_demo` does the work and returns a :class:`DemoResult` (also written as ``demo.json``);
what happens along the way goes to a :class:`DemoObserver` (``trustrec demo`` prints it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trustrec.errors import TrustrecError

__all__ = ["DEMO_METRICS", "DemoObserver", "DemoResult", "SideBySide", "demo_row", "run_demo", "side_by_side"]

#: The metrics of the demo's two runs.
DEMO_METRICS = ("ndcg@10", "hr@10", "mrr@10", "coverage@10", "aplt@10")


class DemoObserver:
    """What :func:`run_demo` reports while it works; every method does nothing by default."""

    def dataset(self, stats: dict) -> None:
        """ml-100k is loaded: its statistics (``Dataset.stats()``)."""

    def split(self, split, sizes: dict) -> None:
        """The leave-one-out split and its sizes (interactions and users per part)."""

    def accuracy(self, results: Mapping[str, dict], metrics: list[str]) -> None:
        """Both runs are evaluated: each model's ``metrics.json`` content, the accuracy metrics."""

    def llm_started(self, llm_model: str, sft_examples: int) -> None:
        """The LLM recommenders are about to be built (minutes on a CPU)."""

    def side_by_side(self, result: SideBySide) -> None:
        """One user's history and the three top-10 lists."""

    def audited(self, name: str, index: dict) -> None:
        """The audits of one run are done: its audit index."""


@dataclass(frozen=True)
class SideBySide:
    """One test user's history and top-10 lists (item indices of the training dataset)."""

    user: str
    history: list[int]
    target: set[int]
    recommendations: dict[str, list[int]]
    titles: list[str]
    llm_model: str
    sft_examples: int

    def to_dict(self) -> dict:
        t = self.titles
        return {
            "user": self.user,
            "history": [t[i] for i in self.history],
            "target": [t[i] for i in self.target],
            "recommendations": {name: [t[i] for i in v] for name, v in self.recommendations.items()},
            "llm_model": self.llm_model,
            "sft_examples": self.sft_examples,
        }


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced; :meth:`to_dict` is the content of ``demo.json``."""

    dataset: dict
    split: dict
    results: dict[str, dict]
    run_dirs: dict[str, Path]
    side_by_side: SideBySide | None
    audits: dict[str, dict]
    reports: dict[str, str]
    path: Path
    metrics: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "split": self.split,
            "results": {
                n: {k: r[k] for k in ("metrics", "aggregates", "counts", "settings")} for n, r in self.results.items()
            },
        }
        if self.side_by_side is not None:
            out["side_by_side"] = self.side_by_side.to_dict()
        out["reports"] = dict(self.reports)
        return out


def demo_row(split, user: str | None) -> int:
    """Row of the test set to show: the given raw user id's, else the first."""
    import numpy as np

    if user is None:
        return 0
    index = int(split.train_dataset().user_index([user])[0])  # unknown ids raise a DataError naming them
    rows = np.flatnonzero(split.eval_set("test").queries.users == index)
    if not len(rows):
        raise TrustrecError(f"demo: user {user!r} has no test interaction in ml-100k's split")
    return int(rows[0])


def side_by_side(
    split, sasrec, llm_model: str, sft_examples: int, row: int, observer: DemoObserver | None = None
) -> SideBySide:
    """One test user's recent history, then top-10 of SASRec, the LLM ranker (zero-shot over
    SASRec's top-20) and the fine-tuned generative LLM; the held-out item is the target."""
    from trustrec.models import FitOptions, make_model
    from trustrec.models.llm import LLMRanker

    observer = observer or DemoObserver()
    test = split.eval_set("test")
    train = split.train_dataset()
    one = test[[row]]
    titles = train.items["title"].fillna("").tolist()
    history = [int(i) for i in one.queries.histories.row(0)]
    target = {int(i) for i in one.targets.row(0)}
    observer.llm_started(llm_model, sft_examples)
    ranker = LLMRanker.from_fitted(sasrec, train, model=llm_model, n_candidates=20, n_permutations=3)
    generative = make_model(
        "llm_generative",
        model=llm_model,
        max_train_examples=sft_examples,
        epochs=1,
        learning_rate=5e-5,
        max_history_tokens=128,
        targets_per_user=3,
        autocast="auto",  # bf16 where the CPU runs it natively (AMX), float32 elsewhere
    ).fit(split, FitOptions())
    recs = {
        name: [int(i) for i in model.recommend(one.queries, 10).row(0)]
        for name, model in (("SASRec", sasrec), ("LLM ranker", ranker), ("generative LLM", generative))
    }
    raw_user = train.user_ids[int(one.queries.users[0])]
    result = SideBySide(str(raw_user), history, target, recs, titles, llm_model, sft_examples)
    observer.side_by_side(result)
    return result


def _split_sizes(split) -> dict:
    sizes = split.sizes()
    return {
        "train": sizes["train"],
        "train_users": len(set(split.train.user.tolist())),
        "valid": sizes["valid"],
        "valid_users": sizes["valid_users"],
        "test": sizes["test"],
        "test_users": sizes["test_users"],
    }


def _is_retraining(cls) -> bool:
    """An audit that retrains the model (minutes per model: left out unless asked for)."""
    from trustrec.audit import RetrainingAudit

    return issubclass(cls, RetrainingAudit)


def run_demo(
    *,
    data_dir=None,
    out: str | Path = "runs/demo",
    epochs: int = 10,
    llm: bool = True,
    llm_model: str = "smollm2-135m-instruct",
    sft_examples: int = 256,
    user: str | None = None,
    audit_users: int = 200,
    retraining_audits: bool = False,
    observer: DemoObserver | None = None,
) -> DemoResult:
    """Run the demo (module documentation); writes the two run directories, their audits and trust
    reports under ``out``, and ``out/demo.json``.

    Every requirement is checked before the first minute of work: with ``llm``, the 'llm' extra and
    the language model (resolved, fetched once, now). ``user`` is a raw user id to show (default:
    the first test user); ``audit_users`` caps the users of the audits beyond fairness and
    factuality; ``retraining_audits`` adds the audits that retrain the model."""
    from trustrec._cache import atomic_write_text
    from trustrec.audit import available_audits
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.models import Recommender
    from trustrec.report import write_report
    from trustrec.runs import run_audits, run_experiment

    observer = observer or DemoObserver()
    out = Path(out)
    if llm:
        from trustrec._extras import require_extra
        from trustrec.models.llm import resolve_model

        require_extra("llm", "the demo's LLM recommenders (skip them with --no-llm)")
        resolve_model(llm_model)  # resolved (fetched once) now: a model that cannot load fails here
    ds = load_dataset("ml-100k", data_dir=data_dir)
    stats = ds.stats()
    observer.dataset(stats)
    split = split_leave_one_out(ds)
    shown = demo_row(split, user) if llm else None
    observer.split(split, _split_sizes(split))
    metrics = list(DEMO_METRICS)
    results, run_dirs = {}, {}
    for name, params in (("most_popular", {}), ("sasrec", {"epochs": epochs})):
        config = {
            "name": f"demo-{name}",
            "dataset": {"name": "ml-100k", "data_dir": None if data_dir is None else str(data_dir)},
            "split": {"method": "leave_one_out"},
            "model": {"name": name, "params": params},
            "eval": {"metrics": metrics, "n_boot": 1000},
            "seed": 0,
        }
        run = run_experiment(config, out, log=lambda *_: None)
        results[name], run_dirs[name] = run.metrics, run.path
    accuracy = [m for m in metrics if m in results["sasrec"]["metrics"]]
    observer.accuracy(results, accuracy)
    shown_side = None
    if llm:
        assert shown is not None  # set above when llm
        sasrec = Recommender.load(run_dirs["sasrec"] / "checkpoint")
        shown_side = side_by_side(split, sasrec, llm_model, sft_examples, shown, observer)
    chosen = {n: cls for n, cls in available_audits().items() if retraining_audits or not _is_retraining(cls)}
    sampled = {
        n: {"max_users": audit_users} for n, cls in chosen.items() if cls.dimension not in ("fairness", "factuality")
    }
    audits, reports = {}, {}
    for name, run_dir in run_dirs.items():
        audits[name] = run_audits(run_dir, names=list(chosen), params=sampled, log=lambda *_: None)
        observer.audited(name, audits[name])
        reports[name] = str(write_report(run_dir))
    result = DemoResult(
        stats, split.describe(), results, run_dirs, shown_side, audits, reports, out / "demo.json", accuracy
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(result.path, json.dumps(result.to_dict(), indent=1, default=str))
    return result
