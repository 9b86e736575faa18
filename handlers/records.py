"""Ops views of message records and of replies waiting for review."""

from __future__ import annotations

from aiohttp import web

from suppression.apikeys import Scope
from suppression.errors import InvalidRequest
from suppression.identifiers import normalize_phone
from suppression.models import Channel

from .auth import authenticate
from .context import parts

routes = web.RouteTableDef()


@routes.get("/v1/messages")
async def messages(request: web.Request) -> web.Response:
    """Every send attempt to one number (time, outcome, refusal code or upstream id)."""
    key = await authenticate(request, Scope.READ)
    raw = request.query.get("to")
    if not raw:
        raise InvalidRequest("'to' is required", field="to")
    tenant = parts(request).settings.tenant(key.tenant)
    to = normalize_phone(raw, tenant.default_region if tenant else "US")
    items = await parts(request).store.message_records(key.tenant, Channel.SMS, to)
    return web.json_response({"items": items})


@routes.get("/v1/review")
async def review(request: web.Request) -> web.Response:
    """Inbound replies that may be opt-outs ("can I cancel?"), newest first, for ops."""
    key = await authenticate(request, Scope.READ)
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("'limit' must be a whole number from 1 to 1000", field="limit")
    items = await parts(request).store.review_items(key.tenant, int(raw))
    return web.json_response({"items": items})
