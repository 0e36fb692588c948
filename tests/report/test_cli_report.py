import json

from typer.testing import CliRunner

from trustrec.cli import app

runner = CliRunner()


def test_report_command_writes_and_prints_the_scorecard(run_dir):
    res = runner.invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert (run_dir / "report.html").is_file() and (run_dir / "report.json").is_file()
    for word in ("trust scorecard", "fairness", "fail", "not audited", "written:", "report.html"):
        assert word in res.output, word


def test_report_command_out_option(run_dir, tmp_path):
    res = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["run"] == "ml-100k-sasrec"


def test_report_command_on_an_unaudited_run(bare_run_dir):
    res = runner.invoke(app, ["report", str(bare_run_dir)])
    assert res.exit_code == 0, res.output
    assert "not audited yet" in res.output


def test_report_command_errors_exit_2(tmp_path, run_dir):
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "error:" in res.stderr and "no such run directory" in res.stderr
    (run_dir / "metrics.json").unlink()
    res = runner.invoke(app, ["report", str(run_dir)])
    assert res.exit_code == 2 and "not a finished trustrec run" in res.stderr
    assert not (run_dir / "report.html").exists()


def test_report_is_listed_in_help():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "report" in res.output
