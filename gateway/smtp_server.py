"""The SMTP listener, on the same event loop as the HTTP server.

Not aiosmtpd's ``Controller`` (it runs a second loop in a thread, and the
Redis client cannot cross loops) and not its ``Proxy`` handler: the server is
``loop.create_server(lambda: GatewaySMTP(handler, ...))``.

Limits: message size ``smtp_max_message_bytes`` (552 beyond), lines of
1,001 octets (aiosmtpd's), an idle timeout of ``smtp_timeout_s``, and per
session at most ``COMMAND_LIMITS`` calls of each command (then 421 and the
connection closes): few AUTH tries (guessing keys), few EHLO/NOOP/VRFY (idle
chatter); MAIL, RCPT and DATA are bounded only by time, since a bulk sender
keeps one connection for thousands of messages. aiosmtpd >= 1.4.6 refuses bare LF line endings
in DATA's end marker (the SMTP smuggling fix).
STARTTLS is offered when ``smtp_tls_cert`` and ``smtp_tls_key`` are set. AUTH
is offered only over TLS, except to loopback clients, where plaintext AUTH
cannot be sniffed off a network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiosmtpd.smtp import SMTP

from handlers.smtp import Mailboxes, SmtpHandler

from .components import Components
from .settings import Settings

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.0/8"),
                                   ipaddress.ip_network("::1/128"))
COMMAND_LIMITS = {"AUTH": 5, "EHLO": 10, "HELO": 10, "STARTTLS": 2, "NOOP": 100, "VRFY": 10,
                  "EXPN": 10, "HELP": 10, "*": 1_000_000}


class GatewaySMTP(SMTP):
    def __init__(self, *args: Any, sessions: set[GatewaySMTP],
                 plain_auth_from: Sequence[IPNetwork] = LOOPBACK, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions = sessions
        self._plain_auth_from = plain_auth_from
        self._in_data = False

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False

    def _timeout_cb(self) -> None:
        """aiosmtpd's idle timer runs on while the DATA handler relays the message (it is
        reset only by lines from the client): a relay to many recipients through a slow
        upstream could outlast it, cutting the connection after some copies went out and
        before the reply that lets a retry skip them. While a DATA is being handled the
        timer is re-armed instead; the upstream's own timeouts bound that work (RFC 5321
        gives the client 10 minutes for the reply)."""
        if self._in_data:
            self._reset_timeout()
            return
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._sessions.add(self)
        if self._tls_protocol is None:  # the plain connection (STARTTLS re-enters here)
            peer = transport.get_extra_info("peername")
            self._auth_require_tls = not plaintext_auth_allowed(peer, self._plain_auth_from)

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.discard(self)
        super().connection_lost(error)


class SmtpListener:
    """The listening server and its open sessions (Python 3.11's Server cannot wait for
    its connections to end, nor close them)."""

    def __init__(self, server: asyncio.Server, sessions: set[GatewaySMTP]) -> None:
        self.server = server
        self.sessions = sessions

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1]) if self.server.sockets else 0

    async def close(self, drain_s: float = 10.0) -> None:
        """Stop listening; let sessions end for ``drain_s`` seconds, then cut them."""
        self.server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while self.sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await self.server.wait_closed()


def plaintext_auth_allowed(peer: Any, networks: Sequence[IPNetwork]) -> bool:
    """May this peer AUTH without TLS? Loopback (and any network the operator lists, e.g.
    a container bridge in front of a published loopback port) and unix sockets only."""
    if isinstance(peer, tuple) and peer:
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%")[0])
        except ValueError:
            return False
        return address.is_loopback or any(address in net for net in networks)
    return isinstance(peer, str)  # a unix socket: local by definition


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.smtp_tls_cert is None or settings.smtp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    return context


def make_handler(parts: Components) -> SmtpHandler:
    settings = parts.settings
    domains = frozenset(d for t in settings.tenants.values() for d in t.email_domains)
    return SmtpHandler(parts.apikeys, settings.tenant, parts.email, parts.email_feedback,
                       Mailboxes(settings.mailto_domain(), settings.feedback_mailbox()),
                       domains)


async def start_smtp(parts: Components, host: str | None = None,
                     port: int | None = None, *, reuse_port: bool = False) -> SmtpListener:
    """Listen for SMTP; ``reuse_port``: several worker processes share the port."""
    settings = parts.settings
    handler = make_handler(parts)
    tls = tls_context(settings)
    loop = asyncio.get_running_loop()
    sessions: set[GatewaySMTP] = set()
    networks = tuple(ipaddress.ip_network(n) for n in settings.smtp_plain_auth_networks)
    # Named in the greeting; never socket.getfqdn(), a DNS lookup that can hang.
    hostname = urlsplit(settings.public_url).hostname or "localhost"

    def protocol() -> GatewaySMTP:
        return GatewaySMTP(handler, sessions=sessions, plain_auth_from=networks,
                           loop=loop, hostname=hostname,
                           ident="optout-gateway",
                           data_size_limit=settings.smtp_max_message_bytes,
                           enable_SMTPUTF8=True, decode_data=False, tls_context=tls,
                           require_starttls=False, auth_required=False, auth_require_tls=True,
                           timeout=settings.smtp_timeout_s, command_call_limit=COMMAND_LIMITS)

    server = await loop.create_server(
        protocol, host if host is not None else settings.smtp_host,
        port if port is not None else settings.smtp_port, reuse_port=reuse_port or None)
    return SmtpListener(server, sessions)
