"""Outbound SMS: one ``decide()`` for every message, then the upstream, then the record.

The rules, in order, each refusal with its code (COMPLIANCE.md):

1. the sender number belongs to the tenant (``sender_not_allowed``);
2. a transactional message needs a transactional key (``category_not_allowed``);
3. the recipient is a valid number (``invalid_recipient``);
4. the recipient has not opted out, whatever the category (``opted_out``);
5. marketing only: recorded consent for this tenant (``no_consent``, TCPA prior express
   written consent), inside 08:00-21:00 local time in every zone of the number
   (``quiet_hours``, 47 CFR 64.1200(c)(1)), and for Florida/Oklahoma area codes 08:00-20:00
   and at most 3 per 24 h (``quiet_hours`` / ``frequency_capped``, FTSA and the Oklahoma
   Telephone Solicitation Act);
6. the content rules (``content_blocked``).

The state for 4-5 (suppression, consent, recent sends) is read in one round trip.

The message record of an attempt is written behind the response, batched with other
sends' records (``MessageRecorder``). A marketing text to a number under a per-24 h cap
first takes its slot in Redis (``reserve_send.lua``, before the upstream is called), so the
next decision counts it whatever happens to the record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from . import quiet_hours
from .content import STOP_FOOTER, has_opt_out_language
from .errors import (
    CategoryNotAllowed,
    ContentBlocked,
    FrequencyCapped,
    InvalidRecipient,
    NoConsent,
    OptedOut,
    QuietHours,
    Refused,
    SenderNotAllowed,
    StoreUnavailable,
)
from .identifiers import normalize_phone
from .models import Channel, Reason, Source, now_ms
from .service import SuppressionService
from .store import CONSENT_GRANTED, CONSENT_PENDING, MessageRecord, RedisStore
from .tenants import Tenant
from .transport import OutboundSms, SmsUpstream, UpstreamFailed, UpstreamRecipientOptedOut

log = logging.getLogger(__name__)

Category = Literal["marketing", "transactional"]
MAX_BODY_CHARS = 1600  # Twilio's limit for one message (10 segments)
FOOTER_GAP = timedelta(days=30)
DAY_S = 86_400
CONFIRM_RESEND_GAP_S = DAY_S  # double opt-in: one confirmation text a day at most
RECORD_BATCH = 256  # records per pipeline
RECORD_QUEUE_MAX = 10_000  # past this, a send waits for the writer (backpressure, not drops)


@dataclass(frozen=True, slots=True)
class SmsRequest:
    tenant: Tenant
    to: str
    from_: str
    body: str
    category: Category = "marketing"
    transactional_key: bool = False
    actor: str = ""


@dataclass(frozen=True, slots=True)
class Approved:
    """What decide() allows: normalised numbers and the body to send (maybe with a footer)."""

    id: str
    tenant: str
    to: str
    from_: str
    body: str
    category: Category
    footer_added: bool = False
    # Marketing to a number with a per-24 h cap (FL/OK): send() takes one of its slots in
    # Redis before the upstream is called.
    cap: int | None = None


@dataclass(frozen=True, slots=True)
class SentSms:
    message: Approved
    upstream_id: str
    status: str = "queued"


@dataclass(frozen=True, slots=True)
class ConsentRecorded:
    """``status``: 'granted' or 'pending' (double opt-in: the confirmation text's id)."""

    status: Literal["granted", "pending"]
    at_ms: int
    confirmation_id: str | None = None


def new_message_id() -> str:
    return "SM" + uuid.uuid4().hex  # Twilio-shaped: 'SM' + 32 hex


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class MessageRecorder:
    """Message records written behind the response, many sends' records per pipeline.

    A record was always best effort (a store outage drops it with a warning); the queue
    only changes when it is written: a send answers once the upstream accepted it, not one
    Redis round trip later, and concurrent sends share one pipeline. Bounded: with
    ``max_queued`` records waiting, a send waits for the writer. ``flush()`` waits until
    everything queued before it was written (or dropped): readers of records call it
    (``RedisStore.records_barrier``), so they see every attempt answered before they
    asked; ``close()`` flushes at shutdown. ``written`` / ``dropped`` count records.
    """

    def __init__(self, store: RedisStore, *, batch: int = RECORD_BATCH,
                 max_queued: int = RECORD_QUEUE_MAX) -> None:
        self.store = store
        self.batch = batch
        self.max_queued = max_queued
        self.written = 0
        self.dropped = 0
        self._queue: list[MessageRecord] = []
        self._queued = 0  # ever queued; with _done, orders flush() against the writer
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._queued - self._done

    async def add(self, item: MessageRecord) -> None:
        if len(self._queue) >= self.max_queued:
            await self.flush()
        self._queue.append(item)
        self._queued += 1
        self._start()

    async def flush(self) -> None:
        if self._done >= self._queued:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, fut))
        self._start()
        await fut

    async def close(self) -> None:
        await self.flush()

    def _start(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(),
                                                                  name="message-records")

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self.batch], self._queue[self.batch:]
            await self._store(batch)
            self._done += len(batch)
            ready = [f for n, f in self._waiters if n <= self._done]
            self._waiters = [(n, f) for n, f in self._waiters if n > self._done]
            for fut in ready:
                if not fut.done():
                    fut.set_result(None)

    async def _store(self, batch: list[MessageRecord]) -> None:
        try:
            await self.store.record_messages(batch)
        except StoreUnavailable:
            self.dropped += len(batch)
            log.warning("%d message record(s) not kept: store unavailable", len(batch))
        except Exception:  # the writer must outlive any one failure; the send succeeded
            self.dropped += len(batch)
            log.exception("%d message record(s) not kept", len(batch))
        else:
            self.written += len(batch)


class SmsSender:
    def __init__(self, service: SuppressionService, upstream: SmsUpstream, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.service = service
        self.store = service.store
        self.upstream = upstream
        self.clock = clock
        self.recorder = MessageRecorder(self.store)
        # Readers of message records (ops API, tests) wait for the ones queued before them.
        self.store.records_barrier = self.recorder.flush

    async def close(self) -> None:
        """Write every queued message record (shutdown)."""
        await self.recorder.close()

    def _sender(self, req: SmsRequest) -> str:
        raw = req.from_.strip()
        sender = raw if raw.isdigit() and len(raw) <= 6 else _phone_or_none(raw)
        if sender is None or sender not in req.tenant.sms_senders:
            configured = ", ".join(req.tenant.sms_senders) or "none configured"
            raise SenderNotAllowed(
                f"'{raw}' is not one of tenant {req.tenant.id}'s sender numbers "
                f"({configured}); set sms_senders in the tenant's configuration", field="from")
        return sender

    async def decide(self, req: SmsRequest, *, message_id: str | None = None) -> Approved:
        """Apply every rule; return what may be sent or raise the first refusal."""
        sender = self._sender(req)
        if req.category == "transactional" and not req.transactional_key:
            raise CategoryNotAllowed("this API key may not send transactional messages; "
                                     "create one with --transactional", field="category")
        try:
            to = normalize_phone(req.to, req.tenant.default_region)
        except InvalidRecipient as exc:
            exc.field = exc.field or "to"  # 422 naming the field (CONTRACT.md, Errors)
            raise
        approved = Approved(message_id or new_message_id(), req.tenant.id, to, sender,
                            req.body, req.category)
        now = self.clock()
        suppressed, consent, sends = await self.service.send_state(req.tenant.id, Channel.SMS, to)
        if suppressed:
            raise OptedOut(f"{to} opted out of messages from {req.tenant.brand} (replied STOP "
                           "or was suppressed); nothing was sent", field="to")
        if req.category == "marketing":
            cap = self._check_marketing(to, now, consent, sends)
            approved = replace(approved, cap=cap)
        violation = req.tenant.content_rules.violation(req.body)
        if violation is not None:
            await self._keep_blocked(req, approved.id)
            raise ContentBlocked(f"{violation}; nothing was sent", field="body")
        if req.category == "marketing" and not has_opt_out_language(req.body):
            last = max(sends, default=0)
            if req.tenant.append_stop == "always" or \
                    now.timestamp() - last >= FOOTER_GAP.total_seconds():
                if len(req.body) + len(STOP_FOOTER) > MAX_BODY_CHARS:
                    await self._keep_blocked(req, approved.id)
                    raise ContentBlocked(
                        f"the text needs opt-out language and has no room for "
                        f"'{STOP_FOOTER.strip()}' within {MAX_BODY_CHARS} characters",
                        field="body")
                approved = replace(approved, body=req.body + STOP_FOOTER, footer_added=True)
        return approved

    def _check_marketing(self, to: str, now: datetime, consent: tuple[int, int] | None,
                         sends: list[int]) -> int | None:
        """Raise the first marketing refusal; else the per-24 h cap that applies, if any."""
        if consent is not None and consent[0] == CONSENT_PENDING:
            raise NoConsent(f"consent for {to} is pending confirmation: the person has not yet "
                            "replied YES to the confirmation text (double opt-in); nothing "
                            "was sent", field="to")
        if consent is None or consent[0] != CONSENT_GRANTED:
            raise NoConsent(f"no consent is recorded for {to} with this tenant; record it "
                            "(POST /v1/consents) or wait for the person to text START",
                            field="to")
        rules = quiet_hours.rules_for(to)
        retry = quiet_hours.check_window(to, now)
        if retry is not None:
            where = f"{rules.state_rule} law" if rules.state_rule else "federal quiet hours"
            window = f"{rules.window.start:%H:%M}-{rules.window.end:%H:%M}"
            if retry == quiet_hours.NEVER:
                raise QuietHours(f"the recipient's local time cannot be known (the number "
                                 f"maps to no time zone), so no time is inside {window} "
                                 f"({where}); marketing texts to it are refused", field="to")
            when = retry.isoformat(timespec="seconds").replace("+00:00", "Z")
            raise QuietHours(f"it is outside {window} at the recipient's local time "
                             f"({where}); retry after {when}", field="to",
                             retry_at_ms=_ms(retry))
        if rules.max_per_24h is not None:
            _check_cap(to, now, sends, rules.max_per_24h)
        return rules.max_per_24h

    async def _keep_blocked(self, req: SmsRequest, message_id: str) -> None:
        ttl = req.tenant.blocked_content_retention_days * DAY_S
        try:
            await self.store.keep_blocked_content(req.tenant.id, message_id, req.body, ttl)
        except StoreUnavailable:
            log.warning("blocked content of %s not kept: store unavailable", message_id)

    async def send(self, req: SmsRequest) -> SentSms:
        """Decide, hand over to the upstream, record the attempt. Raises on refusal."""
        message_id = new_message_id()
        reserved: int | None = None
        try:
            approved = await self.decide(req, message_id=message_id)
            if approved.cap is not None:
                reserved = await self._reserve_slot(approved, approved.cap)
        except Refused as exc:
            await self._record(req, message_id, None, outcome="refused", code=exc.code)
            raise
        try:
            accepted = await self.upstream.send(OutboundSms(
                approved.id, approved.tenant, approved.to, approved.from_, approved.body,
                approved.category))
        except UpstreamRecipientOptedOut as exc:
            await self._release_slot(approved, reserved, exc)
            # The carrier says the person replied STOP: honour it here from now on.
            await self.service.opt_out(req.tenant.id, Channel.SMS, approved.to,
                                       reason=Reason.STOP_KEYWORD, source=Source.UPSTREAM,
                                       detail={"upstream_code": "21610"})
            await self._record(req, message_id, approved, outcome="refused", code="opted_out")
            raise OptedOut(f"{approved.to} opted out with the carrier (Twilio 21610); the "
                           "suppression is now recorded and nothing was sent",
                           field="to") from None
        except UpstreamFailed as exc:
            await self._release_slot(approved, reserved, exc)
            await self._record(req, message_id, approved, outcome="failed", code=exc.code)
            raise
        await self._record(req, message_id, approved, outcome="sent",
                           upstream_id=accepted.upstream_id)
        return SentSms(approved, accepted.upstream_id)

    async def _reserve_slot(self, approved: Approved, cap: int) -> int:
        """Take one of the number's capped slots in Redis (counted and taken in one call),
        so concurrent sends and other workers cannot each pass a cap decide() read as open.
        Returns the reserved time (s); raises FrequencyCapped or, for a number erased
        since decide() read it, OptedOut."""
        at_s = int(self.clock().timestamp())
        got = await self.store.reserve_send(approved.tenant, Channel.SMS, approved.to,
                                            at_s=at_s, cap=cap, window_s=DAY_S)
        if got.erased:
            raise OptedOut(f"{approved.to} opted out (erased); nothing was sent", field="to")
        if not got.taken:  # the same whole second the script counted from
            _check_cap(approved.to, datetime.fromtimestamp(at_s, UTC), got.times, cap)
            raise FrequencyCapped(f"the per-24 h cap for {approved.to} is reached; nothing "
                                  "was sent", field="to")  # not reached: the script agreed
        return at_s

    async def _release_slot(self, approved: Approved, reserved: int | None,
                            exc: Exception) -> None:
        """Give the slot back when the text surely did not go out (an HTTP error answer,
        Twilio 21610, a provider that could not be reached). A timeout or a connection
        dropped after the request keeps it (``maybe_delivered``): the provider may have
        delivered the text, and the cap must never be exceeded."""
        if reserved is None or (isinstance(exc, UpstreamFailed) and exc.maybe_delivered):
            return
        try:
            await self.store.release_send(approved.tenant, Channel.SMS, approved.to,
                                          at_s=reserved)
        except StoreUnavailable:
            log.warning("a capped send slot of %s stays taken: store unavailable", approved.id)

    async def record_consent(self, tenant: Tenant, number: str, *, method: str,
                             evidence: str | None = None,
                             detail: dict[str, str] | None = None) -> ConsentRecorded:
        """An SMS consent (POST /v1/consents): granted at once, or, for a tenant with
        ``double_opt_in``, pending until the person replies YES to a confirmation text
        (``inbound``: the YES grants it, with the inbound message as evidence).

        An opted-out number is refused (``opted_out``) whatever its consent state. The
        confirmation is a text like any other: it passes decide() (transactional,
        from the tenant's first sender), and the
        pending consent is written only once the upstream took the text (a failed send
        leaves nothing to undo; the request can simply be repeated). An already granted
        consent stays granted (no text); while a pending one is younger than
        ``CONFIRM_RESEND_GAP_S`` no second text goes out, so a form posted again and again
        cannot be used to text someone repeatedly.
        """
        def record(status: int, extra: dict[str, str]) -> Awaitable[int]:
            return self.service.record_consent(tenant.id, Channel.SMS, number, method=method,
                                               evidence=evidence, status=status,
                                               detail={**(detail or {}), **extra})
        if not tenant.double_opt_in:
            return ConsentRecorded("granted", await record(CONSENT_GRANTED, {}))
        suppressed, current, _ = await self.service.send_state(tenant.id, Channel.SMS, number)
        if suppressed:  # a pending consent is revoked by the STOP; START is the way back
            raise OptedOut(f"{number} opted out of messages from {tenant.brand}; no consent "
                           "was recorded and no confirmation sent: the person must reply "
                           "START to opt back in", field="identifier")
        if current is not None and current[0] == CONSENT_GRANTED:
            return ConsentRecorded("granted", await record(CONSENT_GRANTED,
                                                           {"double_opt_in": "confirmed"}))
        # Consent times are the service's (wall clock), not this sender's injectable clock.
        if current is not None and current[0] == CONSENT_PENDING and \
                now_ms() - current[1] < CONFIRM_RESEND_GAP_S * 1000:
            return ConsentRecorded("pending", await record(CONSENT_PENDING, {}))
        req = SmsRequest(tenant, number, tenant.sms_senders[0], tenant.reply("confirm_opt_in"),
                         category="transactional", transactional_key=True,
                         actor="double_opt_in")
        try:
            sent = await self.send(req)
        except UpstreamFailed as exc:
            raise UpstreamFailed(
                f"the confirmation text to {number} could not be sent ({exc.message}); no "
                "consent was recorded: repeat the request", upstream_status=exc.upstream_status,
                upstream_code=exc.upstream_code) from exc
        at = await record(CONSENT_PENDING, {"confirmation_id": sent.message.id})
        return ConsentRecorded("pending", at, sent.message.id)

    async def _record(self, req: SmsRequest, message_id: str, approved: Approved | None, *,
                      outcome: str, code: str | None = None, upstream_id: str | None = None
                      ) -> None:
        """A message record for every attempt (best effort: never fails the send)."""
        to = approved.to if approved else _phone_or_none(req.to, req.tenant.default_region)
        if to is None:
            return  # an invalid number has no bucket to keep a record in
        now = self.clock()
        record = {"id": message_id, "at": now.isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"), "tenant": req.tenant.id,
                  "from": approved.from_ if approved else req.from_, "to": to,
                  "category": req.category, "outcome": outcome, "code": code,
                  "upstream_id": upstream_id, "actor": req.actor,
                  "footer_added": approved.footer_added if approved else False}
        # A capped send's time is in the send times already: its reservation put it there.
        sent = outcome == "sent" and req.category == "marketing" and (
            approved is not None and approved.cap is None)
        await self.recorder.add(MessageRecord(req.tenant.id, Channel.SMS, to, record, _ms(now),
                                              sent,
                                              req.tenant.message_retention_days * DAY_S * 1000))


async def record_api_consent(sms: SmsSender, tenant_id: str, tenant: Tenant | None,
                             channel: Channel, identifier: str, *, method: str,
                             evidence: str | None, detail: dict[str, str]) -> ConsentRecorded:
    """A consent recorded through the API (POST /v1/consents): an SMS consent of a
    configured tenant goes through its rules (double opt-in: pending until the person's
    YES); any other is recorded granted at once."""
    if channel is Channel.SMS and tenant is not None:
        return await sms.record_consent(tenant, identifier, method=method, evidence=evidence,
                                        detail=detail)
    at = await sms.service.record_consent(tenant_id, channel, identifier, method=method,
                                          evidence=evidence, detail=detail)
    return ConsentRecorded("granted", at)


def _check_cap(to: str, now: datetime, sends: list[int], cap: int) -> None:
    """Raise FrequencyCapped when ``cap`` of ``sends`` (times, s) fall in the 24 h before
    ``now``, saying when the oldest of them leaves the window."""
    recent = sorted(t for t in sends if now.timestamp() - t < DAY_S)
    if len(recent) >= cap:
        retry_at = datetime.fromtimestamp(recent[-cap] + DAY_S, UTC)
        raise FrequencyCapped(
            f"{quiet_hours.rules_for(to).state_rule} law allows {cap} marketing texts per "
            f"24 hours to this number; retry after "
            f"{retry_at.isoformat(timespec='seconds').replace('+00:00', 'Z')}",
            field="to", retry_at_ms=_ms(retry_at))


def _phone_or_none(raw: str, region: str = "US") -> str | None:
    try:
        return normalize_phone(raw, region)
    except InvalidRecipient:
        return None
