"""Bidirectional control characters from data cannot reorder the HTML report's own text."""

from __future__ import annotations

import json

import pandas as pd

from tests.report.conftest import make_run
from trustrec.audit import AuditResult, Estimate, Plot, Verdict
from trustrec.report import write_report
from trustrec.report._html import BIDI_CONTROLS, neutralize_bidi

RLO, PDF, RLI, PDI, LRM, RLM = "\u202e", "\u202c", "\u2067", "\u2069", "\u200e", "\u200f"
EVIL_TITLE = f"Toy {RLO}yrotS{PDF} {RLI}txet{PDI}{LRM}{RLM} \u202a\u202b\u202d\u2066\u2068 (1995)"


def _bidi_run(tmp_path):
    run = make_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["model"] = f"sas{RLO}cer"
    metrics["dataset"] = f"ml{RLI}-100k{PDI}"
    (run / "metrics.json").write_text(json.dumps(metrics))
    items = pd.DataFrame(
        {"item": [0, 1], "title": [EVIL_TITLE, "plain"], "exposure": [3, 4], f"col{RLO}umn": ["a", "b"]}
    )
    result = AuditResult(
        f"bidi{RLO}_audit",
        "fairness",
        {f"gap{RLO}": Estimate(0.1, 0.0, 0.2, 10)},
        {"items": items},
        {"k": 10, "note": f"set{RLO}ting"},
        Verdict("warn", (f"reason {RLO}txet{PDF}",)),
        (f"warning {RLI}x{PDI}",),
        (Plot("bar", "items", "title", "exposure", f"exposure {RLO}by title"),),
        f"summary {RLO}esrever{PDF} end",
    )
    result.save(run / "audits" / "bidi_audit")
    index = json.loads((run / "audits" / "index.json").read_text())
    index["audits"].append(
        {
            "name": result.audit,
            "dimension": "fairness",
            "status": "warn",
            "summary": result.summary,
            "dir": "bidi_audit",
        }
    )
    (run / "audits" / "index.json").write_text(json.dumps(index))
    return run


def test_no_bidi_control_survives_anywhere_in_the_page(tmp_path):
    html = write_report(_bidi_run(tmp_path)).read_text(encoding="utf-8")
    for ch in BIDI_CONTROLS:
        assert ch not in html, f"U+{ord(ch):04X} reached the page"
    assert "[U+202E]" in html and "[U+2067]" in html and "[U+200F]" in html  # shown, not hidden
    assert "Toy [U+202E]yrotS[U+202C]" in html  # the evidence title, visibly marked


def test_data_text_beside_report_text_is_isolated(tmp_path):
    html = write_report(_bidi_run(tmp_path)).read_text(encoding="utf-8")
    assert "<bdi>sas[U+202E]cer</bdi> on <bdi>ml[U+2067]-100k[U+2069]</bdi>" in html
    assert "<bdi>summary [U+202E]esrever[U+202C] end</bdi>" in html
    assert "<bdi>reason [U+202E]txet[U+202C]</bdi>" in html
    assert "<td><bdi>Toy [U+202E]yrotS[U+202C]" in html


def test_neutralize_bidi_marks_every_control_and_keeps_other_text():
    text = "a" + "".join(BIDI_CONTROLS) + "b \u05e9\u05dc\u05d5\u05dd"  # Hebrew letters stay as they are
    out = neutralize_bidi(text)
    assert not any(ch in out for ch in BIDI_CONTROLS)
    assert out.startswith("a[U+202A][U+202B]") and out.endswith("b \u05e9\u05dc\u05d5\u05dd")
