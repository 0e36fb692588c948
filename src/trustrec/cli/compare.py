"""``trustrec compare RUN_A RUN_B``: two runs on the users both evaluated, with paired tests."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from trustrec.cli._app import app, console

__all__ = ["compare"]


@app.command()
def compare(
    run_a: Path = typer.Argument(..., help="Run directory A."),  # noqa: B008  # typer declares parameters by their defaults
    run_b: Path = typer.Argument(..., help="Run directory B."),  # noqa: B008  # typer declares parameters by their defaults
    json_out: Path | None = typer.Option(None, "--json", help="Also write the comparison as JSON."),  # noqa: B008  # typer declares parameters by their defaults
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

    def fmt_ci(m, lo, hi):
        return escape(f"{m:.4f} [{lo:.4f}, {hi:.4f}]") if lo is not None and lo == lo else f"{m:.4f}"

    for metric, r in frame.iterrows():
        table.add_row(
            escape(str(metric)),
            str(int(r.n_users)),
            fmt_ci(r.a_mean, r.a_ci_low, r.a_ci_high),
            fmt_ci(r.b_mean, r.b_ci_low, r.b_ci_high),
            f"{r.diff_b_minus_a:+.4f}",
            f"{r.t_pvalue:.3g}",
            f"{r.wilcoxon_pvalue:.3g}",
        )
    console.print(table)
    side = schemes_side_by_side(frame) if several else None
    if side is not None and not side.empty:
        schemes = [c[len("b - a [") : -1] for c in side.columns if c.startswith("b - a [")]
        t = Table(title="evaluation schemes side by side (A / B, B - A)", header_style="bold")
        t.add_column("metric")
        for sc in schemes:
            t.add_column(escape(sc), justify="right")
        t.add_column("same winner", justify="right")
        for metric, r in side.iterrows():
            cells = [
                f"{r[f'a [{sc}]']:.4f} / {r[f'b [{sc}]']:.4f} ({r[f'b - a [{sc}]']:+.4f})"
                if r.get(f"a [{sc}]") == r.get(f"a [{sc}]")
                else "\u2013"
                for sc in schemes
            ]
            t.add_row(escape(str(metric)), *map(escape, cells), "yes" if r.schemes_agree else "[bold red]no[/]")
        console.print(t)
    if json_out:
        atomic_write_text(json_out, frame.reset_index().to_json(orient="records", indent=1))
