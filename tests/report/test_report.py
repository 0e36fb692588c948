import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from trustrec.audit import DIMENSIONS, AuditResult
from trustrec.errors import ConfigError, DataError
from trustrec.report import build_report, worst_status, write_report

from .conftest import HOSTILE, make_run

SECTIONS = ("summary", "accuracy", "scorecard", "dim-robustness", "dim-fairness", "dim-privacy", "trail", "settings")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id"]


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def test_writes_html_and_json_beside_it(run_dir):
    path = write_report(run_dir)
    assert path == run_dir / "report.html" and path.is_file()
    assert (run_dir / "report.json").is_file()
    assert path.stat().st_size < 2_000_000


def test_report_json_matches_inputs(run_dir):
    write_report(run_dir)
    data = json.loads((run_dir / "report.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    index = json.loads((run_dir / "audits" / "index.json").read_text())
    assert (data["run"], data["model"], data["dataset"]) == ("ml-100k-sasrec", "sasrec", "ml-100k")
    assert data["date"] == index["created"] and data["audited"] is True
    assert data["accuracy"] == {k: metrics[k] for k in ("metrics", "aggregates", "counts")}
    assert data["trail"] == index["trail"]
    assert data["environment"] == json.loads((run_dir / "environment.json").read_text())
    assert data["settings"]["config"]["seed"] == 42 and data["settings"]["evaluation"] == metrics["settings"]

    card = {row["dimension"]: row for row in data["scorecard"]}
    assert [row["dimension"] for row in data["scorecard"]] == list(DIMENSIONS)
    assert card["fairness"]["n_audits"] == 2 and card["fairness"]["worst_status"] == "fail"
    assert [a["name"] for a in card["fairness"]["audits"]] == ["user_group_gap", "item_exposure"]
    assert card["robustness"]["worst_status"] == "pass"
    assert card["privacy"]["worst_status"] == "not_applicable"
    assert card["factuality"] == {"dimension": "factuality", "n_audits": 0, "worst_status": "not_audited", "audits": []}

    assert [a["audit"] for a in data["audits"]] == [e["name"] for e in index["audits"]]
    for entry, got in zip(index["audits"], data["audits"]):
        expected = AuditResult.load(run_dir / "audits" / entry["dir"]).to_dict(evidence_rows=20)
        got = dict(got)
        assert got.pop("dir") == entry["dir"] and got.pop("load_error") is None
        assert got == json.loads(json.dumps(expected))
    items = data["audits"][1]["evidence"]["items"]
    assert items["n_rows"] == 300 and len(items["records"]) == 20
    assert items["records"][0]["title"].startswith("Toy Story " + HOSTILE)


def test_json_is_strict(run_dir):
    write_report(run_dir)
    text = (run_dir / "report.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-finite {c} in report.json"))


def test_html_has_every_section_and_is_offline(run_dir):
    html = write_report(run_dir).read_text()
    tags = _parse(html)
    for section in SECTIONS:
        assert section in tags.ids, section
    assert "dim-factuality" not in tags.ids  # no audit, no section (the scorecard says "not audited")
    assert re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I) is None
    assert "http://" not in html.replace("http://www.w3.org/", "")  # SVG namespaces are not fetched
    assert "https://" not in html
    assert "script" not in tags.tags and "link" not in tags.tags and "iframe" not in tags.tags
    assert tags.tags.count("svg") >= 6
    assert len(tags.ids) == len(set(tags.ids)), "ids repeat across the inline figures"
    assert "not audited" in html


def test_hostile_text_is_escaped(run_dir):
    html = write_report(run_dir).read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; &#34;friends&#34; $5 $" in html or "&amp; &quot;friends&quot; $5 $" in html


def test_not_audited_run_still_reports_accuracy(bare_run_dir):
    path = write_report(bare_run_dir)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["audited"] is False and data["audits"] == [] and data["trail"] == {}
    assert data["notes"][0].startswith("not audited yet")
    assert {row["worst_status"] for row in data["scorecard"]} == {"not_audited"}
    tags = _parse(path.read_text())
    assert {"summary", "accuracy", "scorecard", "trail", "settings"} <= set(tags.ids)
    assert not [i for i in tags.ids if i.startswith("dim-")]
    assert "0.1234" in path.read_text()


def test_bad_run_dirs_raise_clear_errors(tmp_path, run_dir):
    with pytest.raises(DataError, match="no such run directory"):
        write_report(tmp_path / "missing")
    (run_dir / "metrics.json").unlink()
    with pytest.raises(DataError, match=r"no metrics.json"):
        write_report(run_dir)


def test_out_elsewhere(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "site" / "trust.html")
    assert out.is_file() and (tmp_path / "site" / "trust.json").is_file()
    assert not (run_dir / "report.html").exists()
    with pytest.raises(ConfigError, match="HTML"):
        write_report(run_dir, tmp_path / "trust.json")


def test_unloadable_audits_are_shown_not_fatal(run_dir):
    index_path = run_dir / "audits" / "index.json"
    index = json.loads(index_path.read_text())
    shutil.rmtree(run_dir / "audits" / "shilling_attack")
    index["audits"].append({"name": "sneaky", "dimension": "safety", "status": "pass", "summary": "", "dir": "../.."})
    index_path.write_text(json.dumps(index))
    data, html = build_report(run_dir)
    by_name = {a["audit"]: a for a in data["audits"]}
    assert by_name["shilling_attack"]["verdict"]["status"] == "error"
    assert "could not load" in by_name["shilling_attack"]["load_error"]
    assert by_name["sneaky"]["verdict"]["status"] == "error" and "inside audits/" in by_name["sneaky"]["load_error"]
    card = {row["dimension"]: row for row in data["scorecard"]}
    assert card["robustness"]["worst_status"] == "error" and card["safety"]["worst_status"] == "error"
    assert 'id="dim-safety"' in html and "could not load" in html


def test_missing_index_scans_audit_folders(run_dir):
    (run_dir / "audits" / "index.json").unlink()
    data, _ = build_report(run_dir)
    assert sorted(a["audit"] for a in data["audits"]) == sorted(
        ["user_group_gap", "item_exposure", "shilling_attack", "membership_inference"]
    )
    assert any("index.json is missing" in n for n in data["notes"])


def test_worst_status_order():
    assert worst_status(["pass", "warn", "not_applicable"]) == "warn"
    assert worst_status(["pass", "fail", "warn"]) == "fail"
    assert worst_status(["no_threshold", "pass"]) == "pass"
    assert worst_status(["pass", "something_new"]) == "something_new"
    assert worst_status([]) is None


def test_run_without_environment_or_config(tmp_path):
    run = make_run(tmp_path)
    (run / "environment.json").unlink()
    (run / "config.yaml").unlink()
    data, html = build_report(run)
    assert data["environment"] is None and data["settings"]["config"] is None
    assert "environment.json is missing" in html and "config.yaml is missing" in html
