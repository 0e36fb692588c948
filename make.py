#!/usr/bin/env python3
"""Set up trustrec in a local virtualenv and run a task; needs only python3 (with venv) and pip.

python3 make.py demo      # install (with the LLM extra) and run `trustrec demo`
python3 make.py test      # install with the dev extra and run the test suite
python3 make.py test -m slow   # extra pytest arguments pass through
python3 make.py lint      # ruff check, ruff format --check, mypy (the rules in pyproject.toml)
python3 make.py docs      # install with the docs extra and build the site (mkdocs --strict) into build/site
python3 make.py docs --serve   # the same, served with live reload on http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("TRUSTREC_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")

# A CPU build of torch: the local wheel where one is provided, else PyTorch's CPU index, else PyPI.
TORCH_CHOICES = (
    ["torch==2.13.0+cpu"],
    ["torch>=2.2", "--index-url", "https://download.pytorch.org/whl/cpu"],
    ["torch>=2.2"],
)


def run(*cmd, **kw) -> int:
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.call([str(c) for c in cmd], **kw)


def pip(*args) -> int:
    return run(PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args)


def ensure_env(extras: str) -> None:
    stamp = VENV / f".trustrec-installed-{extras or 'base'}"
    if not PY.exists():
        print(f"creating virtualenv {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    if stamp.exists() and stamp.stat().st_mtime >= (ROOT / "pyproject.toml").stat().st_mtime:
        return
    has_torch = subprocess.call([str(PY), "-c", "import torch"], stderr=subprocess.DEVNULL) == 0
    if not has_torch:
        for choice in TORCH_CHOICES:
            if pip(*choice) == 0:
                break
        else:
            sys.exit("could not install torch; install a CPU build into .venv by hand and rerun")
    target = f".[{extras}]" if extras else "."
    if pip("-e", target) != 0:
        sys.exit(f"pip install -e {target} failed (see above)")
    stamp.touch()


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "demo":
        ensure_env("llm")  # the demo runs the LLM recommenders: install what it runs
        return run(BIN / "trustrec", "demo", *rest)
    if task == "test":
        ensure_env("dev,llm,serve")
        env = dict(os.environ)
        shared = ROOT.parent / "shared" / "data"
        if "TRUSTREC_DATA" not in env and shared.is_dir():
            env["TRUSTREC_DATA"] = str(shared)
        code = run(PY, "-m", "pytest", *rest, cwd=ROOT, env=env)
        if code == 5:
            print("pytest collected no tests (exit 5)")
            return 0
        return code
    if task == "lint":
        ensure_env("dev,llm,serve")
        paths = ["src", "tests", "benchmarks", "make.py", "docs/_hooks"]
        for cmd in (["ruff", "check", *paths], ["ruff", "format", "--check", *paths], ["mypy"]):
            code = run(PY, "-m", *cmd, cwd=ROOT)
            if code != 0:
                return code
        return 0
    if task == "docs":
        # the generated pages import trustrec (the audit registry, __all__): the base install plus docs
        ensure_env("docs")
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        if rest[:1] == ["--serve"]:
            return run(PY, "-m", "mkdocs", "serve", "--strict", *rest[1:], cwd=ROOT, env=env)
        return run(PY, "-m", "mkdocs", "build", "--strict", *rest, cwd=ROOT, env=env)
    print(__doc__)
    return 0 if task == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
