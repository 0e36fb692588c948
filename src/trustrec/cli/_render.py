"""Tables several commands print; every text from data is escaped (never read as rich markup)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

__all__ = ["audit_table", "metrics_table", "stats_table"]

_STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "not_applicable": "dim", "no_threshold": "cyan"}


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
    table.add_row(
        "history length (min/q25/median/q75/q90/max)",
        " / ".join(f"{hl[k]:g}" for k in ("q0", "q25", "q50", "q75", "q90", "q100")),
    )
    table.add_row(
        "ratings",
        "yes ({min:g}-{max:g}, mean {mean:.2f})".format(**stats["rating"]) if stats.get("rating") else "no (implicit)",
    )
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
            cells.append(
                "-"
                if not v or v.get("mean") is None
                else escape(f"{v['mean']:.4f} [{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}]")
            )
        table.add_row(escape(str(model)), *cells)
    return table


def audit_table(entries, title: str) -> Table:
    table = Table(title=escape(title), header_style="bold")
    for col in ("dimension", "audit", "verdict"):
        table.add_column(col, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for e in entries:
        style = _STATUS_STYLE.get(e["status"], "")
        table.add_row(
            escape(str(e["dimension"])),
            escape(str(e["name"])),
            f"[{style}]{escape(str(e['status']))}[/]",
            escape(str(e["summary"])),
        )
    return table
