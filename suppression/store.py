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
    Reason,
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
CONSENT_STATUS = {CONSENT_GRANTED: "granted", CONSENT_PENDING: "pending",
                  CONSENT_REVOKED: "revoked"}  # as the APIs and exports name them
LIST_SCAN_BATCH = 256  # used buckets read per round trip while listing
MAX_PAGE = 1000
KEEP_SENDS = 3  # marketing send times kept per identifier: enough for the largest cap (3/24 h)


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

    def __init__(self, name: str, source: str | None = None) -> None:
        self.source = _load_lua(name) if source is None else source
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def args(self, keys: Sequence[str], argv: Sequence[str | int]) -> list[str | int]:
        return [self.sha, len(keys), *keys, *argv]


@dataclass(frozen=True, slots=True)
class Reservation:
    """``RedisStore.reserve_send``'s answer: the slot was taken, or the identifier is
    erased (so suppressed), or neither: ``times`` are the sends inside the window."""

    taken: bool
    erased: bool
    times: list[int]


class RedisStore:
    def __init__(self, client: aioredis.Redis, *, op_timeout_s: float = 0.5,
                 pepper: bytes | None = None) -> None:
        self.client = client
        self.op_timeout_s = op_timeout_s
        # Key of the hashes that keep erased people suppressed (keys.erased_field). Every
        # process sharing this Redis must use the same one, for ever (Settings.resolved_pepper).
        self.pepper = pepper
        self._scripts = [Script(n) for n in ("apply_event", "check_many", "record_consent",
                                             "record_message")]
        self._apply, self._check, self._consent, self._message = self._scripts
        # The SMS hot paths: one command each (see the scripts). apply_claimed.lua inlines
        # apply_event.lua, so an opt-out is applied by one rule whichever door it came by.
        self._send_state = Script("send_state")
        self._reserve, self._release = Script("reserve_send"), Script("release_send")
        self._claimed = Script("apply_claimed", _load_lua("apply_claimed").replace(
            "--@apply_event.lua@", self._apply.source))
        self._scripts += [self._send_state, self._claimed, self._reserve, self._release]
        # Awaited before message records are read, so a reader sees every record written
        # behind the send's response before it asked (``outbound.MessageRecorder.flush``).
        self.records_barrier: Callable[[], Awaitable[None]] | None = None

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

    async def run_script(self, what: str, script: Script, key_names: Sequence[str],
                         argv: Sequence[str | int], *, timeout_s: float | None = None) -> Any:
        """One EVALSHA of a script another domain module owns (``retention``), loading
        it on NOSCRIPT: ``_load_scripts`` only knows the store's own scripts."""
        command = ("EVALSHA", *script.args(key_names, argv))

        async def call() -> Any:
            try:
                return (await self._pipeline([command]))[0]
            except NoScriptError:
                await self.client.script_load(script.source)
                return (await self._pipeline([command]))[0]
        return await self._call(what, call, timeout_s)

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
            key_names, argv = _apply_args(ev)
            commands.append(("EVALSHA", *self._apply.args(
                key_names, [*argv, self.erased_field(ev.tenant, ev.channel, ev.identifier)])))
        if not commands:
            return []
        budget = timeout_s or max(self.op_timeout_s, 0.0005 * len(events))
        replies = await self._call("apply", lambda: self._pipeline(commands), budget)
        return [int(r) for r in replies]

    async def apply_claimed(self, ev: OptEvent, *, dedupe: Claim | None = None,
                            confirm: Claim | None = None) -> tuple[int, bool]:
        """Apply one event and take its claims atomically, in one round trip.

        ``dedupe``: if its key is already held (a provider's retry), nothing is applied and
        the result is -2. ``confirm``: taken (True) unless held, and only when not a retry.
        Returns (apply result as ``apply_event.lua``, confirmation claim taken).
        All keys must be in the identifier's shard (``apply_claimed.lua``).
        """
        key_names, argv = _apply_args(ev)
        claims = [c for c in (dedupe, confirm) if c is not None]
        command = ("EVALSHA", *self._claimed.args(
            [*key_names, *(c.key for c in claims)],
            [*argv, self.erased_field(ev.tenant, ev.channel, ev.identifier),
             dedupe.ttl_s if dedupe else "", confirm.ttl_s if confirm else ""]))
        result, confirmed = await self._call(
            "apply", partial(self.client.execute_command, *command))
        return int(result), bool(confirmed)

    async def record_consent(self, tenant: str, channel: Channel, identifier: str, *,
                             status: int, at_ms: int, event_id: str, source: str,
                             detail: dict[str, Any]) -> bool:
        """Write a consent state and its audit record; False (nothing written) if the
        identifier was erased (``record_consent.lua`` checks in the same call)."""
        sup, con, aud = keys.all_for_identifier(tenant, channel, identifier)
        command = ("EVALSHA", *self._consent.args(
            [con, aud, sup],
            [codec.encode_field(channel, identifier), encode_consent(at_ms, status), event_id,
             audit_record(at_ms, "consent", identifier, "", source, detail),
             self.erased_field(tenant, channel, identifier)]))
        replies = await self._call("record_consent", lambda: self._pipeline([command]))
        return bool(replies[0])

    # -- reads --------------------------------------------------------------

    async def entries(self, tenant: str, channel: Channel, identifiers: Sequence[str]
                      ) -> list[codec.EntryState | None]:
        """The stored state of each identifier, in input order: one round trip."""
        return (await self.entries_and(tenant, channel, identifiers))[0]

    async def entries_and(self, tenant: str, channel: Channel, identifiers: Sequence[str],
                          also: Sequence[Sequence[str | int]] = ()
                          ) -> tuple[list[codec.EntryState | None], list[Any]]:
        """``entries``, plus the replies of the commands ``also``, in the same round trip."""
        by_shard: dict[int, tuple[list[int], list[str], list[str], list[str]]] = {}
        for i, ident in enumerate(identifiers):
            bucket = keys.bucket_of(ident)
            positions, bucket_keys, fields, erased = by_shard.setdefault(
                keys.shard_of(bucket), ([], [], [], []))
            positions.append(i)
            bucket_keys.append(keys.suppressions(tenant, channel, bucket))
            fields.append(codec.encode_field(channel, ident))
            erased.append(self.erased_field(tenant, channel, ident))  # read in the same call
        if not identifiers and not also:
            return [], []
        commands: list[Sequence[str | int]] = [
            ("EVALSHA", *self._check.args(k, [*f, *e])) for _, k, f, e in by_shard.values()]
        commands.extend(also)
        replies = await self._call("check", lambda: self._pipeline(commands))
        out: list[codec.EntryState | None] = [None] * len(identifiers)
        for (positions, *_), values in zip(by_shard.values(), replies, strict=False):
            for i, raw in zip(positions, values, strict=True):
                if raw is not None:
                    out[i] = codec.decode_entry(raw)
        return out, replies[len(by_shard):]

    def erased_field(self, tenant: str, channel: Channel, identifier: str) -> str:
        """The field of ``identifier``'s erased entry; '' for a scoped name (an erasure keeps
        only the channel-wide entry) or when no pepper is set."""
        if self.pepper is None or split_scoped(identifier)[1]:
            return ""
        return keys.erased_field(self.pepper, tenant, channel, identifier)

    async def erased(self, tenant: str, channel: Channel, identifier: str
                     ) -> codec.EntryState | None:
        """The entry that keeps an erased identifier suppressed, or None."""
        field = self.erased_field(tenant, channel, identifier)
        if not field:
            return None
        key = keys.suppressions(tenant, channel, keys.bucket_of(identifier))
        raw = await self._call("erased", lambda: self.client.hget(key, field))
        return codec.decode_entry(raw) if raw is not None else None

    async def lift_erased(self, tenant: str, channel: Channel, identifier: str) -> bool:
        """Drop an erased identifier's hashed entry (the person opted in again)."""
        field = self.erased_field(tenant, channel, identifier)
        key = keys.suppressions(tenant, channel, keys.bucket_of(identifier))
        return bool(field) and bool(await self._call(
            "erased", lambda: self.client.hdel(key, field)))

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
        # An erased person's hashed entry is read in the same script (send_state.lua).
        command = ("EVALSHA", *self._send_state.args(
            [keys.suppressions(tenant, channel, bucket), keys.consents(tenant, channel, bucket),
             keys.sends(tenant, channel, bucket)],
            [codec.encode_field(channel, identifier),
             self.erased_field(tenant, channel, identifier)]))
        sup, con, sent = await self._call("send_state",
                                          partial(self.client.execute_command, *command))
        sent_text = sent.decode() if isinstance(sent, bytes) else sent
        times = [int(t) for t in sent_text.split(",")] if sent_text else []
        return (codec.decode_entry(sup) if sup is not None else None,
                decode_consent(con) if con is not None else None, times)

    async def rewrite_aof(self) -> bool:
        """Ask Redis to rewrite its append-only file (``BGREWRITEAOF``) when it keeps one, so
        an erased person's old writes leave the disk too, not only memory. Best effort: a
        Redis without AOF, or one that refuses the command (managed services may), is left
        alone. True if a rewrite was started or scheduled."""
        try:
            info: Any = await self._call("info", lambda: self.client.info("persistence"))
            if not int(info.get("aof_enabled", 0)):
                return False
            await self._call("bgrewriteaof",
                             partial(self.client.execute_command, "BGREWRITEAOF"))
        except StoreUnavailable:
            log.warning("Redis did not rewrite its append-only file: erased data stays in "
                        "it until its next rewrite")
            return False
        return True

    async def reserve_send(self, tenant: str, channel: Channel, identifier: str, *,
                           at_s: int, cap: int, window_s: int) -> Reservation:
        """Take a slot of a per-window cap atomically (``reserve_send.lua``): ``at_s`` is
        added to the identifier's send times only if fewer than ``cap`` of them fall inside
        the window, in the same call that counts them."""
        bucket = keys.bucket_of(identifier)
        command = ("EVALSHA", *self._reserve.args(
            [keys.sends(tenant, channel, bucket), keys.suppressions(tenant, channel, bucket)],
            [codec.encode_field(channel, identifier), at_s, cap, window_s, max(KEEP_SENDS, cap),
             self.erased_field(tenant, channel, identifier)]))
        reply = await self._call("reserve_send", partial(self.client.execute_command, *command))
        status = int(reply[0])
        return Reservation(taken=status == 1, erased=status == -1,
                           times=[int(t) for t in reply[1:]])

    async def release_send(self, tenant: str, channel: Channel, identifier: str, *,
                           at_s: int) -> None:
        """Give back a slot ``reserve_send`` took (the upstream refused the text)."""
        bucket = keys.bucket_of(identifier)
        command = ("EVALSHA", *self._release.args(
            [keys.sends(tenant, channel, bucket)], [codec.encode_field(channel, identifier), at_s]))
        await self._call("release_send", partial(self.client.execute_command, *command))

    async def record_messages(self, items: Sequence[MessageRecord]) -> None:
        """Several send attempts in one pipeline (``record_message.lua`` each). An erased
        identifier gets no record, whatever the outcome: the script checks its hashed
        entry in the same call."""
        commands = []
        for r in items:
            bucket = keys.bucket_of(r.identifier)
            line = f"{r.at_ms}|{json.dumps(r.record, separators=(',', ':'))}"
            commands.append(("EVALSHA", *self._message.args(
                [keys.sends(r.tenant, r.channel, bucket),
                 keys.messages(r.tenant, r.channel, bucket),
                 keys.suppressions(r.tenant, r.channel, bucket)],
                [codec.encode_field(r.channel, r.identifier),
                 str(r.at_ms // 1000) if r.marketing_sent else "", line,
                 r.at_ms - r.retention_ms, KEEP_SENDS,
                 self.erased_field(r.tenant, r.channel, r.identifier)])))
        if commands:
            budget = max(self.op_timeout_s, 0.0005 * len(commands))
            await self._call("record_message", partial(self._pipeline, commands), budget)

    async def message_records(self, tenant: str, channel: Channel, identifier: str
                              ) -> list[dict[str, Any]]:
        if self.records_barrier is not None:
            await self.records_barrier()
        key = keys.messages(tenant, channel, keys.bucket_of(identifier))
        rows: Any = await self._call("messages", lambda: self.client.lrange(key, 0, -1))
        return [r for r in map(parse_message, rows)
                if r is not None and r.get("to") == identifier]

    async def keep_blocked_content(self, tenant: str, message_id: str, body: str,
                                   ttl_s: int) -> None:
        key = keys.blocked_content(tenant, message_id)
        await self._call("blocked_content", lambda: self.client.set(key, body, ex=ttl_s))

    async def blocked_content(self, tenant: str, message_id: str) -> str | None:
        key = keys.blocked_content(tenant, message_id)
        raw: Any = await self._call("blocked_content", lambda: self.client.get(key))
        return raw.decode() if raw is not None else None

    async def consent_records(self, tenant: str, channel: Channel,
                              identifiers: Sequence[str]) -> int:
        """How many of these identifiers have a consent record (any status): one round trip."""
        commands = [("HGET", keys.consents(tenant, channel, keys.bucket_of(i)),
                     codec.encode_field(channel, i)) for i in identifiers]
        if not commands:
            return 0
        replies = await self._call("consents", partial(self._pipeline, commands))
        return sum(r is not None for r in replies)

    @staticmethod
    def relayed_probe(tenant: str, digests: Sequence[str]) -> list[tuple[str, str]]:
        """Commands answering which of these relays happened within their TTL (for
        ``entries_and``: asked in the same round trip as the recipients' state)."""
        return [("EXISTS", keys.relayed(tenant, d)) for d in digests]

    async def mark_relayed(self, tenant: str, digests: Sequence[str], ttl_s: int) -> None:
        """Remember these relays (one round trip), so a retried message skips them."""
        commands = [("SET", keys.relayed(tenant, d), "1", "EX", ttl_s) for d in digests]
        if commands:
            await self._call("relayed", partial(self._pipeline, commands))

    async def claim(self, key: str, ttl_s: int) -> bool:
        """SET NX with a TTL: True the first time within ``ttl_s``."""
        return bool(await self._call("claim", lambda: self.client.set(key, "1", nx=True,
                                                                       ex=ttl_s)))

    async def append_audit(self, tenant: str, channel: Channel, identifier: str, *, kind: str,
                           source: str, detail: dict[str, Any],
                           at_ms: int | None = None) -> None:
        """An audit record that changes no state (e.g. a possible opt-out for review);
        ``at_ms``: when it happened, if not now (a write deferred by an outage)."""
        _, _, aud = keys.all_for_identifier(tenant, channel, identifier)
        record = audit_record(now_ms() if at_ms is None else at_ms, kind, identifier, "",
                              source, detail)
        line = f"{new_event_id()}|none|{record}"
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
                    if name.startswith(keys.ERASED_PREFIX):
                        continue  # an erased person's hashed entry: no identifier to list
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


@dataclass(frozen=True, slots=True)
class Claim:
    """A key set with SET NX and a TTL: idempotency (a retried webhook) or a rate gap."""

    key: str
    ttl_s: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One send attempt, as ``record_message`` keeps it (see ``record_message.lua``)."""

    tenant: str
    channel: Channel
    identifier: str
    record: dict[str, Any]
    at_ms: int
    marketing_sent: bool
    retention_ms: int


def _apply_args(ev: OptEvent) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of ``apply_event.lua`` for one event."""
    sup, con, aud = keys.all_for_identifier(ev.tenant, ev.channel, ev.identifier)
    entry = codec.encode_entry(
        codec.EntryState(ev.at_ms, ev.action == "opt_out", ev.reason, ev.source))
    # Consent is the person's own act for the whole channel (START, UNSTOP, YES): neither
    # a topic opt-in nor ops lifting a suppression is consent to marketing (TCPA). Any
    # channel-wide opt-out revokes it (revocation by any reasonable means).
    consent = ""
    if not ev.scope and ev.action == "opt_out":
        consent = str(encode_consent(ev.at_ms, CONSENT_REVOKED))
    elif not ev.scope and ev.reason is Reason.OPT_IN_KEYWORD:
        consent = str(encode_consent(ev.at_ms, CONSENT_GRANTED))
    detail = {**ev.detail, "scope": scope_label(ev.scope)} if ev.scope else ev.detail
    record = audit_record(ev.at_ms, ev.action, ev.identifier, ev.reason.value,
                          ev.source.value, detail)
    bucket = keys.bucket_of(ev.identifier)
    used = keys.used_buckets(ev.tenant, ev.channel, keys.shard_of(bucket))
    return ([sup, con, aud, used],
            [codec.encode_field(ev.channel, scoped(ev.identifier, ev.scope)), ev.action,
             entry, ev.id, consent, record, bucket % keys.BUCKETS_PER_SHARD])


def audit_record(at_ms: int, kind: str, identifier: str, reason: str, source: str,
                 detail: dict[str, Any]) -> str:
    return json.dumps([at_ms, kind, identifier, reason, source, detail], separators=(",", ":"))


def json_object(raw: bytes | str) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (unreadable, another JSON type)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_message(raw: bytes | str) -> dict[str, Any] | None:
    """A message-record line (``<at_ms>|<json>``, ``record_message.lua``) as its record,
    or None if it cannot be read."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return json_object(text.partition("|")[2])


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
