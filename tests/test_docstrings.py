"""Public API docstrings follow numpydoc: every public function and class (each name in a
documented package's ``__all__``) says what it is, lists each of its parameters under
``Parameters`` (a class: its constructor's; a config: its fields), and a function that returns something has a
``Returns`` (or ``Yields``) section. ``DOCUMENTED`` lists every public package (the API
reference's); a new public package joins it."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

DOCUMENTED = (
    "trustrec.audit",
    "trustrec.audit.controllability",
    "trustrec.audit.explainability",
    "trustrec.audit.fairness",
    "trustrec.audit.privacy",
    "trustrec.audit.robustness",
    "trustrec.data",
    "trustrec.errors",
    "trustrec.eval",
    "trustrec.mitigate",
    "trustrec.mitigate.control",
    "trustrec.mitigate.defences",
    "trustrec.mitigate.training",
    "trustrec.models",
    "trustrec.models.classic",
    "trustrec.models.external",
    "trustrec.models.llm",
    "trustrec.models.training",
    "trustrec.parallel",
    "trustrec.registry",
    "trustrec.report",
    "trustrec.runs",
    "trustrec.serve",
    "trustrec.testing",
)

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.MULTILINE)
_PARAM = re.compile(r"^(?P<names>\*{0,2}[A-Za-z_][\w, *]*?)(?:\s*:.*)?$")


def sections(doc: str) -> dict[str, str]:
    """numpydoc sections of ``doc``: title -> body (up to the next section)."""
    found = list(_SECTION.finditer(doc))
    return {
        m["title"].strip(): doc[m.end() : (found[i + 1].start() if i + 1 < len(found) else len(doc))]
        for i, m in enumerate(found)
    }


def documented_parameters(body: str) -> set[str]:
    """Parameter names a ``Parameters`` section lists (``a, b : int`` documents both)."""
    names = set()
    for line in body.splitlines():
        if not line or line[0].isspace():
            continue
        match = _PARAM.match(line.strip())
        if match:
            names |= {n.strip().lstrip("*") for n in match["names"].split(",") if n.strip()}
    return names


def _parameters(obj) -> list[str]:
    # a class's signature is its constructor's; for a pydantic config or a dataclass, its fields
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [
        n
        for n, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)  # a class's signature already omits self
    ]


_VARIADIC = {"args", "kwargs", "params", "fields", "kw"}


def _takes_any_keyword(obj) -> bool:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def _returns_something(obj) -> bool:
    if inspect.isclass(obj):
        return False
    try:
        annotation = inspect.signature(obj).return_annotation
    except (TypeError, ValueError):
        return False
    return annotation not in (inspect.Signature.empty, None, "None")


def problems(obj) -> list[str]:
    """What ``obj``'s docstring lacks under the rule of the module docstring."""
    doc = inspect.getdoc(obj) or ""
    if not doc.strip():
        return ["no docstring"]
    found = sections(doc)
    out = []
    params = _parameters(obj)
    if params:
        listed = documented_parameters(found.get("Parameters", ""))
        if inspect.isclass(obj):  # a field is documented where it is declared: a base class's docstring counts
            for base in obj.__mro__[1:]:
                listed |= documented_parameters(sections(inspect.cleandoc(base.__doc__ or "")).get("Parameters", ""))
        missing = [p for p in params if p not in listed]
        if missing:
            out.append(f"parameters not documented: {missing}")
    own = documented_parameters(found.get("Parameters", ""))
    if not _takes_any_keyword(obj):
        unknown = sorted(own - set(params) - _VARIADIC)
        if unknown:
            out.append(f"documented parameters not in the signature: {unknown}")
    if _returns_something(obj) and not ({"Returns", "Yields"} & set(found)):
        out.append("no Returns section")
    return out


def test_the_checker_reads_numpydoc():
    def good(a, b=1, *args, **kw) -> int:
        """Add.

        Parameters
        ----------
        a, b : int
            Numbers.

        Returns
        -------
        int
        """
        return a + b

    def bad(a, c) -> int:
        """Add.

        Parameters
        ----------
        a : int
        """
        return a

    def extra(a) -> None:
        """Nothing.

        Parameters
        ----------
        a, b : int
        """

    assert problems(good) == []
    assert problems(bad) == ["parameters not documented: ['c']", "no Returns section"]
    assert problems(extra) == ["documented parameters not in the signature: ['b']"]


def _public(package: str):
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{package}.{name}", obj


def _registered_configs():
    """The config class of every registered model and audit: each field documented."""
    from trustrec.audit import available_audits
    from trustrec.models import available_models, model_class

    classes = [model_class(n).config_class for n in available_models()]
    classes += [cls.config_class for cls in available_audits().values()]
    seen = {}
    for cls in classes:  # trustrec's own: other test files register doubles into the same registries
        if cls.__module__.startswith("trustrec."):
            seen.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
    return sorted(seen.items())


CASES = [case for package in DOCUMENTED for case in _public(package)]
CONFIGS = _registered_configs()


@pytest.mark.parametrize("obj", [obj for _, obj in CASES], ids=[name for name, _ in CASES])
def test_public_name_has_numpydoc_sections(obj):
    assert problems(obj) == []


@pytest.mark.parametrize("config", [c for _, c in CONFIGS], ids=[n for n, _ in CONFIGS])
def test_config_fields_are_documented_where_declared(config):
    assert problems(config) == []


if __name__ == "__main__":  # python tests/test_docstrings.py trustrec.mitigate ...: what each package lacks
    import sys

    for package in sys.argv[1:]:
        for name, obj in _public(package):
            for problem in problems(obj):
                print(f"{name}: {problem}")
    for name, config in CONFIGS:
        if any(name.startswith(p) for p in sys.argv[1:]):
            for problem in problems(config):
                print(f"{name}: {problem}")
