"""The SMTP edge: submission (AUTH, RCPT decisions, relay at DATA) and the
gateway's own mailboxes (mailto unsubscribe, feedback reports).

aiosmtpd's handler-hook contract: ``handle_RCPT`` appends to
``envelope.rcpt_tos`` itself and returns one reply per recipient;
``handle_DATA`` returns one reply for the message. Reply strings are named
constants; domain errors become SMTP codes only here.

Who may do what without AUTH: a MAIL FROM in a tenant's own domain is
refused at once (``530 5.7.0``: a tenant's system forgot to log in). Any
other unauthenticated client may only reach the gateway's own mailboxes
(``unsubscribe+TOKEN@<unsubscribe domain>`` and the feedback address):
every other RCPT gets ``530 5.7.0``, so the listener is never an open relay.
"""

from __future__ import annotations

import logging
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from suppression.apikeys import ApiKey, ApiKeys, Scope
from suppression.email_inbound import EmailFeedback
from suppression.email_message import DkimKeyError
from suppression.email_outbound import EmailSender, RecipientResult, Submission
from suppression.errors import (
    GatewayError,
    InvalidRecipient,
    InvalidRequest,
    OptedOut,
    SenderNotAllowed,
    StoreUnavailable,
)
from suppression.feedback import token_from_address
from suppression.identifiers import mask
from suppression.models import Channel
from suppression.tenants import Tenant

log = logging.getLogger(__name__)

S235_AUTH_OK = "235 2.7.0 Authentication successful"
S250_OK = "250 2.1.0 OK"
S250_RCPT_OK = "250 2.1.5 OK"
S250_LOCAL_OK = "250 2.1.5 OK, handled by the gateway"
S451_STORE = "451 4.3.0 The suppression store is unavailable; try again later"
S451_LOCAL_CONFIG = "451 4.3.5 The gateway cannot sign this message now; try again later"
S554_BAD_MESSAGE = "554 5.6.0 {}"
S451_LOCAL_ERROR = "451 4.3.0 Local error in processing; try again later"
S553_SENDER_NOT_ALLOWED = "553 5.7.1 {}"
S452_TOO_MANY = "452 4.5.3 Too many recipients in one message"
S454_AUTH_TEMP = "454 4.7.0 Temporary authentication failure; try again later"
S501_AUTH_SYNTAX = "501 5.5.2 Cannot decode the AUTH response"
S504_AUTH_MECH = "504 5.5.4 Unrecognized authentication type; use PLAIN or LOGIN"
S530_AUTH_REQUIRED = "530 5.7.0 Authentication required"
S535_AUTH_BAD = "535 5.7.8 Authentication credentials invalid"
S550_UNSUBSCRIBED = "550 5.7.1 Recipient unsubscribed: {}"
S553_BAD_ADDRESS = "553 5.1.3 {}"
S554_NO_VALID_RCPT = "554 5.5.1 No valid recipients"

MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: the minimum a server must accept


@dataclass(frozen=True, slots=True)
class Mailboxes:
    """The gateway's own addresses on the SMTP listener."""

    unsubscribe_domain: str
    feedback: str

    def token_of(self, address: str) -> str | None:
        _, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.unsubscribe_domain:
            return None
        return token_from_address(address)

    def is_local(self, address: str) -> bool:
        return address.lower() == self.feedback or self.token_of(address) is not None


class SmtpHandler:
    def __init__(self, apikeys: ApiKeys, tenant: Callable[[str], Tenant | None],
                 sender: EmailSender, feedback: EmailFeedback, mailboxes: Mailboxes,
                 tenant_domains: frozenset[str]) -> None:
        self.apikeys = apikeys
        self.tenant = tenant
        self.sender = sender
        self.feedback = feedback
        self.mailboxes = mailboxes
        self.tenant_domains = tenant_domains

    # -- AUTH (RFC 4954): username = tenant id, password = API key ------------------

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope,
                          args: list[str]) -> str | None:
        mechanism = args[0].upper()
        try:
            if mechanism == "PLAIN":
                creds = await _plain(server, args)
            elif mechanism == "LOGIN":
                creds = await _login(server, args)
            else:
                return S504_AUTH_MECH
        except _AlreadyReplied:
            return None  # aiosmtpd answered the aborted or undecodable challenge itself
        if creds is None:
            return S501_AUTH_SYNTAX
        login, password = creds
        try:
            key = await self.apikeys.verify(password)
        except StoreUnavailable:
            return S454_AUTH_TEMP
        except GatewayError:
            return S535_AUTH_BAD
        if key.tenant != login or Scope.SEND not in key.scopes or self.tenant(login) is None:
            return S535_AUTH_BAD
        session.authenticated = True
        session.auth_data = key  # type: ignore[assignment]  # aiosmtpd types it None
        return S235_AUTH_OK

    # -- envelope ---------------------------------------------------------------

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        _, _, domain = address.rpartition("@")
        key = _key(session)
        if key is None:
            if domain.lower() in self.tenant_domains:
                return S530_AUTH_REQUIRED
        elif (tenant := self.tenant(key.tenant)) is not None:
            try:
                self.sender.check_sender(tenant, address)
            except SenderNotAllowed as exc:
                return S553_SENDER_NOT_ALLOWED.format(_one_line(exc.message))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return S250_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return S452_TOO_MANY
        if self.mailboxes.is_local(address):
            envelope.rcpt_tos.append(address)
            return S250_LOCAL_OK
        key = _key(session)
        tenant = self.tenant(key.tenant) if key is not None else None
        if key is None or tenant is None:
            return S530_AUTH_REQUIRED
        try:
            rcpt = await self.sender.decide_recipient(
                tenant, address, transactional=key.transactional,
                mail_from=envelope.mail_from or "", actor=f"key:{key.id}")
        except InvalidRecipient as exc:
            return S553_BAD_ADDRESS.format(_one_line(exc.message))
        except OptedOut as exc:
            return S550_UNSUBSCRIBED.format(_one_line(exc.message))
        except StoreUnavailable:
            return S451_STORE
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(rcpt_options)
        return S250_RCPT_OK

    # -- DATA -----------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        local = [r for r in envelope.rcpt_tos if self.mailboxes.is_local(r)]
        relay = tuple(r for r in envelope.rcpt_tos if not self.mailboxes.is_local(r))
        try:
            for address in local:
                await self._local(address, envelope.mail_from or "", data)
            if not relay:
                return "250 2.0.0 OK" if local else S554_NO_VALID_RCPT
            key = _key(session)
            tenant = self.tenant(key.tenant) if key is not None else None
            if key is None or tenant is None:
                return S530_AUTH_REQUIRED
            results = await self.sender.relay(Submission(
                tenant, envelope.mail_from or "", relay, data,
                transactional=key.transactional, actor=f"key:{key.id}"))
        except StoreUnavailable:
            return S451_STORE
        except DkimKeyError as exc:  # the operator's configuration, not the sender's message
            log.error("DKIM signing failed: %s", exc.message)
            return S451_LOCAL_CONFIG
        except InvalidRequest as exc:
            return S554_BAD_MESSAGE.format(_one_line(exc.message))
        except Exception:  # a bug must not become aiosmtpd's "500 Error: (...)": retry later
            log.exception("DATA failed unexpectedly; the sender is told to retry")
            return S451_LOCAL_ERROR
        reply = data_reply(results)
        log.info("smtp %s: %s", _summary(results), reply)
        return reply

    async def _local(self, address: str, mail_from: str, data: bytes) -> None:
        token = self.mailboxes.token_of(address)
        if token is not None:
            await self.feedback.mailto(token, sender=mail_from)
        else:
            outcome = await self.feedback.feedback(data)
            log.info("feedback report (%s): %d opt-out(s)", outcome.kind, len(outcome.events))


def data_reply(results: list[RecipientResult]) -> str:
    """One DATA reply for per-recipient outcomes, never acknowledging what was not relayed.

    All relayed: 250. Any recipient to retry (upstream 4xx or down): 451, and the
    retry skips those already relayed. Otherwise the first refusal's own code.
    """
    relayed = sum(r.outcome == "relayed" for r in results)
    if relayed == len(results):
        return f"250 2.0.0 OK: relayed to {relayed} recipient(s)"
    prefix = f"relayed to {relayed} of {len(results)}; " if relayed else ""
    deferred = [r for r in results if r.outcome == "deferred"]
    if deferred:
        return (f"451 4.4.1 {prefix}{len(deferred)} recipient(s) could not be handed over; "
                "retry later (recipients already relayed are not sent twice)")
    first = next(r for r in results if r.outcome == "refused")
    status, _, text = first.text.partition(" ")
    return _one_line(f"{first.code} {status} {prefix}{mask(Channel.EMAIL, first.rcpt)}: {text}")


def _summary(results: list[RecipientResult]) -> str:
    return ", ".join(f"{mask(Channel.EMAIL, r.rcpt)}={r.outcome}" for r in results)


def _key(session: Session) -> ApiKey | None:
    data: Any = session.auth_data
    return data if session.authenticated and isinstance(data, ApiKey) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:400]


async def _plain(server: SMTP, args: list[str]) -> tuple[str, str] | None:
    """RFC 4616: [authzid] NUL authcid NUL passwd, with or without an initial response."""
    blob = await _response(server, args[1] if len(args) > 1 else None, "")
    if blob is None:
        return None
    parts = blob.split(b"\x00")
    if len(parts) != 3:
        return None
    return _text(parts[1]), _text(parts[2])


async def _login(server: SMTP, args: list[str]) -> tuple[str, str] | None:
    user = await _response(server, args[1] if len(args) > 1 else None, "Username:")
    if user is None:
        return None
    password = await _response(server, None, "Password:")
    if password is None:
        return None
    return _text(user), _text(password)


class _AlreadyReplied(Exception):
    """The client aborted a challenge ('*') or sent junk, and aiosmtpd already replied."""


async def _response(server: SMTP, initial: str | None, challenge: str) -> bytes | None:
    if initial is not None:
        if initial == "=":  # RFC 4954: an empty initial response
            return b""
        try:
            return b64decode(initial, validate=True)
        except ValueError:
            return None
    answer = await server.challenge_auth(challenge)
    if not isinstance(answer, bytes):
        raise _AlreadyReplied()
    return answer


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
