"""The Redis store: suppressions, consents and the audit trail.

Every Redis call goes through ``_call``, which bounds it in time and turns any
Redis or socket failure into ``StoreUnavailable``: callers fail closed. Key
names come from ``keys``; encodings from ``codec``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from . import codec, keys
from .errors import InvalidRequest, StoreUnavailable
from .models import Channel, OptEvent, Suppression

log = logging.getLogger(__name__)
T = TypeVar("T")

CONSENT_REVOKED, CONSENT_GRANTED, CONSENT_PENDING = 0, 1, 2
LIST_SCAN_BATCH = 512  # buckets read per round trip while listing
MAX_PAGE = 1000


def _load_lua(name: str) -> str:
    return resources.files("suppression").joinpath(f"lua/{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    type: str
    channel: Channel
    identifier: str
    at_ms: int
    reason: str
    source: str
    effect: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        return {
            "id": self.id,
            "type": self.type,
            "channel": self.channel.value,
            "identifier": self.identifier,
            "at": datetime.fromtimestamp(self.at_ms / 1000, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "reason": self.reason or None,
            "source": self.source,
            "effect": self.effect,
            "detail": self.detail,
        }


class RedisStore:
    def __init__(self, client: aioredis.Redis, *, op_timeout_s: float = 0.5) -> None:
        self.client = client
        self.op_timeout_s = op_timeout_s
        self._apply: AsyncScript = client.register_script(_load_lua("apply_event"))
        self._check: AsyncScript = client.register_script(_load_lua("check_many"))
        self._consent: AsyncScript = client.register_script(_load_lua("record_consent"))

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]],
                    timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.op_timeout_s):
                return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("store %s failed: %s: %s", what, type(exc).__name__, exc)
            raise StoreUnavailable() from exc

    # -- health -------------------------------------------------------------

    async def ping(self) -> bool:
        return bool(await self._call("ping", self.client.ping))

    async def run_id(self) -> str:
        """The Redis server's run id: it changes when Redis restarted (and may have lost writes)."""
        info: dict[str, Any] = await self._call("info", lambda: self.client.info("server"))
        return str(info.get("run_id", ""))

    async def listpack_limit(self) -> int | None:
        try:
            cfg = await self._call(
                "config", lambda: self.client.config_get("hash-max-listpack-entries")
            )
        except StoreUnavailable:
            return None
        value = cfg.get("hash-max-listpack-entries")
        return int(value) if value is not None else None

    # -- writes -------------------------------------------------------------

    async def apply(self, events: Sequence[OptEvent], *, timeout_s: float | None = None
                    ) -> list[int]:
        """Apply events in order, in one pipeline. Idempotent: see ``apply_event.lua``."""

        async def run() -> list[int]:
            async with self.client.pipeline(transaction=False) as pipe:
                return await self._apply_in(pipe, events)

        if not events:
            return []
        budget = timeout_s or max(self.op_timeout_s, 0.0005 * len(events))
        return await self._call("apply", run, budget)

    async def _apply_in(self, pipe: Any, events: Sequence[OptEvent]) -> list[int]:
        for ev in events:
            sup, con, aud = keys.all_for_identifier(ev.tenant, ev.channel, ev.identifier)
            entry = codec.encode_entry(
                codec.EntryState(ev.at_ms, ev.action == "opt_out", ev.reason, ev.source)
            )
            consent = ""
            if ev.action == "opt_in":
                consent = str(encode_consent(ev.at_ms, CONSENT_GRANTED))
            await self._apply(
                keys=[sup, con, aud],
                args=[
                    codec.encode_field(ev.channel, ev.identifier), ev.action, ev.at_ms,
                    entry, ev.id, consent, ev.identifier, ev.reason.value,
                    ev.source.value, json.dumps(ev.detail, separators=(",", ":")),
                ],
                client=pipe,
            )
        return [int(r) for r in await pipe.execute()]

    async def record_consent(self, tenant: str, channel: Channel, identifier: str, *,
                             status: int, at_ms: int, event_id: str, source: str,
                             detail: dict[str, Any]) -> None:
        _, con, aud = keys.all_for_identifier(tenant, channel, identifier)

        async def run() -> Any:
            return await self._consent(
                keys=[con, aud],
                args=[codec.encode_field(channel, identifier), encode_consent(at_ms, status),
                      at_ms, event_id, identifier, source,
                      json.dumps(detail, separators=(",", ":"))],
            )

        await self._call("record_consent", run)

    # -- reads --------------------------------------------------------------

    async def entries(self, tenant: str, channel: Channel, identifiers: Sequence[str]
                      ) -> list[codec.EntryState | None]:
        """The stored state of each identifier, in input order: one round trip."""
        by_shard: dict[int, list[int]] = defaultdict(list)
        for i, ident in enumerate(identifiers):
            by_shard[keys.shard_of(keys.bucket_of(ident))].append(i)

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for positions in by_shard.values():
                    await self._check(
                        keys=[keys.suppressions(tenant, channel, keys.bucket_of(identifiers[i]))
                              for i in positions],
                        args=[codec.encode_field(channel, identifiers[i]) for i in positions],
                        client=pipe,
                    )
                return list(await pipe.execute())

        if not identifiers:
            return []
        replies = await self._call("check", run)
        out: list[codec.EntryState | None] = [None] * len(identifiers)
        for positions, values in zip(by_shard.values(), replies, strict=True):
            for i, raw in zip(positions, values, strict=True):
                out[i] = codec.decode_entry(raw) if raw is not None else None
        return out

    async def get(self, tenant: str, channel: Channel, identifier: str) -> Suppression | None:
        key = keys.suppressions(tenant, channel, keys.bucket_of(identifier))
        field = codec.encode_field(channel, identifier)
        raw = await self._call("get", lambda: self.client.hget(key, field))
        if raw is None:
            return None
        state = codec.decode_entry(raw)
        return to_suppression(tenant, channel, identifier, state) if state.active else None

    async def consent_state(self, tenant: str, channel: Channel, identifier: str
                            ) -> tuple[int, int] | None:
        """(status, at_ms) of the latest consent, or None."""
        _, con, _ = keys.all_for_identifier(tenant, channel, identifier)
        field = codec.encode_field(channel, identifier)
        raw = await self._call("consent", lambda: self.client.hget(con, field))
        return decode_consent(raw) if raw is not None else None

    async def audit(self, tenant: str, channel: Channel, identifier: str) -> list[AuditEntry]:
        _, _, aud = keys.all_for_identifier(tenant, channel, identifier)
        rows: Any = await self._call("audit", lambda: self.client.xrange(aud, "-", "+"))
        out = []
        for stream_id, fields in rows:
            f = {k.decode(): v.decode() for k, v in fields.items()}
            if f.get("i") != identifier:
                continue
            sid = stream_id.decode()
            try:
                detail = json.loads(f.get("d") or "{}")
            except json.JSONDecodeError:
                detail = {}
            out.append(AuditEntry(
                id=f.get("e", sid), type=f.get("t", ""), channel=channel, identifier=identifier,
                at_ms=int(sid.split("-")[0]), reason=f.get("r", ""), source=f.get("s", ""),
                effect=f.get("x", ""), detail=detail,
            ))
        return out

    async def list_page(self, tenant: str, channel: Channel, *, cursor: str | None,
                        limit: int, query: str | None) -> tuple[list[Suppression], str | None]:
        """A page of active suppressions in (bucket, identifier) order.

        The cursor is the last position returned, so entries present for the
        whole iteration are returned exactly once, whatever is written meanwhile.
        """
        bucket, after = decode_cursor(cursor)
        items: list[Suppression] = []
        needle = query.lower() if query else None
        while bucket < keys.BUCKETS and len(items) < limit:
            batch = range(bucket, min(bucket + LIST_SCAN_BATCH, keys.BUCKETS))

            async def read(batch: range = batch) -> list[Any]:
                async with self.client.pipeline(transaction=False) as pipe:
                    for b in batch:
                        pipe.hgetall(keys.suppressions(tenant, channel, b))
                    return list(await pipe.execute())

            for b, mapping in zip(batch, await self._call("list", read), strict=True):
                rows = sorted(
                    (codec.decode_field(channel, f), v) for f, v in mapping.items()
                )
                for ident, raw in rows:
                    if b == bucket and after is not None and ident <= after:
                        continue
                    if needle and needle not in ident.lower():
                        continue
                    state = codec.decode_entry(raw)
                    if not state.active:
                        continue
                    items.append(to_suppression(tenant, channel, ident, state))
                    if len(items) == limit:
                        more = encode_cursor(b, ident)
                        return items, more
                after = None
            bucket = batch.stop
        return items, None


def to_suppression(tenant: str, channel: Channel, identifier: str,
                   state: codec.EntryState) -> Suppression:
    return Suppression(tenant=tenant, channel=channel, identifier=identifier,
                       reason=state.reason, source=state.source, created_at_ms=state.at_ms)


def encode_consent(at_ms: int, status: int) -> int:
    return (at_ms - codec.EPOCH_MS) << 4 | status


def decode_consent(raw: bytes | str | int) -> tuple[int, int]:
    value = int(raw)
    return value & 0xF, (value >> 4) + codec.EPOCH_MS


def encode_cursor(bucket: int, last: str) -> str:
    raw = json.dumps([bucket, last], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, str | None]:
    if not cursor:
        return 0, None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        bucket, last = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(bucket, int) or not isinstance(last, str) or not 0 <= bucket:
            raise ValueError("bad cursor shape")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not a cursor this API returned", field="cursor") from exc
    return bucket, last
