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
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
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
from .identifiers import mask, normalize_phone
from .models import Channel, Reason, Source
from .service import SuppressionService
from .store import CONSENT_GRANTED
from .tenants import Tenant
from .transport import OutboundSms, SmsUpstream, UpstreamFailed, UpstreamRecipientOptedOut

log = logging.getLogger(__name__)

Category = Literal["marketing", "transactional"]
MAX_BODY_CHARS = 1600  # Twilio's limit for one message (10 segments)
FOOTER_GAP = timedelta(days=30)
DAY_S = 86_400


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


@dataclass(frozen=True, slots=True)
class SentSms:
    message: Approved
    upstream_id: str
    status: str = "queued"


def new_message_id() -> str:
    return "SM" + uuid.uuid4().hex  # Twilio-shaped: 'SM' + 32 hex


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class SmsSender:
    def __init__(self, service: SuppressionService, upstream: SmsUpstream, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.service = service
        self.store = service.store
        self.upstream = upstream
        self.clock = clock

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
            self._check_marketing(to, now, consent, sends)
        violation = req.tenant.content_rules.violation(req.body)
        if violation is not None:
            await self._keep_blocked(req, approved.id)
            raise ContentBlocked(f"{violation}; nothing was sent", field="body")
        if req.category == "marketing" and not has_opt_out_language(req.body):
            last = max(sends, default=0)
            if req.tenant.append_stop == "always" or \
                    now.timestamp() - last >= FOOTER_GAP.total_seconds():
                if len(req.body) + len(STOP_FOOTER) > MAX_BODY_CHARS:
                    raise ContentBlocked(
                        f"the text needs opt-out language and has no room for "
                        f"'{STOP_FOOTER.strip()}' within {MAX_BODY_CHARS} characters",
                        field="body")
                approved = replace(approved, body=req.body + STOP_FOOTER, footer_added=True)
        return approved

    def _check_marketing(self, to: str, now: datetime, consent: tuple[int, int] | None,
                         sends: list[int]) -> None:
        if consent is None or consent[0] != CONSENT_GRANTED:
            raise NoConsent(f"no consent is recorded for {to} with this tenant; record it "
                            "(POST /v1/consents) or wait for the person to text START",
                            field="to")
        rules = quiet_hours.rules_for(to)
        retry = quiet_hours.check_window(to, now)
        if retry is not None:
            where = f"{rules.state_rule} law" if rules.state_rule else "federal quiet hours"
            window = f"{rules.window.start:%H:%M}-{rules.window.end:%H:%M}"
            when = ("no time" if retry == quiet_hours.NEVER
                    else retry.isoformat(timespec="seconds").replace("+00:00", "Z"))
            raise QuietHours(f"it is outside {window} at the recipient's local time "
                             f"({where}); retry after {when}", field="to",
                             retry_at_ms=None if retry == quiet_hours.NEVER else _ms(retry))
        if rules.max_per_24h is not None:
            recent = sorted(t for t in sends if now.timestamp() - t < DAY_S)
            if len(recent) >= rules.max_per_24h:
                retry_at = datetime.fromtimestamp(recent[-rules.max_per_24h] + DAY_S, UTC)
                raise FrequencyCapped(
                    f"{rules.state_rule} law allows {rules.max_per_24h} marketing texts per "
                    f"24 hours to this number; retry after "
                    f"{retry_at.isoformat(timespec='seconds').replace('+00:00', 'Z')}",
                    field="to", retry_at_ms=_ms(retry_at))

    async def _keep_blocked(self, req: SmsRequest, message_id: str) -> None:
        ttl = req.tenant.blocked_content_retention_days * DAY_S
        try:
            await self.store.keep_blocked_content(req.tenant.id, message_id, req.body, ttl)
        except StoreUnavailable:
            log.warning("blocked content of %s not kept: store unavailable", message_id)

    async def send(self, req: SmsRequest) -> SentSms:
        """Decide, hand over to the upstream, record the attempt. Raises on refusal."""
        message_id = new_message_id()
        try:
            approved = await self.decide(req, message_id=message_id)
        except Refused as exc:
            await self._record(req, message_id, None, outcome="refused", code=exc.code)
            raise
        try:
            accepted = await self.upstream.send(OutboundSms(
                approved.id, approved.tenant, approved.to, approved.from_, approved.body,
                approved.category))
        except UpstreamRecipientOptedOut:
            # The carrier says the person replied STOP: honour it here from now on.
            await self.service.opt_out(req.tenant.id, Channel.SMS, approved.to,
                                       reason=Reason.STOP_KEYWORD, source=Source.UPSTREAM,
                                       detail={"upstream_code": "21610"})
            await self._record(req, message_id, approved, outcome="refused", code="opted_out")
            raise OptedOut(f"{approved.to} opted out with the carrier (Twilio 21610); the "
                           "suppression is now recorded and nothing was sent",
                           field="to") from None
        except UpstreamFailed as exc:
            await self._record(req, message_id, approved, outcome="failed", code=exc.code)
            raise
        await self._record(req, message_id, approved, outcome="sent",
                           upstream_id=accepted.upstream_id)
        return SentSms(approved, accepted.upstream_id)

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
        try:
            await self.store.record_message(
                req.tenant.id, Channel.SMS, to, record=record, at_ms=_ms(now),
                marketing_sent=outcome == "sent" and req.category == "marketing",
                retention_ms=req.tenant.message_retention_days * DAY_S * 1000)
        except StoreUnavailable:
            log.warning("message record %s (%s to %s) not kept: store unavailable",
                        message_id, outcome, mask(Channel.SMS, to))


def _phone_or_none(raw: str, region: str = "US") -> str | None:
    try:
        return normalize_phone(raw, region)
    except InvalidRecipient:
        return None
