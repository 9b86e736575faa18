"""The ops REST API: suppressions, bulk checks, consents, audit.

Each handler parses, authenticates, calls one domain function and shapes the
reply; the suppression logic itself lives in ``suppression.service``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from suppression.apikeys import ApiKey, Scope
from suppression.errors import InvalidRequest, NotFound
from suppression.identifiers import normalize
from suppression.models import Channel, Reason, Source

from . import schemas
from .auth import authenticate
from .context import parts
from .errors import parse_json

routes = web.RouteTableDef()
DEFAULT_PAGE, MAX_PAGE = 100, 1000


def _region(request: web.Request, key: ApiKey) -> str:
    tenant = parts(request).settings.tenant(key.tenant)
    return tenant.default_region if tenant else "US"


def _channel(raw: str | None) -> Channel:
    try:
        return Channel(raw or "")
    except ValueError:
        raise InvalidRequest("'channel' must be 'sms' or 'email'", field="channel") from None


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_PAGE}",
                             field="limit")
    return int(raw)


def _actor(key: ApiKey) -> dict[str, str]:
    return {"key_id": key.id, "key_name": key.name}


@routes.get("/v1/suppressions")
async def list_suppressions(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    q = request.query
    channel = _channel(q.get("channel"))
    items, cursor = await parts(request).store.list_page(
        key.tenant, channel, cursor=q.get("cursor"), limit=_limit(q.get("limit")),
        query=q.get("q") or None)
    return web.json_response({"items": [i.to_json() for i in items], "next_cursor": cursor})


@routes.get("/v1/suppressions/{channel}/{identifier}")
async def get_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    channel = _channel(request.match_info["channel"])
    ident = normalize(channel, request.match_info["identifier"],
                      default_region=_region(request, key))
    entry = await parts(request).service.get(key.tenant, channel, ident)
    if entry is None:
        raise NotFound(f"{ident} is not suppressed on {channel.value}")
    return web.json_response(entry.to_json())


@routes.post("/v1/suppressions")
async def add_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.WRITE)
    body = await parse_json(request, schemas.SuppressionIn)
    channel = Channel(body.channel)
    ident = normalize(channel, body.identifier, default_region=_region(request, key))
    service = parts(request).service
    ev = await service.opt_out(key.tenant, channel, ident, reason=Reason(body.reason),
                               source=Source.API, detail=_actor(key))
    parts(request).metrics.opt_events.labels("opt_out", channel.value, "api").inc()
    entry = await _entry_or_event(request, key.tenant, channel, ident, ev.at_ms, body.reason)
    return web.json_response(entry, status=201)


async def _entry_or_event(request: web.Request, tenant: str, channel: Channel, ident: str,
                          at_ms: int, reason: str) -> dict[str, Any]:
    """The stored entry (an earlier opt-out keeps its original time and reason)."""
    entry = await parts(request).service.get(tenant, channel, ident)
    if entry is not None:
        return entry.to_json()
    return {"channel": channel.value, "identifier": ident, "scope": "tenant",
            "reason": reason, "source": "api", "created_at": _iso(at_ms)}


@routes.delete("/v1/suppressions/{channel}/{identifier}")
async def delete_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.WRITE)
    channel = _channel(request.match_info["channel"])
    ident = normalize(channel, request.match_info["identifier"],
                      default_region=_region(request, key))
    service = parts(request).service
    if await service.get(key.tenant, channel, ident) is None:
        raise NotFound(f"{ident} is not suppressed on {channel.value}")
    await service.opt_in(key.tenant, channel, ident, reason=Reason.OPT_IN_MANUAL,
                         source=Source.API, detail=_actor(key))
    parts(request).metrics.opt_events.labels("opt_in", channel.value, "api").inc()
    return web.Response(status=204)


@routes.post("/v1/suppressions/check")
async def check_suppressions(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    body = await parse_json(request, schemas.CheckIn)
    channel = Channel(body.channel)
    results = await parts(request).service.check(key.tenant, channel, body.identifiers,
                                                 default_region=_region(request, key))
    out = []
    for r in results:
        item: dict[str, Any] = {"identifier": r.identifier, "normalized": r.normalized,
                                "suppressed": r.suppressed}
        if r.error:
            item["error"] = r.error
        out.append(item)
    return web.json_response({"results": out})


@routes.post("/v1/consents")
async def add_consent(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.WRITE)
    body = await parse_json(request, schemas.ConsentIn)
    channel = Channel(body.channel)
    ident = normalize(channel, body.identifier, default_region=_region(request, key))
    at = await parts(request).service.record_consent(
        key.tenant, channel, ident, method=body.source, evidence=body.evidence,
        detail=_actor(key))
    return web.json_response({"channel": channel.value, "identifier": ident,
                              "source": body.source, "status": "granted",
                              "created_at": _iso(at)}, status=201)


@routes.get("/v1/audit")
async def audit(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    raw = request.query.get("identifier")
    if not raw:
        raise InvalidRequest("'identifier' is required", field="identifier")
    channels = ([_channel(request.query["channel"])] if "channel" in request.query
                else _guess_channels(raw))
    items: list[dict[str, Any]] = []
    store = parts(request).store
    for channel in channels:
        ident = normalize(channel, raw, default_region=_region(request, key))
        items.extend(e.to_json() for e in await store.audit(key.tenant, channel, ident))
    items.sort(key=lambda i: str(i["at"]))
    return web.json_response({"items": items})


def _guess_channels(raw: str) -> list[Channel]:
    return [Channel.EMAIL] if "@" in raw else [Channel.SMS]


def _iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
