"""The ops REST API: suppressions, bulk checks, consents, audit.

Each handler parses, authenticates, calls one domain function and shapes the
reply; the suppression logic itself lives in ``suppression.service``.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from suppression.apikeys import ApiKey, Scope
from suppression.errors import InvalidRecipient, InvalidRequest, NotFound
from suppression.identifiers import normalize
from suppression.models import Channel, Reason, Source, iso_ms
from suppression.outbound import record_api_consent
from suppression.subjects import ConsentEvidence

from . import schemas
from .auth import authenticate
from .context import parts
from .errors import parse_json

routes = web.RouteTableDef()
DEFAULT_PAGE, MAX_PAGE = 100, 1000
# The longest cursor list_page can return is ~1,100 characters (bucket + a 254-octet
# address JSON-escaped); anything much longer was not handed out by this API.
_LIMIT_RE = re.compile(r"[0-9]{1,4}")  # ASCII digits only: int() would take '٣' and choke on '²'


def _region(request: web.Request, key: ApiKey) -> str:
    tenant = parts(request).settings.tenant(key.tenant)
    return tenant.default_region if tenant else "US"


def _channel(raw: str | None) -> Channel:
    try:
        return Channel(raw or "")
    except ValueError:
        raise InvalidRequest("'channel' must be 'sms' or 'email'", field="channel") from None


def parse_limit(raw: str | None, *, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE) -> int:
    """A ``limit`` query parameter: ASCII digits from 1 to ``maximum``, else 422 naming it."""
    if raw is None:
        return default
    if not _LIMIT_RE.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {maximum}",
                             field="limit")
    return int(raw)


def _normalize(request: web.Request, key: ApiKey, channel: Channel, raw: str, *,
               field: str = "identifier") -> str:
    """The normalised identifier, or 422 invalid_recipient naming ``field``."""
    try:
        return normalize(channel, raw, default_region=_region(request, key))
    except InvalidRecipient as exc:
        exc.field = exc.field or field
        raise


def _actor(key: ApiKey) -> dict[str, str]:
    return {"key_id": key.id, "key_name": key.name}


@routes.get("/v1/suppressions")
async def list_suppressions(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    q = request.query
    channel = _channel(q.get("channel"))
    limit, cursor = parse_limit(q.get("limit")), q.get("cursor") or None
    items, cursor = await parts(request).service.list_page(
        key.tenant, channel, cursor=cursor, limit=limit, query=q.get("q") or None)
    return web.json_response({"items": [i.to_json() for i in items], "next_cursor": cursor})


@routes.get("/v1/suppressions/{channel}/{identifier}")
async def get_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.READ)
    channel = _channel(request.match_info["channel"])
    ident = _normalize(request, key, channel, request.match_info["identifier"])
    entry = await parts(request).service.get(key.tenant, channel, ident)
    if entry is None:
        raise NotFound(f"{ident} is not suppressed on {channel.value}")
    return web.json_response(entry.to_json())


@routes.post("/v1/suppressions")
async def add_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.WRITE)
    body = await parse_json(request, schemas.SuppressionIn)
    channel = Channel(body.channel)
    ident = _normalize(request, key, channel, body.identifier)
    service = parts(request).service
    # Idempotent: recording it again changes nothing, and the answer below is the stored
    # entry with its original time and reason. No read first: the opt-out must be taken
    # (journalled) even while Redis cannot answer.
    ev = await service.opt_out(key.tenant, channel, ident, reason=Reason(body.reason),
                               source=Source.API, detail=_actor(key))
    parts(request).metrics.opt_events.labels("opt_out", channel.value, "api").inc()
    entry = await service.get(key.tenant, channel, ident)
    if entry is not None:
        return web.json_response(entry.to_json(), status=201)
    return web.json_response({"channel": channel.value, "identifier": ident, "scope": "tenant",
                              "reason": body.reason, "source": "api",
                              "created_at": iso_ms(ev.at_ms)}, status=201)


@routes.delete("/v1/suppressions/{channel}/{identifier}")
async def delete_suppression(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.WRITE)
    channel = _channel(request.match_info["channel"])
    ident = _normalize(request, key, channel, request.match_info["identifier"])
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
    ident = _normalize(request, key, channel, body.identifier)
    # The rest of the evidence (TCPA: who, when, how, what): checked before any write.
    detail = {**_actor(key), **ConsentEvidence(
        method=body.method, evidence_ref=body.evidence_ref, ip=body.ip,
        user_agent=body.user_agent, message_id=body.message_id,
        collected_at=body.collected_at).detail()}
    done = await record_api_consent(
        parts(request).sms, key.tenant, parts(request).settings.tenant(key.tenant), channel,
        ident, method=body.source, evidence=body.evidence, detail=detail)
    return web.json_response({"channel": channel.value, "identifier": ident,
                              "source": body.source, "status": done.status,
                              "created_at": iso_ms(done.at_ms)}, status=201)


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
        ident = _normalize(request, key, channel, raw)
        items.extend(e.to_json() for e in await store.audit(key.tenant, channel, ident))
    items.sort(key=lambda i: str(i["at"]))
    return web.json_response({"items": items})


def _guess_channels(raw: str) -> list[Channel]:
    return [Channel.EMAIL] if "@" in raw else [Channel.SMS]

