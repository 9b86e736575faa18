"""Subject requests: ``GET`` (access: everything held) and ``DELETE`` (erasure) of one person.

The domain (``suppression.subjects``) does the work; this edge authenticates, normalises
the identifier from the path and shapes the reply.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from suppression import subjects
from suppression.apikeys import Scope
from suppression.models import Source

from .admin import _actor, _channel, _normalize
from .auth import authenticate
from .consents import ConsentStateOut
from .context import parts
from .schemas import AuditItem, ChannelName

routes = web.RouteTableDef()
PATH = "/v1/subjects/{channel}/{identifier}"


class _Out(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class HeldSuppressionOut(_Out):
    channel: ChannelName
    identifier: str
    scope: str
    reason: str
    source: str
    created_at: str
    active: bool  # false: lifted by an opt-in (kept so a replayed older opt-out cannot win)


class KeptSuppressionOut(_Out):
    reason: str
    source: str
    created_at: str


class ErasedOut(_Out):
    reference: str  # the keyed hash's reference; the audit's erasure record names it
    at: str | None
    requested_by: dict[str, str] | None
    suppression: KeptSuppressionOut


class BlockedContentOut(_Out):
    message_id: str
    body: str


class SubjectOut(_Out):
    tenant: str
    channel: ChannelName
    identifier: str
    erased: ErasedOut | None
    suppressions: list[HeldSuppressionOut]
    consent: ConsentStateOut | None
    marketing_sends: list[str]
    audit: list[AuditItem]
    message_records: list[dict[str, object]]
    blocked_content: list[BlockedContentOut]
    review_items: list[dict[str, object]]
    opt_out_confirmation_throttled: bool


class RemovedOut(_Out):
    suppressions: int
    consents: int
    audit: int
    message_records: int
    blocked_content: int
    review_items: int
    marketing_sends: int
    confirmation_throttle: int


class ErasureOut(_Out):
    channel: ChannelName
    identifier: str
    erased: bool
    suppressed: bool  # always true: a keyed hash keeps the person suppressed
    reference: str
    already_erased: bool
    removed: RemovedOut


@routes.get(PATH)
async def subject_access(request: web.Request) -> web.Response:
    """Everything held about the person for the key's tenant (access and portability)."""
    key = await authenticate(request, Scope.READ)
    channel = _channel(request.match_info["channel"])
    ident = _normalize(request, key, channel, request.match_info["identifier"])
    held = await subjects.access(parts(request).store, key.tenant, channel, ident)
    return web.json_response(held.to_json())


@routes.delete(PATH)
async def subject_erasure(request: web.Request) -> web.Response:
    """Erase the person's data; a keyed hash keeps them suppressed."""
    key = await authenticate(request, Scope.WRITE)
    channel = _channel(request.match_info["channel"])
    ident = _normalize(request, key, channel, request.match_info["identifier"])
    done = await subjects.erase(parts(request).service, key.tenant, channel, ident,
                                source=Source.API, actor=_actor(key))
    return web.json_response(done.to_json())
