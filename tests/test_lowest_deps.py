"""The dependency floors work together: constraints-lowest.txt pins every pyproject floor, pip's
resolver accepts the set, and trustrec imports and fits a model in a fresh virtualenv holding it.

Slow (it reaches the package index; the full check downloads torch). Also a script:

    python tests/test_lowest_deps.py --dry-run                  # the resolver accepts the pins
    python tests/test_lowest_deps.py                            # + fresh venv, import, tiny fit
    python tests/test_lowest_deps.py --torch-wheel PATH.whl     # ... with this torch instead of the pin

``--torch-wheel`` (or ``TRUSTREC_LOWEST_TORCH_WHEEL`` for the test) avoids downloading torch with
its CUDA libraries; everything else is then at its floor, and the output says torch was not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints-lowest.txt"

TINY_FIT = """
import numpy, pandas, pyarrow, scipy, sklearn, torch, trustrec
from trustrec.data import Dataset, split_leave_one_out
from trustrec.eval import evaluate_split
from trustrec.models import FitOptions, make_model
rng = numpy.random.default_rng(0)
frame = pandas.DataFrame({"user_id": [f"u{u}" for u in numpy.repeat(numpy.arange(30), 6)],
                          "item_id": [f"i{i}" for i in rng.integers(0, 20, 180)],
                          "timestamp": numpy.tile(numpy.arange(6), 30)})
split = split_leave_one_out(Dataset.from_frame(frame, name="tiny"))
for name in ("most_popular", "item_knn", "ease"):
    model = make_model(name).fit(split, FitOptions(progress=False))
    result = evaluate_split(model, split, metrics=["ndcg@10", "novelty@10"], n_boot=10, progress=False)
    assert 0 <= result.mean("ndcg@10") <= 1
print({m.__name__: m.__version__ for m in (numpy, pandas, pyarrow, scipy, sklearn, torch)})
"""


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[_norm(name)] = version
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version: str) -> tuple[int, ...]:
    """'2.0' and '2.0.0' are the same release."""
    parts = [int(x) for x in re.findall(r"\d+", version.split("+")[0])]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _floors() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    out = {}
    for name, version in re.findall(r'"([A-Za-z0-9_.\-]+)>=([0-9][^",;]*)"', block):
        out[_norm(name)] = version
    return out


def _pip(python: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def resolve(python: Path = Path(sys.executable)) -> dict[str, str]:
    """What pip would install for trustrec under the constraints (a dry run); raises on a conflict."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = _pip(
            python,
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(CONSTRAINTS),
            str(ROOT),
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip's resolver refused the lowest set:\n{done.stderr[-3000:]}")
        installed = json.loads(report.read_text())["install"]
    return {_norm(i["metadata"]["name"]): i["metadata"]["version"] for i in installed}


def install_and_fit(workdir: Path, torch_wheel: str | None = None) -> str:
    """A fresh venv with every pin (``torch_wheel``, a wheel file or a requirement such as
    ``torch==2.13.0+cpu``, replaces the torch pin), trustrec, a tiny fit."""
    env_dir = workdir / "lowest-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    constraints = CONSTRAINTS
    if torch_wheel:
        constraints = workdir / "constraints-no-torch.txt"
        constraints.write_text(
            "\n".join(line for line in CONSTRAINTS.read_text().splitlines() if not line.startswith("torch=="))
        )
        done = _pip(python, "install", "--quiet", torch_wheel)
        if done.returncode != 0:
            raise RuntimeError(f"installing {torch_wheel} failed:\n{done.stderr[-3000:]}")
    done = _pip(python, "install", "--quiet", "-c", str(constraints), str(ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"installing trustrec at the lowest pins failed:\n{done.stderr[-3000:]}")
    run = subprocess.run(
        [str(python), "-c", TINY_FIT], capture_output=True, text=True, timeout=900, cwd=workdir, check=False
    )
    if run.returncode != 0:
        raise RuntimeError(f"trustrec at the lowest pins failed:\n{run.stderr[-3000:]}")
    return run.stdout.strip().splitlines()[-1]


def test_every_floor_is_pinned():
    """Fast: the constraints file pins exactly the pyproject floors (so the check tests them)."""
    assert {n: _release(v) for n, v in pins().items()} == {n: _release(v) for n, v in _floors().items()}


@pytest.mark.slow
def test_resolver_accepts_the_lowest_set():
    chosen = resolve()
    for name, version in pins().items():
        assert chosen.get(name) == version, f"{name}: pinned {version}, resolver chose {chosen.get(name)}"


@pytest.mark.slow
def test_trustrec_imports_and_fits_at_the_lowest_set(tmp_path):
    """Every pin but torch's: torch is the build already installed here (``torch==<its version>``,
    which pip takes from the same local file make.py uses), because the 2.4.1 pin's CUDA build is
    several GB to download; ``TRUSTREC_LOWEST_TORCH_WHEEL`` names another wheel."""
    import torch

    wheel = os.environ.get("TRUSTREC_LOWEST_TORCH_WHEEL") or f"torch=={torch.__version__}"
    versions = install_and_fit(tmp_path, wheel)
    assert "'numpy': '" + pins()["numpy"] in versions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="only check that pip's resolver accepts the pins")
    ap.add_argument("--torch-wheel", default=None, help="a torch wheel to use instead of the torch pin")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build the venv (default: a temp dir)")
    args = ap.parse_args()
    chosen = resolve()
    off = {n: (v, chosen.get(n)) for n, v in pins().items() if chosen.get(n) != v}
    print("resolver: accepts the lowest set" if not off else f"resolver: pins not honoured {off}")
    if off:
        sys.exit(1)
    if args.dry_run:
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print("tiny fit at the lowest set:", install_and_fit(workdir, args.torch_wheel))
        if args.torch_wheel:
            print(f"note: torch came from {Path(args.torch_wheel).name}, not the {pins()['torch']} pin")


if __name__ == "__main__":
    main()
