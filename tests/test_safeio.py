"""The shared input limits: bounded YAML and JSON, regular files only, bounded decompression."""

from __future__ import annotations

import gzip
import os
import time

import pytest

from trustrec._safeio import load_json, load_yaml, open_regular, read_decompressed, read_regular_bytes
from trustrec.errors import ConfigError, DataError


def _billion_laughs(levels: int = 9) -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_quickly():
    start = time.monotonic()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        load_yaml(_billion_laughs(), what="cfg")
    assert time.monotonic() - start < 5


def test_ordinary_aliases_still_work():
    data = load_yaml("base: &b {k: 1, epochs: 2}\nmodel: {params: *b}\nother: *b\n")
    assert data["model"]["params"] == {"k": 1, "epochs": 2} and data["other"] == data["base"]
    assert load_yaml("") is None


@pytest.mark.parametrize(
    "doc, message",
    [
        ("a: &a [1, *a]\n", "recursive alias"),
        ("a: &a {b: *a}\n", "recursive alias"),
        ("x: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply"),
        ("a: [1, 2\n", "not valid YAML"),
        ("a: !!python/object:os.system {}\n", "not valid YAML"),
        ("a: 1\x00\n", "NUL"),
    ],
)
def test_bad_yaml_is_one_clear_error(doc, message):
    with pytest.raises(ConfigError, match=message):
        load_yaml(doc, what="cfg")


def test_yaml_file_must_be_utf8_regular_and_small(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 .*line 1"):
        load_yaml(p)
    with pytest.raises(ConfigError, match="is a folder"):
        load_yaml(tmp_path)
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (17 * 2**20) + b"\n")
    with pytest.raises(ConfigError, match="larger than the limit"):
        load_yaml(big)


def test_json_nesting_and_syntax_are_clear_errors():
    with pytest.raises(DataError, match="nested too deeply"):
        load_json("[" * 200_000 + "]" * 200_000, what="m.json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_json("{bad", what="m.json")
    assert load_json('{"a": [1, 2]}') == {"a": [1, 2]}


@pytest.mark.skipif(
    not hasattr(os, "mkfifo"), reason="os.mkfifo is POSIX-only: there are no FIFOs to probe on this platform (Windows)"
)
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    start = time.monotonic()
    for call in (
        lambda: open_regular(fifo),
        lambda: read_regular_bytes(fifo),
        lambda: load_yaml(fifo),
        lambda: read_decompressed(fifo),
    ):
        with pytest.raises((DataError, ConfigError), match="FIFO"):
            call()
    assert time.monotonic() - start < 5


def test_nul_in_a_path_is_refused():
    with pytest.raises(DataError, match="NUL"):
        open_regular("a\x00b")


def test_gzip_limits_and_concatenated_members(tmp_path, monkeypatch):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"a,b\n") + gzip.compress(b"1,2\n") + b"\x00" * 8)
    assert read_decompressed(p) == b"a,b\n1,2\n"
    monkeypatch.setenv("TRUSTREC_MAX_DECOMPRESSED", "1K")
    p.write_bytes(gzip.compress(os.urandom(4096)))
    with pytest.raises(DataError, match=r"1\.0 KiB.*TRUSTREC_MAX_DECOMPRESSED=1K.*raise it"):
        read_decompressed(p)
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"x" * 5000)
    with pytest.raises(DataError, match="TRUSTREC_MAX_DECOMPRESSED"):
        read_decompressed(plain)
    monkeypatch.setenv("TRUSTREC_MAX_DECOMPRESSED", "lots")
    with pytest.raises(ConfigError, match="not a size"):
        read_decompressed(plain)


def test_gzip_bomb_stops_early_on_the_ratio(tmp_path):
    bomb = tmp_path / "bomb.json.gz"
    member = gzip.compress(b"0" * (1 << 24), compresslevel=9)
    bomb.write_bytes(member * 8)  # concatenated members: 128 MiB (one line) from about 128 KiB
    start = time.monotonic()
    with pytest.raises(DataError, match=r"decompression bomb.*TRUSTREC_MAX_COMPRESSION_RATIO"):
        read_decompressed(bomb)
    assert time.monotonic() - start < 10
    from trustrec.data import load_amazon

    with pytest.raises(DataError, match="decompression bomb"):
        load_amazon(bomb)
