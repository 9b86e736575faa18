"""Bodies of the SMS JSON API (validated strictly; also in /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BODY_CHARS = 1600


class SmsIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    to: str = Field(min_length=1, max_length=64)
    from_: str = Field(alias="from", min_length=1, max_length=64)
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    category: Literal["marketing", "transactional"] = "marketing"


class SmsOut(BaseModel):
    id: str
    status: str
    to: str
    from_: str = Field(serialization_alias="from")
    body: str
    category: str
    upstream_id: str


class InboundIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=64)
    to: str = Field(min_length=1, max_length=64)
    body: str = Field(max_length=MAX_BODY_CHARS)
    id: str | None = Field(default=None, max_length=128,
                           description="the provider's message id (retries are handled once)")


class InboundOut(BaseModel):
    intent: Literal["opt_out", "opt_in", "help", "none"]
    reply: str | None
