"""``trustrec demo``: parses the options, runs :func:`trustrec.runs.demo.run_demo` and prints
what it reports (the demo's logic lives in the library)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import DataDir, app, console
from trustrec.cli._render import audit_table, metrics_table, stats_table
from trustrec.runs.demo import DemoObserver

__all__ = ["demo"]


class _Printer(DemoObserver):
    """Prints each step of the demo as it happens."""

    def dataset(self, stats):
        console.print(stats_table(stats, "ml-100k"))

    def split(self, split, sizes):
        table = Table(title="leave-one-out split (by time)", header_style="bold")
        for col in ("part", "interactions", "users"):
            table.add_column(col, justify="right")
        for part in ("train", "valid", "test"):
            table.add_row(part, f"{sizes[part]:,}", f"{sizes[part + '_users']:,}")
        console.print(table)

    def accuracy(self, results, metrics):
        console.print(
            metrics_table(
                {n: r["metrics"] for n, r in results.items()},
                metrics,
                "test accuracy, full ranking, seen items masked (95% bootstrap CI)",
            )
        )
        for name, r in results.items():
            agg = ", ".join(f"{k} {v:.3f}" for k, v in r["aggregates"].items())
            console.print(f"{name}: {agg}")

    def llm_started(self, llm_model, sft_examples):
        console.print(
            f"[bold]{escape(llm_model)}[/bold]: zero-shot ranker over SASRec's top-20, and a generative "
            f"model fine-tuned on {sft_examples} examples (CPU: takes a few minutes)"
        )

    def side_by_side(self, result):
        titles, history, target = result.titles, result.history, result.target
        hist_table = Table(
            title=escape(f"user {result.user}: last {min(10, len(history))} of {len(history)} items, oldest first"),
            header_style="bold",
        )
        hist_table.add_column("#", justify="right")
        hist_table.add_column("title")
        for n, i in enumerate(history[-10:], start=max(1, len(history) - 9)):
            hist_table.add_row(str(n), escape(str(titles[i])))
        console.print(hist_table)
        table = Table(title="top-10 side by side (* = the held-out next item)", header_style="bold")
        table.add_column("rank", justify="right")
        for name in result.recommendations:
            table.add_column(name)

        def mark(i):
            return escape(f"* {titles[i]}" if i in target else str(titles[i]))

        for r in range(10):
            table.add_row(str(r + 1), *[mark(v[r]) if r < len(v) else "" for v in result.recommendations.values()])
        console.print(table)

    def audited(self, name, index):
        console.print(audit_table(index["audits"], f"trust audits of {name}"))


@app.command()
def demo(
    data_dir: Path | None = DataDir,
    out: Path = typer.Option(  # noqa: B008  # typer declares parameters by their defaults
        Path("runs/demo"), "--out", help="Folder for the demo's run directories, trust reports and demo.json."
    ),
    epochs: int = typer.Option(10, help="SASRec training epochs."),
    llm: bool = typer.Option(True, "--llm/--no-llm", help="Also show one user's LLM recommendations."),
    llm_model: str = typer.Option("smollm2-135m-instruct", help="Language model of the LLM recommenders."),
    sft_examples: int = typer.Option(256, help="Fine-tuning examples of the generative recommender."),
    user: str | None = typer.Option(None, help="Raw user id to show (default: the first test user)."),
    audit_users: int = typer.Option(200, help="Test users sampled by the audits beyond fairness and factuality."),
    retraining_audits: bool = typer.Option(
        False,
        "--retraining-audits/--no-retraining-audits",
        help="Also run the audits that retrain the model (poisoning, feedback "
        "loop, membership inference, unlearning): minutes per model.",
    ),
):
    """The front door: ml-100k stats and split, MostPopular vs SASRec accuracy, then one user's
    history next to the recommendations of SASRec, the LLM ranker and the generative LLM; ends
    by auditing both models on every trust dimension and writing each run's trust report.

    ml-100k resolves offline through the package index if no local copy or cache has it; the LLM
    resolves offline from its package-index wheel."""
    from trustrec.runs.demo import run_demo

    result = run_demo(
        data_dir=data_dir,
        out=out,
        epochs=epochs,
        llm=llm,
        llm_model=llm_model,
        sft_examples=sft_examples,
        user=user,
        audit_users=audit_users,
        retraining_audits=retraining_audits,
        observer=_Printer(),
    )
    for name, path in result.reports.items():
        console.print(f"trust report ({name}): {path}")
    console.print(f"written: {result.path}")
