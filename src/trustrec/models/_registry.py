"""Models by name: ``ModelSpec(name, params)`` builds a fresh, unfitted recommender.

The registry is :data:`MODELS` (kind ``models`` of :mod:`trustrec.registry`): the built-ins are
the classes decorated with :func:`register_model` in the modules of ``trustrec.models`` and
``trustrec.mitigate`` (imported on the first lookup, so ``import trustrec`` stays light), and
third-party models come from the entry-point group ``trustrec.models`` (``name = "pkg.mod:Class"``,
the class's ``name`` equal to the entry point's).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from trustrec._registry import NamedRegistry
from trustrec.errors import ConfigError

if TYPE_CHECKING:
    from trustrec.models._base import Recommender

R = TypeVar("R", bound="Recommender")

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


def register_model(cls: type[R]) -> type[R]:
    """Class decorator: register ``cls`` under ``cls.name``.

    Parameters
    ----------
    cls : type
        A Recommender class with a ``name``.

    Returns
    -------
    type
        ``cls`` itself, now registered.

    Raises
    ------
    ConfigError
        When ``cls`` has no ``name``.
    """
    if not cls.name:
        raise ConfigError(f"{cls.__name__} needs a `name` to be registered")
    MODELS.register(cls)
    return cls


def available_models() -> list[str]:
    """The names of the registered models.

    Returns
    -------
    list of str
        The registered model names, sorted.
    """
    return sorted(MODELS.names())


def model_class(name: str) -> type:
    """The model class registered under ``name``.

    Parameters
    ----------
    name : str
        A registered model name.

    Returns
    -------
    type
        The registered Recommender class.

    Raises
    ------
    ConfigError
        When no model is registered under ``name`` (the message suggests close names).
    """
    if name not in MODELS:
        close = difflib.get_close_matches(name, available_models(), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; valid: {', '.join(available_models())}")
    return MODELS.get(name)


class ModelSpec(BaseModel):
    """What to build: a registered model name and its hyper-parameters (plain data).

    Parameters
    ----------
    name : str
        A registered model name.
    params : dict of str to object
        The model's settings; empty: its defaults.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self) -> Recommender:
        return model_class(self.name)(**self.params)


def make_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted instance of the model registered under ``name``.

    Parameters
    ----------
    name : str
        A registered model name.
    **params
        The model's settings.

    Returns
    -------
    Recommender
        The unfitted model.

    Raises
    ------
    ConfigError
        When no model is registered under ``name`` or a setting is invalid.
    """
    return ModelSpec(name=name, params=params).build()
