"""Every kind of damaged or foreign checkpoint folder loads as a clear DataError naming the path,
never a traceback, a hang or a silently wrong model."""

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from trustrec.errors import DataError
from trustrec.models import FitOptions, Recommender, make_model
from trustrec.testing import toy_dataset

MODELS = {
    "most_popular": {},
    "item_knn": {},
    "sasrec": {"epochs": 1, "embedding_size": 8, "n_heads": 1, "n_blocks": 1, "inner_size": 8, "max_len": 8},
    "bpr_mf": {"epochs": 1, "embedding_size": 4},
}


def _json(path: Path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _state(path: Path, edit):
    arrays = load_file(str(path))
    edit(arrays)
    save_file(arrays, str(path))


def _largest(arrays):
    return max(arrays, key=lambda k: arrays[k].size)


def _truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


TAMPERINGS = {
    "config missing": lambda d: (d / "config.json").unlink(),
    "config not json": lambda d: (d / "config.json").write_text("{not json"),
    "config a list": lambda d: (d / "config.json").write_text("[1, 2]"),
    "config not utf-8": lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00garbage"),
    "config deeply nested": lambda d: (d / "config.json").write_text("[" * 100000 + "]" * 100000),
    "config a folder": lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()),
    "config a fifo": lambda d: ((d / "config.json").unlink(), os.mkfifo(d / "config.json")),
    "model name missing": lambda d: _json(d / "config.json", lambda c: c.pop("model")),
    "model name unknown": lambda d: _json(d / "config.json", lambda c: c.update(model="no_such_model")),
    "model name not a string": lambda d: _json(d / "config.json", lambda c: c.update(model=7)),
    "config not a mapping": lambda d: _json(d / "config.json", lambda c: c.update(config=[1])),
    "unknown hyper-parameter": lambda d: _json(d / "config.json", lambda c: c["config"].update(bogus=1)),
    "state empty": lambda d: (d / "state.safetensors").write_bytes(b""),
    "state garbage": lambda d: (d / "state.safetensors").write_text("this is no tensor file"),
    "state truncated": lambda d: _truncate(d / "state.safetensors"),
    "state a folder": lambda d: ((d / "state.safetensors").unlink(), (d / "state.safetensors").mkdir()),
    "state missing, fitted kept": lambda d: (d / "state.safetensors").unlink(),
    "array dropped": lambda d: _state(d / "state.safetensors", lambda a: a.pop(_largest(a))),
    "array wrong shape": lambda d: _state(
        d / "state.safetensors", lambda a: a.update({_largest(a): np.zeros((3, 2), a[_largest(a)].dtype)})
    ),
    "array all NaN": lambda d: _state(
        d / "state.safetensors",
        lambda a: a.update({k: np.full_like(v, np.nan) for k, v in a.items() if v.dtype.kind == "f"}),
    ),
    "fitted missing": lambda d: (d / "fitted.json").unlink(),
    "fitted not json": lambda d: (d / "fitted.json").write_text("n_items_ = 3"),
    "fitted n_items not an int": lambda d: _json(d / "fitted.json", lambda f: f.update(n_items_="many")),
    "fitted n_items negative": lambda d: _json(d / "fitted.json", lambda f: f.update(n_items_=-1)),
    "fitted n_items larger than the arrays": lambda d: _json(
        d / "fitted.json", lambda f: f.update(n_items_=f["n_items_"] * 3)
    ),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ds = toy_dataset()
    out = {}
    for name, params in MODELS.items():
        folder = tmp_path_factory.mktemp(name) / "ckpt"
        make_model(name, **params).fit(ds, FitOptions(progress=False)).save(folder)
        out[name] = folder
    return out


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


# Edits that keep a model consistent enough to answer (the checksums recorded at save catch them).
_VALUE_EDITS = {"array all NaN"}


def _drop_checksums(folder: Path) -> None:
    """As a checkpoint saved before checksums were recorded: structure alone must be checked."""
    if not (folder / "config.json").is_file():
        return
    # the tampering may already have broken config.json
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, RecursionError):
        _json(folder / "config.json", lambda c: c.pop("files_sha256", None))


@pytest.mark.parametrize("checksums", ["recorded", "absent"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_tampered_checkpoint_is_a_clear_error(saved, tmp_path, model, tampering, checksums):
    folder = _copy(saved[model], tmp_path / "ckpt")
    TAMPERINGS[tampering](folder)
    if checksums == "absent":
        _drop_checksums(folder)
    if checksums == "absent" and tampering in _VALUE_EDITS:
        try:  # loads (nothing structural is wrong) or fails clearly: scores that are all NaN
            Recommender.load(folder)
        except DataError as exc:
            assert "only NaN" in str(exc)
        return
    with pytest.raises(DataError) as info:
        Recommender.load(folder)
    assert str(folder) in str(info.value)


def test_a_checkpoint_without_checksums_still_loads(saved, tmp_path):
    folder = _copy(saved["sasrec"], tmp_path / "ckpt")
    _drop_checksums(folder)
    from trustrec.data import split_leave_one_out

    queries = split_leave_one_out(toy_dataset()).eval_set("test").queries
    assert np.array_equal(
        Recommender.load(folder).recommend(queries, 3).items,
        Recommender.load(saved["sasrec"]).recommend(queries, 3).items,
    )


def test_a_file_instead_of_a_folder(tmp_path):
    (tmp_path / "model").write_text("x")
    with pytest.raises(DataError, match="not a saved trustrec model"):
        Recommender.load(tmp_path / "model")
