"""Inbound texts: STOP, START, HELP and everything else, from any provider.

One ``handle()`` for the Twilio webhook and the generic inbound API. Providers
retry webhooks, so a provider message id is handled once (the retry gets no
second confirmation). FCC 47 CFR 64.1200(a)(12) allows one confirmation text,
with no marketing, sent promptly; we send it at most once per 5 minutes.

A STOP is one store call: the message-id claim, the opt-out and the
confirmation claim are taken together (``SuppressionService.opt_out_claimed``),
so both claim keys live in the sender's shard, beside its suppression entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import keys
from .errors import StoreUnavailable
from .identifiers import mask, normalize_phone
from .intent import Intent, IntentKind, classify
from .models import Channel, Reason, Source, iso_ms, now_ms
from .service import SuppressionService
from .store import CONSENT_PENDING, Claim
from .tenants import Tenant

log = logging.getLogger(__name__)

DEDUPE_TTL_S = 7 * 86_400  # providers retry for hours; a week is ample
CONFIRMATION_GAP_S = 300


@dataclass(frozen=True, slots=True)
class InboundResult:
    intent: Intent
    reply: str | None
    duplicate: bool = False


class InboundHandler:
    def __init__(self, service: SuppressionService) -> None:
        self.service = service
        self.store = service.store

    async def handle(self, tenant: Tenant, from_: str, to: str, body: str, *,
                     provider_id: str | None = None, provider: str = "") -> InboundResult:
        """Classify a reply from ``from_`` to the tenant's number ``to`` and act on it."""
        sender = normalize_phone(from_, tenant.default_region)
        intent = classify(body)
        detail = {"rule": intent.rule, "to": to, "provider": provider}
        if provider_id:
            detail["message_id"] = provider_id
        # The provider's message id: a retried webhook is told apart by it.
        dedupe = (Claim(keys.inbound_seen(tenant.id, sender, provider_id), DEDUPE_TTL_S)
                  if provider_id else None)
        if intent.kind is IntentKind.OPT_OUT:
            return await self._opt_out(tenant, sender, intent, detail, dedupe)
        if dedupe is not None and not await self.service.claim(dedupe):
            log.info("inbound %s already handled; not applied again", provider_id)
            return InboundResult(intent, None, duplicate=True)
        if intent.kind is IntentKind.OPT_IN:
            # The inbound text is the consent evidence (CTIA: keep who, when, how, what).
            # A YES to a double opt-in confirmation grants the pending consent like this.
            evidence = {**detail, "evidence": body[:200]}
            if tenant.double_opt_in:
                evidence.update(await self._confirms_pending(tenant, sender))
            await self.service.opt_in(tenant.id, Channel.SMS, sender,
                                      reason=Reason.OPT_IN_KEYWORD, source=Source.SMS,
                                      detail=evidence)
            return InboundResult(intent, tenant.reply("opt_in"))
        if intent.kind is IntentKind.HELP:
            return InboundResult(intent, tenant.reply("help"))
        if intent.possible_opt_out:
            await self._review(tenant, sender, body, intent, provider_id)
        return InboundResult(intent, None)

    async def _opt_out(self, tenant: Tenant, sender: str, intent: Intent,
                       detail: dict[str, str], dedupe: Claim | None) -> InboundResult:
        confirm = Claim(keys.confirmation_sent(tenant.id, Channel.SMS, sender),
                        CONFIRMATION_GAP_S)
        done = await self.service.opt_out_claimed(
            tenant.id, Channel.SMS, sender, reason=Reason.STOP_KEYWORD, source=Source.SMS,
            detail=detail, dedupe=dedupe, confirm=confirm)
        if done.duplicate:
            log.info("inbound %s already handled; not applied again", detail.get("message_id"))
            return InboundResult(intent, None, duplicate=True)
        return InboundResult(intent, tenant.reply("opt_out") if done.confirm else None)

    async def _confirms_pending(self, tenant: Tenant, sender: str) -> dict[str, str]:
        """Double opt-in: the audit of the opt-in names the pending consent it confirms."""
        try:
            state = await self.store.consent_state(tenant.id, Channel.SMS, sender)
        except StoreUnavailable:
            return {}  # the opt-in itself is journalled; only this link is lost
        if state is None or state[0] != CONSENT_PENDING:
            return {}
        return {"double_opt_in": "confirmed", "pending_since": iso_ms(state[1])}

    async def _review(self, tenant: Tenant, sender: str, body: str, intent: Intent,
                      provider_id: str | None) -> None:
        """Unclear replies with an opt-out word: audited and listed for ops, never dropped
        (with Redis down, written once it answers again, with the reply's own time)."""
        at = now_ms()
        item = {"at_ms": at, "from": sender, "body": body[:1600], "rule": intent.rule,
                "message_id": provider_id or ""}

        async def write() -> None:
            await self.store.append_audit(tenant.id, Channel.SMS, sender,
                                          kind="possible_opt_out", source=Source.SMS.value,
                                          detail={"body": body[:1600], "rule": intent.rule},
                                          at_ms=at)
            await self.store.push_review(tenant.id, item)
        try:
            await write()
        except StoreUnavailable:
            log.warning("possible opt-out from %s queued for review once the store answers",
                        mask(Channel.SMS, sender))
            self.service.defer(f"possible opt-out from {mask(Channel.SMS, sender)}", write)
