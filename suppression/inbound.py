"""Inbound texts: STOP, START, HELP and everything else, from any provider.

One ``handle()`` for the Twilio webhook and the generic inbound API. Providers
retry webhooks, so a provider message id is handled once (the retry gets no
second confirmation). FCC 47 CFR 64.1200(a)(12) allows one confirmation text,
with no marketing, sent promptly; we send it at most once per 5 minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import keys
from .errors import StoreUnavailable
from .identifiers import mask, normalize_phone
from .intent import Intent, IntentKind, classify
from .models import Channel, Reason, Source, now_ms
from .service import SuppressionService
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
        if provider_id and not await self._first_time(tenant, provider_id):
            log.info("inbound %s already handled; not applied again", provider_id)
            return InboundResult(intent, None, duplicate=True)
        detail = {"rule": intent.rule, "to": to, "provider": provider}
        if provider_id:
            detail["message_id"] = provider_id
        if intent.kind is IntentKind.OPT_OUT:
            await self.service.opt_out(tenant.id, Channel.SMS, sender,
                                       reason=Reason.STOP_KEYWORD, source=Source.SMS,
                                       detail=detail)
            reply = tenant.reply("opt_out") if await self._confirm(tenant, sender) else None
            return InboundResult(intent, reply)
        if intent.kind is IntentKind.OPT_IN:
            # The inbound text is the consent evidence (CTIA: keep who, when, how, what).
            await self.service.opt_in(tenant.id, Channel.SMS, sender,
                                      reason=Reason.OPT_IN_KEYWORD, source=Source.SMS,
                                      detail={**detail, "evidence": body[:200]})
            return InboundResult(intent, tenant.reply("opt_in"))
        if intent.kind is IntentKind.HELP:
            return InboundResult(intent, tenant.reply("help"))
        if intent.possible_opt_out:
            await self._review(tenant, sender, body, intent, provider_id)
        return InboundResult(intent, None)

    async def _first_time(self, tenant: Tenant, provider_id: str) -> bool:
        try:
            return await self.store.claim(keys.inbound_seen(tenant.id, provider_id), DEDUPE_TTL_S)
        except StoreUnavailable:
            return True  # cannot tell: applying twice is harmless, dropping one is not

    async def _confirm(self, tenant: Tenant, sender: str) -> bool:
        try:
            return await self.store.claim(keys.confirmation_sent(tenant.id, Channel.SMS, sender),
                                          CONFIRMATION_GAP_S)
        except StoreUnavailable:
            return True  # the contract: an opt-out is confirmed even during an outage

    async def _review(self, tenant: Tenant, sender: str, body: str, intent: Intent,
                      provider_id: str | None) -> None:
        """Unclear replies with an opt-out word: audited and listed for ops, never dropped."""
        item = {"at_ms": now_ms(), "from": sender, "body": body[:1600], "rule": intent.rule,
                "message_id": provider_id or ""}
        try:
            await self.store.append_audit(tenant.id, Channel.SMS, sender,
                                          kind="possible_opt_out", source=Source.SMS.value,
                                          detail={"body": body[:1600], "rule": intent.rule})
            await self.store.push_review(tenant.id, item)
        except StoreUnavailable:
            log.warning("possible opt-out from %s not queued for review: store unavailable",
                        mask(Channel.SMS, sender))
