"""Models by name: ``ModelSpec(name, params)`` builds a fresh, unfitted recommender.

The registry is :data:`MODELS` (kind ``models`` of :mod:`trustrec.registry`): the built-ins are
the classes decorated with :func:`register_model` in the modules of ``trustrec.models`` and
``trustrec.mitigate`` (imported on the first lookup, so ``import trustrec`` stays light), and
third-party models come from the entry-point group ``trustrec.models`` (``name = "pkg.mod:Class"``,
the class's ``name`` equal to the entry point's).
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trustrec._registry import NamedRegistry
from trustrec.errors import ConfigError

__all__ = ["MODELS", "ModelSpec", "available_models", "make_model", "model_class", "register_model"]


def _check_model(name: str, obj: Any) -> str | None:
    if not isinstance(obj, type):
        return f"expected a recommender class, got {type(obj).__name__}"
    if getattr(obj, "name", None) != name:
        return f"{obj.__name__}.name is {getattr(obj, 'name', None)!r}, not the entry point's name {name!r}"
    return None


MODELS: NamedRegistry[type] = NamedRegistry(
    "model",
    None,
    ConfigError,
    "",
    group="trustrec.models",
    packages=("trustrec.models", "trustrec.mitigate"),
    check=_check_model,
)


def register_model(cls):
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ConfigError(f"{cls.__name__} needs a `name` to be registered")
    MODELS.register(cls)
    return cls


def available_models() -> list[str]:
    return sorted(MODELS.names())


def model_class(name: str) -> type:
    if name not in MODELS:
        close = difflib.get_close_matches(name, available_models(), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; valid: {', '.join(available_models())}")
    return MODELS.get(name)


class ModelSpec(BaseModel):
    """What to build: a registered model name and its hyper-parameters (plain data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self):
        return model_class(self.name)(**self.params)


def make_model(name: str, **params):
    return ModelSpec(name=name, params=params).build()
