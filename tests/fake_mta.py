"""A recording upstream MTA for tests: a real aiosmtpd server on the test's own loop.

Created with ``loop.create_server(lambda: SMTP(handler, ...))``, not aiosmtpd's
``Controller`` (a second loop in a thread) and not its ``Proxy`` handler, the
same way the gateway runs its own listener. It records every accepted message
with its envelope and how it arrived (TLS, AUTH), counts connections, and
injects faults: per-address RCPT replies, queued MAIL/DATA replies, a hang
before replies, and going down and up again on the same port.

TLS certificates come from ``trustme``: a throwaway CA per server; point a
client at :meth:`RecordingMta.write_ca` (e.g. through ``SSL_CERT_FILE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

TlsMode = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class ReceivedEmail:
    """A message the MTA accepted. ``data`` is the content as received (CRLF lines,
    dot-stuffing undone); ``auth`` is ``(mechanism, login)`` when the client
    authenticated; ``connection`` numbers the TCP connection that carried it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]
    tls: bool
    auth: tuple[str, str] | None
    connection: int


@dataclass(frozen=True)
class _Login:
    mechanism: str
    login: str


class _Handler:
    """aiosmtpd's hook contract: MAIL/RCPT hooks update the envelope themselves."""

    def __init__(self, mta: RecordingMta) -> None:
        self.mta = mta

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        await self.mta._hang()
        if self.mta.mail_replies:
            return self.mta.mail_replies.popleft()
        if self.mta.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        await self.mta._hang()
        reply = self.mta.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self.mta._hang()
        if self.mta.data_replies:
            return self.mta.data_replies.popleft()
        content = envelope.original_content
        assert isinstance(content, bytes)
        auth = session.auth_data
        transport = server.transport
        self.mta.messages.append(ReceivedEmail(
            mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos),
            data=content, mail_options=tuple(envelope.mail_options),
            tls=transport is not None and transport.get_extra_info("sslcontext") is not None,
            auth=(auth.mechanism, auth.login) if isinstance(auth, _Login) else None,
            connection=self.mta._connection_of.get(id(server), 0)))
        return f"250 2.0.0 Ok: queued as Q{len(self.mta.messages)}"

    async def handle_NOOP(self, server: SMTP, session: Session, envelope: Envelope,
                          arg: str) -> str:
        self.mta.noops += 1
        return "250 2.0.0 Ok"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mta.rsets += 1
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mta.quits += 1
        return "221 2.0.0 Bye"


class RecordingMta:
    def __init__(self, *, tls: TlsMode = "none", credentials: tuple[str, str] | None = None,
                 auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
                 smtputf8: bool = False) -> None:
        """``tls``: plain, STARTTLS offered (AUTH then only after it) or implicit TLS.
        ``credentials``: (login, password) required before MAIL (530 otherwise).
        ``auth_mechanisms``: the AUTH mechanisms offered."""
        self.tls = tls
        self.credentials = credentials
        self.auth_mechanisms = auth_mechanisms
        self.smtputf8 = smtputf8
        self.messages: list[ReceivedEmail] = []
        self.connections = 0  # TCP connections accepted
        self.noops = 0
        self.rsets = 0
        self.quits = 0
        self.auth_attempts: list[tuple[str, str]] = []  # (mechanism, login), failed ones too
        # Fault injection: a fixed reply for RCPT TO per address; queued replies for
        # the next MAIL/DATA; seconds to wait before answering MAIL, RCPT and DATA.
        self.rcpt_replies: dict[str, str] = {}
        self.mail_replies: deque[str] = deque()
        self.data_replies: deque[str] = deque()
        self.hang_s = 0.0
        self.ca: trustme.CA | None = trustme.CA() if tls != "none" else None
        self._server_context: ssl.SSLContext | None = None
        if self.ca is not None:
            self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_context)
        self._handler = _Handler(self)
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []
        self._connection_of: dict[int, int] = {}
        self._wake = asyncio.Event()
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    def _protocol(self) -> SMTP:
        loop = asyncio.get_running_loop()
        server = SMTP(
            self._handler, hostname="mta.test", loop=loop, enable_SMTPUTF8=self.smtputf8,
            tls_context=self._server_context if self.tls == "starttls" else None,
            # AUTH only after STARTTLS when STARTTLS is offered, as real relays do;
            # MAIL enforces the credentials (auth_required would warn without TLS).
            auth_require_tls=self.tls == "starttls", authenticator=self._authenticate,
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN")
                                    if m not in self.auth_mechanisms])
        self.connections += 1
        self._connection_of[id(server)] = self.connections
        self._protocols.append(server)
        return server

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = auth_data.login.decode()
        self.auth_attempts.append((mechanism, login))
        if self.credentials is None or (login, auth_data.password.decode()) != self.credentials:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=_Login(mechanism, login))

    async def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`)."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._server = await loop.create_server(
            self._protocol, "127.0.0.1", self.port,
            ssl=self._server_context if self.tls == "implicit" else None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Stop listening and drop every open connection, as a crashed MTA would."""
        self._wake.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        protocols, self._protocols = self._protocols, []
        tasks = []
        for proto in protocols:
            if proto.transport is not None:
                proto.transport.abort()  # type: ignore[attr-defined]
            task = proto._handler_coroutine
            if task is not None:
                task.cancel()
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> RecordingMta:
        await self.up()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.down()

    # -- helpers --------------------------------------------------------------------------

    def write_ca(self, path: Path) -> Path:
        """The CA certificate (PEM) a client must trust to verify this MTA."""
        assert self.ca is not None, "this MTA has no TLS"
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def url(self, scheme: str = "smtp", *, userinfo: str = "", query: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}127.0.0.1:{self.port}" + (f"?{query}" if query else "")

    async def _hang(self) -> None:
        if self.hang_s > 0:  # woken early by down(), so teardown stays quick
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.hang_s)
