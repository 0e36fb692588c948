"""Malformed input of every kind ends as one line ``error: ...`` and exit code 2, never a traceback,
a hang or exit code 1 (the convention of ``trustrec.cli``)."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trustrec.cli import app

runner = CliRunner()

_INTER = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
    f"u{u}\ti{(u * 7 + k) % 13}\t{1600000000 + 60 * k}\n" for u in range(6) for k in range(5)
)
_CSV = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{(u * 3 + k) % 11},{1 + k % 5},{1600000000 + 60 * k}\n" for u in range(6) for k in range(5)
)
_JSONL = "".join(
    json.dumps({"reviewerID": f"u{u}", "asin": f"B{k}", "overall": 4.0, "unixReviewTime": 1600000000 + k}) + "\n"
    for u in range(4)
    for k in range(4)
)


def _valid_files(root: Path) -> dict[str, Path]:
    """One small valid file per supported single-file format."""
    out = {}
    for name, text in (("d.inter", _INTER), ("d.csv", _CSV), ("d.tsv", _CSV.replace(",", "\t")), ("d.jsonl", _JSONL)):
        (root / name).write_text(text)
        out[name] = root / name
    (root / "d.csv.gz").write_bytes(gzip.compress(_CSV.encode()))
    (root / "d.json.gz").write_bytes(gzip.compress(_JSONL.encode()))
    pd.read_csv(io.StringIO(_CSV)).to_parquet(root / "d.parquet")
    out.update({n: root / n for n in ("d.csv.gz", "d.json.gz", "d.parquet")})
    return out


def _mutations(data: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    text = data.decode("utf-8", "replace") if not data.startswith(b"\x1f\x8b") else ""
    return {
        "empty": b"",
        "truncated": data[: max(1, len(data) // 3)],
        "header-only": data.split(b"\n", 1)[0] + b"\n" if b"\n" in data[:4096] else data[:7],
        "garbage": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "utf16": text.encode("utf-16") if text else b"\xff\xfe" + data[:50],
        "nul": data[:20] + b"\x00" * 64 + data[20:],
        "gzip-garbage": gzip.compress(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()),
        "gzip-truncated": gzip.compress(data * 50)[:40],
        "nested-json": b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    }


def _assert_clean(res, *, allow_ok: bool = False, what: str = ""):
    """Exit 2 with one 'error:' line (or, when allowed, a successful load); never a traceback."""
    output = res.output
    assert "Traceback" not in output, (what, output[-2000:])
    assert res.exit_code != 1, (what, output[-2000:])
    if res.exit_code == 0 and allow_ok:
        return
    assert res.exit_code == 2, (what, res.exit_code, output[-2000:])
    assert isinstance(res.exception, SystemExit), (what, repr(res.exception))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), (what, res.stderr)


def test_malformed_files_of_every_format_end_in_one_line(tmp_path):
    valid = _valid_files(tmp_path)
    for name, path in valid.items():  # the valid files load
        res = runner.invoke(app, ["data", "info", str(path)])
        assert res.exit_code == 0, (name, res.output)
    bad = tmp_path / "bad"
    bad.mkdir()
    checked = 0
    for name, path in valid.items():
        for kind, data in _mutations(path.read_bytes()).items():
            target = bad / f"{kind}-{name}"
            target.write_bytes(data)
            res = runner.invoke(app, ["data", "info", str(target)])
            # A mutation may still be a valid (smaller) file: loading it is fine, a traceback is not.
            ok = kind in ("truncated", "nul") or (kind == "header-only" and "json" in name)  # 1 record
            _assert_clean(res, allow_ok=ok, what=f"{kind} {name}")
            checked += 1
    assert checked >= 60


@pytest.mark.parametrize("fmt", ["atomic", "movielens", "coat", "bigrec", "amazon", "tabular"])
def test_forced_format_on_garbage_ends_in_one_line(tmp_path, fmt):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("u.data", "ratings.dat", "train.ascii", "test.ascii", "x.inter"):
        (folder / name).write_bytes(b"\x00\xff garbage \x01\n1\t2\n")
    (folder / "info").mkdir()
    (folder / "test").mkdir()
    for path in (garbage, folder):
        _assert_clean(runner.invoke(app, ["data", "info", str(path), "--format", fmt]), what=f"{fmt} {path.name}")


def test_folder_layouts_with_broken_files_end_in_one_line(tmp_path):
    cases = {
        "movielens": {"u.data": b"1\t2\t5\n", "u.item": b"1|Toy\n"},
        "ml1m": {"ratings.dat": b"1::2::x::9\n"},
        "coat": {"train.ascii": b"0 1 x\n", "test.ascii": b"1 0\n"},
        "bigrec": {"info/x.txt": b"Title\t0\n", "test/x.csv": b"user_id,item_id\n1,2\n"},
        "atomic": {"atomic.inter": b"user_id:token\titem_id:token\nu\n", "atomic.item": b"item_id:bogus\n"},
        "twoinner": {"a.inter": _INTER.encode(), "b.inter": _INTER.encode()},
        "twolayouts": {"twolayouts.inter": _INTER.encode(), "u.data": b"1\t2\t5\t9\n"},
    }
    for name, files in cases.items():
        folder = tmp_path / name
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        _assert_clean(runner.invoke(app, ["data", "info", str(folder)]), what=name)


@pytest.mark.skipif(
    not hasattr(os, "mkfifo"), reason="os.mkfifo is POSIX-only: there are no FIFOs to probe on this platform (Windows)"
)
def test_special_paths_end_in_one_line(tmp_path):
    fifo = tmp_path / "ratings.csv"
    os.mkfifo(fifo)
    folder_like_file = tmp_path / "data.csv"
    folder_like_file.mkdir()
    config_fifo = tmp_path / "run.yaml"
    os.mkfifo(config_fifo)
    for args in (
        ["data", "info", str(fifo)],
        ["data", "info", str(fifo), "--format", "tabular"],
        ["data", "info", str(folder_like_file), "--format", "tabular"],
        ["data", "info", str(tmp_path / "missing.csv")],
        ["data", "info", str(tmp_path / "a\x00b.csv")],
        ["data", "info", "ml\x00-100k"],
        ["run", str(config_fifo)],
        ["run", str(tmp_path)],
        ["run", str(tmp_path / "missing.yaml")],
        ["compare", str(fifo), str(tmp_path)],
        ["report", str(fifo)],
    ):
        _assert_clean(runner.invoke(app, args), what=" ".join(args))


def _bomb(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


_BASE = "dataset: {name: ml-100k}\nmodel: {name: most_popular}\n"


@pytest.mark.parametrize(
    "name, content",
    [
        ("alias-bomb-top", _bomb().encode()),
        ("alias-bomb-params", (_BASE.replace("most_popular}", "most_popular, params: {x: *i}}") + _bomb()).encode()),
        ("alias-bomb-split", ("split: {method: random, params: {p: *i}}\n" + _BASE + _bomb()).encode()),
        ("recursive-alias", b"dataset: &d {name: x, loop: *d}\nmodel: {name: most_popular}\n"),
        ("deep-nesting", b"dataset: " + b"[" * 50_000 + b"]" * 50_000 + b"\n"),
        ("non-utf8", _BASE.encode() + b"name: caf\xe9\n"),
        ("utf16", _BASE.encode("utf-16")),
        ("binary", bytes(range(256)) * 8),
        ("empty", b""),
        ("list-root", b"- 1\n- 2\n"),
        ("bad-yaml", b"dataset: {name: [\n"),
        ("nul-name", b'dataset: {name: "ml\\0-100k"}\nmodel: {name: most_popular}\n'),
        ("negative-seed", (_BASE + "seed: -1\n").encode()),
        ("huge-seed", (_BASE + f"seed: {2**64}\n").encode()),
        (
            "filter-seed",
            (_BASE.replace("ml-100k}", "ml-100k, filters: [{kind: sample_users, n_users: 3, seed: -5}]}")).encode(),
        ),
        ("absurd-n-boot", (_BASE + "eval: {n_boot: 1000000000000}\n").encode()),
        ("split-seed", ("split: {method: random, params: {seed: -1}}\n" + _BASE).encode()),
        ("unknown-model", b"dataset: {name: ml-100k}\nmodel: {name: no_such_model}\n"),
        ("unknown-key", (_BASE + "bogus: 1\n").encode()),
        ("missing-dataset", b"dataset: {name: no-such-dataset-anywhere}\nmodel: {name: most_popular}\n"),
    ],
)
def test_malformed_run_configs_end_in_one_line(tmp_path, name, content):
    config = tmp_path / f"{name}.yaml"
    config.write_bytes(content)
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "runs")])
    _assert_clean(res, what=name)


@pytest.mark.parametrize("content", [_bomb(), "x: {n_boot: 1000000000000}\n", "x: [1, 2\n", "\xff\xfe"])
def test_malformed_audit_params_end_in_one_line(tmp_path, content):
    params = tmp_path / "params.yaml"
    params.write_bytes(content.encode("latin-1"))
    _assert_clean(runner.invoke(app, ["audit", str(tmp_path), "--params", str(params)]), what=content[:20])


def test_empty_evaluation_part_ends_in_one_line(tmp_path):
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "tiny.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nv\tj\t2\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"dataset: {{name: {data}}}\nsplit: {{method: leave_one_out, params: {{short_users: train}}}}\n"
        "model: {name: most_popular}\neval: {n_boot: 10}\n"
    )
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "runs")])
    _assert_clean(res, what="empty test part")
    assert "no user with a held-out item" in res.stderr


def _fake_run(folder: Path, metrics, per_user: pd.DataFrame | bytes | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_bytes(metrics if isinstance(metrics, bytes) else json.dumps(metrics).encode())
    if isinstance(per_user, bytes):
        (folder / "per_user.parquet").write_bytes(per_user)
    else:
        (per_user if per_user is not None else pd.DataFrame({"user_id": ["1", "2"], "ndcg@10": [0.1, 0.2]})).to_parquet(
            folder / "per_user.parquet"
        )
    return folder


@pytest.mark.parametrize(
    "name, metrics, per_user",
    [
        ("garbage-json", b"\x00\xffnot json", None),
        ("truncated-json", b'{"metrics": {"ndcg@10": {"mean": 0.1', None),
        ("nested-json", b"[" * 100_000 + b"]" * 100_000, None),
        ("list-json", b"[1, 2, 3]", None),
        ("no-metrics", b'{"dataset": "x"}', None),
        ("non-utf8", b'{"metrics": {}, "dataset": "caf\xe9"}', None),
        ("corrupt-parquet", {"dataset": "x", "metrics": {}}, b"PAR1 this is not parquet PAR1"),
        ("no-user-column", {"dataset": "x", "metrics": {}}, pd.DataFrame({"who": [1]})),
        ("no-common-metric", {"dataset": "x", "metrics": {}}, pd.DataFrame({"user_id": ["1"], "other": [1.0]})),
    ],
)
def test_compare_with_a_corrupt_run_ends_in_one_line(tmp_path, name, metrics, per_user):
    good = _fake_run(
        tmp_path / "good",
        {"dataset": "x", "model": "m", "metrics": {"ndcg@10": {"mean": 0.15, "ci_low": 0.1, "ci_high": 0.2}}},
    )
    bad = _fake_run(tmp_path / name, metrics, per_user)
    res = runner.invoke(app, ["compare", str(good), str(bad)])
    _assert_clean(res, what=name)


def test_compare_of_sound_runs_still_works(tmp_path):
    a = _fake_run(tmp_path / "a", {"dataset": "x", "metrics": {"ndcg@10": {"mean": 0.15, "ci_low": "?"}}})
    b = _fake_run(
        tmp_path / "b", {"dataset": "x", "metrics": {}}, pd.DataFrame({"user_id": ["1", "2"], "ndcg@10": [0.3, 0.1]})
    )
    res = runner.invoke(app, ["compare", str(a), str(b)], terminal_width=200)
    assert res.exit_code == 0, res.output


def test_rich_markup_in_names_is_printed_literally(tmp_path):
    folder = tmp_path / "markup"
    folder.mkdir()
    (folder / "markup.inter").write_text(_INTER)
    (folder / "markup.item").write_text(
        "item_id:token\t[bold]title[/]:token_seq\t[/]:token\t[red:token\n"
        + "".join(f"i{i}\t[b]T{i}[/b]\tx\ty\n" for i in range(13))
    )
    res = runner.invoke(app, ["data", "info", str(folder)], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "[bold]title[/]" in res.output and "[/]" in res.output and "[red" in res.output


def test_cli_module_documents_the_exit_codes():
    import trustrec.cli as cli

    doc = cli.__doc__
    assert "0 success" in doc and "2 a user error" in doc and "1 an unexpected internal" in doc
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if readme.is_file():
        assert "exit code" in readme.read_text().lower()


def test_console_script_path_gives_the_same_convention(tmp_path):
    """Through the real entry point (``main``) in a subprocess: exit 2, one line, no traceback."""
    config = tmp_path / "bomb.yaml"
    config.write_text(_bomb())
    garbage = tmp_path / "g.csv"
    garbage.write_bytes(b"\xff\xfe\x00garbage")
    for args in (["run", str(config)], ["data", "info", str(garbage)]):
        proc = subprocess.run(
            [sys.executable, "-c", "from trustrec.cli import main; main()", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_serve_refuses_fewer_than_one_torch_thread_in_one_line(tmp_path):
    res = runner.invoke(app, ["serve", str(tmp_path), "--no-auth", "--torch-threads", "0"])
    _assert_clean(res, what="serve --torch-threads 0")
    assert "--torch-threads must be >= 1, got 0" in res.stderr
