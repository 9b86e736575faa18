"""Email upstream transports against a real directory and a real loopback MTA."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_mta import RecordingMta

from gateway.email_upstream import (
    EmailAccepted,
    EmailRecipientRefused,
    EmailUpstream,
    EmailUpstreamFailed,
    OutboundEmail,
    SmtpEmailUpstream,
    email_upstream_from_url,
)
from suppression.transport import UpstreamFailed

SENDER = "news@acme.example"
RCPT = "bob@example.com"
DATA = (b"From: Acme <news@acme.example>\r\nTo: bob@example.com\r\nSubject: Sale\r\n"
        b"List-Unsubscribe: <http://127.0.0.1:8080/u/tok>\r\n\r\nHello Bob\r\n"
        b".a line starting with a dot\r\n")
USER = "gw-relay"
PASSWORD = "p@ss:w/rd%secret"
USERINFO = "gw-relay:p%40ss%3Aw%2Frd%25secret"  # PASSWORD, percent-encoded


def email(n: int = 1, *, rcpt: str = RCPT, mail_from: str = SENDER,
          data: bytes = DATA) -> OutboundEmail:
    return OutboundEmail(id=f"msg-{n}", tenant="acme", mail_from=mail_from, rcpt=rcpt,
                         data=data)


@pytest.fixture
async def mta() -> AsyncIterator[RecordingMta]:
    async with RecordingMta() as server:
        yield server


@pytest.fixture
async def upstreams() -> AsyncIterator[list[EmailUpstream]]:
    """Upstreams made by a test, closed after it (their connections must not leak)."""
    made: list[EmailUpstream] = []
    yield made
    for upstream in made:
        await upstream.close()


def make(upstreams: list[EmailUpstream], url: str, *, timeout_s: float = 5.0,
         pool_size: int = 8) -> EmailUpstream:
    upstream = email_upstream_from_url(url, timeout_s=timeout_s, pool_size=pool_size)
    upstreams.append(upstream)
    return upstream


def trust(mta: RecordingMta, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the MTA's throwaway CA the one verified against, as an operator would."""
    monkeypatch.setenv("SSL_CERT_FILE", str(mta.write_ca(tmp_path / "ca.pem")))


# -- file:// ---------------------------------------------------------------------------


async def test_file_writes_exact_bytes_after_the_envelope_headers(
        tmp_path: Path, upstreams: list[EmailUpstream]) -> None:
    # One durable 0600 <id>.eml: Return-Path and Delivered-To, then the message byte for byte.
    outbox = tmp_path / "var" / "outbox" / "email"
    accepted = await make(upstreams, f"file://{outbox}").send(email(7))
    assert accepted == EmailAccepted(reply="250 2.0.0 Ok: written to the outbox as msg-7.eml")
    path = outbox / "msg-7.eml"
    assert path.read_bytes() == (b"Return-Path: <news@acme.example>\r\n"
                                 b"Delivered-To: bob@example.com\r\n" + DATA)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert os.listdir(outbox) == ["msg-7.eml"]  # no temporary file left behind


async def test_file_follows_the_message_line_endings_and_null_sender(
        tmp_path: Path, upstreams: list[EmailUpstream]) -> None:
    # An LF message gets LF envelope headers; a bounce's null sender is Return-Path: <>.
    data = "Subject: Relevé\n\nBonjour é\n".encode()
    await make(upstreams, f"file://{tmp_path}").send(email(1, mail_from="", data=data))
    assert (tmp_path / "msg-1.eml").read_bytes() == (
        b"Return-Path: <>\nDelivered-To: bob@example.com\n" + data)


async def test_file_concurrent_sends_make_one_file_each(
        tmp_path: Path, upstreams: list[EmailUpstream]) -> None:
    # 30 concurrent sends make 30 whole files, each with its own recipient.
    upstream = make(upstreams, f"file://{tmp_path}/out")
    await asyncio.gather(*(upstream.send(email(n, rcpt=f"r{n}@example.com"))
                           for n in range(30)))
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(f"msg-{n}.eml" for n in range(30))
    for n in range(30):
        text = (tmp_path / "out" / f"msg-{n}.eml").read_bytes()
        assert text.endswith(DATA) and f"Delivered-To: r{n}@example.com\r\n".encode() in text


async def test_file_write_failure_is_upstream_failed(tmp_path: Path,
                                                     upstreams: list[EmailUpstream]) -> None:
    # An outbox that cannot be created (its parent is a file) refuses the message, saying why.
    (tmp_path / "blocker").write_text("")
    with pytest.raises(EmailUpstreamFailed, match="could not be written") as info:
        await make(upstreams, f"file://{tmp_path}/blocker/out").send(email())
    assert not isinstance(info.value, EmailRecipientRefused)
    assert info.value.code == "upstream_failed"


async def test_file_refuses_header_injection_and_unsafe_ids(
        tmp_path: Path, upstreams: list[EmailUpstream]) -> None:
    # A CR/LF in an address is refused for good (553); an id that is no file name fails.
    upstream = make(upstreams, f"file://{tmp_path}/out")
    with pytest.raises(EmailRecipientRefused) as info:
        await upstream.send(email(rcpt="bob@example.com\r\nBcc: eve@example.com"))
    assert info.value.smtp_reply == "553 5.1.3 Bad recipient address syntax"
    with pytest.raises(EmailRecipientRefused, match="sender address"):
        await upstream.send(email(mail_from="a@b.example\nX-Evil: 1"))
    for bad_id in ("../escape", ".hidden", "a/b", ""):
        msg = OutboundEmail(id=bad_id, tenant="acme", mail_from=SENDER, rcpt=RCPT, data=DATA)
        with pytest.raises(EmailUpstreamFailed, match="cannot name an outbox file"):
            await upstream.send(msg)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.eml").exists()


async def test_file_send_after_close_fails(tmp_path: Path) -> None:
    # A closed file upstream refuses further sends; closing twice is fine.
    upstream = email_upstream_from_url(f"file://{tmp_path}")
    await upstream.close()
    await upstream.close()
    with pytest.raises(EmailUpstreamFailed, match="shut down"):
        await upstream.send(email())
    assert os.listdir(tmp_path) == []


# -- smtp:// delivery and the pool ---------------------------------------------------------


async def test_smtp_delivers_one_recipient_with_exact_content(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # The relay gets our envelope (one RCPT) and the bytes unchanged; its reply comes back.
    accepted = await make(upstreams, mta.url()).send(email())
    assert accepted == EmailAccepted(reply="250 2.0.0 Ok: queued as Q1")
    [got] = mta.messages
    assert (got.mail_from, got.rcpt_tos, got.data) == (SENDER, (RCPT,), DATA)
    assert (got.tls, got.auth) == (False, None)
    assert got.mail_options == (f"SIZE={len(DATA)}",)


async def test_smtp_reuses_one_connection(mta: RecordingMta,
                                          upstreams: list[EmailUpstream]) -> None:
    # 10 sequential messages travel over a single connection, with no RSET needed between.
    upstream = make(upstreams, mta.url())
    for n in range(10):
        await upstream.send(email(n, rcpt=f"r{n}@example.com"))
    assert [m.rcpt_tos for m in mta.messages] == [(f"r{n}@example.com",) for n in range(10)]
    assert mta.connections == 1
    assert {m.connection for m in mta.messages} == {1}
    assert mta.rsets == 0


async def test_smtp_pool_bounds_concurrent_connections(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # 12 concurrent sends with pool_size=2 use at most 2 connections and all arrive.
    upstream = make(upstreams, mta.url(), pool_size=2)
    await asyncio.gather(*(upstream.send(email(n)) for n in range(12)))
    assert len(mta.messages) == 12
    assert mta.connections == 2


async def test_smtp_idle_connection_is_checked_with_noop(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # A pooled connection idle past idle_check_s gets a NOOP, then carries the next message.
    upstream = SmtpEmailUpstream(host="127.0.0.1", port=mta.port, idle_check_s=0.0,
                                 timeout_s=5.0)
    upstreams.append(upstream)
    await upstream.send(email(1))
    await upstream.send(email(2))
    assert mta.noops == 1
    assert mta.connections == 1 and len(mta.messages) == 2


async def test_smtp_relay_restart_between_messages_costs_nothing(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # The relay restarts while a connection sits in the pool: the next send reconnects and works.
    upstream = make(upstreams, mta.url())
    await upstream.send(email(1))
    await mta.down()
    await mta.up()
    assert (await upstream.send(email(2))).reply.startswith("250 ")
    assert len(mta.messages) == 2
    assert mta.connections == 2


async def test_smtp_pooled_connection_closed_by_relay_is_replaced(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # A 421 (idle timeout) at MAIL FROM on a reused connection: reconnect once, deliver, no error.
    upstream = make(upstreams, mta.url())
    await upstream.send(email(1))
    mta.mail_replies.append("421 4.4.2 Idle timeout, closing")
    assert (await upstream.send(email(2))).reply.startswith("250 ")
    assert [m.connection for m in mta.messages] == [1, 2]
    await mta.down()
    await mta.up()
    mta.mail_replies.append("421 4.3.2 Shutting down")
    with pytest.raises(EmailUpstreamFailed) as info:  # on a fresh connection: no second try
        await upstream.send(email(3))
    assert info.value.smtp_code == 421 and not mta.mail_replies


async def test_smtp_close_quits_and_is_idempotent(mta: RecordingMta) -> None:
    # close() says QUIT on pooled connections, twice is fine, and later sends fail.
    upstream = email_upstream_from_url(mta.url())
    await upstream.send(email())
    await upstream.close()
    await upstream.close()
    assert mta.quits == 1
    with pytest.raises(EmailUpstreamFailed, match="shut down"):
        await upstream.send(email(2))
    assert len(mta.messages) == 1


async def test_smtp_8bit_body_and_utf8_addresses(upstreams: list[EmailUpstream]) -> None:
    # 8-bit content is announced BODY=8BITMIME; non-ASCII addresses go out with SMTPUTF8.
    async with RecordingMta(smtputf8=True) as server:
        upstream = make(upstreams, server.url())
        data = "Subject: Grüße\r\n\r\nÄpfel\r\n".encode()
        await upstream.send(email(1, rcpt="jürgen@例え.jp", data=data))
        await upstream.close()
    [got] = server.messages
    assert got.rcpt_tos == ("jürgen@例え.jp",) and got.data == data
    assert "BODY=8BITMIME" in got.mail_options and "SMTPUTF8" in got.mail_options


async def test_smtp_utf8_address_without_smtputf8_is_refused(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # A relay without SMTPUTF8 cannot carry a non-ASCII address: refused 553 5.6.7 for good.
    with pytest.raises(EmailRecipientRefused) as info:
        await make(upstreams, mta.url()).send(email(rcpt="jürgen@example.com"))
    assert info.value.smtp_code == 553 and info.value.smtp_text.startswith("5.6.7 ")
    assert mta.messages == []


# -- AUTH and TLS ---------------------------------------------------------------------------


async def test_smtp_auth_plain_over_starttls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             upstreams: list[EmailUpstream]) -> None:
    # Percent-decoded user info authenticates with PLAIN after a verified STARTTLS.
    async with RecordingMta(tls="starttls", credentials=(USER, PASSWORD),
                            auth_mechanisms=("PLAIN",)) as server:
        trust(server, tmp_path, monkeypatch)
        await make(upstreams, server.url(userinfo=USERINFO)).send(email())
        await upstreams[0].close()
    [got] = server.messages
    assert (got.tls, got.auth) == (True, ("PLAIN", USER))


async def test_smtp_auth_login_in_clear_when_told(upstreams: list[EmailUpstream]) -> None:
    # With ?tls=none the operator accepts AUTH in clear: LOGIN works on a plain relay.
    async with RecordingMta(credentials=(USER, PASSWORD), auth_mechanisms=("LOGIN",)) as server:
        await make(upstreams, server.url(userinfo=USERINFO, query="tls=none")).send(email())
        await upstreams[0].close()
    [got] = server.messages
    assert (got.tls, got.auth) == (False, ("LOGIN", USER))


async def test_smtp_credentials_never_go_out_without_tls(
        upstreams: list[EmailUpstream]) -> None:
    # Credentials and a relay without STARTTLS: a failure, and no AUTH was attempted.
    async with RecordingMta(credentials=(USER, PASSWORD)) as server:
        with pytest.raises(EmailUpstreamFailed, match="STARTTLS") as info:
            await make(upstreams, server.url(userinfo=USERINFO)).send(email())
    assert not isinstance(info.value, EmailRecipientRefused)
    assert server.auth_attempts == [] and server.messages == []


async def test_smtp_wrong_password_is_upstream_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upstreams: list[EmailUpstream],
        caplog: pytest.LogCaptureFixture) -> None:
    # A password the relay refuses: temporary failure naming the 535, the password nowhere.
    caplog.set_level(logging.DEBUG, logger="gateway.email_upstream")
    async with RecordingMta(tls="starttls", credentials=(USER, "other")) as server:
        trust(server, tmp_path, monkeypatch)
        upstream = make(upstreams, server.url(userinfo=USERINFO))
        with pytest.raises(EmailUpstreamFailed, match="refused our credentials .535") as info:
            await upstream.send(email())
    assert not isinstance(info.value, EmailRecipientRefused)
    assert info.value.smtp_code == 535
    assert server.messages == []
    for text in (str(info.value), caplog.text, repr(upstream)):
        assert PASSWORD not in text and "p%40ss" not in text


async def test_smtp_opportunistic_starttls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           upstreams: list[EmailUpstream]) -> None:
    # Without a tls= option STARTTLS is used when offered; ?tls=none stays in clear.
    async with RecordingMta(tls="starttls") as server:
        trust(server, tmp_path, monkeypatch)
        await make(upstreams, server.url()).send(email(1))
        await make(upstreams, server.url(query="tls=none")).send(email(2))
        for upstream in upstreams:
            await upstream.close()
    assert [m.tls for m in server.messages] == [True, False]


async def test_smtp_tls_require_without_starttls_fails(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # ?tls=require against a relay that offers no STARTTLS: failure, nothing sent in clear.
    with pytest.raises(EmailUpstreamFailed, match="STARTTLS"):
        await make(upstreams, mta.url(query="tls=require")).send(email())
    assert mta.messages == []


async def test_smtp_untrusted_certificate_fails_unless_verify_false(
        upstreams: list[EmailUpstream]) -> None:
    # A certificate from an unknown CA fails the check (hinting verify=false), which skips it.
    async with RecordingMta(tls="starttls") as server:
        with pytest.raises(EmailUpstreamFailed, match="certificate check.*verify=false"):
            await make(upstreams, server.url()).send(email(1))
        await make(upstreams, server.url(query="verify=false")).send(email(2))
        for upstream in upstreams:
            await upstream.close()
    assert [(m.tls, m.rcpt_tos) for m in server.messages] == [(True, (RCPT,))]


async def test_smtps_implicit_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  upstreams: list[EmailUpstream]) -> None:
    # smtps:// speaks TLS from the first byte, here with AUTH PLAIN and connection reuse.
    async with RecordingMta(tls="implicit", credentials=(USER, PASSWORD)) as server:
        trust(server, tmp_path, monkeypatch)
        upstream = make(upstreams, server.url("smtps", userinfo=USERINFO))
        await upstream.send(email(1))
        await upstream.send(email(2))
        await upstream.close()
    assert [(m.tls, m.auth) for m in server.messages] == [(True, ("PLAIN", USER))] * 2
    assert server.connections == 1


async def test_smtps_against_a_plain_relay_fails(mta: RecordingMta,
                                                 upstreams: list[EmailUpstream]) -> None:
    # smtps:// to a relay that does not speak TLS: a TLS failure, never a crash or a hang.
    with pytest.raises(EmailUpstreamFailed, match="TLS|closed|reached|answer"):
        await make(upstreams, mta.url("smtps"), timeout_s=2.0).send(email())
    assert mta.messages == []


# -- refusals and faults -------------------------------------------------------------------


async def test_smtp_rcpt_550_is_recipient_refused(
        mta: RecordingMta, upstreams: list[EmailUpstream],
        caplog: pytest.LogCaptureFixture) -> None:
    # RCPT 550 refuses that recipient for good with the relay's code and text; others still go.
    caplog.set_level(logging.DEBUG, logger="gateway.email_upstream")
    mta.rcpt_replies[RCPT] = f"550 5.1.1 <{RCPT}>: No such user"
    upstream = make(upstreams, mta.url())
    with pytest.raises(EmailRecipientRefused) as info:
        await upstream.send(email())
    refused = info.value
    assert isinstance(refused, EmailUpstreamFailed) and isinstance(refused, UpstreamFailed)
    assert refused.code == "upstream_failed" and refused.recipient == RCPT
    assert refused.smtp_code == 550
    assert refused.smtp_text == "5.1.1 <b***@example.com>: No such user"
    assert refused.smtp_reply == "550 5.1.1 <b***@example.com>: No such user"
    assert RCPT not in refused.message and RCPT not in caplog.text
    assert (await upstream.send(email(2, rcpt="alice@example.com"))).reply.startswith("250 ")
    assert [m.rcpt_tos for m in mta.messages] == [("alice@example.com",)]


async def test_smtp_rcpt_4xx_is_temporary(mta: RecordingMta,
                                          upstreams: list[EmailUpstream]) -> None:
    # RCPT 451 is a temporary failure carrying the code; the message can be retried.
    mta.rcpt_replies[RCPT] = "451 4.3.0 Mailbox busy"
    upstream = make(upstreams, mta.url())
    with pytest.raises(EmailUpstreamFailed) as info:
        await upstream.send(email())
    assert not isinstance(info.value, EmailRecipientRefused)
    assert (info.value.smtp_code, info.value.smtp_text) == (451, "4.3.0 Mailbox busy")
    assert "451 4.3.0 Mailbox busy to RCPT TO" in info.value.message
    del mta.rcpt_replies[RCPT]
    assert (await upstream.send(email())).reply.startswith("250 ")


async def test_smtp_data_554_is_refused_and_451_temporary(
        mta: RecordingMta, upstreams: list[EmailUpstream]) -> None:
    # DATA 554 refuses the message for that recipient; DATA 451 asks for a retry.
    upstream = make(upstreams, mta.url())
    mta.data_replies.extend(["554 5.7.1 Rejected: spam", "451 4.3.0 Try later"])
    with pytest.raises(EmailRecipientRefused) as refused:
        await upstream.send(email(1))
    assert refused.value.smtp_reply == "554 5.7.1 Rejected: spam"
    with pytest.raises(EmailUpstreamFailed) as failed:
        await upstream.send(email(2))
    assert not isinstance(failed.value, EmailRecipientRefused)
    assert failed.value.smtp_code == 451
    assert mta.messages == []
    assert mta.connections == 2  # each error dropped its connection
    await upstream.send(email(3))
    assert [m.connection for m in mta.messages] == [3]


async def test_smtp_mail_from_refusal_is_temporary(mta: RecordingMta,
                                                   upstreams: list[EmailUpstream]) -> None:
    # A 5xx at MAIL FROM is about the gateway, not the recipient: temporary, code kept.
    mta.mail_replies.append("553 5.7.1 Sender not allowed to relay")
    with pytest.raises(EmailUpstreamFailed) as info:
        await make(upstreams, mta.url()).send(email())
    assert not isinstance(info.value, EmailRecipientRefused)
    assert info.value.smtp_code == 553
    assert "to MAIL FROM" in info.value.message


async def test_smtp_relay_down_is_upstream_failed(mta: RecordingMta,
                                                  upstreams: list[EmailUpstream]) -> None:
    # Nobody listening: a temporary failure saying the connection was refused; up again, it works.
    upstream = make(upstreams, mta.url())
    await mta.down()
    with pytest.raises(EmailUpstreamFailed, match="connection refused") as info:
        await upstream.send(email(1))
    assert info.value.smtp_code is None
    await mta.up()
    assert (await upstream.send(email(2))).reply.startswith("250 ")


async def test_smtp_hang_fails_within_the_timeout(mta: RecordingMta,
                                                  upstreams: list[EmailUpstream]) -> None:
    # A relay that stops answering fails the send within timeout_s, not after minutes.
    mta.hang_s = 30.0
    upstream = make(upstreams, mta.url(), timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(EmailUpstreamFailed, match=r"did not answer MAIL FROM within 0\.3 s"):
        await upstream.send(email())
    assert time.monotonic() - started < 2.0
    mta.hang_s = 0.0
    assert (await upstream.send(email(2))).reply.startswith("250 ")
    assert mta.connections == 2


# -- URLs and secrets ------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "problem"), [
    ("", "must start with a scheme"),
    (f"{USERINFO}@relay.example", "must start with a scheme"),
    ("lmtp://relay.example", "scheme 'lmtp' is not supported"),
    ("file://", "needs a directory path"),
    ("smtp://", "no host"),
    (f"smtp://{USERINFO}@", "no host"),
    ("smtp://relay.example:99999", "not a valid URL"),
    (f"smtp://{USERINFO}@relay.example:abc", "not a valid URL"),
    ("smtp://relay.example:0", "port must be 1-65535"),
    ("smtp://relay .example", "must not contain spaces"),
    ("smtp://relay.example/inbox", "must not have a path or fragment"),
    ("smtp://relay.example#x", "must not have a path or fragment"),
    ("smtp://relay.example?tls=maybe", "tls='maybe' is not supported"),
    ("smtp://relay.example?verify=no", "verify='no' is not supported"),
    ("smtp://relay.example?tls=none&tls=require", "tls= more than once"),
    ("smtp://relay.example?starttls=1", "query parameter 'starttls' is unknown"),
    ("smtps://relay.example?tls=none", "smtps:// is TLS from the start"),
    (f"smtp://{USER}@relay.example", "need both a user name and a password"),
    ("smtp://:secret@relay.example", "need both a user name and a password"),
    (f"smtp://{USER}:@relay.example", "need both a user name and a password"),
])
def test_bad_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    # Each malformed URL is a ValueError that says what is wrong and never quotes the password.
    with pytest.raises(ValueError, match=problem) as info:
        email_upstream_from_url(url)
    assert "p%40ss" not in str(info.value) and "secret" not in str(info.value)


def test_timeout_and_pool_size_must_be_sensible() -> None:
    # A zero/NaN timeout or a pool of no connections is refused up front.
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout_s must be a positive"):
            email_upstream_from_url("smtp://relay.example", timeout_s=bad)
    for size in (0, -2):
        with pytest.raises(ValueError, match="pool_size must be a whole number"):
            email_upstream_from_url("smtp://relay.example", pool_size=size)


def test_urls_pick_ports_and_tls_modes() -> None:
    # Default ports 25/465; credentials make STARTTLS required; IPv6 hosts keep brackets.
    assert repr(email_upstream_from_url("smtp://relay.example")) == \
        "SmtpEmailUpstream(url='smtp://relay.example:25', pool_size=8, timeout_s=30)"
    assert repr(email_upstream_from_url("SMTPS://relay.example", pool_size=3)) == \
        "SmtpEmailUpstream(url='smtps://relay.example:465', pool_size=3, timeout_s=30)"
    assert repr(email_upstream_from_url(f"smtp://{USERINFO}@relay.example:587")) == \
        "SmtpEmailUpstream(url='smtp://***@relay.example:587?tls=require', pool_size=8, " \
        "timeout_s=30)"
    assert "url='smtp://[::1]:2525?tls=none&verify=false'" in repr(
        email_upstream_from_url("smtp://[::1]:2525?tls=none&verify=false"))
    assert repr(email_upstream_from_url("file://./var/outbox/email")) == \
        "FileEmailUpstream(dir='var/outbox/email')"


def test_reprs_hide_secrets_and_addresses() -> None:
    # Neither user nor password shows in the upstream's repr; the message repr masks addresses.
    shown = repr(email_upstream_from_url(f"smtps://{USERINFO}@relay.example"))
    assert USER not in shown and "p%40ss" not in shown and PASSWORD not in shown
    msg = repr(email())
    assert RCPT not in msg and SENDER not in msg and "Hello" not in msg
    assert "b***@example.com" in msg and f"<{len(DATA)} bytes>" in msg
