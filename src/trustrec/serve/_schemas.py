"""The HTTP schemas (pydantic): the request body of ``POST /v1/recommend`` and the responses.

Raw ids are strings; a JSON integer is accepted for an id and read as its decimal string
(MovieLens ids are numbers). Unknown fields are refused (a typo fails at once, naming the field).
Size limits are the guard chain's (:class:`~trustrec.serve.InputLimits`), not the schema's, so
they stay configurable and their rejections name the limit.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

__all__ = ["ErrorBody", "HealthBody", "ItemBody", "RecommendBody", "RecommendResponseBody", "VersionBody"]


def _raw_id(value: object) -> object:
    """A JSON integer id as its decimal string (bools are not ids)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


RawId = Annotated[str, BeforeValidator(_raw_id), Field(min_length=1, max_length=256)]


class RecommendBody(BaseModel):
    """The body of ``POST /v1/recommend``: a user id or a history (or both: the history then
    replaces the user's stored one), ``k``, optional candidates, constraint and explanations."""

    model_config = ConfigDict(extra="forbid", strict=False)

    user_id: RawId | None = Field(
        None, description="A user of the training data; its history is used when none is given."
    )
    history: list[RawId] | None = Field(None, description="Raw item ids, oldest first.")
    k: StrictInt = Field(10, description="How many items to return.")
    candidates: list[RawId] | None = Field(None, description="Only these raw item ids may be returned.")
    constraint: str | None = Field(
        None, description="A natural-language constraint, e.g. 'no horror, only films before 1980'."
    )
    explain: StrictBool = Field(False, description="Explain each item by the history items that raised its score.")


class ItemBody(BaseModel):
    """One recommended item."""

    item_id: str
    title: str | None = None
    score: float
    because: list[dict[str, Any]] | None = None


class RecommendResponseBody(BaseModel):
    """The answer of ``POST /v1/recommend``."""

    request_id: str
    model: str
    user_id: str | None = None
    items: list[ItemBody]
    rules_applied: list[str]
    warnings: list[str]
    explanation_method: str | None = None


class ErrorBody(BaseModel):
    """Every error: what is wrong (``error``), which check refused (``guard``), the request id."""

    error: str
    guard: str
    request_id: str
    detail: list[dict[str, Any]] | None = None


class HealthBody(BaseModel):
    """``GET /health``."""

    status: str
    model: str
    n_items: int


class VersionBody(BaseModel):
    """``GET /version``."""

    trustrec: str
    model: str
    service: dict[str, Any]
