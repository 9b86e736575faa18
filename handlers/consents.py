"""Consent history: grants, pending consents, revocations and opt-ins of one person.

``POST /v1/consents`` (recording, with its evidence) stays in ``admin``; this edge reads.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from suppression import subjects
from suppression.apikeys import Scope

from .admin import _channel, _normalize
from .auth import authenticate
from .context import parts
from .schemas import ChannelName, SuppressionOut

routes = web.RouteTableDef()


class _Out(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class ConsentStateOut(_Out):
    status: str
    at: str


class ConsentEventOut(_Out):
    id: str
    at: str
    event: str  # granted, pending, revoked, opted_in, possible_revocation, or the audit type
    type: str
    effect: str
    source: str
    reason: str | None
    scope: str
    detail: dict[str, object]


class ConsentHistoryOut(_Out):
    channel: ChannelName
    identifier: str
    status: str  # granted, pending, revoked, opted_out (a suppression wins), none
    consent: ConsentStateOut | None
    suppression: SuppressionOut | None
    erased: bool
    history: list[ConsentEventOut]


@routes.get("/v1/consents/{channel}/{identifier}")
async def consent_history(request: web.Request) -> web.Response:
    """The person's consent history, oldest first, and where it stands now."""
    key = await authenticate(request, Scope.READ)
    channel = _channel(request.match_info["channel"])
    ident = _normalize(request, key, channel, request.match_info["identifier"])
    body = await subjects.consent_history(parts(request).service, key.tenant, channel, ident)
    return web.json_response(body)
