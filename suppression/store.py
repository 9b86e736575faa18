"""The Redis store: suppressions, consents and the audit trail.

Every Redis call goes through ``_call``, which bounds it in time and turns any
Redis or socket failure into ``StoreUnavailable``: callers fail closed. Key
names come from ``keys``; encodings from ``codec``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from . import codec, keys
from .errors import InvalidRequest, StoreUnavailable
from .models import (
    Channel,
    OptEvent,
    Suppression,
    iso_ms,
    new_event_id,
    now_ms,
    scope_label,
    scoped,
    split_scoped,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

CONSENT_REVOKED, CONSENT_GRANTED, CONSENT_PENDING = 0, 1, 2
LIST_SCAN_BATCH = 256  # used buckets read per round trip while listing
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
        return {
            "id": self.id,
            "type": self.type,
            "channel": self.channel.value,
            "identifier": self.identifier,
            "at": iso_ms(self.at_ms),
            "reason": self.reason or None,
            "source": self.source,
            "effect": self.effect,
            "detail": self.detail,
        }


class Script:
    """A Lua script sent as plain EVALSHA (one round trip, also inside pipelines).

    redis-py's own Script objects make every pipeline ask ``SCRIPT EXISTS``
    first: a second round trip. Here a NOSCRIPT reply (a restarted Redis has
    an empty script cache) loads the script and the caller retries once.
    """

    def __init__(self, name: str) -> None:
        self.source = _load_lua(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def args(self, keys: Sequence[str], argv: Sequence[str | int]) -> list[str | int]:
        return [self.sha, len(keys), *keys, *argv]


class RedisStore:
    def __init__(self, client: aioredis.Redis, *, op_timeout_s: float = 0.5) -> None:
        self.client = client
        self.op_timeout_s = op_timeout_s
        self._scripts = [Script(n) for n in ("apply_event", "check_many", "record_consent",
                                             "record_message")]
        self._apply, self._check, self._consent, self._message = self._scripts

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]],
                    timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.op_timeout_s):
                try:
                    return await fn()
                except NoScriptError:
                    await self._load_scripts()
                    return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("store %s failed: %s: %s", what, type(exc).__name__, exc)
            raise StoreUnavailable() from exc

    async def _load_scripts(self) -> None:
        for script in self._scripts:
            await self.client.script_load(script.source)

    async def _pipeline(self, commands: Iterable[Sequence[str | int]]) -> list[Any]:
        """Run commands in one pipeline (one round trip); errors raise."""
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())

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
        commands = []
        for ev in events:
            sup, con, aud = keys.all_for_identifier(ev.tenant, ev.channel, ev.identifier)
            entry = codec.encode_entry(
                codec.EntryState(ev.at_ms, ev.action == "opt_out", ev.reason, ev.source))
            # Consent is the person's, for the whole channel: a topic opt-in is not one.
            consent = (str(encode_consent(ev.at_ms, CONSENT_GRANTED))
                       if ev.action == "opt_in" and not ev.scope else "")
            detail = {**ev.detail, "scope": scope_label(ev.scope)} if ev.scope else ev.detail
            record = audit_record(ev.at_ms, ev.action, ev.identifier, ev.reason.value,
                                  ev.source.value, detail)
            bucket = keys.bucket_of(ev.identifier)
            used = keys.used_buckets(ev.tenant, ev.channel, keys.shard_of(bucket))
            commands.append(("EVALSHA", *self._apply.args(
                [sup, con, aud, used],
                [codec.encode_field(ev.channel, scoped(ev.identifier, ev.scope)), ev.action,
                 entry, ev.id,
                 consent, record, bucket % keys.BUCKETS_PER_SHARD])))
        if not commands:
            return []
        budget = timeout_s or max(self.op_timeout_s, 0.0005 * len(events))
        replies = await self._call("apply", lambda: self._pipeline(commands), budget)
        return [int(r) for r in replies]

    async def record_consent(self, tenant: str, channel: Channel, identifier: str, *,
                             status: int, at_ms: int, event_id: str, source: str,
                             detail: dict[str, Any]) -> None:
        _, con, aud = keys.all_for_identifier(tenant, channel, identifier)
        command = ("EVALSHA", *self._consent.args(
            [con, aud],
            [codec.encode_field(channel, identifier), encode_consent(at_ms, status), event_id,
             audit_record(at_ms, "consent", identifier, "", source, detail)]))
        await self._call("record_consent", lambda: self._pipeline([command]))

    # -- reads --------------------------------------------------------------

    async def entries(self, tenant: str, channel: Channel, identifiers: Sequence[str]
                      ) -> list[codec.EntryState | None]:
        """The stored state of each identifier, in input order: one round trip."""
        by_shard: dict[int, tuple[list[int], list[str], list[str]]] = {}
        for i, ident in enumerate(identifiers):
            bucket = keys.bucket_of(ident)
            positions, bucket_keys, fields = by_shard.setdefault(
                keys.shard_of(bucket), ([], [], []))
            positions.append(i)
            bucket_keys.append(keys.suppressions(tenant, channel, bucket))
            fields.append(codec.encode_field(channel, ident))
        if not identifiers:
            return []
        commands = [("EVALSHA", *self._check.args(k, f)) for _, k, f in by_shard.values()]
        replies = await self._call("check", lambda: self._pipeline(commands))
        out: list[codec.EntryState | None] = [None] * len(identifiers)
        for (positions, _, _), values in zip(by_shard.values(), replies, strict=True):
            for i, raw in zip(positions, values, strict=True):
                if raw is not None:
                    out[i] = codec.decode_entry(raw)
        return out

    async def get(self, tenant: str, channel: Channel, identifier: str) -> Suppression | None:
        state = (await self.entries(tenant, channel, [identifier]))[0]
        if state is None or not state.active:
            return None
        return to_suppression(tenant, channel, identifier, state)

    async def consent_state(self, tenant: str, channel: Channel, identifier: str
                            ) -> tuple[int, int] | None:
        """(status, at_ms) of the latest consent, or None."""
        _, con, _ = keys.all_for_identifier(tenant, channel, identifier)
        field = codec.encode_field(channel, identifier)
        raw = await self._call("consent", lambda: self.client.hget(con, field))
        return decode_consent(raw) if raw is not None else None

    async def audit(self, tenant: str, channel: Channel, identifier: str) -> list[AuditEntry]:
        _, _, aud = keys.all_for_identifier(tenant, channel, identifier)
        rows: Any = await self._call("audit", lambda: self.client.lrange(aud, 0, -1))
        out = []
        for raw in rows:
            entry = parse_audit(channel, raw)
            if entry is not None and entry.identifier == identifier:
                out.append(entry)
        return out

    async def send_state(self, tenant: str, channel: Channel, identifier: str
                         ) -> tuple[codec.EntryState | None, tuple[int, int] | None, list[int]]:
        """Everything a send decision needs about one recipient, in one round trip:
        its suppression entry, its latest consent (status, at_ms) and the times (s)
        of its last marketing sends. All three keys share the bucket's slot."""
        bucket = keys.bucket_of(identifier)
        field = codec.encode_field(channel, identifier)
        commands = [("HGET", keys.suppressions(tenant, channel, bucket), field),
                    ("HGET", keys.consents(tenant, channel, bucket), field),
                    ("HGET", keys.sends(tenant, channel, bucket), field)]
        sup, con, sent = await self._call("send_state", partial(self._pipeline, commands))
        sent_text = sent.decode() if isinstance(sent, bytes) else sent
        times = [int(t) for t in sent_text.split(",")] if sent_text else []
        return (codec.decode_entry(sup) if sup is not None else None,
                decode_consent(con) if con is not None else None, times)

    async def record_message(self, tenant: str, channel: Channel, identifier: str, *,
                             record: dict[str, Any], at_ms: int, marketing_sent: bool,
                             retention_ms: int, keep_sends: int = 3) -> None:
        bucket = keys.bucket_of(identifier)
        line = f"{at_ms}|{json.dumps(record, separators=(',', ':'))}"
        command = ("EVALSHA", *self._message.args(
            [keys.sends(tenant, channel, bucket), keys.messages(tenant, channel, bucket)],
            [codec.encode_field(channel, identifier),
             str(at_ms // 1000) if marketing_sent else "", line, at_ms - retention_ms,
             keep_sends]))
        await self._call("record_message", partial(self._pipeline, [command]))

    async def message_records(self, tenant: str, channel: Channel, identifier: str
                              ) -> list[dict[str, Any]]:
        key = keys.messages(tenant, channel, keys.bucket_of(identifier))
        rows: Any = await self._call("messages", lambda: self.client.lrange(key, 0, -1))
        out = []
        for raw in rows:
            _, _, payload = raw.decode().partition("|")
            try:
                record = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("to") == identifier:
                out.append(record)
        return out

    async def keep_blocked_content(self, tenant: str, message_id: str, body: str,
                                   ttl_s: int) -> None:
        key = keys.blocked_content(tenant, message_id)
        await self._call("blocked_content", lambda: self.client.set(key, body, ex=ttl_s))

    async def blocked_content(self, tenant: str, message_id: str) -> str | None:
        key = keys.blocked_content(tenant, message_id)
        raw: Any = await self._call("blocked_content", lambda: self.client.get(key))
        return raw.decode() if raw is not None else None

    async def claim(self, key: str, ttl_s: int) -> bool:
        """SET NX with a TTL: True the first time within ``ttl_s``."""
        return bool(await self._call("claim", lambda: self.client.set(key, "1", nx=True,
                                                                       ex=ttl_s)))

    async def append_audit(self, tenant: str, channel: Channel, identifier: str, *, kind: str,
                           source: str, detail: dict[str, Any]) -> None:
        """An audit record that changes no state (e.g. a possible opt-out for review)."""
        _, _, aud = keys.all_for_identifier(tenant, channel, identifier)
        line = (f"{new_event_id()}|none|"
                f"{audit_record(now_ms(), kind, identifier, '', source, detail)}")
        await self._call("audit", partial(self._pipeline, [("RPUSH", aud, line)]))

    async def push_review(self, tenant: str, item: dict[str, Any], cap: int = 10_000) -> None:
        key = keys.review(tenant)
        payload = json.dumps(item, separators=(",", ":"))
        commands = [("LPUSH", key, payload), ("LTRIM", key, 0, cap - 1)]
        await self._call("review", partial(self._pipeline, commands))

    async def review_items(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        key = keys.review(tenant)
        rows: Any = await self._call("review", lambda: self.client.lrange(key, 0, limit - 1))
        return [json.loads(r) for r in rows]

    async def list_page(self, tenant: str, channel: Channel, *, cursor: str | None,
                        limit: int, query: str | None) -> tuple[list[Suppression], str | None]:
        """A page of active suppressions in (bucket, identifier) order.

        The cursor is the last position returned, so entries present for the
        whole iteration are returned exactly once, whatever is written meanwhile.
        """
        start, after = decode_cursor(cursor)
        items: list[Suppression] = []
        needle = query.lower() if query else None
        used = await self._used_buckets(tenant, channel, start)
        for i in range(0, len(used), LIST_SCAN_BATCH):
            batch = used[i:i + LIST_SCAN_BATCH]
            commands = [("HGETALL", keys.suppressions(tenant, channel, b)) for b in batch]
            replies = await self._call("list", partial(self._pipeline, commands))
            for b, mapping in zip(batch, replies, strict=True):
                rows = sorted((codec.decode_field(channel, f), v) for f, v in mapping.items())
                for name, raw in rows:
                    if b == start and after is not None and name <= after:
                        continue
                    ident, scope = split_scoped(name)
                    if needle and needle not in ident.lower():
                        continue
                    state = codec.decode_entry(raw)
                    if not state.active:
                        continue
                    items.append(to_suppression(tenant, channel, ident, state, scope))
                    if len(items) == limit:
                        return items, encode_cursor(b, name)
        return items, None

    async def _used_buckets(self, tenant: str, channel: Channel, start: int) -> list[int]:
        """Buckets from ``start`` on that ever held a suppression, in order: one round trip."""
        shards = range(keys.shard_of(start), keys.SHARDS)
        commands = [("GET", keys.used_buckets(tenant, channel, s)) for s in shards]
        bitmaps = await self._call("list", partial(self._pipeline, commands))
        out = []
        for shard, bitmap in zip(shards, bitmaps, strict=True):
            for byte_index, byte in enumerate(bitmap or b""):
                for bit in range(8):
                    if byte & (0x80 >> bit):  # SETBIT numbers bits from the most significant
                        bucket = shard * keys.BUCKETS_PER_SHARD + byte_index * 8 + bit
                        if bucket >= start:
                            out.append(bucket)
        return out


def audit_record(at_ms: int, kind: str, identifier: str, reason: str, source: str,
                 detail: dict[str, Any]) -> str:
    return json.dumps([at_ms, kind, identifier, reason, source, detail], separators=(",", ":"))


def parse_audit(channel: Channel, raw: bytes | str) -> AuditEntry | None:
    """``<event id>|<effect>|<JSON [at_ms, type, identifier, reason, source, detail]>``."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        eid, effect, payload = text.split("|", 2)
        at_ms, kind, identifier, reason, source, detail = json.loads(payload)
    except ValueError:
        log.warning("skipping an unreadable audit record")
        return None
    return AuditEntry(id=eid, type=kind, channel=channel, identifier=identifier,
                      at_ms=int(at_ms), reason=reason, source=source, effect=effect,
                      detail=detail if isinstance(detail, dict) else {})


def to_suppression(tenant: str, channel: Channel, identifier: str,
                   state: codec.EntryState, scope: str = "") -> Suppression:
    return Suppression(tenant=tenant, channel=channel, identifier=identifier,
                       reason=state.reason, source=state.source, created_at_ms=state.at_ms,
                       scope=scope)


def encode_consent(at_ms: int, status: int) -> int:
    return (at_ms - codec.EPOCH_MS) << 4 | status


def decode_consent(raw: bytes | str | int) -> tuple[int, int]:
    value = int(raw)
    return value & 0xF, (value >> 4) + codec.EPOCH_MS


def encode_cursor(bucket: int, last: str) -> str:
    raw = json.dumps([bucket, last], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_CHARS = 2048  # ours are ~60; a bound keeps decoding cheap on junk


def decode_cursor(cursor: str | None) -> tuple[int, str | None]:
    if not cursor:
        return 0, None
    bad = InvalidRequest("'cursor' is not a cursor this API returned; start again without it",
                         field="cursor")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        bucket, last = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(bucket, int) or not isinstance(last, str) or \
                not 0 <= bucket < keys.BUCKETS:
            raise ValueError("bad cursor shape")
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise bad from exc
    return bucket, last
