"""Draw an audit's :class:`~trustrec.audit.Plot` from its evidence table as inline SVG.

matplotlib (its SVG backend, text as paths) is imported on first use. Bad input never raises: a plot that
cannot be drawn (empty table, missing columns, no finite values) comes back as a note instead.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    from trustrec.audit import Plot

__all__ = ["RenderedPlot", "render_plot"]

MAX_BARS = 40  # categories drawn in a bar chart (the rest are counted in a note)
MAX_POINTS = 2000  # points drawn per line / scatter / Lorenz curve (evenly thinned beyond)
MAX_SERIES = 12  # lines or bar colours per plot
_LABEL_CHARS = 28  # tick labels longer than this are cut with an ellipsis
_fig_ids = itertools.count(1)


@dataclass(frozen=True)
class RenderedPlot:
    """A figure of the report, drawn.

    Parameters
    ----------
    title : str
        The figure's title.
    kind : str
        The plot kind (``bar``, ``line``, ``lorenz``, ``scatter``).
    svg : str or None
        The figure as an inline ``<svg>`` element; None when it could not be drawn.
    notes : tuple of str
        What was left out, or why nothing was drawn.
    """

    title: str
    kind: str
    svg: str | None
    notes: tuple[str, ...] = ()


def render_plot(plot: Plot, table: pd.DataFrame | None) -> RenderedPlot:
    """Render ``plot`` from ``table``; never raises on bad data.

    Parameters
    ----------
    plot : Plot
        The figure to draw (a :class:`trustrec.audit.Plot`).
    table : DataFrame or None
        The evidence table it reads; None: the table is missing.

    Returns
    -------
    RenderedPlot
        The figure, or no SVG with notes saying why it could not be drawn.
    """
    title = str(plot.title or plot.table)
    kind = str(plot.kind)
    try:
        return _render(plot, table, title, kind)
    except Exception as exc:  # noqa: BLE001  # a plot must never take the report down with it
        return RenderedPlot(title, kind, None, (f"could not draw this plot: {type(exc).__name__}: {exc}",))


def _render(plot, table, title: str, kind: str) -> RenderedPlot:
    if table is None:
        return RenderedPlot(title, kind, None, (f"no evidence table {plot.table!r} to draw from",))
    if kind not in ("bar", "line", "lorenz", "scatter"):
        return RenderedPlot(title, kind, None, (f"unknown plot kind {kind!r}",))
    missing = [c for c in (plot.x, plot.y) if c not in table.columns]
    if missing:
        columns = ", ".join(map(str, table.columns)) or "none"
        note = f"table {plot.table!r} has no column {', '.join(map(repr, missing))} (columns: {columns})"
        return RenderedPlot(title, kind, None, (note,))
    notes = []
    series = plot.series
    if series is not None and series not in table.columns:
        notes.append(f"series column {series!r} is missing; drawn as one series")
        series = None
    ci = (plot.ci_low, plot.ci_high)
    if any(c is not None and c not in table.columns for c in ci):
        notes.append(
            "CI columns "
            + ", ".join(repr(c) for c in ci if c is not None and c not in table.columns)
            + " are missing; drawn without error bars"
        )
        ci = (None, None)
    if ci[0] is None or ci[1] is None:
        ci = (None, None)

    frame = pd.DataFrame({"x": table[plot.x].to_numpy(), "y": _numeric(table[plot.y])})
    if series is not None:
        frame["series"] = table[series].astype("string").fillna("(missing)").to_numpy()
    if ci[0] is not None:
        frame["lo"], frame["hi"] = _numeric(table[ci[0]]), _numeric(table[ci[1]])
    if kind == "bar":
        frame = frame[frame["x"].notna()]
    else:
        frame["x"] = _numeric(table[plot.x]) if _numeric_like(table[plot.x]) else frame["x"]
        frame = frame[pd.notna(frame["x"])]
    finite = np.isfinite(frame["y"].to_numpy(float))
    dropped = int((~finite).sum())
    frame = frame[finite]
    if frame.empty:
        why = "the table is empty" if len(table) == 0 else "no row has a finite value to draw"
        return RenderedPlot(title, kind, None, (f"no data: {why}",))
    if dropped:
        notes.append(f"{dropped} row(s) without a finite value were left out")

    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.subplots()
        notes += {"bar": _bar, "line": _line, "lorenz": _lorenz, "scatter": _scatter}[kind](ax, frame)
        ax.set_title(_short(title, 70), fontsize=10)
        ax.set_xlabel(_short(plot.x_label or plot.x, 60))
        ax.set_ylabel(_short(plot.y_label or plot.y, 60))
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.set_axisbelow(True)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return RenderedPlot(title, kind, _inline_svg(buf.getvalue(), f"f{next(_fig_ids)}"), tuple(notes))


# -- kinds ---------------------------------------------------------------------------------------------
def _bar(ax, frame: pd.DataFrame) -> list[str]:
    notes = []
    frame = frame.assign(x=frame["x"].map(str))
    cats = list(dict.fromkeys(frame["x"]))
    if len(cats) > MAX_BARS:
        notes.append(f"showing the first {MAX_BARS} of {len(cats)} categories")
        cats = cats[:MAX_BARS]
        frame = frame[frame["x"].isin(cats)]
    groups = [(None, frame)] if "series" not in frame else list(frame.groupby("series", sort=False))
    if len(groups) > MAX_SERIES:
        notes.append(f"showing the first {MAX_SERIES} of {len(groups)} series")
        groups = groups[:MAX_SERIES]
    pos = {c: i for i, c in enumerate(cats)}
    width = 0.8 / len(groups)
    for j, (name, part) in enumerate(groups):
        part = part.drop_duplicates("x", keep="first")
        xs = np.array([pos[c] for c in part["x"]], float) - 0.4 + width * (j + 0.5)
        ys = part["y"].to_numpy(float)
        ax.bar(xs, ys, width=width * 0.95, label=None if name is None else _short(str(name), 30))
        if "lo" in part:
            lo, hi = part["lo"].to_numpy(float), part["hi"].to_numpy(float)
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                err = np.vstack([np.clip(ys[ok] - lo[ok], 0, None), np.clip(hi[ok] - ys[ok], 0, None)])
                ax.errorbar(xs[ok], ys[ok], yerr=err, fmt="none", ecolor="#222", elinewidth=1, capsize=3)
    _category_ticks(ax, cats)
    ax.axhline(0, color="#444", linewidth=0.6)
    if len(groups) > 1:
        ax.legend(fontsize=8, frameon=False)
    return notes


def _lines(ax, frame: pd.DataFrame, style: dict) -> list[str]:
    notes = []
    categorical = not pd.api.types.is_numeric_dtype(frame["x"])
    if categorical:
        frame = frame.assign(x=frame["x"].map(str))
        cats = list(dict.fromkeys(frame["x"]))
        if len(cats) > MAX_BARS:
            notes.append(f"showing the first {MAX_BARS} of {len(cats)} x values")
            cats = cats[:MAX_BARS]
            frame = frame[frame["x"].isin(cats)]
        pos = {c: i for i, c in enumerate(cats)}
        frame = frame.assign(x=frame["x"].map(pos).astype(float))
        _category_ticks(ax, cats)
    groups = [(None, frame)] if "series" not in frame else list(frame.groupby("series", sort=False))
    if len(groups) > MAX_SERIES:
        notes.append(f"showing the first {MAX_SERIES} of {len(groups)} series")
        groups = groups[:MAX_SERIES]
    for name, part in groups:
        if style.get("sort", True):
            part = part.sort_values("x", kind="stable")
        if len(part) > MAX_POINTS:
            notes.append(f"{len(part)} points thinned to {MAX_POINTS}")
            part = part.iloc[np.unique(np.linspace(0, len(part) - 1, MAX_POINTS).round().astype(int))]
        label = style.get("label") if name is None else _short(str(name), 30)
        xs, ys = part["x"].to_numpy(float), part["y"].to_numpy(float)
        if style.get("scatter"):
            ax.scatter(xs, ys, s=14, alpha=0.75, label=label)
        else:
            marker = "o" if len(part) <= 60 else None
            (line,) = ax.plot(xs, ys, marker=marker, markersize=4, linewidth=1.5, label=label)
            if "lo" in part:
                lo, hi = part["lo"].to_numpy(float), part["hi"].to_numpy(float)
                ok = np.isfinite(lo) & np.isfinite(hi)
                if ok.any():
                    ax.fill_between(xs[ok], lo[ok], hi[ok], color=line.get_color(), alpha=0.15, linewidth=0)
    if len(groups) > 1 or style.get("legend"):
        ax.legend(fontsize=8, frameon=False)
    return notes


def _line(ax, frame):
    return _lines(ax, frame, {})


def _scatter(ax, frame):
    return _lines(ax, frame, {"scatter": True, "sort": False})


def _lorenz(ax, frame):
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", linewidth=1, label="equality")
    notes = _lines(ax, frame, {"legend": True, "label": "observed"})
    ax.set_xlim(0, max(1.0, float(np.nanmax(_as_float(frame["x"])))))
    ax.set_ylim(0, max(1.0, float(frame["y"].max())))
    return notes


# -- helpers -------------------------------------------------------------------------------------------
def _category_ticks(ax, cats: list[str]) -> None:
    """Category names as x tick labels: flat when few, slanted when some, vertical (and a taller
    figure) when many."""
    labels = [_short(c, _LABEL_CHARS) for c in cats]
    ax.set_xticks(range(len(cats)))
    longest = max((len(t) for t in labels), default=0)
    if len(cats) <= 4 and longest <= 16:
        ax.set_xticklabels(labels, fontsize=8)
    elif len(cats) <= 12:
        ax.set_xticklabels(labels, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
    if len(cats) > 4 and longest > 12:
        ax.figure.set_size_inches(6.4, 3.6 + min(longest, _LABEL_CHARS) * 0.06)


def _numeric(col: pd.Series) -> pd.Series:
    return pd.to_numeric(col, errors="coerce").astype(float)


def _numeric_like(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return True
    values = col.dropna()
    return len(values) > 0 and pd.to_numeric(values, errors="coerce").notna().all()


def _as_float(col: pd.Series) -> np.ndarray:
    return pd.to_numeric(col, errors="coerce").to_numpy(float)


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# matplotlib settings for every figure: text as paths (no fonts needed in the browser, no text markup
# in the SVG), no mathtext (item titles may contain "$"), a fixed hash salt (stable ids). Figures are
# made with matplotlib.figure.Figure, not pyplot: no global figure state, no backend switch.
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",
    "text.parse_math": False,
    "svg.hashsalt": "trustrec",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_COMMENT = re.compile(r"<!--.*?-->\s*", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(url\(#|xlink:href="#|href="#)([^")]+)')


def _inline_svg(svg: str, prefix: str) -> str:
    """An SVG document as an element to put in HTML: no XML prolog or comments, ids prefixed so that
    several figures on one page do not share them, sized by CSS (viewBox kept)."""
    svg = _COMMENT.sub("", _PROLOG.sub("", svg, count=1))
    svg = _METADATA.sub("", svg)
    svg = re.sub(r'\s+xmlns:(?:dc|cc|rdf)="[^"]*"', "", svg)
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)
    svg = re.sub(r'<svg\b([^>]*?)\swidth="[^"]*"\s+height="[^"]*"', r"<svg\1", svg, count=1)
    return svg.replace("<svg ", '<svg class="plot" role="img" ', 1).strip()
