"""Mail that arrives for the gateway itself: mailto unsubscribes, complaints, bounces.

* ``unsubscribe+TOKEN@<unsubscribe domain>`` (the ``mailto:`` of every
  ``List-Unsubscribe`` we write, RFC 2369/8058): a valid token is an opt-out
  with reason ``mailto`` from all of the tenant's marketing, as the one-click POST.
  A forged or altered token changes nothing and the mail is accepted all the
  same: the SMTP reply must not be an oracle.
* the feedback address: ARF complaint reports (RFC 5965) -> opt-out with
  reason ``complaint`` (all marketing, whatever the topic: a person who
  reports spam wants none of it); DSNs (RFC 3464) with a hard bounce -> opt-out
  with reason ``bounce`` plus the ``HARD_BOUNCE_SCOPE`` entry that also stops
  transactional mail. Soft bounces and ``not-spam`` reports change nothing.

Anyone can mail the feedback address, so a report is believed for an address
our signed tokens (in the original message it quotes) name, or else only for
an address the gateway relayed mail to (a 'sent' message record). Which
tenant a report belongs to comes from those tokens; when it quotes none (some
feedback loops strip the original), from the only tenant configured.
Otherwise the report is logged and dropped: suppressing an address for the
wrong tenant, or for all, is not ours to guess.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import GatewayError
from .feedback import FeedbackReport, parse_feedback
from .identifiers import mask, normalize_email
from .models import HARD_BOUNCE_SCOPE, Channel, OptEvent, Reason, Source
from .service import SuppressionService
from .tenants import Tenant
from .tokens import TokenClaims, TokenSigner

log = logging.getLogger(__name__)

MAX_UNSIGNED = 50  # addresses without our token looked up per report


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    kind: str
    events: tuple[OptEvent, ...]


class EmailFeedback:
    def __init__(self, service: SuppressionService, tokens: TokenSigner,
                 tenants: Mapping[str, Tenant]) -> None:
        self.service = service
        self.tokens = tokens
        self.tenants = tenants

    async def mailto(self, token: str, *, sender: str = "") -> OptEvent | None:
        """An unsubscribe mail to ``unsubscribe+TOKEN@…``; None when the token is not ours."""
        claims = self.tokens.verify(token)
        if claims is None or claims.channel is not Channel.EMAIL or \
                claims.tenant not in self.tenants:
            log.info("mailto unsubscribe with an invalid token ignored")
            return None
        detail = {"sender": sender[:254]} if sender else {}
        return await self.service.opt_out(claims.tenant, Channel.EMAIL, claims.identifier,
                                          reason=Reason.MAILTO, source=Source.EMAIL,
                                          detail=detail)

    async def feedback(self, data: bytes) -> FeedbackOutcome:
        """A report sent to the feedback address: opt-outs for complaints and hard bounces."""
        # Parsing is CPU-bound (a multi-MB report takes ~1 s): off the event loop.
        report = await asyncio.to_thread(parse_feedback, data)
        if "parse_error" in report.detail:
            log.warning("feedback report not understood (%s)", report.detail["parse_error"])
        claims = [c for t in report.tokens if (c := self.tokens.verify(t)) is not None
                  and c.channel is Channel.EMAIL and c.tenant in self.tenants]
        events = await self._believed(self._events(report, claims), claims)
        if events:
            await self.service.record(events)
        for ev in events:
            log.info("%s from %s: %s suppressed for tenant %s", report.kind,
                     report.detail.get("reporting_mta", "a report"),
                     mask(Channel.EMAIL, ev.identifier), ev.tenant)
        return FeedbackOutcome(report.kind, tuple(events))

    def _events(self, report: FeedbackReport, claims: list[TokenClaims]) -> list[OptEvent]:
        scopes: tuple[str, ...]
        if report.kind == "complaint":
            reason, scopes, wanted = Reason.COMPLAINT, ("",), "complaint"
        elif report.kind == "hard_bounce":  # a soft-bounce report holds no hard bounce
            # A DSN may list several recipients, only some of them hard bounces.
            reason, scopes, wanted = Reason.BOUNCE, ("", HARD_BOUNCE_SCOPE), "hard_bounce"
        else:
            return []
        # address -> tenant; a complaint is about the people our tokens in it name
        targets = {c.identifier: c.tenant for c in claims} if report.kind == "complaint" else {}
        by_address = {c.identifier.lower(): c.tenant for c in claims}
        fallback = _only(set(by_address.values())) or _only(set(self.tenants))
        for rcpt in report.recipients:
            if rcpt.kind != wanted:
                continue
            try:
                address = normalize_email(rcpt.address)
            except GatewayError:
                log.warning("%s report names an address that is not one: ignored", wanted)
                continue
            # Anyone can mail the feedback address: when the report quotes our signed
            # tokens, only the addresses they name are believed.
            tenant = by_address.get(address.lower()) if by_address else fallback
            if tenant is None:
                log.warning("%s for %s: no token of ours in the report and several tenants; "
                            "ignored", wanted, mask(Channel.EMAIL, address))
                continue
            targets.setdefault(address, tenant)
        detail = {k: v[:200] for k, v in report.detail.items()}
        return [OptEvent("opt_out", tenant, Channel.EMAIL, address, reason, Source.EMAIL,
                         detail=detail, scope=scope)
                for address, tenant in targets.items() for scope in scopes]


    async def _believed(self, events: list[OptEvent], claims: list[TokenClaims]
                        ) -> list[OptEvent]:
        """Anyone can mail the feedback address. An address our signed token names is
        believed; any other only if the gateway relayed mail to it (a message record with
        outcome 'sent' in the retention window): a forged report cannot suppress people
        we never mailed. At most MAX_UNSIGNED addresses per report are looked up."""
        signed = {(c.tenant, c.identifier.lower()) for c in claims}
        verdict: dict[tuple[str, str], bool] = {}
        out = []
        for ev in events:
            key = (ev.tenant, ev.identifier.lower())
            if key not in verdict:
                verdict[key] = key in signed or (
                    len(verdict) < MAX_UNSIGNED and await self._relayed_to(ev.tenant,
                                                                            ev.identifier))
                if not verdict[key]:
                    log.warning("report names %s, which the gateway did not mail and no "
                                "token of ours names: ignored", mask(Channel.EMAIL, ev.identifier))
            if verdict[key]:
                out.append(ev)
        return out

    async def _relayed_to(self, tenant: str, address: str) -> bool:
        """Raises StoreUnavailable when Redis cannot tell: the SMTP edge answers 451, so
        the reporting MTA retries instead of the report being acknowledged and lost."""
        records = await self.service.store.message_records(tenant, Channel.EMAIL, address)
        return any(r.get("outcome") == "sent" for r in records)


def _only(values: set[str]) -> str | None:
    return next(iter(values)) if len(values) == 1 else None
