"""The SMTP listener's edges: TLS and AUTH rules by client address, size and syntax limits,
the CAN-SPAM warning. Real smtplib clients, real Redis, the recording upstream MTA."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from conftest import Gateway, make_settings, start_gateway, stop_gateway
from fake_mta import RecordingMta

from gateway.smtp_server import SmtpListener, start_smtp

SENDER, ANN = "news@acme.example", "ann@example.com"


def _outside_address() -> str | None:
    """This host's own non-loopback IPv4 address: a client connecting to it is not local."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


@dataclass
class Smtp:
    gw: Gateway
    mta: RecordingMta
    listener: SmtpListener
    key: str
    ca: trustme.CA

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    address = _outside_address() or "127.0.0.1"
    leaf = ca.issue_cert("127.0.0.1", address, "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    yield cert, key


@pytest.fixture
async def smtp(redis_url: str, tmp_path: Path, ca: trustme.CA,
               cert_files: tuple[Path, Path]) -> AsyncIterator[Smtp]:
    async with RecordingMta() as mta:
        settings = make_settings(redis_url, tmp_path / "data", email_upstream=mta.url(),
                                 smtp_tls_cert=cert_files[0], smtp_tls_key=cert_files[1],
                                 smtp_max_message_bytes=64 * 1024)
        parts, client = await start_gateway(settings)
        listener = await start_smtp(parts, "0.0.0.0", 0)
        gw = Gateway(parts, client)
        try:
            yield Smtp(gw, mta, listener, await gw.key(scopes="send"), ca)
        finally:
            await listener.close(drain_s=1.0)
            await stop_gateway(parts, client)


def _message(body: str = "Hello\r\n\r\nAcme Co, 1 Main St\r\n") -> bytes:
    return (f"From: {SENDER}\r\nTo: {ANN}\r\nSubject: hi\r\n\r\n{body}").encode()


async def test_outside_clients_get_auth_only_after_starttls(smtp: Smtp) -> None:
    # From a non-loopback address AUTH is neither offered nor accepted in the clear; after
    # STARTTLS (the certificate is verified) it is, and mail is relayed.
    address = _outside_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address to connect from")

    def attempt() -> tuple[bool, int, bool, dict[str, Any]]:
        with smtplib.SMTP(address, smtp.listener.port, timeout=10) as s:
            s.ehlo()
            clear_auth = s.has_extn("auth")
            code = s.docmd("AUTH", "PLAIN AGFjbWUAeA==")[0]
            s.starttls(context=smtp.client_context())
            s.ehlo()
            tls_auth = s.has_extn("auth")
            s.login("acme", smtp.key)
            return clear_auth, code, tls_auth, dict(s.sendmail(SENDER, [ANN], _message()))

    clear_auth, code, tls_auth, refused = await asyncio.to_thread(attempt)
    assert (clear_auth, code, tls_auth, refused) == (False, 538, True, {})
    assert [m.rcpt_tos for m in smtp.mta.messages] == [(ANN,)]


async def test_loopback_clients_may_auth_in_the_clear(smtp: Smtp) -> None:
    # Over loopback plaintext AUTH cannot be sniffed off a network: it is offered.
    def attempt() -> int:
        with smtplib.SMTP("127.0.0.1", smtp.listener.port, timeout=10) as s:
            s.ehlo()
            assert s.has_extn("starttls") and s.has_extn("auth")
            return s.login("acme", smtp.key)[0]

    assert await asyncio.to_thread(attempt) == 235


async def test_oversize_message_is_552_and_nothing_relayed(smtp: Smtp) -> None:
    # Larger than smtp_max_message_bytes: refused as a whole, nothing reaches the upstream.
    def attempt() -> int:
        with smtplib.SMTP("127.0.0.1", smtp.listener.port, timeout=10) as s:
            s.login("acme", smtp.key)
            try:
                s.sendmail(SENDER, [ANN], _message("x" * 100_000 + "\r\n"))
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code
            except smtplib.SMTPSenderRefused as exc:  # SIZE announced in MAIL FROM
                return exc.smtp_code
            return 250

    assert await asyncio.to_thread(attempt) == 552
    assert smtp.mta.messages == []


@pytest.mark.parametrize("address", ["not-an-address", "ann@", "ann@@example.com",
                                     "ann@exa mple.com"])
async def test_bad_recipient_address_is_553_naming_the_problem(smtp: Smtp, address: str
                                                               ) -> None:
    # A recipient that is not an address is refused at RCPT with a reason, never a 500.
    def attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", smtp.listener.port, timeout=10) as s:
            s.login("acme", smtp.key)
            s.mail(SENDER)
            code, text = s.docmd("RCPT", f"TO:<{address}>")
            return code, text

    code, text = await asyncio.to_thread(attempt)
    assert code in (501, 553), (code, text)
    assert len(text) > 12


async def test_marketing_without_postal_address_is_relayed_with_a_warning(
        smtp: Smtp, caplog: pytest.LogCaptureFixture) -> None:
    # CAN-SPAM: the tenant's postal address missing from a marketing message is logged.
    caplog.set_level(logging.WARNING, logger="suppression.email_outbound")

    def send(body: str) -> None:
        with smtplib.SMTP("127.0.0.1", smtp.listener.port, timeout=10) as s:
            s.login("acme", smtp.key)
            s.sendmail(SENDER, [ANN], _message(body))

    await asyncio.to_thread(send, "Sale!\r\nAcme Co, 1 Main St\r\n")
    assert "postal address" not in caplog.text
    await asyncio.to_thread(send, "Sale!\r\n")
    assert "lacks the postal address" in caplog.text
    assert len(smtp.mta.messages) == 2


async def test_key_guessing_is_cut_off_after_five_tries(smtp: Smtp) -> None:
    # A sixth AUTH in one session gets 421 and the connection is closed.
    def attempt() -> list[int]:
        codes = []
        with smtplib.SMTP("127.0.0.1", smtp.listener.port, timeout=10) as s:
            s.ehlo()
            for _ in range(6):
                codes.append(s.docmd("AUTH", "PLAIN AGFjbWUAb2dfeHh4X3l5eQ==")[0])
        return codes

    try:
        codes = await asyncio.to_thread(attempt)
    except smtplib.SMTPServerDisconnected:
        codes = [421]
    assert codes[:5] == [535] * 5 and codes[-1] == 421


def test_plaintext_auth_networks() -> None:
    # Loopback and unix sockets always; other addresses only in a listed network.
    import ipaddress

    from gateway.smtp_server import LOOPBACK, plaintext_auth_allowed

    bridge = (*LOOPBACK, ipaddress.ip_network("172.16.0.0/12"))
    assert plaintext_auth_allowed(("127.0.0.1", 5000), LOOPBACK)
    assert plaintext_auth_allowed(("::1", 5000, 0, 0), LOOPBACK)
    assert plaintext_auth_allowed("/run/sock", LOOPBACK)
    assert not plaintext_auth_allowed(("172.18.0.1", 5000), LOOPBACK)
    assert plaintext_auth_allowed(("172.18.0.1", 5000), bridge)
    assert not plaintext_auth_allowed(("192.0.2.7", 5000), bridge)
    assert not plaintext_auth_allowed(("not-an-ip", 1), bridge)
