"""The public API is annotated (``py.typed`` ships, so users' type checkers read these): every
parameter and return of each public function, and of each public method of a public class, in
every public package (``ANNOTATED``: the API reference's); a new public package joins it."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tests.test_docstrings import DOCUMENTED

ANNOTATED = DOCUMENTED  # the same public packages: the API reference's


def unannotated(function) -> list[str]:
    """Parameters (and ``return``) of ``function`` without an annotation."""
    signature = inspect.signature(function)
    out = [n for n, p in signature.parameters.items() if n not in ("self", "cls") and p.annotation is p.empty]
    if signature.return_annotation is signature.empty and function.__name__ != "__init__":
        out.append("return")
    return out


def public_functions(package: str):
    """``(qualified name, function)`` for each public function and public method in ``package``."""
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            yield f"{package}.{name}", obj
        elif inspect.isclass(obj) and obj.__module__.startswith("trustrec"):
            for attr, value in vars(obj).items():
                if getattr(value, "__module__", "") == "typing":
                    continue  # the __init__ typing.Protocol puts on a protocol class is not ours
                if inspect.isfunction(value) and (not attr.startswith("_") or attr == "__init__"):
                    yield f"{package}.{name}.{attr}", value


def test_the_checker_sees_missing_annotations():
    def typed(a: int, *args: str, b: float = 1.0, **kw: object) -> int:
        return a

    def untyped(a, b: int = 1):
        return a

    assert unannotated(typed) == []
    assert unannotated(untyped) == ["a", "return"]


CASES = sorted({name: fn for package in ANNOTATED for name, fn in public_functions(package)}.items())


@pytest.mark.parametrize("function", [fn for _, fn in CASES], ids=[name for name, _ in CASES])
def test_public_function_is_annotated(function):
    assert unannotated(function) == []


if __name__ == "__main__":  # python tests/test_annotations.py trustrec.data ...: what each package lacks
    import sys

    for package in sys.argv[1:]:
        for name, fn in public_functions(package):
            missing = unannotated(fn)
            if missing:
                print(f"{name}: {missing}")
