"""Outbound email: one decision per recipient, one upstream message per recipient.

The SMTP edge calls :meth:`EmailSender.decide_recipient` at RCPT (so a
suppressed recipient is refused there, with its own reply) and
:meth:`EmailSender.relay` at DATA. ``relay`` decides again for every
recipient in one store round trip — an opt-out may have landed between RCPT
and DATA, and only at DATA is the message's topic known — then gives each
allowed recipient its own copy:

* marketing: exactly one ``List-Unsubscribe`` (``<PUBLIC_URL/u/TOKEN>,
  <mailto:unsubscribe+TOKEN@DOMAIN>``) and ``List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`` (RFC 8058), replacing any the sender set, the
  rest of the message byte for byte; a DKIM signature of the tenant's domain
  over both headers when the tenant has a key (RFC 6376);
* transactional (keys made with ``--transactional``): the message unchanged but
  for the same DKIM signature (one copy for all), delivered to addresses that
  opted out of marketing, never to addresses that hard-bounced.

Retries: the SMTP reply for a message is one code for all its recipients, so
when some recipients were relayed and another must be retried (upstream 4xx),
the sender is told 451 and retries the whole message. Recipients already
relayed are remembered for ``RELAYED_TTL_S`` under a digest of (sender,
recipient, message) and not sent twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from . import dlp
from . import email_message as em
from .email_transport import (
    EmailRecipientRefused,
    EmailUpstream,
    EmailUpstreamFailed,
    OutboundEmail,
)
from .errors import (
    GatewayError,
    InvalidRequest,
    OptedOut,
    SenderNotAllowed,
    SharingProhibited,
    StoreUnavailable,
)
from .identifiers import mask, normalize_email
from .models import HARD_BOUNCE_SCOPE, Channel, iso_ms, now_ms, scoped
from .outbound import MessageRecorder
from .service import SuppressionService
from .store import MessageRecord
from .tenants import Tenant
from .tokens import TokenSigner

log = logging.getLogger(__name__)

RELAYED_TTL_S = 5 * 86_400  # RFC 5321 4.5.4.1: senders retry for 4-5 days
MAX_PARALLEL_RELAYS = 8
DAY_MS = 86_400_000
DLP_INLINE_BYTES = 256 << 10
DLP_RULE = "sms_optin_no_third_party_email"
UNSUBSCRIBE_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")

Outcome = Literal["relayed", "refused", "deferred"]


@dataclass(frozen=True, slots=True)
class Submission:
    """A message accepted at DATA, with its recipients normalised at RCPT."""

    tenant: Tenant
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    transactional: bool = False
    actor: str = ""


@dataclass(frozen=True, slots=True)
class RecipientResult:
    rcpt: str
    outcome: Outcome
    code: int  # the SMTP code that fits this recipient alone
    text: str  # enhanced status code and text, without the code


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    public_url: str  # base of /u/TOKEN
    mailto_domain: str  # domain of unsubscribe+TOKEN@

    def for_token(self, token: str) -> tuple[str, str]:
        return f"{self.public_url}/u/{token}", f"unsubscribe+{token}@{self.mailto_domain}"


class EmailSender:
    def __init__(self, service: SuppressionService, upstream: EmailUpstream,
                 tokens: TokenSigner, links: UnsubscribeLinks, recorder: MessageRecorder, *,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.service = service
        self.store = service.store
        self.upstream = upstream
        self.tokens = tokens
        self.links = links
        self.recorder = recorder  # shared with SMS: records are written behind the reply
        self.clock_ms = clock_ms

    # -- MAIL -----------------------------------------------------------------

    @staticmethod
    def check_sender(tenant: Tenant, mail_from: str) -> None:
        """A tenant sends as itself: never as another tenant (or anyone else) through the
        shared upstream. A tenant without ``email_domains`` is not restricted."""
        domain = mail_from.rpartition("@")[2].lower()
        if tenant.email_domains and domain not in tenant.email_domains:
            raise SenderNotAllowed(
                f"sender {mail_from or '<>'} is not in tenant {tenant.id}'s email_domains; "
                "send from one of its own domains", field="mail_from")

    # -- RCPT -----------------------------------------------------------------

    async def decide_recipient(self, tenant: Tenant, raw: str, *, transactional: bool,
                               mail_from: str = "", actor: str = "") -> str:
        """Normalise one RCPT and check it; return the address or raise.

        Raises ``InvalidRecipient``, ``OptedOut`` (unsubscribed, or hard-bounced
        for transactional mail) or ``StoreUnavailable`` (fail closed). A refusal is kept
        as a message record (stage ``rcpt``), the evidence that mail to an unsubscribed
        person was stopped, as refused texts are.
        """
        rcpt = normalize_email(raw)
        refused, _ = await self._refusals(tenant, [rcpt], transactional=transactional,
                                          topic=None)
        if refused[0] is not None:
            sub = Submission(tenant, mail_from, (rcpt,), b"", transactional=transactional,
                             actor=actor)
            await self._record(sub, "EM" + uuid.uuid4().hex, rcpt, "refused", refused[0].code,
                               stage="rcpt")
            raise refused[0]
        return rcpt

    async def _refusals(self, tenant: Tenant, rcpts: Sequence[str], *, transactional: bool,
                        topic: str | None, digests: Sequence[str] = ()
                        ) -> tuple[list[GatewayError | None], list[bool]]:
        """Per recipient, why it may not get this message (None: it may), and which of the
        ``digests`` were relayed already (a retry). One round trip for both."""
        scopes = [HARD_BOUNCE_SCOPE] if transactional else ["", HARD_BOUNCE_SCOPE]
        if topic and not transactional:
            scopes.append(topic)
        names = [scoped(r, s) for r in rcpts for s in scopes]
        flags, replies = await self.service.suppressed_and(
            tenant.id, Channel.EMAIL, names, self.store.relayed_probe(tenant.id, digests))
        relayed = [bool(r) for r in replies] if replies is not None else [False] * len(digests)
        out: list[GatewayError | None] = []
        for i, rcpt in enumerate(rcpts):
            hit = dict(zip(scopes, flags[i * len(scopes):(i + 1) * len(scopes)], strict=True))
            if hit.get(HARD_BOUNCE_SCOPE):
                out.append(OptedOut(f"{rcpt} hard-bounced: the address does not accept mail",
                                    field="rcpt"))
            elif hit.get(""):
                out.append(OptedOut(f"{rcpt} unsubscribed from {tenant.brand}'s marketing email",
                                    field="rcpt"))
            elif topic and hit.get(topic):
                out.append(OptedOut(f"{rcpt} unsubscribed from the '{topic}' topic of "
                                    f"{tenant.brand}", field="rcpt"))
            else:
                out.append(None)
        return out, relayed

    # -- DATA -----------------------------------------------------------------

    async def relay(self, sub: Submission) -> list[RecipientResult]:
        """Decide again, then relay one copy per allowed recipient. Raises
        ``StoreUnavailable`` before anything is relayed if the store cannot answer."""
        tenant = sub.tenant
        topic = None if sub.transactional else em.message_topic(sub.data, tenant.topics)
        body = hashlib.blake2b(sub.data, digest_size=16).digest()  # once, not per recipient
        digests = [_relay_digest(tenant.id, sub.mail_from, r, body) for r in sub.recipients]
        refusals, done = await self._refusals(tenant, sub.recipients, topic=topic,
                                              transactional=sub.transactional, digests=digests)
        refusals = await self._sharing_guard(sub, refusals)
        if not sub.transactional:
            try:
                self._warn_postal_address(tenant, sub.data)
                _warn_broken_signatures(tenant, sub.data)
            except Exception:  # warnings only: a parser's bug must not stop the mail
                log.exception("tenant %s: the CAN-SPAM/DKIM checks failed on a message",
                              tenant.id)
        message_id = "EM" + uuid.uuid4().hex
        _refuse_bare_cr(sub.data)
        # One copy is built (and signed) before anything is sent: a message we cannot
        # rewrite, or a broken DKIM key, fails the whole message with nothing relayed. The
        # others are built one at a time under the gate (memory: size x parallel, not
        # size x recipients).
        pending = [r for r, ref, seen in zip(sub.recipients, refusals, done, strict=True)
                   if ref is None and not seen]
        # Transactional mail is the same for everyone: signed once (DKIM, when the tenant
        # has a key for the From domain), before anything is sent.
        # The From header is the same in every copy: its signing domain is found once.
        signer = _signing_domain(tenant, sub.data)
        same = self._sign(tenant, sub.data, signer) if sub.transactional and pending else None
        first = {pending[0]: self._personalise(sub, pending[0], topic, signer)} \
            if pending and same is None else {}
        gate = asyncio.Semaphore(MAX_PARALLEL_RELAYS)

        async def one(rcpt: str, refusal: GatewayError | None, seen: bool) -> RecipientResult:
            if refusal is not None:
                await self._record(sub, message_id, rcpt, "refused", refusal.code)
                return RecipientResult(rcpt, "refused", 550, f"5.7.1 {refusal.message}")
            if seen:
                return RecipientResult(rcpt, "relayed", 250, "2.0.0 already relayed")
            async with gate:
                data = same or first.pop(rcpt, None) or self._personalise(sub, rcpt, topic,
                                                                          signer)
                return await self._relay_one(sub, message_id, rcpt, data)

        results = list(await asyncio.gather(*(
            one(r, ref, s) for r, ref, s in zip(sub.recipients, refusals, done, strict=True))))
        await self._remember_partial(sub, results, digests, done)
        return results

    async def _remember_partial(self, sub: Submission, results: list[RecipientResult],
                                digests: list[str], done: list[bool]) -> None:
        """When the sender will be told to retry (451), remember who was relayed now, so
        the retry skips them. A message relayed in full (250) is not retried: nothing to
        remember, and no round trip."""
        if not any(r.outcome == "deferred" for r in results):
            return
        fresh = [d for r, d, seen in zip(results, digests, done, strict=True)
                 if r.outcome == "relayed" and not seen]
        try:
            await self.store.mark_relayed(sub.tenant.id, fresh, RELAYED_TTL_S)
        except StoreUnavailable:
            log.warning("%d relayed recipient(s) not remembered: the retry may send them "
                        "twice", len(fresh))

    async def _sharing_guard(self, sub: Submission, refusals: list[GatewayError | None]
                             ) -> list[GatewayError | None]:
        """Refuse recipients outside the tenant's domains when the message carries SMS
        opt-in data (see ``dlp``): at most one batched consent lookup per message."""
        tenant = sub.tenant
        outside = [i for i, (r, ref) in enumerate(zip(sub.recipients, refusals, strict=True))
                   if ref is None and r.rpartition("@")[2].lower() not in tenant.email_domains]
        if not outside or not tenant.dlp_enabled:
            return refusals
        need = tenant.dlp_min_numbers
        if not dlp.may_hold(sub.data, need):  # ordinary mail: a byte-level count, ~50 us
            return refusals
        # A list-like message: libphonenumber is slow and holds the GIL in pure Python, so
        # off the event loop, and bounded (dlp.MAX_CANDIDATES).
        inside = ", ".join(tenant.email_domains) or "the tenant"
        try:
            numbers = await asyncio.to_thread(dlp.scan, sub.data, tenant.default_region,
                                              strict=True)  # may_hold is checked above
        except dlp.TooManyCandidates:
            # It cannot check, so it does not send (outside the tenant's domains).
            found = -1
            refusal = SharingProhibited(
                f"the message holds more than {dlp.MAX_CANDIDATES:,} number-like values, too "
                f"many to check for SMS opt-in data; it may not go outside {inside} (split "
                "it, or send it from inside); nothing was relayed to this recipient",
                rule=DLP_RULE)
        else:
            if len(numbers) < tenant.dlp_min_numbers:
                return refusals
            found = await self.store.consent_records(tenant.id, Channel.SMS, sorted(numbers))
            if found < tenant.dlp_min_numbers:
                return refusals
            refusal = SharingProhibited(
                f"the message carries SMS opt-in data ({found} phone numbers from "
                f"{tenant.brand}'s consent records) and may not go outside {inside}; "
                "nothing was relayed to this recipient", rule=DLP_RULE)
        log.warning("sharing guard: tenant %s, %s in a message to %d outside recipient(s): "
                    "refused", tenant.id, "too many number-like values to check" if found < 0
                    else f"{found} consented SMS numbers", len(outside))
        await self._audit_sharing(sub, [sub.recipients[i] for i in outside], found)
        return [refusal if i in outside else ref for i, ref in enumerate(refusals)]

    async def _audit_sharing(self, sub: Submission, recipients: list[str], found: int) -> None:
        for rcpt in recipients:
            try:
                await self.store.append_audit(
                    sub.tenant.id, Channel.EMAIL, rcpt, kind="sharing_refused",
                    source="smtp", detail={"rule": DLP_RULE, "from": sub.mail_from,
                                           "actor": sub.actor,
                                           # -1: too many number-like values to check
                                           **({"sms_numbers": found} if found >= 0
                                              else {"unchecked": "too_many_candidates"})})
            except StoreUnavailable:
                log.warning("sharing refusal to %s not audited: store unavailable",
                            mask(Channel.EMAIL, rcpt))

    async def _relay_one(self, sub: Submission, message_id: str, rcpt: str, data: bytes
                         ) -> RecipientResult:
        msg = OutboundEmail(f"{message_id}.{_short(rcpt)}", sub.tenant.id, sub.mail_from, rcpt,
                            data)
        try:
            accepted = await self.upstream.send(msg)
        except EmailRecipientRefused as exc:
            await self._record(sub, message_id, rcpt, "refused", "upstream_refused",
                               reply=f"{exc.smtp_code} {exc.smtp_text}")
            return RecipientResult(rcpt, "refused", exc.smtp_code or 550,
                                   exc.smtp_text or "5.0.0 refused by the upstream")
        except EmailUpstreamFailed as exc:
            await self._record(sub, message_id, rcpt, "failed", exc.code,
                               reply=f"{exc.smtp_code or ''} {exc.smtp_text}".strip())
            return RecipientResult(rcpt, "deferred", 451,
                                   "4.4.1 the upstream did not accept the message; retry later")
        await self._record(sub, message_id, rcpt, "sent", None, reply=accepted.reply)
        return RecipientResult(rcpt, "relayed", 250, "2.0.0 relayed")

    def _personalise(self, sub: Submission, rcpt: str, topic: str | None,
                     signer: str | None) -> bytes:
        """The recipient's copy: its own unsubscribe headers, then the tenant's signature."""
        token = self.tokens.issue(sub.tenant.id, Channel.EMAIL, rcpt, topic or "")
        url, mailto = self.links.for_token(token)
        data = em.rewrite_headers(sub.data, remove=UNSUBSCRIBE_HEADERS,
                                  add=em.unsubscribe_headers(url, f"mailto:{mailto}"))
        return self._sign(sub.tenant, data, signer)

    def _sign(self, tenant: Tenant, data: bytes, signer: str | None) -> bytes:
        """``signer``: the message's ``_signing_domain`` (None: sent unsigned)."""
        if signer is None or not tenant.dkim_selector or tenant.dkim_key_file is None:
            return data
        return em.dkim_sign(data, selector=tenant.dkim_selector, domain=signer,
                            private_key=_read_key(tenant.dkim_key_file))

    def _warn_postal_address(self, tenant: Tenant, data: bytes) -> None:
        # CAN-SPAM (15 U.S.C. 7704(a)(5)(A)(iii)): a valid physical postal address.
        if not tenant.postal_address:
            log.warning("tenant %s has no postal_address configured: CAN-SPAM requires one in "
                        "every marketing email", tenant.id)
        elif not em.mentions_postal_address(data, tenant.postal_address):
            log.warning("a marketing message of tenant %s lacks the postal address "
                        "(CAN-SPAM); relayed anyway", tenant.id)

    async def _record(self, sub: Submission, message_id: str, rcpt: str, outcome: str,
                      code: str | None, *, reply: str | None = None,
                      stage: str = "data") -> None:
        """A message record per recipient (best effort: never fails the relay).
        ``stage``: the SMTP command it was decided at (``rcpt`` or ``data``)."""
        at = self.clock_ms()
        record = {"id": message_id, "at": iso_ms(at), "tenant": sub.tenant.id,
                  "from": sub.mail_from, "to": rcpt,
                  "category": "transactional" if sub.transactional else "marketing",
                  "outcome": outcome, "code": code, "upstream_reply": reply,
                  "actor": sub.actor, "stage": stage}
        await self.recorder.add(MessageRecord(
            sub.tenant.id, Channel.EMAIL, rcpt, record, at, False,
            sub.tenant.message_retention_days * DAY_MS))


def _warn_broken_signatures(tenant: Tenant, data: bytes) -> None:
    """Replacing List-Unsubscribe breaks a sender's DKIM signature that covers it."""
    for domain, signed in em.signed_by(data):
        if signed & {"list-unsubscribe", "list-unsubscribe-post"}:
            log.warning("tenant %s: the sender's DKIM signature (d=%s) covers List-Unsubscribe, "
                        "which the gateway replaces: that signature will fail; sign after the "
                        "gateway (tenant dkim_selector/dkim_key_file) instead", tenant.id, domain)


_BARE_CR = re.compile(rb"\r(?!\n)")


def _refuse_bare_cr(data: bytes) -> None:
    """A CR without LF in the header block is a line break to some MTAs and not to others:
    a header could hide behind it (a second List-Unsubscribe). Refused, not guessed at."""
    if _BARE_CR.search(em.split_message(data)[0]):
        raise InvalidRequest("the message header contains a bare CR (not followed by LF); "
                             "end every line with CRLF")


def _relay_digest(tenant: str, mail_from: str, rcpt: str, body_digest: bytes) -> str:
    """Names one (sender, recipient, message) relay; the message enters as its digest."""
    h = hashlib.blake2b(digest_size=16)
    for part in (tenant.encode(), mail_from.encode(), rcpt.encode()):
        h.update(len(part).to_bytes(4, "big") + part)
    h.update(body_digest)
    return h.hexdigest()


def _short(rcpt: str) -> str:
    return hashlib.blake2b(rcpt.encode(), digest_size=4).hexdigest()


def _from_domain(data: bytes) -> str | None:
    values = em.header_values(data, "From")
    if len(values) != 1:
        return None
    address = values[0].rsplit("<", 1)[-1].strip().rstrip(">").strip()
    _, at, domain = address.rpartition("@")
    return domain.lower() if at and domain else None


def _signing_domain(tenant: Tenant, data: bytes) -> str | None:
    """The From domain the tenant signs this message for, or None: no key, or a domain
    that is not one of the tenant's own (only those are signed: DMARC alignment)."""
    if not tenant.dkim_selector or tenant.dkim_key_file is None:
        return None
    domain = _from_domain(data)
    return domain if domain is not None and domain in tenant.email_domains else None


@lru_cache(maxsize=64)
def _read_key(path: Path) -> bytes:
    """The tenant's DKIM key, read once per process (restart to rotate it). An unreadable
    file is the operator's problem: DkimKeyError, which the edge answers with a 451."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise em.DkimKeyError(f"the DKIM key file could not be read ({exc.strerror or exc})"
                              ) from None
