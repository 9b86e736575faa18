"""Request and response bodies of the JSON API.

The same models validate requests and generate ``/openapi.json``.
Strict: a number where a string belongs is a 422, not silently coerced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from suppression.models import Reason
from suppression.subjects import ConsentMethod

OptOutReason = Literal[
    "stop_keyword", "unsubscribe_click", "one_click", "mailto", "complaint", "bounce",
    "manual", "import",
]
ChannelName = Literal["sms", "email"]
MAX_CHECK = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ErrorBody(Strict):
    code: str
    message: str
    field: str | None = None
    retry_at: str | None = Field(default=None, description="quiet_hours / frequency_capped: "
                                 "when a retry would pass (ISO 8601 UTC); also Retry-After")


class ErrorResponse(Strict):
    error: ErrorBody


class SuppressionIn(Strict):
    channel: ChannelName
    identifier: str = Field(min_length=1, max_length=320)
    reason: OptOutReason = Reason.MANUAL.value


class SuppressionOut(Strict):
    channel: ChannelName
    identifier: str
    scope: str
    reason: str
    source: str
    created_at: str


class SuppressionPage(Strict):
    items: list[SuppressionOut]
    next_cursor: str | None


class CheckIn(Strict):
    channel: ChannelName
    identifiers: list[str] = Field(min_length=1, max_length=MAX_CHECK)


class CheckResultOut(Strict):
    identifier: str
    normalized: str | None
    suppressed: bool | None
    error: str | None = None


class CheckOut(Strict):
    results: list[CheckResultOut]


class ConsentIn(Strict):
    channel: ChannelName
    identifier: str = Field(min_length=1, max_length=320)
    source: str = Field(min_length=1, max_length=200,
                        description="how consent was collected: web_form, keyword, import, api…")
    evidence: str | None = Field(default=None, max_length=4000,
                                 description="what the person was shown, or a reference to it")
    # Optional evidence (TCPA: who, when, how, what they were told); checked in the domain.
    method: ConsentMethod | None = Field(
        default=None, description="how consent was collected (source stays free text)")
    evidence_ref: str | None = Field(
        default=None, min_length=1, max_length=500,
        description="a reference to what was shown: URL, form version, document id")
    ip: str | None = Field(default=None, min_length=2, max_length=45,
                           description="the person's IP address (IPv4 or IPv6)")
    user_agent: str | None = Field(default=None, min_length=1, max_length=512)
    message_id: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="the inbound message that carried the consent")
    collected_at: str | None = Field(
        default=None, min_length=10, max_length=40,
        description="when the person consented (ISO 8601 with zone), if not just now")


class ConsentOut(Strict):
    channel: ChannelName
    identifier: str
    source: str
    status: Literal["granted", "pending"]
    created_at: str


class AuditItem(Strict):
    id: str
    type: str
    channel: ChannelName
    identifier: str
    at: str
    reason: str | None
    source: str
    effect: str
    detail: dict[str, object]


class AuditPage(Strict):
    items: list[AuditItem]
