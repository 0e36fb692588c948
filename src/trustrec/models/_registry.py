"""Models by name: ``ModelSpec(name, params)`` builds a fresh, unfitted recommender."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trustrec.errors import ConfigError

__all__ = ["ModelSpec", "register_model", "model_class", "available_models", "make_model"]

_MODELS: dict[str, type] = {}
# Built-in models register on import of their module; import lazily to keep `import trustrec` light.
_BUILTIN_MODULES = {
    "most_popular": "trustrec.models.classic._popular",
    "item_knn": "trustrec.models.classic._itemknn",
    "ease": "trustrec.models.classic._ease",
    "bpr_mf": "trustrec.models.classic._bpr",
    "mf": "trustrec.models.classic._mf",
    "sasrec": "trustrec.models.classic._sasrec",
    "llm_generative": "trustrec.models.llm._generative",
    "llm_ranker": "trustrec.models.llm._ranker",
    "text_knn": "trustrec.models.llm._encoder_models",
    "sasrec_text": "trustrec.models.llm._encoder_models",
    "calibrated_reranker": "trustrec.mitigate._rerank",
    "exposure_reranker": "trustrec.mitigate._rerank",
    "constrained": "trustrec.mitigate.control.constrained",
    "rule_enforced": "trustrec.mitigate.control.platform_rules",
}


def register_model(cls):
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ConfigError(f"{cls.__name__} needs a `name` to be registered")
    _MODELS[cls.name] = cls
    return cls


def available_models() -> list[str]:
    return sorted(set(_MODELS) | set(_BUILTIN_MODULES))


def model_class(name: str) -> type:
    if name not in _MODELS and name in _BUILTIN_MODULES:
        import importlib

        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _MODELS:
        close = difflib.get_close_matches(name, available_models(), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; valid: {', '.join(available_models())}")
    return _MODELS[name]


class ModelSpec(BaseModel):
    """What to build: a registered model name and its hyper-parameters (plain data)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    def build(self):
        return model_class(self.name)(**self.params)


def make_model(name: str, **params):
    return ModelSpec(name=name, params=params).build()
