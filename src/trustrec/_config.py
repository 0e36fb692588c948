"""Base class of every component config: plain, frozen, validated data (typos fail at once)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from trustrec.errors import ConfigError


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
