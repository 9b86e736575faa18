"""SMS upstream transports against a real file and a real loopback provider."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import stat
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from fake_sms_provider import FakeSmsProvider

from gateway.sms_upstream import (
    OutboundSms,
    SmsUpstream,
    UpstreamAccepted,
    UpstreamFailed,
    UpstreamRecipientOptedOut,
    sms_upstream_from_url,
)

TO = "+14155550123"
FROM = "+14155550100"
SID = "AC" + "0123456789abcdef" * 2
TOKEN = "s3cr3t-auth-token-0123456789"
BODY = "Sale today! Reply STOP to opt out"


def sms(n: int = 1, *, to: str = TO, body: str = BODY) -> OutboundSms:
    return OutboundSms(id=f"msg-{n}", tenant="acme", to=to, from_=FROM, body=body,
                       category="marketing")



@pytest.fixture
async def upstreams() -> AsyncIterator[list[SmsUpstream]]:
    """Upstreams made by a test, closed after it (their sessions must not leak)."""
    made: list[SmsUpstream] = []
    yield made
    for upstream in made:
        await upstream.close()


def make(upstreams: list[SmsUpstream], url: str, *, timeout_s: float = 5.0) -> SmsUpstream:
    upstream = sms_upstream_from_url(url, timeout_s=timeout_s)
    upstreams.append(upstream)
    return upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- file:// --------------------------------------------------------------------


async def test_file_writes_one_json_line_per_message(tmp_path: Path,
                                                     upstreams: list[SmsUpstream]) -> None:
    # A message to file:// lands as one JSON line with every field, in a new 0600 file.
    path = tmp_path / "outbox" / "nested" / "sms.jsonl"
    upstream = make(upstreams, f"file://{path}")
    accepted = await upstream.send(sms(1, body="Ünïcode ✓ body"))
    assert accepted == UpstreamAccepted(upstream_id="msg-1", status="accepted")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert set(record) == {"id", "tenant", "to", "from", "body", "category", "at"}
    assert record | {"at": None} == {"id": "msg-1", "tenant": "acme", "to": TO, "from": FROM,
                                     "body": "Ünïcode ✓ body", "category": "marketing",
                                     "at": None}
    assert record["at"].endswith("Z") and datetime.fromisoformat(record["at"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_file_survives_concurrent_sends(tmp_path: Path,
                                              upstreams: list[SmsUpstream]) -> None:
    # 50 concurrent sends make 50 whole lines, each valid JSON, none lost or interleaved.
    path = tmp_path / "sms.jsonl"
    upstream = make(upstreams, f"file://{path}")
    results = await asyncio.gather(*(upstream.send(sms(n, body="x" * (n * 97)))
                                     for n in range(50)))
    assert {r.upstream_id for r in results} == {f"msg-{n}" for n in range(50)}
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 50
    assert sorted(r["id"] for r in records) == sorted(f"msg-{n}" for n in range(50))
    assert all(r["body"] == "x" * (int(r["id"][4:]) * 97) for r in records)


async def test_file_appends_to_an_existing_outbox(tmp_path: Path,
                                                  upstreams: list[SmsUpstream]) -> None:
    # A restarted gateway appends after what an earlier process wrote.
    path = tmp_path / "sms.jsonl"
    path.write_text('{"id": "old"}\n')
    await make(upstreams, f"file://{path}").send(sms(2))
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["old", "msg-2"]


async def test_file_write_failure_is_upstream_failed(tmp_path: Path,
                                                     upstreams: list[SmsUpstream]) -> None:
    # An outbox that cannot be written (parent is a file) refuses the message, naming why.
    (tmp_path / "blocker").write_text("")
    upstream = make(upstreams, f"file://{tmp_path}/blocker/sms.jsonl")
    with pytest.raises(UpstreamFailed, match="could not be written") as info:
        await upstream.send(sms())
    assert info.value.code == "upstream_failed"


# -- generic JSON over HTTP ---------------------------------------------------------


async def test_http_accepted_with_all_fields_and_basic_auth(
        upstreams: list[SmsUpstream]) -> None:
    # The provider gets every field as JSON and the URL's user info as Basic auth.
    async with FakeSmsProvider(basic_auth=("gw", "p@ss:word")) as fake:
        url = fake.url.replace("http://", "http://gw:p%40ss%3Aword@")
        upstream = make(upstreams, url)
        accepted = await upstream.send(sms(7))
        await upstream.close()
    assert accepted == UpstreamAccepted(upstream_id="fake-1")
    [got] = fake.messages
    assert got.raw == {"id": "msg-7", "tenant": "acme", "to": TO, "from": FROM,
                       "body": BODY, "category": "marketing"}
    assert got.auth == ("gw", "p@ss:word")


async def test_http_any_2xx_is_acceptance(fake: FakeSmsProvider,
                                          upstreams: list[SmsUpstream]) -> None:
    # A 202 without an id in its body is still acceptance; our id stands in for theirs.
    fake.fail_next(status=202)
    accepted = await make(upstreams, fake.url).send(sms(3))
    assert accepted.upstream_id == "msg-3"


async def test_http_500_is_upstream_failed(fake: FakeSmsProvider,
                                           upstreams: list[SmsUpstream]) -> None:
    # A 500 from the provider is a failure naming the status; nothing was recorded.
    fake.fail_next(status=500)
    with pytest.raises(UpstreamFailed, match="HTTP 500") as info:
        await make(upstreams, fake.url).send(sms())
    assert info.value.upstream_status == 500
    assert fake.messages == []


async def test_http_timeout_is_upstream_failed(fake: FakeSmsProvider,
                                               upstreams: list[SmsUpstream]) -> None:
    # A provider that hangs past timeout_s is a failure, raised within the budget.
    fake.fail_next(delay_s=10)
    upstream = make(upstreams, fake.url, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(UpstreamFailed, match=r"did not answer within 0\.2 s"):
        await upstream.send(sms())
    assert time.monotonic() - started < 2


async def test_http_connection_refused_is_upstream_failed(
        upstreams: list[SmsUpstream]) -> None:
    # Nobody listening on the port: a failure that says the connection was refused.
    upstream = make(upstreams, f"http://127.0.0.1:{free_port()}/messages")
    with pytest.raises(UpstreamFailed, match="connection refused"):
        await upstream.send(sms())


async def test_http_dropped_connection_is_upstream_failed(
        fake: FakeSmsProvider, upstreams: list[SmsUpstream]) -> None:
    # The provider closes the connection without answering; the next send works again.
    upstream = make(upstreams, fake.url)
    fake.fail_next(close=True)
    with pytest.raises(UpstreamFailed, match="closed the connection"):
        await upstream.send(sms(1))
    assert (await upstream.send(sms(2))).upstream_id == "fake-1"


async def test_http_reuses_one_connection(fake: FakeSmsProvider,
                                          upstreams: list[SmsUpstream]) -> None:
    # 20 sequential sends travel over a single kept-alive TCP connection.
    upstream = make(upstreams, fake.url)
    for n in range(20):
        await upstream.send(sms(n))
    assert len(fake.messages) == 20
    assert fake.requests == 20
    assert fake.connections == 1


async def test_http_send_after_close_is_upstream_failed(fake: FakeSmsProvider) -> None:
    # A closed upstream refuses further sends instead of opening a new session; close twice is fine.
    upstream = sms_upstream_from_url(fake.url)
    await upstream.send(sms())
    await upstream.close()
    await upstream.close()
    with pytest.raises(UpstreamFailed, match="shut down"):
        await upstream.send(sms())


# -- Twilio ------------------------------------------------------------------------------


async def test_twilio_sends_form_fields_with_basic_auth(fake: FakeSmsProvider,
                                                        upstreams: list[SmsUpstream]) -> None:
    # Twilio gets To/From/Body as a form with Basic auth (SID, token); its sid is our upstream id.
    upstream = make(upstreams, fake.twilio_url(SID, TOKEN))
    accepted = await upstream.send(sms())
    [got] = fake.messages
    assert got.api == "twilio"
    assert got.raw == {"To": TO, "From": FROM, "Body": BODY}
    assert got.auth == (SID, TOKEN)
    assert accepted == UpstreamAccepted(upstream_id=got.upstream_id)
    assert accepted.upstream_id.startswith("SM")


async def test_twilio_wrong_token_is_upstream_failed(fake: FakeSmsProvider,
                                                     upstreams: list[SmsUpstream]) -> None:
    # A token Twilio does not know: failure with Twilio's code 20003, the token nowhere in it.
    fake.twilio_url(SID, TOKEN)
    upstream = make(upstreams, f"twilio://{SID}:wrong-{TOKEN}@127.0.0.1:{fake.port}")
    with pytest.raises(UpstreamFailed, match="Twilio error 20003") as info:
        await upstream.send(sms())
    assert info.value.upstream_status == 401
    assert TOKEN not in str(info.value)


async def test_twilio_21610_is_recipient_opted_out(fake: FakeSmsProvider,
                                                   upstreams: list[SmsUpstream],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    # Twilio's 21610 (carrier STOP) raises UpstreamRecipientOptedOut naming the recipient.
    caplog.set_level(logging.DEBUG, logger="gateway.sms_upstream")
    fake.opt_out(TO)
    upstream = make(upstreams, fake.twilio_url(SID, TOKEN))
    with pytest.raises(UpstreamRecipientOptedOut) as info:
        await upstream.send(sms())
    assert isinstance(info.value, UpstreamFailed)
    assert info.value.code == "upstream_failed"
    assert info.value.recipient == TO
    assert info.value.upstream_code == 21610
    assert "21610" in info.value.message and TO not in info.value.message
    assert TO not in caplog.text and TOKEN not in caplog.text
    # Other numbers still go through.
    assert (await upstream.send(sms(2, to="+14155550124"))).upstream_id.startswith("SM")


async def test_twilio_other_error_names_the_code(fake: FakeSmsProvider,
                                                 upstreams: list[SmsUpstream],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # Another Twilio error: failure carrying Twilio's code and sentence, with the number masked.
    caplog.set_level(logging.DEBUG, logger="gateway.sms_upstream")
    fake.fail_next(status=400, twilio_code=21211,
                   message=f"The 'To' number {TO} is not a valid phone number.")
    upstream = make(upstreams, fake.twilio_url(SID, TOKEN))
    with pytest.raises(UpstreamFailed) as info:
        await upstream.send(sms())
    assert not isinstance(info.value, UpstreamRecipientOptedOut)
    assert "Twilio error 21211" in info.value.message
    assert "is not a valid phone number" in info.value.message
    assert TO not in info.value.message and "+1415***0123" in info.value.message
    assert (info.value.upstream_status, info.value.upstream_code) == (400, 21211)
    assert TO not in caplog.text and TOKEN not in caplog.text


async def test_twilio_server_error_names_code_and_status(fake: FakeSmsProvider,
                                                         upstreams: list[SmsUpstream]) -> None:
    # A Twilio 503 is a failure naming Twilio's code and the HTTP status.
    fake.fail_next(status=503)
    with pytest.raises(UpstreamFailed, match="error 20500.*HTTP 503"):
        await make(upstreams, fake.twilio_url(SID, TOKEN)).send(sms())


def test_twilio_scheme_is_https_except_on_loopback() -> None:
    # api.twilio.com is spoken to over https; only loopback hosts (the fake) over http.
    assert "base_url='https://api.twilio.com'" in repr(
        sms_upstream_from_url(f"twilio://{SID}:{TOKEN}@api.twilio.com"))
    assert "base_url='https://twilio.example:8443'" in repr(
        sms_upstream_from_url(f"twilio://{SID}:{TOKEN}@twilio.example:8443"))
    assert "base_url='http://127.0.0.1:9999'" in repr(
        sms_upstream_from_url(f"twilio://{SID}:{TOKEN}@127.0.0.1:9999"))
    assert "base_url='http://localhost:9999'" in repr(
        sms_upstream_from_url(f"twilio://{SID}:{TOKEN}@localhost:9999"))


# -- URLs and secrets -----------------------------------------------------------------


@pytest.mark.parametrize(("url", "problem"), [
    ("", "must start with a scheme"),
    (f"{SID}:{TOKEN}@api.twilio.com", "must start with a scheme"),
    ("ftp://example.com/x", "scheme 'ftp' is not supported"),
    ("file://", "needs a file path"),
    ("file:///var/outbox/", "needs a file path"),
    ("http:///messages", "no host"),
    ("https://provider.example:99999/sms", "not a valid URL"),
    ("https://provider.example:abc/sms", "not a valid URL"),
    ("https://provider .example/sms", "must not contain spaces"),
    ("twilio://api.twilio.com", "needs the account SID and auth token"),
    (f"twilio://{SID}@api.twilio.com", "needs the account SID and auth token"),
    (f"twilio://{SID}:{TOKEN}@", "no host"),
    (f"twilio://AC-1:{TOKEN}@api.twilio.com", "account SID must be letters and digits"),
    (f"twilio://{SID}:{TOKEN}@api.twilio.com/2010-04-01", "no path, query or fragment"),
    (f"twilio://{SID}:{TOKEN}@api.twilio.com:99999", "not a valid URL"),
])
def test_bad_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    # Each malformed URL is a ValueError that says what is wrong and never quotes the token.
    with pytest.raises(ValueError, match=problem) as info:
        sms_upstream_from_url(url)
    assert TOKEN not in str(info.value)


def test_timeout_must_be_positive() -> None:
    # A zero or NaN timeout would never time out or always; both are refused.
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="timeout_s must be a positive"):
            sms_upstream_from_url("https://provider.example/sms", timeout_s=bad)


def test_reprs_hide_secrets() -> None:
    # Neither the Twilio token nor URL user info shows in repr/str; numbers in messages are masked.
    twilio = sms_upstream_from_url(f"twilio://{SID}:{TOKEN}@api.twilio.com")
    assert TOKEN not in repr(twilio) and TOKEN not in str(twilio) and SID not in repr(twilio)
    http = sms_upstream_from_url("https://gw-user:hunter2@provider.example/sms")
    assert "hunter2" not in repr(http) and "gw-user" not in repr(http)
    assert "provider.example/sms" in repr(http)
    assert repr(sms_upstream_from_url("file:///var/outbox/sms.jsonl")) == \
        "FileSmsUpstream(path='/var/outbox/sms.jsonl')"
    shown = repr(sms())
    assert TO not in shown and FROM not in shown and "Sale" not in shown


def test_relative_file_path_is_taken_literally() -> None:
    # file://./var/x and file://var/x are relative to the working directory, not a host.
    assert repr(sms_upstream_from_url("file://./var/outbox/sms.jsonl")) == \
        "FileSmsUpstream(path='var/outbox/sms.jsonl')"
    assert repr(sms_upstream_from_url("file://var/outbox/sms.jsonl")) == \
        "FileSmsUpstream(path='var/outbox/sms.jsonl')"
