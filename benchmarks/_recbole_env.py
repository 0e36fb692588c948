"""A private virtualenv holding RecBole 1.2.1, the peer in the SASRec benchmark.

RecBole 1.2.1 (2023) does not install cleanly next to today's packages, so it lives in its own
virtualenv under ``<root>/.bench/recbole-venv`` (``.bench/`` is git-ignored), built once and
reused. What goes in, and why:

* ``torch==2.13.0+cpu`` first (a local CPU wheel; RecBole only asks for ``torch>=1.10``).
* ``recbole==1.2.1`` with ``--no-deps``: its declared requirements include packages that
  importing and training never touch (``thop``, ``plotly``, ``tabulate``, ``psutil``), so
  only the ones ``from recbole.quick_start import run_recbole`` and the trainer actually
  import are installed, listed in ``IMPORT_DEPS``.
* Version caps for the old code base: ``numpy<2``, ``pandas<2.3``, ``scipy<1.14``, and
  ``setuptools`` with ``pkg_resources`` still in it (see ``PINS``).

``ensure_recbole_venv(root)`` returns the venv's python; ``benchmarks/_recbole_runner.py`` is
meant to be run with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

RECBOLE = "recbole==1.2.1"

# Tried in order until one installs. The first is a CPU wheel that lies on the benchmark
# machines' local wheel folder; the second is PyTorch's own CPU-only index (PyPI itself only
# has the multi-GB CUDA build for Linux x86_64, which is never wanted here).
TORCH_CHOICES: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0+cpu",),
    ("torch", "--index-url", "https://download.pytorch.org/whl/cpu"),
)

PINS = (
    "numpy<2",
    "pandas<2.3",
    "scipy<1.14",
    # ray 2.6.3 imports pkg_resources, which setuptools dropped in 81; torch 2.13 declares
    # setuptools>=77.0.3. Both hold in this window (an older cap such as <70 would make pip
    # swap the CPU torch for a CUDA build to satisfy torch's metadata).
    "setuptools>=77.0.3,<81",
)

# What RecBole 1.2.1 imports at module level on the path quick_start -> config/data/trainer:
IMPORT_DEPS = (
    "ray<=2.6.3",  # recbole.quick_start: `from ray import tune` (ray 2.6.3 has no cp312 wheel)
    "colorlog==4.7.2",  # recbole.utils.logger (RecBole pins this version)
    "colorama==0.4.4",  # recbole.utils.logger (ray vendors a copy; do not rely on it)
    "pyyaml",  # recbole.config
    "tqdm",  # recbole.trainer
    "texttable",  # recbole.utils.utils
    "tensorboard",  # recbole.utils.utils: torch.utils.tensorboard.SummaryWriter
    "scikit-learn",  # recbole.evaluator.metrics
)

IMPORT_CHECK = "from recbole.quick_start import run_recbole"

STAMP_NAME = "trustrec-stamp.json"


def _say(msg: str) -> None:
    print(f"[recbole-venv] {msg}", flush=True)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    _say("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=False, text=True)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _spec(base_python: str) -> dict:
    """Everything that decides the venv's content; a change triggers a rebuild."""
    return {
        "recbole": RECBOLE,
        "torch_choices": [list(c) for c in TORCH_CHOICES],
        "pins": list(PINS),
        "import_deps": list(IMPORT_DEPS),
        "base_python": base_python,
    }


def _pip(py: Path, *args: str) -> bool:
    return _run([str(py), "-m", "pip", "install", "--quiet", *args]).returncode == 0


def ensure_recbole_venv(root: Path, base_python: str | None = None) -> Path:
    """Create (once) ``root/.bench/recbole-venv`` with RecBole 1.2.1 and return its python.

    ``base_python`` is the interpreter the venv is made from (default: this one). It must be
    Python <= 3.11, because ray <= 2.6.3, which RecBole's quick_start imports, has no newer
    wheels. A stamp file written after a successful import check makes later calls a no-op; a
    half-built or outdated venv (no stamp, or a stamp for another spec) is rebuilt from scratch.
    """
    base_python = base_python or sys.executable
    venv = Path(root).resolve() / ".bench" / "recbole-venv"
    py = _venv_python(venv)
    stamp = venv / STAMP_NAME
    spec = _spec(base_python)

    if stamp.is_file() and py.is_file():
        try:
            if json.loads(stamp.read_text()).get("spec") == spec:
                _say(f"up to date: {venv}")
                return py
        except json.JSONDecodeError:
            pass
        _say("stamp does not match the wanted spec: rebuilding")

    version = subprocess.run(
        [base_python, "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if tuple(map(int, version)) >= (3, 12):
        raise RuntimeError(
            f"{base_python} is Python {'.'.join(version)}; RecBole 1.2.1's quick_start needs "
            "ray<=2.6.3, which has wheels only up to Python 3.11. Pass base_python=python3.11."
        )

    if venv.exists():
        _say(f"removing incomplete or outdated {venv}")
        shutil.rmtree(venv)
    _say(f"creating {venv} from {base_python}")
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True)

    torch_choice = None
    for choice in TORCH_CHOICES:
        if _pip(py, *choice):
            torch_choice = choice
            break
        _say(f"could not install {' '.join(choice)}; trying the next torch source")
    if torch_choice is None:
        raise RuntimeError(
            "no CPU torch could be installed (tried: "
            + "; ".join(" ".join(c) for c in TORCH_CHOICES)
            + "). Install one into the venv by hand, then rerun."
        )
    installed_torch = subprocess.run(
        [str(py), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _say(f"torch {installed_torch} installed ({' '.join(torch_choice)})")

    if not _pip(py, "--no-deps", RECBOLE):
        raise RuntimeError(f"pip could not install {RECBOLE}")
    # torch is named again, at the installed version, so the resolver cannot swap it.
    _say("pip will report recbole's unused declared requirements as missing: expected")
    if not _pip(py, f"torch=={installed_torch}", *PINS, *IMPORT_DEPS):
        raise RuntimeError("pip could not install RecBole's runtime dependencies")

    check = subprocess.run([str(py), "-W", "ignore", "-c", IMPORT_CHECK], check=False, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"RecBole venv built but `{IMPORT_CHECK}` fails in it")

    freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout.split()
    stamp.write_text(json.dumps({"spec": spec, "torch": installed_torch, "freeze": freeze}, indent=1))
    _say(f"ready: {py} (torch {installed_torch}, {RECBOLE})")
    return py


if __name__ == "__main__":
    # `python benchmarks/_recbole_env.py [ROOT]` builds the venv and prints its python.
    print(ensure_recbole_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1]))
