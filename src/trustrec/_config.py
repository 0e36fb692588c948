"""Base class of every component config: plain, frozen, validated data (typos fail at once)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from trustrec.errors import ConfigError

MAX_SEED = 2**32 - 1
"""Seeds are whole numbers 0 .. 2**32 - 1: every generator trustrec seeds (numpy, torch, Python) takes them."""


def check_seed(seed, owner: str) -> int:
    """``seed`` as an int in 0 .. MAX_SEED, else a ConfigError naming ``owner``."""
    import numbers

    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise ConfigError(f"{owner}: seed must be a whole number from 0 to {MAX_SEED} (2**32 - 1); got {seed!r}")
    return int(seed)


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def validate_config(config_class: type[Config], data: Any, owner: str) -> Config:
    """Build ``config_class`` from a mapping/config, turning pydantic errors into ConfigError that
    name the owner and each offending key."""
    if isinstance(data, config_class):
        return data
    try:
        return config_class.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(map(str, e['loc'])) or '(root)'}': {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else "")
            for e in exc.errors()
        )
        valid = ", ".join(config_class.model_fields)
        raise ConfigError(f"{owner}: invalid config: {problems}. Valid keys: {valid}") from None


class Configurable:
    """Objects whose constructor holds hyper-parameters only, in a frozen ``config_class``
    (recommenders, audits): keyword arguments or a config, never both; ``set_params`` returns a
    fresh object; ``repr`` prints the config as JSON."""

    config_class: ClassVar[type[Config]] = Config
    config: Config  # subclasses narrow it to their config_class

    def __init__(self, config: Config | Mapping[str, Any] | None = None, **kwargs):
        if config is not None and kwargs:
            raise ConfigError(f"{type(self).__name__}: pass a config or keyword arguments, not both")
        self.config = validate_config(self.config_class, kwargs if config is None else config, type(self).__name__)

    def get_params(self) -> dict[str, Any]:
        return self.config.model_dump()

    def set_params(self, **params):
        """A fresh, unfitted object with these parameters changed."""
        return type(self)(**{**self.get_params(), **params})

    def dump_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    @classmethod
    def validate_config(cls, data) -> Config:
        return validate_config(cls.config_class, data, cls.__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.dump_config())})"
