"""Subject requests and consent evidence: what the gateway holds about one person.

Access (GDPR Art. 15 and 20, CCPA "right to know"): every record about one identifier for
one tenant, as data. Erasure (GDPR Art. 17, CCPA deletion): all of it removed, except
that the person stays suppressed under a keyed hash (COMPLIANCE.md, Privacy: the ICO's
"suppress rather than delete"), so checks still refuse them and nobody but the person
can permission them again:

* the hashed entry lives in the identifier's own suppression bucket under
  ``keys.erased_field`` (HMAC-SHA256 with the pepper, ``Settings.resolved_pepper``),
  and every suppression check reads it in the same round trip as the plaintext entry;
* API consents, ops opt-ins and imports of an erased person are refused
  (``OptedOut``); the person's own opt-in keyword (START, UNSTOP, YES from their
  number) lifts it, as it lifts any STOP: a fresh, direct act of the person is the
  consent the TCPA asks for, and keeping them blocked would defy their wish;
* the audit keeps the fact of the erasure (hash reference, who asked, when) without
  the identifier.

Erasure is atomic per bucket (``lua/erase_subject.lua``); the tenant's review list and
blocked content live in another slot and are erased first, so an interrupted erasure
is completed by asking again. Journalled events of the person within the journal
window become bare event-id markers in the audit list, so a journal replay cannot write
the identifier back. Outside Redis the local journal keeps the events for its retention
window (``OPTOUT_JOURNAL_RETENTION_S``, 10 minutes) and then deletes them.
"""

from __future__ import annotations

import ipaddress
import logging
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, get_args

from . import codec, keys
from .errors import InvalidRequest, NotFound, OptedOut, StoreUnavailable
from .identifiers import clear_caches, mask
from .models import Channel, Reason, Source, iso_ms, new_event_id, now_ms, scope_label
from .store import (
    CONSENT_STATUS,
    AuditEntry,
    RedisStore,
    Script,
    audit_record,
    decode_consent,
    json_object,
    parse_audit,
    parse_message,
    to_suppression,
)

if TYPE_CHECKING:  # the service imports this module: no import cycle at run time
    from .service import SuppressionService

log = logging.getLogger(__name__)

ERASE = Script("erase_subject")
# How consent was collected (TCPA: keep how). ``source`` stays free text beside it.
ConsentMethod = Literal["web_form", "keyword", "import", "api", "double_opt_in", "paper_form",
                        "verbal", "other"]
CONSENT_METHODS: tuple[str, ...] = get_args(ConsentMethod)
# Opt-ins that come from the person themselves: the only ones that lift an erasure.
SELF_OPT_IN = frozenset({Reason.OPT_IN_KEYWORD})
# Audit records of an erased person within this window become event-id markers, so a
# journal replay skips them; it must cover the journal's retention (the service's).
MIN_MARKER_WINDOW_MS = 3_600_000
FUTURE_SLACK_MS = 300_000  # a client's clock may run a little ahead
OLDEST_CONSENT = datetime(2000, 1, 1, tzinfo=UTC)


# -- consent evidence -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentEvidence:
    """What a consent record keeps beside who (the identifier, the API key) and when."""

    method: str | None = None  # one of CONSENT_METHODS
    evidence_ref: str | None = None  # or a reference to it: URL, form version, document id
    ip: str | None = None
    user_agent: str | None = None
    message_id: str | None = None  # the inbound message that carried the consent
    collected_at: str | None = None  # when the person consented, if not just now

    def detail(self) -> dict[str, str]:
        """The audit detail, validated: InvalidRequest names the first bad field."""
        out: dict[str, str] = {}
        if self.method is not None:
            if self.method not in CONSENT_METHODS:
                raise InvalidRequest(f"'method' must be one of {', '.join(CONSENT_METHODS)}",
                                     field="method")
            out["method"] = self.method
        for name in ("evidence_ref", "user_agent"):
            value = getattr(self, name)
            if value is not None:
                out[name] = _one_line(name, value)
        if self.ip is not None:
            out["ip"] = _ip(self.ip)
        if self.message_id is not None:
            if not self.message_id or not all("!" <= c <= "~" for c in self.message_id):
                raise InvalidRequest("'message_id' must be printable ASCII without spaces",
                                     field="message_id")
            out["message_id"] = self.message_id
        if self.collected_at is not None:
            out["collected_at"] = _collected_at(self.collected_at)
        return out


def _one_line(name: str, value: str) -> str:
    if not value.strip() or any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InvalidRequest(f"'{name}' must be one line of text, without control characters",
                             field=name)
    return value


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise InvalidRequest("'ip' must be an IPv4 or IPv6 address, such as 203.0.113.9",
                             field="ip") from None


def _collected_at(value: str) -> str:
    bad = InvalidRequest("'collected_at' must be an ISO 8601 time with a time zone, such as "
                         "2025-05-01T14:30:00Z, not in the future", field="collected_at")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise bad from None
    if when.tzinfo is None or not OLDEST_CONSENT <= when:
        raise bad
    at_ms = int(when.timestamp() * 1000)
    if at_ms > now_ms() + FUTURE_SLACK_MS:
        raise bad
    return iso_ms(at_ms)


# -- the erased person's guard (called by the service's write path) ----------------------


def erased_message(identifier: str, channel: Channel) -> str:
    lift = ("only the person can lift it, by texting START" if channel is Channel.SMS
            else "it cannot be lifted")
    return (f"{mask(channel, identifier)} asked for their data to be erased and stays "
            f"suppressed; consent or an opt-in cannot be recorded for them by the API, ops "
            f"or an import ({lift})")


async def erasure_lifted_by(store: RedisStore, tenant: str, channel: Channel, identifier: str,
                            reason: Reason) -> bool:
    """Before a channel-wide opt-in: True if it must lift an erasure (the person's own
    keyword); OptedOut for any other opt-in of an erased person. Store down: the person's
    keyword goes on (if they were erased, the store skips the event and the hash keeps
    refusing: they may text START again); any other opt-in cannot be told apart from
    re-permissioning an erased person, so StoreUnavailable."""
    try:
        entry = await store.erased(tenant, channel, identifier)
    except StoreUnavailable:
        if reason in SELF_OPT_IN:
            return False
        raise
    if entry is None:
        return False
    if reason in SELF_OPT_IN:
        return True
    raise OptedOut(erased_message(identifier, channel), field="identifier")


async def lift_erasure(store: RedisStore, tenant: str, channel: Channel,
                       identifier: str) -> None:
    """Drop the hashed entry after the person's own opt-in was recorded (best effort: if
    the store fails here the person stays suppressed and may text START again)."""
    try:
        await store.lift_erased(tenant, channel, identifier)
    except StoreUnavailable:
        log.warning("opt-in of erased %s recorded, but the erasure could not be lifted: "
                    "still suppressed", mask(channel, identifier))


# -- reading everything held ------------------------------------------------------------


@dataclass(slots=True)
class Held:
    """Everything the store holds about one identifier of one tenant and channel."""

    tenant: str
    channel: Channel
    identifier: str
    reference: str  # the erased field without its prefix ('' without a pepper)
    entries: list[tuple[str, codec.EntryState]] = field(default_factory=list)  # (scope, state)
    erased: codec.EntryState | None = None
    consent: tuple[int, int] | None = None
    send_times: list[int] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    erasures: list[AuditEntry] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)  # message id -> text
    review: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)  # (raw, item)
    confirmation_ttl_s: int = -2

    @property
    def anything(self) -> bool:
        """Personal data (the plaintext identifier) still held."""
        return bool(self.entries or self.consent or self.send_times or self.audit
                    or self.messages or self.review or self.confirmation_ttl_s >= 0)

    def counts(self) -> dict[str, int]:
        return {"suppressions": len(self.entries), "consents": int(self.consent is not None),
                "audit": len(self.audit), "message_records": len(self.messages),
                "blocked_content": len(self.blocked), "review_items": len(self.review),
                "marketing_sends": int(bool(self.send_times)),
                "confirmation_throttle": int(self.confirmation_ttl_s >= 0)}

    def to_json(self) -> dict[str, Any]:
        sups = [{**to_suppression(self.tenant, self.channel, self.identifier, s, scope
                                  ).to_json(), "active": s.active} for scope, s in self.entries]
        erased = None
        if self.erased is not None:
            last = self.erasures[-1] if self.erasures else None
            erased = {"reference": self.reference, "at": last.to_json()["at"] if last else None,
                      "requested_by": _actor(last.detail) if last else None,
                      "suppression": {"reason": self.erased.reason.value,
                                      "source": self.erased.source.value,
                                      "created_at": iso_ms(self.erased.at_ms)}}
        consent = None
        if self.consent is not None:
            consent = {"status": CONSENT_STATUS.get(self.consent[0], "unknown"),
                       "at": iso_ms(self.consent[1])}
        return {
            "tenant": self.tenant, "channel": self.channel.value,
            "identifier": self.identifier, "erased": erased, "suppressions": sups,
            "consent": consent,
            "marketing_sends": [iso_ms(t * 1000) for t in self.send_times],
            "audit": [e.to_json() for e in self.audit],
            "message_records": self.messages,
            "blocked_content": [{"message_id": m, "body": b} for m, b in self.blocked.items()],
            "review_items": [item for _, item in self.review],
            "opt_out_confirmation_throttled": self.confirmation_ttl_s >= 0,
        }


def _actor(detail: dict[str, Any]) -> dict[str, str]:
    return {k: str(detail[k]) for k in ("key_id", "key_name") if k in detail}


def _text(raw: bytes | str | None) -> str:
    return raw.decode() if isinstance(raw, bytes) else (raw or "")


async def read(store: RedisStore, tenant: str, channel: Channel, identifier: str) -> Held:
    """Everything held about the identifier: one round trip, and one more for the blocked
    content of its messages (another slot)."""
    if store.records_barrier is not None:
        await store.records_barrier()  # message records still queued behind responses
    bucket = keys.bucket_of(identifier)
    stored = codec.encode_field(channel, identifier)
    erased_field = store.erased_field(tenant, channel, identifier)
    commands: list[tuple[str | int, ...]] = [
        ("HGETALL", keys.suppressions(tenant, channel, bucket)),
        ("HGET", keys.consents(tenant, channel, bucket), stored),
        ("HGET", keys.sends(tenant, channel, bucket), stored),
        ("LRANGE", keys.audit(tenant, channel, bucket), 0, -1),
        ("LRANGE", keys.messages(tenant, channel, bucket), 0, -1),
        ("LRANGE", keys.review(tenant), 0, -1),
        ("TTL", keys.confirmation_sent(tenant, channel, identifier)),
    ]
    sups, con, sent, audit, msgs, review, ttl = await store._call(
        "subject", partial(store._pipeline, commands))
    held = Held(tenant, channel, identifier, erased_field[len(keys.ERASED_PREFIX):],
                consent=decode_consent(con) if con is not None else None,
                confirmation_ttl_s=int(ttl))
    prefix = stored + " "
    for name, raw in sorted(sups.items()):
        text = _text(name)
        if erased_field and text == erased_field:
            held.erased = codec.decode_entry(raw)
        elif text == stored or text.startswith(prefix):
            held.entries.append((text[len(prefix):], codec.decode_entry(raw)))
    held.send_times = [int(t) for t in _text(sent).split(",") if t]
    for raw in audit:
        entry = parse_audit(channel, raw)
        if entry is None:
            continue
        if entry.identifier == identifier:
            held.audit.append(entry)
        elif entry.type == "erasure" and held.reference and \
                entry.detail.get("subject") == held.reference:
            held.erasures.append(entry)
    held.messages = [r for r in map(parse_message, msgs)
                     if r is not None and r.get("to") == identifier]
    for raw in review:
        item = json_object(raw)
        if item is not None and item.get("from") == identifier:
            held.review.append((raw, item))
    await _read_blocked(store, tenant, held)
    return held


async def _read_blocked(store: RedisStore, tenant: str, held: Held) -> None:
    ids = [str(m["id"]) for m in held.messages if m.get("id")]
    if not ids:
        return
    commands = [("GET", keys.blocked_content(tenant, i)) for i in ids]
    bodies = await store._call("subject", partial(store._pipeline, commands))
    held.blocked = {i: _text(b) for i, b in zip(ids, bodies, strict=True) if b is not None}


async def access(store: RedisStore, tenant: str, channel: Channel, identifier: str) -> Held:
    """The access answer; NotFound when nothing at all is held (not even an erasure)."""
    held = await read(store, tenant, channel, identifier)
    if not held.anything and held.erased is None:
        raise NotFound(f"nothing is held about {identifier} on {channel.value} for this tenant")
    return held


# -- consent history ----------------------------------------------------------------------

HISTORY_EVENTS = {"opt_out": "revoked", "opt_in": "opted_in",
                  "possible_opt_out": "possible_revocation"}


def _history_item(entry: AuditEntry) -> dict[str, Any]:
    if entry.type == "consent":
        event = "pending" if entry.detail.get("status") == "pending" else "granted"
    else:
        event = HISTORY_EVENTS.get(entry.type, entry.type)
    item = entry.to_json()
    scope = str(entry.detail.get("scope") or scope_label(""))
    return {"id": item["id"], "at": item["at"], "event": event, "type": entry.type,
            "effect": entry.effect, "source": entry.source, "reason": item["reason"],
            "scope": scope, "detail": entry.detail}


async def consent_history(service: SuppressionService, tenant: str, channel: Channel,
                          identifier: str) -> dict[str, Any]:
    """Grants, pending consents, revocations (opt-outs) and opt-ins, oldest first, and the
    state now. A suppression (or an erasure) overrides any consent: status 'opted_out'."""
    store = service.store
    consent = await store.consent_state(tenant, channel, identifier)
    suppression = await service.get(tenant, channel, identifier)
    erased = await store.erased(tenant, channel, identifier)
    history = [_history_item(e) for e in await store.audit(tenant, channel, identifier)]
    if suppression is not None or erased is not None:
        status = "opted_out"
    else:
        status = CONSENT_STATUS.get(consent[0], "unknown") if consent else "none"
    return {
        "channel": channel.value, "identifier": identifier, "status": status,
        "consent": None if consent is None else {
            "status": CONSENT_STATUS.get(consent[0], "unknown"), "at": iso_ms(consent[1])},
        "suppression": suppression.to_json() if suppression is not None else None,
        "erased": erased is not None,
        "history": history,
    }


# -- erasure ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Erasure:
    channel: Channel
    identifier: str
    reference: str
    already_erased: bool
    removed: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel.value, "identifier": self.identifier, "erased": True,
                "suppressed": True, "reference": self.reference,
                "already_erased": self.already_erased, "removed": self.removed}


async def erase(service: SuppressionService, tenant: str, channel: Channel, identifier: str,
                *, source: Source, actor: dict[str, str]) -> Erasure:
    """Erase everything held about the identifier but a hashed suppression (idempotent).

    NotFound if nothing was ever held; StoreUnavailable (nothing of the bucket changed)
    if Redis fails; asking again completes an interrupted erasure.
    """
    store = service.store
    if store.pepper is None:
        raise RuntimeError("the store has no pepper: erasure needs Settings.resolved_pepper()")
    # Journalled events not yet in Redis would write the person back after the erasure.
    await service.settle(tenant, channel, identifier)
    held = await access(store, tenant, channel, identifier)  # NotFound if nothing is held
    counts = held.counts()
    blocked, review = await _erase_tenant_items(store, tenant, held)
    at = now_ms()
    entry = codec.encode_entry(codec.EntryState(at, True, Reason.MANUAL, source))
    line = f"{new_event_id()}|erased|" + audit_record(
        at, "erasure", "", "", source.value, {"subject": held.reference, **actor,
                                               "removed": counts})
    window_ms = max(MIN_MARKER_WINDOW_MS, int(2 * service.recent_s * 1000))
    bucket = keys.bucket_of(identifier)
    result = await store.run_script("erase", ERASE, [
        keys.suppressions(tenant, channel, bucket), keys.consents(tenant, channel, bucket),
        keys.audit(tenant, channel, bucket), keys.sends(tenant, channel, bucket),
        keys.messages(tenant, channel, bucket),
        keys.confirmation_sent(tenant, channel, identifier),
    ], [codec.encode_field(channel, identifier), identifier,
        store.erased_field(tenant, channel, identifier), entry, line, at - window_ms])
    sups, consents, sends, audits, messages, confirmations, before = (int(n) for n in result)
    clear_caches()  # the normaliser's memo holds plaintext spellings
    await store.rewrite_aof()  # the append-only file still holds the old writes
    log.info("erased %s for tenant %s (reference %s)", mask(channel, identifier), tenant,
             held.reference)
    return Erasure(channel, identifier, held.reference, already_erased=bool(before) and not (
        held.anything), removed={
        "suppressions": sups, "consents": consents, "audit": audits,
        "message_records": messages, "blocked_content": blocked, "review_items": review,
        "marketing_sends": sends, "confirmation_throttle": confirmations})


async def _erase_tenant_items(store: RedisStore, tenant: str, held: Held) -> tuple[int, int]:
    """Blocked content and review items (the tenant's slot), in one MULTI: before the
    bucket, whose message records are what finds the blocked content again on a retry."""
    ids = [str(m["id"]) for m in held.messages if m.get("id")]
    if not ids and not held.review:
        return 0, 0
    review_key = keys.review(tenant)

    async def run() -> list[Any]:
        async with store.client.pipeline(transaction=True) as pipe:
            for i in ids:
                pipe.delete(keys.blocked_content(tenant, i))
            for raw, _ in held.review:
                pipe.execute_command("LREM", review_key, 0, raw)  # the exact bytes read
            return list(await pipe.execute())

    replies = await store._call("erase", run)
    return sum(int(r) for r in replies[:len(ids)]), sum(int(r) for r in replies[len(ids):])
