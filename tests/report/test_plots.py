import re

import numpy as np
import pandas as pd
import pytest

from trustrec.audit import Plot
from trustrec.report import render_plot
from trustrec.report._plots import MAX_BARS, MAX_POINTS


def _ids(svg: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', svg))


@pytest.mark.parametrize("kind", ["bar", "line", "lorenz", "scatter"])
def test_every_kind_draws_an_inline_svg(kind):
    table = pd.DataFrame(
        {
            "x": [0.0, 0.25, 0.5, 1.0],
            "y": [0.0, 0.1, 0.3, 1.0],
            "lo": [0, 0.05, 0.2, 0.9],
            "hi": [0, 0.15, 0.4, 1.0],
            "s": ["a", "a", "b", "b"],
        }
    )
    r = render_plot(Plot(kind, "t", "x", "y", f"a {kind}", series="s", ci_low="lo", ci_high="hi"), table)
    assert r.svg is not None and r.svg.startswith("<svg") and r.svg.endswith("</svg>")
    assert "<?xml" not in r.svg and "<!DOCTYPE" not in r.svg and "<!--" not in r.svg
    assert "<script" not in r.svg and "http://" not in r.svg.replace("http://www.w3.org/", "")


@pytest.mark.parametrize(
    "table, note",
    [
        (
            pd.DataFrame({"x": pd.Series([], dtype=float), "y": pd.Series([], dtype=float)}),
            "no data: the table is empty",
        ),
        (pd.DataFrame({"x": [1, 2], "y": [np.nan, None]}), "no data: no row"),
        (pd.DataFrame({"x": [1, 2], "y": [np.inf, -np.inf]}), "no data: no row"),
        (pd.DataFrame({"x": [None, None], "y": [1.0, 2.0]}), "no data: no row"),
        (pd.DataFrame({"x": ["a", "b"], "y": ["n/a", "?"]}), "no data: no row"),
        (pd.DataFrame({"x": [1, 2]}), "no column 'y'"),
        (pd.DataFrame({"a": [1], "b": [2]}), "no column 'x', 'y'"),
        (None, "no evidence table"),
    ],
)
@pytest.mark.parametrize("kind", ["bar", "line", "lorenz", "scatter"])
def test_nothing_to_draw_gives_a_note(kind, table, note):
    r = render_plot(Plot(kind, "t", "x", "y", "edge"), table)
    assert r.svg is None and any(note in n for n in r.notes), r.notes


def test_nan_none_and_text_values_are_left_out_with_a_note():
    table = pd.DataFrame(
        {
            "x": ["a", "b", "c", "d"],
            "y": [1.0, None, "oops", np.nan],
            "lo": [0.5, None, np.nan, 1],
            "hi": [np.nan, None, 2, 3],
        }
    )
    r = render_plot(Plot("bar", "t", "x", "y", "partly empty", ci_low="lo", ci_high="hi"), table)
    assert r.svg is not None and "3 row(s) without a finite value were left out" in r.notes


def test_missing_optional_columns_draw_without_them():
    table = pd.DataFrame({"x": [1, 2, 3], "y": [1.0, 2.0, 3.0]})
    r = render_plot(Plot("line", "t", "x", "y", "t", series="grp", ci_low="lo", ci_high="hi"), table)
    assert r.svg is not None
    assert any("series column 'grp' is missing" in n for n in r.notes)
    assert any("CI columns 'lo', 'hi' are missing" in n for n in r.notes)


def test_hostile_and_mathtext_labels_do_not_break_drawing():
    table = pd.DataFrame(
        {"title": ["<script>alert(1)</script>", "$5 $", "a_b^c $\\frac{", "x" * 500], "v": [1, 2, 3, 4]}
    )
    r = render_plot(Plot("bar", "t", "title", "v", "<b>$title$</b>", x_label="$", y_label="</svg>"), table)
    assert r.svg is not None and r.notes == ()
    assert "<script" not in r.svg and "alert" not in r.svg  # text is drawn as paths


def test_caps_bars_and_points():
    many = pd.DataFrame({"x": [f"item {i}" for i in range(100)], "y": np.arange(100.0)})
    r = render_plot(Plot("bar", "t", "x", "y", "many bars"), many)
    assert r.svg is not None and f"showing the first {MAX_BARS} of 100 categories" in r.notes
    dense = pd.DataFrame({"x": np.linspace(0, 1, 5 * MAX_POINTS), "y": np.linspace(0, 1, 5 * MAX_POINTS)})
    r = render_plot(Plot("lorenz", "t", "x", "y", "dense"), dense)
    assert r.svg is not None and f"{5 * MAX_POINTS} points thinned to {MAX_POINTS}" in r.notes
    assert len(r.svg) < 200_000


def test_categorical_x_on_a_line_plot():
    table = pd.DataFrame({"x": ["none", "weak", "strong"], "y": [0.3, 0.2, 0.1]})
    assert render_plot(Plot("line", "t", "x", "y", "levels"), table).svg is not None


def test_unknown_kind_is_a_note():
    r = render_plot(Plot("pie", "t", "x", "y", "pie"), pd.DataFrame({"x": [1], "y": [1]}))
    assert r.svg is None and "unknown plot kind" in r.notes[0]


def test_figures_do_not_share_ids():
    table = pd.DataFrame({"x": [1, 2], "y": [1.0, 2.0]})
    a = render_plot(Plot("line", "t", "x", "y", "a"), table).svg
    b = render_plot(Plot("line", "t", "x", "y", "a"), table).svg
    assert _ids(a) and not _ids(a) & _ids(b)
    for ref in re.findall(r'(?:url\(#|href="#)([^")]+)', a):
        assert ref in _ids(a), f"dangling reference #{ref}"
