"""Data exports (``POST /v1/exports``) and their audit trail (``GET /v1/audit/exports``).

The one way data leaves over HTTP. The sharing guard (``suppression.sharing``) decides;
``suppression.datasets.authorize_export`` audits the decision with the API key that
asked; a refusal is ``403 sharing_prohibited`` naming the rule.

An allowed export streams (chunked, one chunk per store batch) as JSON lines or CSV.
``X-Export-Records`` carries the number of records, counted Redis-side before the first
byte (see ``suppression.datasets``), so a client can show progress without a
Content-Length; it is the count when the export started. If the store fails before
the response starts: 503 and no data. If it fails mid-stream: the connection is cut
before the chunked body's terminating chunk, so no client mistakes a truncated export
for a complete one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from suppression.apikeys import ApiKey, Scope
from suppression.datasets import EXPORT_EVENT, DatasetStore, authorize_export, export_text
from suppression.errors import StoreUnavailable
from suppression.sharing import (
    MAX_NAME_CHARS,
    Dataset,
    Purpose,
    Recipient,
    RecipientType,
    SharingRequest,
)
from suppression.tenants import Tenant

from .admin import _actor as admin_actor
from .admin import parse_limit
from .auth import authenticate
from .context import parts
from .errors import parse_json
from .schemas import Strict

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
MAX_DATASETS = 16


class RecipientIn(Strict):
    type: Annotated[RecipientType, Field(strict=False)]
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS,
                             description="required for 'processor': who receives the data")


class ExportIn(Strict):
    datasets: list[Annotated[Dataset, Field(strict=False)]] = Field(
        min_length=1, max_length=MAX_DATASETS)
    recipient: RecipientIn
    purpose: Annotated[Purpose, Field(strict=False)]
    format: Literal["jsonl", "csv"] = "jsonl"


def _tenant(request: web.Request, key: ApiKey) -> Tenant:
    # A key of a tenant no longer configured gets the safe defaults, never a looser policy.
    return parts(request).settings.tenant(key.tenant) or Tenant(id=key.tenant)


def _actor(request: web.Request, key: ApiKey) -> dict[str, str]:
    return {**admin_actor(key), "remote": request.remote or ""}


@routes.post("/v1/exports")
async def create_export(request: web.Request) -> web.StreamResponse:
    key = await authenticate(request, Scope.EXPORT)
    body = await parse_json(request, ExportIn)
    ask = SharingRequest(tuple(body.datasets),
                         Recipient(body.recipient.type, body.recipient.name), body.purpose)
    store = DatasetStore(parts(request).store)
    plan = await authorize_export(store, _tenant(request, key), ask, fmt=body.format,
                                  actor=_actor(request, key), via="api")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{key.tenant}-{'+'.join(d.value for d in ask.datasets)}-{stamp}.{body.format}"
    response = web.StreamResponse(headers={
        "Content-Type": f"{MEDIA_TYPES[body.format]}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
        "X-Export-Records": str(plan.total),
        "X-Export-Id": plan.id,
        "Cache-Control": "no-store",
    })
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in export_text(store, plan):
            if chunk:
                await response.write(chunk.encode())
    except StoreUnavailable:
        # Headers are gone: the status cannot change. Cut the connection without the
        # terminating chunk so the client sees an incomplete body, never a short file.
        log.warning("export %s of tenant %s aborted: the store became unavailable",
                    plan.id, key.tenant)
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionError:
        log.info("export %s of tenant %s: the client went away", plan.id, key.tenant)
        return response
    await response.write_eof()
    return response


@routes.get("/v1/audit/exports")
async def export_audit(request: web.Request) -> web.Response:
    """Every export decision of the key's tenant, allowed or refused, newest first."""
    key = await authenticate(request, Scope.READ)
    limit = parse_limit(request.query.get("limit"))
    items, cursor = await DatasetStore(parts(request).store).tenant_audit(
        key.tenant, kind=EXPORT_EVENT, limit=limit, cursor=request.query.get("cursor") or None)
    return web.json_response({"items": items, "next_cursor": cursor})
