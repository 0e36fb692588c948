"""A user's files are never destroyed: run names stay inside --out, saves refuse foreign folders,
finished runs keep their audits, one process writes a run at a time, and changed data is noticed.
Every destructive probe runs in a temporary folder and checks that what it must not touch is
still there, byte for byte."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_runs import config, toy_folder
from trustrec._cache import folder_lock
from trustrec.cli import app
from trustrec.errors import ConfigError, DataError
from trustrec.models import make_model
from trustrec.runs import load_run_config, run_audits, run_experiment
from trustrec.testing import toy_dataset

quiet = {"progress": False, "log": lambda *_: None}


def _keepsake(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    keep = folder / "thesis.txt"
    keep.write_text("a user's file")
    return keep


@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "/tmp/x", "a/b", "", ".hidden", "a\\b", "x\x00y", "-rf", "a" * 200]
)
def test_run_names_must_be_plain(tmp_path, name):
    with pytest.raises(ConfigError, match=r"plain name|NUL"):
        load_run_config(config(tmp_path, name=name))


def test_a_bad_name_touches_nothing(tmp_path):
    keep = _keepsake(tmp_path)
    out = tmp_path / "runs"
    _keepsake(out)
    for name in ("..", ".", "../escape"):
        result = CliRunner().invoke(app, ["run", _write_config(tmp_path, name=name), "--out", str(out)])
        assert result.exit_code != 0
    assert keep.read_text() == "a user's file" and (out / "thesis.txt").exists()
    assert not (tmp_path / "escape").exists()


def test_derived_name_from_a_dataset_path_is_plain(tmp_path):
    cfg = dict(config(tmp_path), name=None)
    cfg["dataset"] = {"name": str(toy_folder(tmp_path) / "..")}
    assert load_run_config(cfg).run_name() == f"item_knn-{tmp_path.name}"
    cfg["dataset"] = {"name": "/"}
    assert load_run_config(cfg).run_name() == "item_knn-data"


def test_save_refuses_a_foreign_non_empty_folder(tmp_path, monkeypatch):
    model = make_model("most_popular").fit(toy_dataset())
    keep = _keepsake(tmp_path / "mine")
    with pytest.raises(DataError, match="not written by trustrec"):
        model.save(tmp_path / "mine")
    assert keep.read_text() == "a user's file"
    monkeypatch.chdir(tmp_path / "mine")
    with pytest.raises(DataError):
        model.save(".")
    assert keep.read_text() == "a user's file"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        model.save(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x"


def test_save_replaces_its_own_checkpoint_and_fills_an_empty_folder(tmp_path):
    model = make_model("most_popular").fit(toy_dataset())
    (tmp_path / "empty").mkdir()
    model.save(tmp_path / "empty")
    model.save(tmp_path / "empty")  # a trustrec checkpoint: replaced
    assert {p.name for p in (tmp_path / "empty").iterdir()} == {"config.json", "state.safetensors", "fitted.json"}
    (tmp_path / "empty" / "notes.md").write_text("mine")  # a checkpoint with a user's file beside it
    with pytest.raises(DataError):
        model.save(tmp_path / "empty")
    assert (tmp_path / "empty" / "notes.md").read_text() == "mine"


def test_rerun_of_a_finished_config_keeps_its_audits_and_report(tmp_path):
    out = tmp_path / "runs"
    first = run_experiment(config(tmp_path), out, **quiet)
    (first.path / "audits").mkdir()
    (first.path / "audits" / "index.json").write_text("{}")
    (first.path / "report.html").write_text("<html></html>")
    messages = []
    again = run_experiment(config(tmp_path), out, progress=False, log=messages.append)
    assert again.path == first.path and again.metrics == first.metrics
    assert (first.path / "audits" / "index.json").exists() and (first.path / "report.html").exists()
    assert any("reused" in m for m in messages)


def test_another_config_under_the_same_name_needs_overwrite(tmp_path):
    out = tmp_path / "runs"
    first = run_experiment(config(tmp_path), out, **quiet)
    (first.path / "report.html").write_text("<html></html>")
    other = config(tmp_path, seed=7)
    with pytest.raises(DataError, match="another config"):
        run_experiment(other, out, **quiet)
    assert (first.path / "report.html").exists()
    replaced = run_experiment(other, out, overwrite=True, **quiet)
    assert not (replaced.path / "report.html").exists()
    assert json.loads((replaced.path / "environment.json").read_text())["seed"] == 7


def test_a_foreign_folder_with_the_run_name_is_never_replaced(tmp_path):
    out = tmp_path / "runs"
    keep = _keepsake(out / "item_knn-toy")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="not a finished trustrec run"):
            run_experiment(config(tmp_path), out, overwrite=overwrite, **quiet)
    assert keep.read_text() == "a user's file"
    assert not list(out.glob(".partial-*"))


def test_one_process_writes_a_run_at_a_time(tmp_path):
    out = tmp_path / "runs"
    with (
        folder_lock(out, "item_knn-toy", what="run"),
        pytest.raises(DataError, match="in use by another trustrec process"),
    ):
        run_experiment(config(tmp_path), out, **quiet)
    assert run_experiment(config(tmp_path), out, **quiet).path.exists()  # released


def test_concurrent_processes_do_not_race(tmp_path):
    """Two real processes on one config and --out: one runs, the other is refused or reuses the
    finished run; the run folder is complete either way."""
    import subprocess
    import sys

    cfg = _write_config(tmp_path, name="race")
    cmd = [sys.executable, "-c", "from trustrec.cli import main; main()", "run", cfg, "--out", str(tmp_path / "runs")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert 0 in codes, outputs
    for code, text in zip(codes, outputs):
        assert code == 0 or "in use by another trustrec process" in " ".join(text.split()), text
    run = tmp_path / "runs" / "race"
    assert {"config.yaml", "environment.json", "metrics.json", "checkpoint"} <= {p.name for p in run.iterdir()}
    assert (run / "checkpoint" / "state.safetensors").exists()
    assert not list((tmp_path / "runs").glob(".partial-*"))


def _edit_interactions(folder: Path, *, new_item: bool) -> None:
    path = folder / "toy.inter"
    lines = path.read_text().splitlines()
    user, item, t = lines[1].split("\t")
    if new_item:
        lines.append(f"{user}\tbrand-new-item\t{float(t) + 0.5}")
    else:  # same shape: one interaction moves to another item that exists
        other = lines[2].split("\t")[1]
        lines[1] = f"{user}\t{other if other != item else lines[3].split(chr(9))[1]}\t{t}"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("new_item", [False, True])
def test_changed_data_is_noticed_by_rerun_and_audit(tmp_path, new_item):
    out = tmp_path / "runs"
    first = run_experiment(config(tmp_path), out, **quiet)
    _edit_interactions(toy_folder(tmp_path), new_item=new_item)
    with pytest.raises(DataError, match=r"data changed since this run finished: .*interactions"):
        run_experiment(config(tmp_path), out, **quiet)
    with pytest.raises(DataError, match=r"changed since the run finished: .*interactions"):
        run_audits(first.path, names=["item_exposure"], progress=False, log=lambda *_: None)
    again = run_experiment(config(tmp_path), out, overwrite=True, **quiet)
    run_audits(again.path, names=["item_exposure"], progress=False, log=lambda *_: None)


def test_tampered_checkpoint_is_noticed_by_audit(tmp_path):
    first = run_experiment(config(tmp_path), tmp_path / "runs", **quiet)
    fitted = first.path / "checkpoint" / "fitted.json"
    fitted.write_text(fitted.read_text() + " ")
    with pytest.raises(DataError, match="checkpoint files"):
        run_audits(first.path, names=["item_exposure"], progress=False, log=lambda *_: None)


def test_resume_refits_when_the_data_changed(tmp_path):
    cfg = load_run_config(config(tmp_path))
    out = tmp_path / "runs"
    res = run_experiment(cfg, out, **quiet)
    partial = out / f".partial-{cfg.run_name()}-{cfg.digest()}"
    res.path.rename(partial)
    (partial / "metrics.json").unlink()
    _edit_interactions(toy_folder(tmp_path), new_item=True)
    messages = []
    again = run_experiment(cfg, out, progress=False, log=messages.append)
    assert any("checkpoint was discarded" in m for m in messages)
    assert not any("resuming" in m for m in messages)
    n_items = json.loads((again.path / "environment.json").read_text())["data_checksums"]["n_items"]
    assert n_items == json.loads((again.path / "checkpoint" / "fitted.json").read_text())["n_items_"]


def test_a_failed_run_cleans_up_and_says_so(tmp_path, monkeypatch):
    from trustrec.models.classic._itemknn import ItemKNN

    def boom(self, train, options):
        raise RuntimeError("fit exploded")

    monkeypatch.setattr(ItemKNN, "_fit", boom)
    messages = []
    with pytest.raises(RuntimeError):
        run_experiment(config(tmp_path), tmp_path / "runs", progress=False, log=messages.append)
    assert not list((tmp_path / "runs").glob(".partial-*"))
    assert any("removed" in m for m in messages)


def test_stale_partials_of_an_earlier_config_are_removed(tmp_path):
    out = tmp_path / "runs"
    stale = out / ".partial-item_knn-toy-0123456789ab"
    stale.mkdir(parents=True)
    (stale / "config.yaml").write_text("name: item_knn-toy\n")
    messages = []
    run_experiment(config(tmp_path), out, progress=False, log=messages.append)
    assert not stale.exists() and any("earlier config" in m for m in messages)


def _write_config(tmp_path: Path, **extra) -> str:
    import yaml

    path = tmp_path / f"config-{abs(hash(str(extra))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, **extra)))
    return str(path)


def test_run_config_chooses_the_tie_rule_and_labels_it(tmp_path):
    plain = run_experiment(config(tmp_path), tmp_path / "runs", **quiet)
    cfg = config(tmp_path, name="ties")
    cfg["eval"] = {**cfg["eval"], "ties": "expected"}
    expected = run_experiment(cfg, tmp_path / "runs", **quiet)
    assert plain.metrics["settings"]["ties"] == "index" and expected.metrics["settings"]["ties"] == "expected"
    assert all("ties-expected" in m for m in expected.metrics["metrics"])
    with_default = config(tmp_path)
    with_default["eval"] = {**with_default["eval"], "ties": "index"}
    assert load_run_config(with_default).digest() == load_run_config(config(tmp_path)).digest()
    assert load_run_config(cfg).digest() != load_run_config(dict(cfg, eval=with_default["eval"])).digest()
