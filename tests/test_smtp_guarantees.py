"""Email guarantees the SMTP relay makes, each pinned by a test that fails if it breaks:
the DATA-time re-check (opt-outs and hard bounces landing after RCPT, a store outage),
never 250 for mail not relayed, token-less ARF complaints, unsubscribe tokens valid for
at least a year, and the SMTP idle timeout.

Real clients (aiosmtplib on the test's loop, smtplib in a thread), the gateway's own
listener, a private redis-server and the recording upstream MTA of ``tests/fake_mta.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from conftest import TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from fake_mta import RecordingMta
from test_smtp import ANN, BOB, SENDER, Relay, _dsn, _relay, message

from gateway.embedded_redis import RedisServerProcess
from gateway.settings import SettingsError
from suppression.models import HARD_BOUNCE_SCOPE, Channel, Reason, scoped
from suppression.tokens import TokenSigner

DAY_S = 86_400
FEEDBACK = "feedback@gw.example"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ONE_TENANT = {"acme": TENANTS["acme"]}  # token-less reports need a single tenant

Suppress = Callable[[Relay], Awaitable[None]]


@pytest.fixture
async def relay(redis_url: str, tmp_path: Path) -> AsyncIterator[Relay]:
    async with RecordingMta() as mta:
        async for r in _relay(redis_url, tmp_path, mta):
            yield r


@pytest.fixture
async def one_tenant_relay(redis_url: str, tmp_path: Path) -> AsyncIterator[Relay]:
    """Only tenant acme: a report quoting no token of ours can belong to it alone."""
    async with RecordingMta() as mta:
        async for r in _relay(redis_url, tmp_path, mta, tenants=ONE_TENANT):
            yield r


# -- helpers ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_relay(redis_url: str, tmp_path: Path, mta: RecordingMta,
                        **overrides: Any) -> AsyncIterator[Relay]:
    """test_smtp's ``_relay`` with custom settings, stopped on leaving the block even when
    an assertion failed (an abandoned ``async for`` would leave it to garbage collection)."""
    relays = _relay(redis_url, tmp_path, mta, **overrides)
    relay = await anext(relays)
    try:
        yield relay
    finally:
        with contextlib.suppress(StopAsyncIteration):
            await anext(relays)


async def open_session(relay: Relay, rcpts: list[str], *, key: str | None = None
                       ) -> aiosmtplib.SMTP:
    """AUTH, MAIL and RCPT (each accepted) on a fresh connection; DATA is left to the test."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False,
                             timeout=10)
    await client.connect()
    await client.ehlo()
    await client.login("acme", key or relay.key)
    await client.mail(SENDER)
    for rcpt in rcpts:
        code, text = await client.rcpt(rcpt)
        assert code == 250, text
    return client


async def finish_data(client: aiosmtplib.SMTP, data: bytes) -> tuple[int, str]:
    """The DATA reply (code, text), whether it is a success or a refusal."""
    try:
        reply = await client.data(data)
        code, text = reply.code, reply.message
    except aiosmtplib.SMTPResponseException as exc:
        code, text = exc.code, exc.message
    with contextlib.suppress(aiosmtplib.SMTPException):
        await client.quit()
    client.close()
    return code, text


async def outcomes(relay: Relay, address: str) -> list[str]:
    records = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, address)
    return [r["outcome"] for r in records]


def mail_feedback(port: int, data: bytes, sender: str = "fbl@fbl.example") -> dict[str, Any]:
    """Blocking, no AUTH: a report to the feedback address, as a feedback loop sends it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return dict(s.sendmail(sender, [FEEDBACK], data))


def hard_bounce_dsn(final: str, token: str) -> bytes:
    return _dsn(final, "5.1.1", token)


def arf(report_fields: list[str], quoted_to: str | None) -> bytes:
    """An ARF abuse report quoting no token of ours: ``report_fields`` go into the
    machine-readable part; ``quoted_to`` is the To of the quoted original (None: the
    feedback loop stripped the original)."""
    fields = "".join(f"{f}\r\n" for f in ["Feedback-Type: abuse", "User-Agent: FBL/1.0",
                                          "Version: 1", *report_fields])
    original = "" if quoted_to is None else (
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@acme.example\r\nTo: {quoted_to}\r\nSubject: Deals\r\n\r\n")
    return (
        "From: feedback@fbl.example\r\nTo: feedback@gw.example\r\nSubject: FW: Deals\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        f"--b1\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n"
        f"{original}--b1--\r\n").encode()


# -- 1. the DATA re-check honours what landed between RCPT and DATA ------------------------


async def _opt_out_by_service(relay: Relay) -> None:
    await relay.suppress(ANN)


async def _opt_out_by_api(relay: Relay) -> None:
    key = await relay.gw.key(scopes="write")
    r = await relay.gw.http.post("/v1/suppressions", json={"channel": "email",
                                                           "identifier": ANN},
                                 headers=relay.gw.auth(key))
    assert r.status == 201, await r.text()


async def _hard_bounce_by_service(relay: Relay) -> None:
    await relay.suppress(ANN, scope=HARD_BOUNCE_SCOPE)


@pytest.mark.parametrize("land,why", [
    (_opt_out_by_service, "unsubscribed"),
    (_opt_out_by_api, "unsubscribed"),
    (_hard_bounce_by_service, "hard-bounced"),
], ids=["opt-out-service", "opt-out-http-api", "hard-bounce-scope"])
async def test_suppression_between_rcpt_and_data_is_550_at_data(
        relay: Relay, land: Suppress, why: str) -> None:
    # Proves the DATA-time re-check: RCPT for ann was accepted, then a channel-wide opt-out
    # (service or HTTP API) or a bare "!bounce" entry lands; DATA is 550 5.7.1 naming why,
    # nothing reaches the upstream and no record says sent.
    client = await open_session(relay, [ANN])
    await land(relay)
    code, text = await finish_data(client, message())
    assert code == 550 and "5.7.1" in text and why in text, text
    assert relay.mta.messages == []
    assert await outcomes(relay, ANN) == ["refused"]


async def test_hard_bounce_between_rcpt_and_data_stops_transactional_mail(
        relay: Relay) -> None:
    # Proves the DATA re-check reads the hard-bounce scope for transactional keys, which
    # skip marketing opt-outs: a real DSN (our token, 5.1.1) mailed to the feedback
    # address on another connection while the transaction is open makes DATA 550 5.7.1.
    key = await relay.gw.key(scopes="send", transactional=True)
    client = await open_session(relay, [ANN], key=key)
    token = relay.gw.parts.tokens.issue("acme", Channel.EMAIL, ANN)
    assert await asyncio.to_thread(mail_feedback, relay.port, hard_bounce_dsn(ANN, token),
                                   "") == {}
    assert await relay.gw.parts.service.suppressed(
        "acme", Channel.EMAIL, [scoped(ANN, HARD_BOUNCE_SCOPE)]) == [True]
    code, text = await finish_data(client, message())
    assert code == 550 and "5.7.1" in text and "hard-bounced" in text, text
    assert relay.mta.messages == []


async def test_opt_out_between_rcpt_and_data_spares_the_other_recipient(
        relay: Relay) -> None:
    # Proves the re-check is per recipient: ann opts out after RCPT, bob does not; bob's
    # copy is relayed, ann's is not, and the reply is not a 250 for the message.
    client = await open_session(relay, [ANN, BOB])
    await relay.suppress(ANN)
    code, text = await finish_data(client, message())
    assert code == 550 and "5.7.1" in text, text
    assert [m.rcpt_tos for m in relay.mta.messages] == [(BOB,)]
    assert await outcomes(relay, ANN) == ["refused"]
    assert await outcomes(relay, BOB) == ["sent"]


# -- 2. the DATA re-check fails closed -----------------------------------------------------


async def test_store_outage_between_rcpt_and_data_is_451_and_nothing_relayed(
        own_redis: RedisServerProcess, tmp_path: Path) -> None:
    # Proves the DATA re-check fails closed: RCPT for ann was accepted with Redis up, then
    # Redis stops answering; DATA is 451 4.3.0 and the upstream receives nothing.
    async with RecordingMta() as mta:
        async with running_relay(own_redis.url, tmp_path, mta, redis_timeout_ms=100) as relay:
            client = await open_session(relay, [ANN])
            own_redis.pause()
            try:
                code, text = await finish_data(client, message())
            finally:
                own_redis.resume()
            assert code == 451 and "4.3.0" in text, text
            assert mta.messages == []
            assert "sent" not in await outcomes(relay, ANN)


# -- 3. never 250 for mail not relayed ------------------------------------------------------


async def test_upstream_5xx_for_the_second_recipient_only_is_not_250(relay: Relay) -> None:
    # Proves data_reply never acknowledges a partly relayed message: the upstream refuses
    # bob (550 5.1.1) and takes ann; the DATA reply is bob's 550 5.1.1, saying 1 of 2 was
    # relayed. Records: ann sent; bob refused by the upstream (README: "a 5xx at RCPT or
    # DATA refuses that recipient"), with its reply, never sent.
    relay.mta.rcpt_replies[BOB] = "550 5.1.1 No such user"
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send([ANN, BOB], message())
    assert info.value.smtp_code == 550
    text = info.value.smtp_error
    assert b"5.1.1" in text and b"No such user" in text and b"relayed to 1 of 2" in text
    assert [m.rcpt_tos for m in relay.mta.messages] == [(ANN,)]
    (ann,) = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, ANN)
    (bob,) = await relay.gw.parts.store.message_records("acme", Channel.EMAIL, BOB)
    assert ann["outcome"] == "sent"
    assert bob["outcome"] == "refused" and bob["code"] == "upstream_refused"
    assert "550" in bob["upstream_reply"] and "5.1.1" in bob["upstream_reply"]


async def test_upstream_5xx_for_the_second_recipient_is_not_250_on_aiosmtplib(
        relay: Relay) -> None:
    # The same guarantee seen by another client library (aiosmtplib reads the reply itself):
    # the DATA reply is 5xx, not 250.
    relay.mta.rcpt_replies[BOB] = "554 5.7.1 Relay access denied"
    client = await open_session(relay, [ANN, BOB])
    code, text = await finish_data(client, message())
    assert code == 554 and "5.7.1" in text and "Relay access denied" in text, text
    assert [m.rcpt_tos for m in relay.mta.messages] == [(ANN,)]


# -- 4. token-less ARF complaints ------------------------------------------------------------


@pytest.mark.parametrize("fields,quoted_to", [
    (["Original-Mail-From: <news@acme.example>", f"Original-Rcpt-To: <{ANN}>"],
     "redacted@example.com"),
    ([f"Original-Rcpt-To: {ANN}"], None),
    (["Original-Mail-From: <news@acme.example>", f"Removal-Recipient: {ANN}"],
     "xxxxxx@example.com"),
    (["Original-Mail-From: <news@acme.example>"], ANN),
], ids=["original-rcpt-to", "original-rcpt-to-no-quoted-original", "removal-recipient",
        "quoted-to-only"])
async def test_tokenless_complaint_suppresses_the_relayed_recipient(
        one_tenant_relay: Relay, fields: list[str], quoted_to: str | None) -> None:
    # Proves the complaint path reads the recipient without our token: from
    # Original-Rcpt-To (the quoted To redacted, or no quoted original at all), from the
    # draft's Removal-Recipient, or from the quoted original's single To. The gateway
    # relayed to ann first, so the report is believed: reason complaint.
    relay = one_tenant_relay
    await relay.send([ANN], message())
    assert await asyncio.to_thread(mail_feedback, relay.port, arf(fields, quoted_to)) == {}
    sup = await relay.gw.parts.service.get("acme", Channel.EMAIL, ANN)
    assert sup is not None and sup.reason is Reason.COMPLAINT


async def test_tokenless_complaint_naming_no_recipient_suppresses_nobody(
        one_tenant_relay: Relay) -> None:
    # Proves Original-Mail-From is never taken for the complainant: a report naming only
    # our sender (the quoted To lists two people) suppresses neither them nor the sender;
    # and a complaint for an address the gateway never mailed changes nothing.
    relay = one_tenant_relay
    await relay.send([ANN], message())
    svc = relay.gw.parts.service
    report = arf(["Original-Mail-From: <news@acme.example>"], f"{ANN}, {BOB}")
    assert await asyncio.to_thread(mail_feedback, relay.port, report) == {}
    stranger = arf([f"Original-Rcpt-To: <{BOB}>"], None)
    assert await asyncio.to_thread(mail_feedback, relay.port, stranger) == {}
    for address in (ANN, BOB, SENDER):
        assert await svc.get("acme", Channel.EMAIL, address) is None, address


# -- 5. unsubscribe tokens work for at least a year ------------------------------------------


def aged_token(gw: Gateway, days: float) -> str:
    """A token the gateway's own keys signed ``days`` ago (an injected clock)."""
    then = time.time() - days * DAY_S
    signer = TokenSigner(gw.parts.settings.token_keys(), max_age_s=1, clock=lambda: then)
    return signer.issue("acme", Channel.EMAIL, ANN)


@pytest.fixture(params=[None, 365], ids=["default", "min-365"])
async def token_gw(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
                   ) -> AsyncIterator[Gateway]:
    """A gateway with the default token lifetime, or the smallest one allowed."""
    overrides = {} if request.param is None else {"token_max_age_days": request.param}
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data",
                                                      **overrides))
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


async def test_a_token_issued_364_days_ago_still_unsubscribes(token_gw: Gateway) -> None:
    # Proves links work for at least a year, with the default and the minimum setting: a
    # 364-day-old token shows the page (GET 200) and the one-click POST suppresses ann.
    gw = token_gw
    assert gw.parts.settings.token_max_age_days >= 365
    t = aged_token(gw, 364)
    r = await gw.http.get(f"/u/{t}")
    assert r.status == 200, await r.text()
    assert await gw.parts.service.get("acme", Channel.EMAIL, ANN) is None  # GET: no change
    r = await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM, allow_redirects=False)
    assert r.status == 200, await r.text()
    sup = await gw.parts.service.get("acme", Channel.EMAIL, ANN)
    assert sup is not None and sup.reason is Reason.ONE_CLICK


async def test_token_older_than_the_setting_is_refused(redis_url: str, tmp_path: Path) -> None:
    # Proves the setting is what the links obey (so the test above is not vacuous): with
    # token_max_age_days=365 a 366-day-old token is the 404 page and suppresses nothing.
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data",
                                                      token_max_age_days=365))
    gw = Gateway(parts, client)
    try:
        t = aged_token(gw, 366)
        assert (await gw.http.get(f"/u/{t}")).status == 404
        r = await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)
        assert r.status == 404
        assert await parts.service.get("acme", Channel.EMAIL, ANN) is None
    finally:
        await stop_gateway(parts, client)


@pytest.mark.parametrize("days", [0, 1, 30, 364])
def test_token_max_age_below_a_year_is_refused(redis_url: str, tmp_path: Path,
                                               days: int) -> None:
    # Proves an operator cannot shorten links below a year: the settings refuse it,
    # naming the setting.
    with pytest.raises(SettingsError, match="OPTOUT_TOKEN_MAX_AGE_DAYS"):
        make_settings(redis_url, tmp_path / "data", token_max_age_days=days)


def test_token_max_age_default_is_at_least_a_year(redis_url: str, tmp_path: Path) -> None:
    # Proves the default (nothing configured) is a year or more, and 365 is accepted.
    assert make_settings(redis_url, tmp_path / "data").token_max_age_days >= 365
    assert make_settings(redis_url, tmp_path / "data",
                         token_max_age_days=365).token_max_age_days == 365


# -- 6. the SMTP idle timeout ----------------------------------------------------------------


async def _until_closed(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (read() returns at EOF)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(reader.read(), limit_s)
    return loop.time() - start


async def test_idle_client_is_disconnected_after_smtp_timeout_s(
        redis_url: str, tmp_path: Path) -> None:
    # Proves smtp_timeout_s reaches the listener: with it at 1 s, a client that reads the
    # greeting and then sends nothing is disconnected after about 1 s (aiosmtpd's own
    # default would hold it for 300 s); one that keeps sending NOOPs is not cut meanwhile.
    async with RecordingMta() as mta:
        async with running_relay(redis_url, tmp_path, mta, smtp_timeout_s=1.0) as relay:
            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            try:
                assert (await reader.readline()).startswith(b"220")
                waited = await _until_closed(reader, 5.0)
                assert 0.8 <= waited < 5.0
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

            reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
            try:
                assert (await reader.readline()).startswith(b"220")
                for _ in range(4):  # 2 s of activity, each gap well under the timeout
                    await asyncio.sleep(0.5)
                    writer.write(b"NOOP\r\n")
                    assert (await reader.readline()).startswith(b"250")
                waited = await _until_closed(reader, 5.0)
                assert 0.8 <= waited < 5.0
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
