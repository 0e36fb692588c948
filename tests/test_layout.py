"""The source layout's rules (DESIGN.md "Wave 2 seams"): no module over 800 lines, no private
module of one package imported from another (what is shared is public), and audits never import
the mitigation layer (mitigations arrive as arms)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "trustrec"
MODULES = sorted(SRC.rglob("*.py"))
MAX_LINES = 800


def _package(module: Path) -> str:
    """The top-level trustrec package a source file belongs to ('' for the root's own modules)."""
    parts = module.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else ""


def _imports(module: Path, every_name: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name) of each import; ``from a import b`` gives ``a`` and, for a private
    ``b`` (or every ``b`` with ``every_name``), ``a.b``: ``from trustrec.eval import _metrics``
    imports a private module just the same."""
    tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend(
                (node.lineno, f"{node.module}.{alias.name}")
                for alias in node.names
                if every_name or (alias.name.startswith("_") and not alias.name.startswith("__"))
            )
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def private_cross_package_imports(module: Path, package: str | None = None) -> list[str]:
    """``from trustrec.<package>...._<module>`` imports of another package's private module;
    ``package`` overrides the package the file is taken to belong to."""
    own = _package(module) if package is None else package
    bad = []
    for line, name in _imports(module):
        parts = name.split(".")
        if parts[0] != "trustrec" or len(parts) < 3:
            continue  # the root's shared internals (trustrec._safeio ...) belong to every package
        if parts[1] != own and any(p.startswith("_") for p in parts[2:]):
            bad.append(f"{line}: {name}")
    return bad


def test_the_checker_finds_a_planted_private_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from trustrec.eval._stats import MAX_N_BOOT\nfrom trustrec.eval import Estimate\n"
        "import trustrec._safeio\nfrom trustrec.eval import _metrics as M\n\n"
        "def f():\n    from trustrec.models.llm._ranker import LLMRanker\n"
    )
    assert private_cross_package_imports(probe, package="audit") == [
        "1: trustrec.eval._stats",
        "4: trustrec.eval._metrics",
        "7: trustrec.models.llm._ranker",
    ]
    assert private_cross_package_imports(probe, package="eval") == ["7: trustrec.models.llm._ranker"]


def test_the_mitigation_check_sees_every_spelling(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from trustrec import mitigate\nimport trustrec.mitigate.control\n"
        "from trustrec.mitigate.defences import arms\nfrom trustrec import eval\n"
    )
    assert [n for _, n in _imports(probe, every_name=True) if _is_mitigation_layer(n)] == [
        "trustrec.mitigate",
        "trustrec.mitigate.control",
        "trustrec.mitigate.defences",
        "trustrec.mitigate.defences.arms",
    ]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(SRC)))
def test_module_is_at_most_800_lines(module):
    n = len(module.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{module.relative_to(SRC)} has {n} lines: it holds more than one concept; split it"


def test_no_private_module_is_imported_from_another_package():
    bad = [f"{m.relative_to(SRC)}:{b}" for m in MODULES for b in private_cross_package_imports(m)]
    assert not bad, "private modules imported across packages (make the shared thing public):\n" + "\n".join(bad)


def _is_mitigation_layer(name: str) -> bool:
    return name in ("trustrec.mitigate", "trustrec.mitigate.__init__") or name.startswith("trustrec.mitigate.")


def test_audits_never_import_the_mitigation_layer():
    # ``from trustrec import mitigate`` is caught too (it reads as the module trustrec.mitigate)
    bad = [
        f"{m.relative_to(SRC)}:{line}: {name}"
        for m in MODULES
        if _package(m) == "audit"
        for line, name in _imports(m, every_name=True)
        if _is_mitigation_layer(name)
    ]
    assert not bad, "audits import mitigations (they should receive them as arms):\n" + "\n".join(bad)
