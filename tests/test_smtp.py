"""The SMTP relay end to end: real clients (smtplib, aiosmtplib), the gateway's own SMTP
listener on loopback, real Redis, and a recording upstream MTA with fault injection."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from conftest import TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from fake_mta import RecordingMta

from gateway.embedded_redis import RedisServerProcess
from gateway.smtp_server import start_smtp
from suppression import email_message as em
from suppression.models import HARD_BOUNCE_SCOPE, Channel, Reason, Source

ANN, BOB, CAT = "ann@example.com", "bob@example.net", "cat@example.org"
SENDER = "news@acme.example"


@dataclass
class Relay:
    gw: Gateway
    mta: RecordingMta
    port: int
    key: str

    def smtplib_send(self, rcpts: list[str], data: bytes, *, key: str | None = None,
                     login: str = "acme", sender: str = SENDER) -> dict[str, Any]:
        """Blocking: run it in a thread (the gateway shares this test's loop)."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.login(login, key or self.key)
            return dict(s.sendmail(sender, rcpts, data))

    async def send(self, rcpts: list[str], data: bytes, **kw: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.smtplib_send, rcpts, data, **kw)

    async def suppress(self, address: str, scope: str = "") -> None:
        await self.gw.parts.service.opt_out("acme", Channel.EMAIL, address,
                                            reason=Reason.MANUAL, source=Source.API,
                                            scope=scope)


def message(*, to: str = ANN, extra: list[tuple[str, str]] | None = None,
            body: str = "Big sale!\n\nAcme Co, 1 Main St\n") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Acme <{SENDER}>"
    msg["To"] = to
    msg["Subject"] = "Deals"
    msg["Message-ID"] = make_msgid(domain="acme.example")
    for name, value in extra or []:
        msg[name] = value
    msg.set_content(body)
    msg.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="x.csv")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


async def _relay(redis_url: str, tmp_path: Path, mta: RecordingMta,
                 **overrides: Any) -> AsyncIterator[Relay]:
    overrides.setdefault("public_url", "https://gw.example")
    settings = make_settings(redis_url, tmp_path / "data", email_upstream=mta.url(),
                             **overrides)
    parts, client = await start_gateway(settings)
    listener = await start_smtp(parts, "127.0.0.1", 0)
    gw = Gateway(parts, client)
    try:
        yield Relay(gw, mta, listener.port, await gw.key(scopes="send,read"))
    finally:
        await listener.close(drain_s=1.0)
        await stop_gateway(parts, client)


@pytest.fixture
async def relay(redis_url: str, tmp_path: Path) -> AsyncIterator[Relay]:
    async with RecordingMta() as mta:
        async for r in _relay(redis_url, tmp_path, mta):
            yield r


def body_of(data: bytes) -> bytes:
    return em.split_message(data)[2]


async def test_each_recipient_gets_its_own_copy_with_one_click_headers(relay: Relay) -> None:
    # Three recipients: three upstream messages, each with its own token in exactly one
    # List-Unsubscribe and List-Unsubscribe-Post; the body is byte-for-byte the sender's.
    data = message()
    refused = await relay.send([ANN, BOB, CAT], data)
    assert refused == {}
    assert all(len(m.rcpt_tos) == 1 for m in relay.mta.messages)
    assert sorted(r for m in relay.mta.messages for r in m.rcpt_tos) == sorted([ANN, BOB, CAT])
    tokens = set()
    for m in relay.mta.messages:
        assert m.mail_from == SENDER
        assert body_of(m.data) == body_of(data)
        (lu,) = em.header_values(m.data, "List-Unsubscribe")
        assert em.header_values(m.data, "List-Unsubscribe-Post") == [
            "List-Unsubscribe=One-Click"]
        url, mailto = [p.strip().strip("<>") for p in lu.split(",")]
        token = url.removeprefix("https://gw.example/u/")
        assert mailto == f"mailto:unsubscribe+{token}@gw.example"
        claims = relay.gw.parts.tokens.verify(token)
        assert claims is not None and claims.identifier == m.rcpt_tos[0]
        assert claims.tenant == "acme" and claims.channel is Channel.EMAIL
        tokens.add(token)
    assert len(tokens) == 3


async def test_sender_set_unsubscribe_headers_are_replaced(relay: Relay) -> None:
    # Whatever List-Unsubscribe headers the sender set (two, any case) are replaced by ours.
    data = message(extra=[("List-Unsubscribe", "<https://evil.example/u/1>"),
                          ("list-unsubscribe", "<mailto:x@evil.example>"),
                          ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    await relay.send([ANN], data)
    (m,) = relay.mta.messages
    (lu,) = em.header_values(m.data, "List-Unsubscribe")
    assert "evil" not in lu and lu.startswith("<https://gw.example/u/")
    assert len(em.header_values(m.data, "List-Unsubscribe-Post")) == 1
    assert body_of(m.data) == body_of(data)
    # Every other header line is still there, in order.
    kept = [f.raw for f in em.header_fields(em.split_message(data)[0])
            if f.name.lower() not in ("list-unsubscribe", "list-unsubscribe-post")]
    got = [f.raw for f in em.header_fields(em.split_message(m.data)[0])
           if f.name.lower() not in ("list-unsubscribe", "list-unsubscribe-post")]
    assert got == kept


async def test_unsubscribed_recipient_is_refused_at_rcpt_others_relayed(relay: Relay) -> None:
    # A suppressed address gets 550 5.7.1 naming the unsubscribe at RCPT; the rest go out.
    await relay.suppress(BOB)
    refused = await relay.send([ANN, BOB], message())
    assert list(refused) == [BOB]
    code, text = refused[BOB]
    assert code == 550 and b"5.7.1" in text and b"unsubscribed" in text
    assert [m.rcpt_tos for m in relay.mta.messages] == [(ANN,)]
    # The refusal is kept as evidence that mail to an unsubscribed person was stopped.
    (record,) = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, BOB)
    assert (record["outcome"], record["code"], record["stage"]) == ("refused", "opted_out",
                                                                    "rcpt")
    assert record["from"] == SENDER and record["actor"].startswith("key:")


async def test_all_recipients_refused_means_nothing_relayed(relay: Relay) -> None:
    # smtplib reports every recipient refused; the upstream saw nothing.
    await relay.suppress(ANN)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await relay.send([ANN], message())
    assert info.value.recipients[ANN][0] == 550
    assert relay.mta.messages == []


async def test_topic_opt_out_is_checked_at_data(redis_url: str, tmp_path: Path) -> None:
    # A recipient who left the 'news' topic gets no 'news' message, but still gets 'deals'.
    tenants = {**TENANTS, "acme": {**TENANTS["acme"],
                                   "topics": {"news": "News", "deals": "Deals"}}}
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta, tenants=tenants):
            await _topic_scenario(relay)


async def _topic_scenario(relay: Relay) -> None:
    await relay.suppress(ANN, scope="news")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN], message(extra=[("X-Optout-Topic", "news")]))
    assert info.value.smtp_code == 550 and b"news" in info.value.smtp_error
    await relay.send([ANN], message(extra=[("X-Optout-Topic", "deals")]))
    (m,) = relay.mta.messages
    token = em.header_values(m.data, "List-Unsubscribe")[0].split("/u/")[1].split(">")[0]
    claims = relay.gw.parts.tokens.verify(token)
    assert claims is not None and claims.topic == "deals"


async def test_transactional_key_reaches_opted_out_but_not_hard_bounced(relay: Relay) -> None:
    # Transactional mail ignores marketing opt-outs, never a hard bounce, and gets no
    # unsubscribe headers: the message is relayed exactly as sent.
    key = await relay.gw.key(scopes="send", transactional=True)
    await relay.suppress(ANN)
    await relay.suppress(BOB, scope=HARD_BOUNCE_SCOPE)
    data = message()
    refused = await relay.send([ANN, BOB], data, key=key)
    assert list(refused) == [BOB] and refused[BOB][0] == 550
    assert b"bounce" in refused[BOB][1]
    (m,) = relay.mta.messages
    assert m.rcpt_tos == (ANN,) and m.data == data


async def test_upstream_down_gives_451_and_nothing_recorded_as_sent(relay: Relay) -> None:
    # The upstream is unreachable: the sender is told to retry; no record says "sent".
    await relay.mta.down()
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN], message())
    assert info.value.smtp_code == 451
    records = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, ANN)
    assert [r["outcome"] for r in records] == ["failed"]


async def test_upstream_550_for_one_recipient_is_passed_back(relay: Relay) -> None:
    # The upstream refuses the only recipient permanently: the sender sees that code.
    relay.mta.rcpt_replies[ANN] = "550 5.1.1 No such user"
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN], message())
    assert info.value.smtp_code == 550 and b"5.1.1" in info.value.smtp_error


async def test_retry_after_partial_failure_does_not_send_twice(relay: Relay) -> None:
    # BOB's upstream says 451: the message is retried; ANN, relayed the first time, is not
    # relayed again, BOB is, and the retry is acknowledged with 250.
    relay.mta.rcpt_replies[BOB] = "451 4.3.0 Try later"
    data = message()
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN, BOB], data)
    assert info.value.smtp_code == 451
    assert [m.rcpt_tos for m in relay.mta.messages] == [(ANN,)]
    del relay.mta.rcpt_replies[BOB]
    assert await relay.send([ANN, BOB], data) == {}
    assert sorted(m.rcpt_tos[0] for m in relay.mta.messages) == [ANN, BOB]


async def test_store_down_gives_451_at_rcpt(own_redis: Any, tmp_path: Path) -> None:
    # Redis stops answering: RCPT is 451 4.3.0 and nothing reaches the upstream.
    async with RecordingMta() as mta:
        async for relay in _relay(own_redis.url, tmp_path, mta, redis_timeout_ms=100):
            await relay.send([BOB], message())  # the key is now known (verified from memory)
            mta.messages.clear()
            own_redis.pause()
            try:
                with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
                    await relay.send([ANN], message())
            finally:
                own_redis.resume()
            code, text = info.value.recipients[ANN]
            assert code == 451 and b"4.3.0" in text
            assert mta.messages == []


async def test_no_open_relay_without_auth(relay: Relay) -> None:
    # No AUTH: MAIL from a tenant domain is 530 at once; any other MAIL may only reach the
    # gateway's own mailboxes, so an outside RCPT is 530 too.
    def attempt() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            s.ehlo()
            tenant_mail = s.mail(SENDER)[0]
            s.rset()
            s.mail("someone@outside.example")
            return tenant_mail, s.rcpt(ANN)[0]

    assert await asyncio.to_thread(attempt) == (530, 530)
    assert relay.mta.messages == []


@pytest.mark.parametrize("login,scopes,ok", [
    ("acme", "send", True), ("globex", "send", False), ("acme", "read", False)])
async def test_auth_needs_the_tenant_and_the_send_scope(relay: Relay, login: str, scopes: str,
                                                        ok: bool) -> None:
    # Username = tenant id, password = a key of that tenant with the send scope.
    key = await relay.gw.key(scopes=scopes)

    def attempt() -> int:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            try:
                return s.login(login, key)[0]
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code

    assert await asyncio.to_thread(attempt) == (235 if ok else 535)


async def test_wrong_key_is_535(relay: Relay) -> None:
    # A made-up key fails AUTH with 535 5.7.8 and no mail can be sent.
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        await relay.send([ANN], message(), key="og_000000000000_nope")
    assert info.value.smtp_code == 535


async def test_aiosmtplib_client_auth_login_and_send(relay: Relay) -> None:
    # aiosmtplib on the same loop, AUTH LOGIN: relayed with the one-click headers.
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    async with client:
        await client.ehlo()
        await client.auth_login("acme", relay.key)
        errors, _ = await client.sendmail(SENDER, [ANN], message())
    assert errors == {}
    (m,) = relay.mta.messages
    assert len(em.header_values(m.data, "List-Unsubscribe")) == 1


async def test_message_records_per_recipient(relay: Relay) -> None:
    # Each relayed recipient has a record with the upstream's reply.
    await relay.send([ANN], message())
    (rec,) = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, ANN)
    assert rec["outcome"] == "sent" and rec["from"] == SENDER and rec["to"] == ANN
    assert rec["upstream_reply"] and rec["category"] == "marketing"


async def test_email_message_records_through_the_ops_api(relay: Relay) -> None:
    # GET /v1/messages reads email records too: the channel follows from the '@' (or is
    # given); a bad channel is 422 naming it; another tenant sees nothing.
    await relay.send([ANN], message())
    key = await relay.gw.key(scopes="read")
    for query in ({"to": "ann@Example.COM"}, {"to": ANN, "channel": "email"}):
        r = await relay.gw.http.get("/v1/messages", params=query, headers=relay.gw.auth(key))
        assert r.status == 200, await r.text()
        (rec,) = (await r.json())["items"]
        assert rec["to"] == ANN and rec["outcome"] == "sent" and rec["upstream_reply"]
    r = await relay.gw.http.get("/v1/messages", params={"to": ANN, "channel": "fax"},
                                headers=relay.gw.auth(key))
    assert r.status == 422 and (await r.json())["error"]["field"] == "channel"
    r = await relay.gw.http.get("/v1/messages", params={"to": ANN, "channel": "sms"},
                                headers=relay.gw.auth(key))
    assert r.status == 422 and (await r.json())["error"]["field"] == "to"
    other = await relay.gw.key("globex", scopes="read")
    r = await relay.gw.http.get("/v1/messages", params={"to": ANN},
                                headers=relay.gw.auth(other))
    assert r.status == 200 and (await r.json())["items"] == []


async def test_mailto_unsubscribe_needs_no_auth(relay: Relay) -> None:
    # Mail to unsubscribe+TOKEN@ (from the subscriber, no AUTH) suppresses with reason mailto;
    # a forged token is accepted the same way and changes nothing.
    token = relay.gw.parts.tokens.issue("acme", Channel.EMAIL, ANN)
    forged = relay.gw.parts.tokens.issue("acme", Channel.EMAIL, BOB)[:-2] + "AA"

    def mail(to: str) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            return dict(s.sendmail(ANN, [to], b"Subject: unsubscribe\r\n\r\nplease\r\n"))

    assert await asyncio.to_thread(mail, f"unsubscribe+{token}@gw.example") == {}
    assert await asyncio.to_thread(mail, f"unsubscribe+{forged}@gw.example") == {}
    sup = await relay.gw.parts.service.get("acme", Channel.EMAIL, ANN)
    assert sup is not None and sup.reason is Reason.MAILTO and sup.source is Source.EMAIL
    assert await relay.gw.parts.service.get("acme", Channel.EMAIL, BOB) is None
    assert relay.mta.messages == []


def _arf(original_to: str, token: str) -> bytes:
    return (
        "From: feedback@fbl.example\r\nTo: feedback@gw.example\r\nSubject: FW: Deals\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--b1\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        "Original-Mail-From: <news@acme.example>\r\n"
        "Source-IP: 192.0.2.1\r\n\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@acme.example\r\nTo: {original_to}\r\nSubject: Deals\r\n"
        f"List-Unsubscribe: <https://gw.example/u/{token}>,\r\n"
        f" <mailto:unsubscribe+{token}@gw.example>\r\n\r\n"
        "--b1--\r\n").encode()


def _dsn(final: str, status: str, token: str) -> bytes:
    action = "failed" if status.startswith("5") else "delayed"
    return (
        "From: MAILER-DAEMON@mx.example\r\nTo: feedback@gw.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--b2\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example\r\n\r\n"
        f"Final-Recipient: rfc822; {final}\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "--b2\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@acme.example\r\nTo: {final}\r\n"
        f"List-Unsubscribe: <https://gw.example/u/{token}>\r\n\r\n"
        "--b2--\r\n").encode()


async def test_complaint_and_bounce_reports_become_suppressions(relay: Relay) -> None:
    # An ARF complaint with a redacted recipient (our token names it) suppresses with reason
    # complaint; a DSN hard bounce with reason bounce (transactional too); a soft one nothing.
    tokens = relay.gw.parts.tokens

    def mail(data: bytes, sender: str) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
            return dict(s.sendmail(sender, ["feedback@gw.example"], data))

    await asyncio.to_thread(mail, _arf("redacted@example.com",
                                       tokens.issue("acme", Channel.EMAIL, ANN)), "fbl@fbl.ex")
    await asyncio.to_thread(mail, _dsn(BOB, "5.1.1", tokens.issue("acme", Channel.EMAIL, BOB)),
                            "")
    await asyncio.to_thread(mail, _dsn(CAT, "4.2.2", tokens.issue("acme", Channel.EMAIL, CAT)),
                            "")
    svc = relay.gw.parts.service
    ann, bob = (await svc.get("acme", Channel.EMAIL, ANN),
                await svc.get("acme", Channel.EMAIL, BOB))
    assert ann is not None and ann.reason is Reason.COMPLAINT
    assert bob is not None and bob.reason is Reason.BOUNCE
    from suppression.models import scoped
    assert await svc.suppressed("acme", Channel.EMAIL, [scoped(BOB, HARD_BOUNCE_SCOPE),
                                                        CAT]) == [True, False]
    assert await svc.get("acme", Channel.EMAIL, "redacted@example.com") is None


async def test_dkim_signature_covers_the_new_headers_and_verifies(
        redis_url: str, tmp_path: Path) -> None:
    # With a tenant key, the relayed copy carries a DKIM signature of acme.example over
    # both unsubscribe headers, and dkimpy verifies it against the published key.
    dkim = pytest.importorskip("dkim")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    tenants = {**TENANTS, "acme": {**TENANTS["acme"], "dkim_selector": "s1",
                                   "dkim_key_file": str(key_file)}}
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta, tenants=tenants):
            await relay.send([ANN], message())
            (m,) = mta.messages
            sigs = em.signed_by(m.data)
            assert sigs and sigs[0][0] == "acme.example"
            assert {"list-unsubscribe", "list-unsubscribe-post"} <= sigs[0][1]

            def dns(name: bytes, timeout: int = 5) -> bytes:
                assert name == b"s1._domainkey.acme.example."
                return record

            assert dkim.verify(m.data, dnsfunc=dns)
            # Transactional mail (no unsubscribe headers) is signed too, once for all its
            # recipients, and verifies.
            tx = await relay.gw.key(scopes="send", transactional=True)
            await relay.send([BOB, CAT], message(to=BOB), key=tx)
            copies = mta.messages[1:]
            assert len(copies) == 2 and copies[0].data == copies[1].data
            assert em.signed_by(copies[0].data)[0][0] == "acme.example"
            assert em.header_values(copies[0].data, "List-Unsubscribe") == []
            assert dkim.verify(copies[0].data, dnsfunc=dns)


CONSENTED = [f"+1415555{n:04d}" for n in range(120, 126)]


async def _consent(relay: Relay, tenant: str = "acme") -> None:
    for number in CONSENTED:
        await relay.gw.parts.service.record_consent(tenant, Channel.SMS, number, method="api")


def _with_attachment(content: bytes, filename: str, maintype: str, subtype: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = "partner@broker.example"
    msg["Subject"] = "the list"
    msg.set_content("Here is the list.\n\nAcme Co, 1 Main St\n")
    msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _xlsx(rows: list[str]) -> bytes:
    import io
    import zipfile
    strings = "".join(f"<si><t>{r}</t></si>" for r in rows)
    cells = "".join(f'<row r="{i + 1}"><c r="A{i + 1}" t="s"><v>{i}</v></c></row>'
                    for i in range(len(rows)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/sharedStrings.xml",
                   '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                   f"{strings}</sst>")
        z.writestr("xl/worksheets/sheet1.xml",
                   '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                   f"<sheetData>{cells}</sheetData></worksheet>")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
async def test_sms_optin_data_to_an_outside_recipient_is_refused(relay: Relay, kind: str
                                                                  ) -> None:
    # A CSV/XLSX of consented SMS numbers mailed to a broker: 550 5.7.1, nothing relayed,
    # audited; the same mail to a colleague at acme.example goes out.
    await _consent(relay)
    rows = [f"{n},Jane,opted in 2026-01-01" for n in CONSENTED]
    data = (_with_attachment(("phone,name,when\n" + "\n".join(rows)).encode(), "list.csv",
                             "text", "csv") if kind == "csv" else
            _with_attachment(_xlsx(CONSENTED), "list.xlsx", "application",
                             "vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send(["partner@broker.example"], data)
    assert info.value.smtp_code == 550
    assert b"5.7.1" in info.value.smtp_error and b"SMS opt-in data" in info.value.smtp_error
    assert relay.mta.messages == []
    audit = await relay.gw.parts.store.audit("acme", Channel.EMAIL, "partner@broker.example")
    assert [a.type for a in audit] == ["sharing_refused"]
    assert await relay.send(["ops@acme.example"], data) == {}
    assert [m.rcpt_tos for m in relay.mta.messages] == [("ops@acme.example",)]


def _zipped(name: str, content: bytes) -> bytes:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return out.getvalue()


@pytest.mark.parametrize(("filename", "maintype", "subtype", "wrap"), [
    ("acme-sms_consents.jsonl", "application", "x-ndjson", False),
    ("list.dat", "application", "octet-stream", False),
    ("", "application", "vnd.ms-excel", False),
    ("list.zip", "application", "zip", True),
])
async def test_a_list_under_another_type_or_zipped_is_still_read(
        relay: Relay, filename: str, maintype: str, subtype: str, wrap: bool) -> None:
    # The guard reads attachments by content, not only by declared type or name: the
    # gateway's own JSONL export, a CSV renamed .dat or sent as vnd.ms-excel, a zipped CSV.
    await _consent(relay)
    rows = "\n".join(f'{{"identifier": "{n}", "channel": "sms"}}' for n in CONSENTED)
    content = _zipped("list.csv", rows.encode()) if wrap else rows.encode()
    data = _with_attachment(content, filename, maintype, subtype)
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send(["partner@broker.example"], data)
    assert info.value.smtp_code == 550 and relay.mta.messages == []


async def test_a_list_too_big_to_check_does_not_go_outside(relay: Relay) -> None:
    # 5,001 number-like values ahead of the consented numbers used to exhaust the scan's
    # budget and let the list out; past the budget the guard cannot vouch for the message,
    # so it refuses outside recipients (inside ones still get it).
    await _consent(relay)
    junk = "\n".join(f"order {1000000 + i}-{i % 97:02d}" for i in range(5001))
    data = _with_attachment((junk + "\n" + "\n".join(CONSENTED)).encode(), "list.csv",
                            "text", "csv")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send(["partner@broker.example"], data)
    assert info.value.smtp_code == 550 and b"too many" in info.value.smtp_error
    audit = await relay.gw.parts.store.audit("acme", Channel.EMAIL, "partner@broker.example")
    assert [a.type for a in audit] == ["sharing_refused"]
    assert await relay.send(["ops@acme.example"], data) == {}


async def test_ordinary_mail_and_other_tenants_numbers_pass_the_sharing_guard(
        relay: Relay) -> None:
    # A newsletter with a phone number or two, and a list of numbers another tenant holds
    # consent for, are not acme's SMS opt-in data: relayed.
    await _consent(relay, tenant="globex")
    await relay.send([ANN], message(body="Call us at +1 415 555 0100!\n1 Main St\n"))
    data = _with_attachment("\n".join(CONSENTED).encode(), "list.csv", "text", "csv")
    assert await relay.send(["partner@broker.example"], data) == {}
    assert len(relay.mta.messages) == 2


async def test_mailto_on_an_ip_public_url_uses_an_address_literal(redis_url: str,
                                                                 tmp_path: Path) -> None:
    # With OPTOUT_PUBLIC_URL on an IP (the default), the mailto domain is [127.0.0.1], a
    # valid address literal, and mail to it unsubscribes.
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta,
                                  public_url="http://127.0.0.1:8080"):
            await relay.send([ANN], message())
            (lu,) = em.header_values(mta.messages[0].data, "List-Unsubscribe")
            mailto = lu.split("<mailto:")[1].rstrip(">")
            assert mailto.startswith("unsubscribe+") and mailto.endswith("@[127.0.0.1]")

            def mail(port: int, to: str) -> dict[str, Any]:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                    return dict(s.sendmail(ANN, [to], b"Subject: unsubscribe\r\n\r\n.\r\n"))

            assert await asyncio.to_thread(mail, relay.port, mailto) == {}
            sup = await relay.gw.parts.service.get("acme", Channel.EMAIL, ANN)
            assert sup is not None and sup.reason is Reason.MAILTO


async def test_forged_bounce_for_an_address_never_mailed_changes_nothing(
        redis_url: str, tmp_path: Path) -> None:
    # One tenant, a token-less DSN from anyone: believed for an address the gateway relayed
    # to, ignored for one it never mailed (no suppressing strangers by forged reports).
    tenants = {"acme": TENANTS["acme"]}
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta, tenants=tenants):
            await relay.send([ANN], message())
            no_token = _dsn(ANN, "5.1.1", "x").replace(
                b"List-Unsubscribe: <https://gw.example/u/x>\r\n", b"")
            victim = _dsn(BOB, "5.1.1", "x").replace(
                b"List-Unsubscribe: <https://gw.example/u/x>\r\n", b"")

            def mail(port: int, data: bytes) -> dict[str, Any]:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                    return dict(s.sendmail("", ["feedback@gw.example"], data))

            await asyncio.to_thread(mail, relay.port, no_token)
            await asyncio.to_thread(mail, relay.port, victim)
            svc = relay.gw.parts.service
            ann = await svc.get("acme", Channel.EMAIL, ANN)
            assert ann is not None and ann.reason is Reason.BOUNCE
            assert await svc.get("acme", Channel.EMAIL, BOB) is None


async def test_tokenless_bounce_during_an_outage_is_deferred_not_lost(
        own_redis: RedisServerProcess, tmp_path: Path) -> None:
    # A token-less DSN (transactional mail carries no token) is believed only for an address
    # the gateway relayed to, which only Redis can tell: with Redis paused the report gets
    # 451 (the reporting MTA retries) instead of 250 and a lost hard bounce.
    tenants = {"acme": TENANTS["acme"]}
    no_token = _dsn(ANN, "5.1.1", "x").replace(
        b"List-Unsubscribe: <https://gw.example/u/x>\r\n", b"")

    def report(port: int) -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            return dict(s.sendmail("", ["feedback@gw.example"], no_token))

    async with RecordingMta() as mta:
        async for relay in _relay(own_redis.url, tmp_path, mta, tenants=tenants):
            await relay.send([ANN], message())
            own_redis.pause()
            try:
                with pytest.raises(smtplib.SMTPDataError) as info:
                    await asyncio.to_thread(report, relay.port)
                assert info.value.smtp_code == 451
            finally:
                own_redis.resume()
            assert await asyncio.to_thread(report, relay.port) == {}
            ann = await relay.gw.parts.service.get("acme", Channel.EMAIL, ANN)
            assert ann is not None and ann.reason is Reason.BOUNCE


async def test_a_capital_letter_does_not_get_past_an_opt_out(relay: Relay) -> None:
    # Lists from different systems differ in case: "Ann@Example.com" is the person who
    # unsubscribed as "ann@example.com" (RCPT 550, nothing relayed), and a bounce report
    # spelling the address either way suppresses the one entry.
    await relay.suppress(ANN)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        await relay.send(["Ann@Example.COM"], message(to="Ann@Example.COM"))
    assert info.value.recipients["Ann@Example.COM"][0] == 550
    assert relay.mta.messages == []
    await relay.send(["Bob@Example.net"], message(to="Bob@Example.net"))
    await relay.suppress("bob@example.net")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await relay.send([BOB.upper()], message(to=BOB))
    assert len(relay.mta.messages) == 1


async def test_a_slow_relay_outlasting_the_idle_timeout_is_not_cut(
        redis_url: str, tmp_path: Path) -> None:
    # The idle timer (1 s here) runs only between client lines: a DATA whose relay takes
    # longer (4 copies, the upstream waiting 0.4 s per command) still gets its 250, and
    # every recipient gets exactly one copy (a cut connection made the sender retry and
    # some copies go twice).
    rcpts = [f"r{i}@example.com" for i in range(4)]
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta, smtp_timeout_s=1.0,
                                  email_upstream_pool_size=1):
            mta.hang_s = 0.4
            assert await relay.send(rcpts, message()) == {}
            assert sorted(r for m in mta.messages for r in m.rcpt_tos) == rcpts


async def test_bare_cr_in_the_header_is_refused(relay: Relay) -> None:
    # "Subject: hi\rList-Unsubscribe: <evil>" could smuggle a header past the rewrite: 554.
    data = message().replace(b"Subject: Deals", b"Subject: Deals\rList-Unsubscribe: <x>")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN], data)
    assert info.value.smtp_code == 554 and b"bare CR" in info.value.smtp_error
    assert relay.mta.messages == []


async def test_html_that_breaks_the_parser_is_still_relayed(relay: Relay) -> None:
    # Python 3.11's HTMLParser asserts on '<![foo['; the CAN-SPAM check is only a warning.
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, ANN, "x"
    msg.set_content("<html><![foo[ x ]]></html>", subtype="html")
    assert await relay.send([ANN], msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))) == {}
    assert len(relay.mta.messages) == 1


async def test_unreadable_dkim_key_is_451_not_500(redis_url: str, tmp_path: Path) -> None:
    # The operator's key file is missing: a temporary failure, nothing relayed, no path
    # leaked to the sender.
    tenants = {**TENANTS, "acme": {**TENANTS["acme"], "dkim_selector": "s1",
                                   "dkim_key_file": str(tmp_path / "missing.pem")}}
    async with RecordingMta() as mta:
        async for relay in _relay(redis_url, tmp_path, mta, tenants=tenants):
            with pytest.raises(smtplib.SMTPDataError) as info:
                await relay.send([ANN], message())
            assert info.value.smtp_code == 451
            assert b"missing.pem" not in info.value.smtp_error
            assert mta.messages == []


async def test_a_tenant_sends_only_from_its_own_domains(relay: Relay) -> None:
    # MAIL FROM another tenant's (or any other) domain: 553 5.7.1 at MAIL, nothing relayed.
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        await relay.send([ANN], message(), sender="news@globex.example")
    assert info.value.smtp_code == 553 and b"email_domains" in info.value.smtp_error
    assert relay.mta.messages == []


async def test_quoted_printable_digit_escapes_do_not_hide_sms_optin_data(relay: Relay) -> None:
    # Consented numbers written as =3X escapes in a quoted-printable part are still found.
    await _consent(relay)
    escaped = "\r\n".join("".join(f"={ord(c):02X}" if c.isdigit() else c for c in n)
                          for n in CONSENTED)
    data = (f"From: {SENDER}\r\nTo: partner@broker.example\r\nSubject: list\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{escaped}\r\n").encode()
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send(["partner@broker.example"], data)
    assert info.value.smtp_code == 550
