"""Ops views of message records and of replies waiting for review."""

from __future__ import annotations

from aiohttp import web

from suppression.apikeys import Scope
from suppression.errors import InvalidRequest

from .admin import _channel, _guess_channels, _normalize, parse_limit
from .auth import authenticate
from .context import parts

routes = web.RouteTableDef()


@routes.get("/v1/messages")
async def messages(request: web.Request) -> web.Response:
    """Every send attempt to one recipient (time, outcome, refusal code or upstream id).

    ``to``: a phone number or an email address. ``channel`` (sms|email) may be given; by
    default an address with '@' is email and anything else a phone number."""
    key = await authenticate(request, Scope.READ)
    raw = request.query.get("to")
    if not raw:
        raise InvalidRequest("'to' is required", field="to")
    given = request.query.get("channel")
    channel = _channel(given) if given is not None else _guess_channels(raw)[0]
    to = _normalize(request, key, channel, raw, field="to")
    items = await parts(request).store.message_records(key.tenant, channel, to)
    return web.json_response({"items": items})


@routes.get("/v1/review")
async def review(request: web.Request) -> web.Response:
    """Inbound replies that may be opt-outs ("can I cancel?"), newest first, for ops."""
    key = await authenticate(request, Scope.READ)
    limit = parse_limit(request.query.get("limit"))  # '²'.isdigit() is True, int('²') raises
    items = await parts(request).store.review_items(key.tenant, limit)
    return web.json_response({"items": items})
