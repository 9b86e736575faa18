"""More SMS end to end: every rule's code on both send APIs, bad input, outages, inbound.

Real HTTP (the gateway's own aiohttp server), a real redis-server, the official ``twilio``
SDK and ``twilio.request_validator`` for signed webhooks, and ``FakeSmsProvider`` as the
upstream. Marketing sends use an injected clock (``parts.sms.clock``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import NOON_NY, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess, free_port
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from yarl import URL

from gateway.settings import SettingsError
from gateway.sms_upstream import basic_authorization, sms_upstream_from_url
from suppression.models import Channel, now_ms
from suppression.service import LocalClaims
from suppression.store import Claim
from suppression.tenants import SmsReplies, Tenant

SENDER = "+14155550100"  # acme's first number
SENDER2 = "+14155550101"  # acme's second number
SHORT_CODE = "12345"  # acme's short code
GLOBEX = "+14155550199"  # globex's number
INBOUND = "/v1/sms/inbound/twilio"

TENANTS: dict[str, Any] = {
    "acme": {"brand": "Acme Co", "sms_senders": [SENDER, SENDER2, SHORT_CODE],
             "twilio_auth_token": "acme-token", "email_domains": ["acme.example"],
             "help_text": "Help at acme.example/help or 1-800-555-0100."},
    "globex": {"brand": "Globex", "sms_senders": [GLOBEX], "twilio_auth_token": "globex-token",
               "email_domains": ["globex.example"]},
}


# -- fixtures and helpers -------------------------------------------------------------------------



async def _gateway(redis_url: str, data_dir: Path, **overrides: Any) -> Gateway:
    settings = make_settings(redis_url, data_dir, tenants=TENANTS, **overrides)
    parts, client = await start_gateway(settings)
    parts.sms.clock = lambda: NOON_NY
    return Gateway(parts, client)


@pytest.fixture
async def sgw(redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> AsyncIterator[Gateway]:
    gw = await _gateway(redis_url, tmp_path / "data", sms_upstream=fake.url)
    yield gw
    await stop_gateway(gw.parts, gw.http)


def set_clock(gw: Gateway, at: datetime) -> None:
    gw.parts.sms.clock = lambda: at


async def consent(gw: Gateway, key: str, number: str) -> None:
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": number,
                                                  "source": "web_form",
                                                  "evidence": "checkbox on /signup"},
                           headers=gw.auth(key))
    assert r.status == 201, await r.text()


async def send(gw: Gateway, key: str, to: str, body: str = "Deals this week at Acme",
               **extra: Any) -> tuple[int, dict[str, Any]]:
    payload = {"to": to, "from": SENDER, "body": body, **extra}
    r = await gw.http.post("/v1/sms/messages", json=payload, headers=gw.auth(key))
    return r.status, await r.json()


def code_of(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


async def suppression(gw: Gateway, key: str, number: str) -> dict[str, Any] | None:
    r = await gw.http.get(f"/v1/suppressions/sms/{number}", headers=gw.auth(key))
    assert r.status in (200, 404), await r.text()
    return await r.json() if r.status == 200 else None


async def webhook(gw: Gateway, body: str, from_: str, *, to: str = SENDER,
                  token: str = "acme-token", url: str | None = None,
                  extra: dict[str, str] | None = None, path: str = INBOUND) -> tuple[int, str]:
    """A Twilio-signed inbound SMS webhook, as Twilio sends it."""
    params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
              "From": from_, "To": to, "Body": body, "NumMedia": "0", **(extra or {})}
    signed = url or gw.parts.settings.public_url + path
    sig = RequestValidator(token).compute_signature(signed, params)
    r = await gw.http.post(path, data=params, headers={"X-Twilio-Signature": sig})
    return r.status, await r.text()


def twilio_client(gw: Gateway, key: str, account: str = "acme") -> Client:
    client = Client(account, key, http_client=TwilioHttpClient(timeout=10))
    client.api.base_url = str(gw.http.make_url("")).rstrip("/")
    return client


async def sdk_send(client: Client, to: str, body: str = "Deals this week at Acme",
                   from_: str = SENDER) -> Any:
    return await asyncio.to_thread(client.messages.create, to=to, from_=from_, body=body)


async def sdk_error(client: Client, to: str, body: str = "Deals this week at Acme",
                    from_: str = SENDER) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as err:
        await sdk_send(client, to, body, from_)
    return err.value


async def data_keys(gw: Gateway) -> set[bytes]:
    """Every key in Redis except API keys and the layout marker."""
    found: list[Any] = await gw.parts.client.keys("og:*")
    return {k for k in found if k not in (b"og:apikeys", b"og:meta")}


async def test_twilio_sdk_media_url_is_refused_not_sent_as_text_alone(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # An MMS through the real SDK: the gateway relays SMS only, so it refuses the message
    # naming MediaUrl instead of silently sending the text without its picture.
    key = await sgw.key()
    number = "+12125550164"
    await consent(sgw, key, number)
    set_clock(sgw, NOON_NY)
    client = twilio_client(sgw, key)
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to=number, from_=SENDER, body="Look",
                                media_url=["https://acme.example/a.png"])
    assert err.value.status == 400 and "MediaUrl" in str(err.value.msg)
    assert fake.requests == 0


# -- every rule's refusal, on both send APIs ------------------------------------------------------


async def test_each_rule_refusal_through_the_twilio_sdk(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Through the official SDK, each rule refuses with its Twilio-shaped code and a message
    # naming the reason; nothing refused reaches the provider.
    key = await sgw.key()
    client = twilio_client(sgw, key)
    err = await sdk_error(client, "+12125550140", from_="+14155550199")
    assert (err.status, err.code) == (400, 21606) and "sender numbers" in err.msg
    err = await sdk_error(client, "+1 415 555")
    assert (err.status, err.code) == (400, 21211) and "too short" in err.msg
    err = await sdk_error(client, "+12125550140")
    assert (err.status, err.code) == (400, 90001) and "no consent" in err.msg
    await consent(sgw, key, "+12125550140")
    err = await sdk_error(client, "+12125550140", body="Deals at bit.ly/x1")
    assert (err.status, err.code) == (400, 30007) and "bit.ly" in err.msg
    set_clock(sgw, datetime(2026, 6, 11, 2, 0, tzinfo=UTC))  # 22:00 EDT
    err = await sdk_error(client, "+12125550140")
    assert (err.status, err.code) == (400, 90002) and "21:00" in err.msg
    set_clock(sgw, NOON_NY)
    await consent(sgw, key, "+13055550140")
    for _ in range(3):
        assert (await sdk_send(client, "+13055550140")).status == "queued"
    err = await sdk_error(client, "+13055550140")
    assert (err.status, err.code) == (400, 90003) and "FL law" in err.msg
    r = await sgw.http.post("/v1/suppressions", json={"channel": "sms",
                                                       "identifier": "+12125550140",
                                                       "reason": "manual"},
                            headers=sgw.auth(key))
    assert r.status == 201
    err = await sdk_error(client, "+12125550140")
    assert (err.status, err.code) == (400, 21610)
    assert err.msg.endswith("Attempt to send to unsubscribed recipient")
    assert [m.to for m in fake.messages] == ["+13055550140"] * 3


async def test_twilio_api_bad_credentials_are_401_20003(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A wrong key, or a key used under another account (tenant) path, is 401 / 20003.
    key = await sgw.key()
    err = await sdk_error(twilio_client(sgw, "og_wrong_key"), "+12125550141")
    assert (err.status, err.code) == (401, 20003)
    globex_key = await sgw.key("globex")
    err = await sdk_error(twilio_client(sgw, globex_key, account="acme"), "+12125550141")
    assert (err.status, err.code) == (401, 20003)
    send_only = await sgw.key(scopes="read")
    err = await sdk_error(twilio_client(sgw, send_only), "+12125550141")
    assert (err.status, err.code) == (403, 20403)
    assert key and fake.requests == 0


async def test_json_opted_out_refusal_names_the_code(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # An opted-out recipient is refused 403 opted_out on the JSON API, consent or not.
    key = await sgw.key()
    await consent(sgw, key, "+12125550142")
    await sgw.http.post("/v1/suppressions", json={"channel": "sms", "identifier": "+12125550142",
                                                   "reason": "manual"}, headers=sgw.auth(key))
    status, body = await send(sgw, key, "+12125550142")
    assert status == 403 and code_of(body) == "opted_out" and body["error"]["field"] == "to"
    assert fake.requests == 0


# -- bad input: 400/422, nothing forwarded, nothing recorded --------------------------------------


@pytest.mark.parametrize("to", ["not a number", "12", "+999123", "+1415555012345678",
                                "+1 212 555 0199 ext 3", "+12125550100\u0000", "   "])
async def test_json_invalid_numbers_are_422(sgw: Gateway, fake: FakeSmsProvider, to: str) -> None:
    # Numbers phonenumbers cannot use are 422 invalid_recipient naming 'to'; nothing kept.
    key = await sgw.key()
    before = await data_keys(sgw)
    status, body = await send(sgw, key, to)
    assert status == 422 and code_of(body) == "invalid_recipient", body
    assert body["error"]["field"] == "to"
    assert fake.requests == 0 and await data_keys(sgw) == before


@pytest.mark.parametrize(("payload", "field"), [
    ({"from": SENDER, "body": "Hi"}, "to"),
    ({"to": "+12125550143", "body": "Hi"}, "from"),
    ({"to": "+12125550143", "from": SENDER}, "body"),
    ({"to": 12125550143, "from": SENDER, "body": "Hi"}, "to"),
    ({"to": "+12125550143", "from": SENDER, "body": ["Hi"]}, "body"),
    ({"to": "+12125550143", "from": SENDER, "body": None}, "body"),
    ({"to": "+12125550143", "from": SENDER, "body": ""}, "body"),
    ({"to": "+12125550143", "from": SENDER, "body": "Hi", "category": "promo"}, "category"),
    ({"to": "+12125550143", "from": SENDER, "body": "Hi", "category": True}, "category"),
    ({"to": "+12125550143", "from": SENDER, "body": "Hi", "media_url": "x"}, "media_url"),
    ({"to": "+12125550143", "from": SENDER, "body": "x" * 1601}, "body"),
])
async def test_json_missing_fields_wrong_types_oversize_are_422(
        sgw: Gateway, fake: FakeSmsProvider, payload: dict[str, Any], field: str) -> None:
    # Missing fields, wrong types, unknown fields and bodies over 1600 chars: 422 naming the field.
    key = await sgw.key()
    await consent(sgw, key, "+12125550143")
    before = await data_keys(sgw)
    r = await sgw.http.post("/v1/sms/messages", json=payload, headers=sgw.auth(key))
    body = await r.json()
    assert r.status == 422 and code_of(body) == "invalid_request", body
    assert body["error"]["field"] == field
    assert fake.requests == 0 and await data_keys(sgw) == before


async def test_json_body_at_1600_chars_is_sent_whole(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Exactly 1600 characters (with its own opt-out language) passes unchanged; 1600 without
    # opt-out language has no room for the footer and is refused content_blocked.
    key = await sgw.key()
    await consent(sgw, key, "+12125550144")
    text = ("Reply STOP to opt out. " + "x" * 1600)[:1600]
    status, body = await send(sgw, key, "+12125550144", text)
    assert status == 202 and body["body"] == text
    assert fake.messages[-1].body == text
    status, body = await send(sgw, key, "+12125550145", "y" * 1600)
    assert status == 403 and code_of(body) == "no_consent"
    await consent(sgw, key, "+12125550145")
    status, body = await send(sgw, key, "+12125550145", "y" * 1600)
    assert status == 403 and code_of(body) == "content_blocked" and "1600" in body["error"][
        "message"]
    assert len(fake.messages) == 1


@pytest.mark.parametrize("raw", [b'{"to": "+12125550146", "from": "+14155550100", '
                                 b'"body": "caf\xe9"}', b"\xff\xfe{}", b'{"to": "\x80"}'])
async def test_json_non_utf8_is_400(sgw: Gateway, fake: FakeSmsProvider, raw: bytes) -> None:
    # Bytes that are not UTF-8 are 400 malformed_json; nothing forwarded or recorded.
    key = await sgw.key()
    before = await data_keys(sgw)
    r = await sgw.http.post("/v1/sms/messages", data=raw,
                            headers={**sgw.auth(key), "Content-Type": "application/json"})
    body = await r.json()
    assert r.status == 400 and code_of(body) == "malformed_json" and "UTF-8" in body[
        "error"]["message"]
    assert fake.requests == 0 and await data_keys(sgw) == before


@pytest.mark.parametrize(("form", "name"), [
    ({"From": SENDER, "Body": "Hi"}, "To"),
    ({"To": "+12125550147", "From": SENDER}, "Body"),
    ({"To": "+12125550147", "Body": "Hi"}, "From"),
    ({"To": "", "From": SENDER, "Body": "Hi"}, "To"),
    ({"To": "+12125550147", "From": SENDER, "Body": "z" * 1601}, "Body"),
])
async def test_twilio_api_missing_fields_and_oversize_are_400(
        sgw: Gateway, fake: FakeSmsProvider, form: dict[str, str], name: str) -> None:
    # The Twilio-compatible API answers missing fields and oversize bodies 400 / 21602
    # naming the parameter, in Twilio's error shape; nothing forwarded or recorded.
    key = await sgw.key()
    await consent(sgw, key, "+12125550147")
    before = await data_keys(sgw)
    r = await sgw.http.post("/2010-04-01/Accounts/acme/Messages.json", data=form,
                            headers=_basic("acme", key))
    body = await r.json()
    assert r.status == 400 and body["code"] == 21602 and body["status"] == 400, body
    assert name in body["message"] and body["more_info"].startswith("https://")
    assert fake.requests == 0 and await data_keys(sgw) == before


async def test_twilio_api_non_utf8_form_is_400(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A form body that is not UTF-8 is a Twilio-shaped 400, not a 500.
    key = await sgw.key()
    r = await sgw.http.post("/2010-04-01/Accounts/acme/Messages.json",
                            data=b"To=%2B12125550148&From=%2B14155550100&Body=caf\xe9",
                            headers={"Content-Type": "application/x-www-form-urlencoded",
                                     **_basic("acme", key)})
    body = await r.json()
    assert r.status == 400 and body["code"] == 21602 and "UTF-8" in body["detail"]
    assert fake.requests == 0


async def test_twilio_sdk_invalid_number_and_oversize_body(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Through the SDK: an unparseable number is 21211, a 1601-char body 21602.
    key = await sgw.key()
    client = twilio_client(sgw, key)
    err = await sdk_error(client, "call me maybe")
    assert (err.status, err.code) == (400, 21211)
    await consent(sgw, key, "+12125550149")
    err = await sdk_error(client, "+12125550149", body="b" * 1601)
    assert (err.status, err.code) == (400, 21602) and "1600" in err.msg
    assert fake.requests == 0


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": basic_authorization(user, password)}


# -- upstream down: 502, nothing recorded as sent -------------------------------------------------


@pytest.mark.parametrize("fault", ["status500", "drop", "twilio_error"])
async def test_upstream_failure_is_502_and_not_counted_as_sent(
        sgw: Gateway, fake: FakeSmsProvider, fault: str) -> None:
    # The provider answers 500 / drops the connection: 502 upstream_failed and the attempt
    # is recorded as failed. An answered refusal does not count against Florida's
    # 3-per-24h cap; a connection dropped after the request might have delivered the text,
    # so its cap slot stays taken (the cap must never be exceeded).
    key = await sgw.key()
    number = "+13055550150"
    await consent(sgw, key, number)
    for _ in range(3):
        if fault == "status500":
            fake.fail_next(status=500)
        elif fault == "drop":
            fake.fail_next(close=True)
        else:
            fake.fail_next(status=503, message="unavailable")
        status, body = await send(sgw, key, number)
        assert status == 502 and code_of(body) == "upstream_failed", body
    assert fake.messages == []
    records = await sgw.parts.store.message_records("acme", Channel.SMS, number)
    assert [r["outcome"] for r in records] == ["failed"] * 3
    _, _, sends = await sgw.parts.store.send_state("acme", Channel.SMS, number)
    if fault == "drop":
        assert len(sends) == 3
        status, body = await send(sgw, key, number)
        assert status == 429 and code_of(body) == "frequency_capped", body
        assert fake.messages == []
        return
    assert sends == []
    for _ in range(3):
        status, body = await send(sgw, key, number)
        assert status == 202, body
    assert len(fake.messages) == 3


async def test_upstream_unreachable_or_hanging_is_502(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A provider port with nothing listening, and one that never answers within the upstream
    # timeout: 502 upstream_failed each time, nothing counted as sent.
    key = await sgw.key()
    number = "+12125550151"
    await consent(sgw, key, number)
    await sgw.parts.sms.upstream.close()
    sgw.parts.sms.upstream = sms_upstream_from_url(f"http://127.0.0.1:{free_port()}/messages")
    status, body = await send(sgw, key, number)
    assert status == 502 and code_of(body) == "upstream_failed"
    assert "could not be reached" in body["error"]["message"]
    await sgw.parts.sms.upstream.close()
    sgw.parts.sms.upstream = sms_upstream_from_url(fake.url, timeout_s=0.3)
    fake.fail_next(delay_s=2)
    started = time.monotonic()
    status, body = await send(sgw, key, number)
    assert status == 502 and code_of(body) == "upstream_failed"
    assert time.monotonic() - started < 1.5
    await sgw.parts.sms.upstream.close()
    sgw.parts.sms.upstream = sgw.parts.sms_upstream  # closed by stop_gateway
    records = await sgw.parts.store.message_records("acme", Channel.SMS, number)
    assert [r["outcome"] for r in records] == ["failed", "failed"]
    assert fake.messages == []


# -- Twilio upstream: 21610 becomes a suppression -------------------------------------------------


async def test_twilio_upstream_21610_records_suppression(
        redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # The Twilio upstream answers 21610 (the carrier's STOP): the gateway refuses opted_out,
    # records a stop_keyword suppression from the upstream, and never asks Twilio again.
    gw = await _gateway(redis_url, tmp_path / "d",
                        sms_upstream=fake.twilio_url("ACtest0001", "upstream-token"))
    try:
        key = await gw.key()
        await consent(gw, key, "+12125550152")
        await consent(gw, key, "+12125550153")
        status, body = await send(gw, key, "+12125550153")
        assert status == 202 and fake.messages[0].api == "twilio"
        assert fake.messages[0].auth == ("ACtest0001", "upstream-token")
        fake.opt_out("+12125550152")
        status, body = await send(gw, key, "+12125550152")
        assert status == 403 and code_of(body) == "opted_out" and "21610" in body[
            "error"]["message"]
        entry = await suppression(gw, key, "+12125550152")
        assert entry is not None
        assert (entry["reason"], entry["source"]) == ("stop_keyword", "upstream")
        assert await gw.parts.store.get("acme", Channel.SMS, "+12125550152") is not None
        asked = fake.requests
        err = await sdk_error(twilio_client(gw, key), "+12125550152")
        assert (err.status, err.code) == (400, 21610)
        status, body = await send(gw, key, "+12125550152", category="transactional")
        assert status == 403  # not a transactional key: refused before anything else
        tkey = await gw.key(transactional=True)
        status, body = await send(gw, tkey, "+12125550152", category="transactional")
        assert status == 403 and code_of(body) == "opted_out"
        assert fake.requests == asked and len(fake.messages) == 1
        records = await gw.parts.store.message_records("acme", Channel.SMS, "+12125550152")
        assert records[0]["outcome"] == "refused" and records[0]["code"] == "opted_out"
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_twilio_upstream_other_error_is_502(
        redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # Any other Twilio error (here 30003, unreachable handset) is 502 naming the code; no
    # suppression is recorded.
    gw = await _gateway(redis_url, tmp_path / "d",
                        sms_upstream=fake.twilio_url("ACtest0002", "upstream-token"))
    try:
        key = await gw.key()
        await consent(gw, key, "+12125550154")
        fake.fail_next(status=400, twilio_code=30003, message="Unreachable destination handset")
        status, body = await send(gw, key, "+12125550154")
        assert status == 502 and code_of(body) == "upstream_failed"
        assert "30003" in body["error"]["message"]
        assert await suppression(gw, key, "+12125550154") is None
    finally:
        await stop_gateway(gw.parts, gw.http)


# -- Redis down: 503, nothing forwarded; STOP during the outage -----------------------------------


async def test_redis_down_refuses_every_send_path_with_503(
        own_redis: RedisServerProcess, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # With Redis dead, JSON marketing, JSON transactional and the Twilio API all fail closed
    # (503 store_unavailable / 20503) and the provider sees nothing.
    gw = await _gateway(own_redis.url, tmp_path / "d", sms_upstream=fake.url)
    try:
        key = await gw.key()
        tkey = await gw.key(transactional=True)
        await consent(gw, key, "+12125550155")
        status, _ = await send(gw, key, "+12125550155")
        assert status == 202
        status, _ = await send(gw, tkey, "+12125550155", category="transactional")
        assert status == 202
        before = fake.requests
        own_redis.kill()
        status, body = await send(gw, key, "+12125550155")
        assert status == 503 and code_of(body) == "store_unavailable"
        status, body = await send(gw, tkey, "+12125550155", category="transactional")
        assert status == 503 and code_of(body) == "store_unavailable"
        err = await sdk_error(twilio_client(gw, key), "+12125550155")
        assert (err.status, err.code) == (503, 20503)
        assert fake.requests == before
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_stop_during_redis_outage_is_confirmed_and_honoured_after(
        own_redis: RedisServerProcess, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # Redis dies; a signed STOP is still confirmed (journalled) and honoured by sends during
    # the outage; once Redis is back the gateway applies it and it is in Redis.
    gw = await _gateway(own_redis.url, tmp_path / "d", sms_upstream=fake.url)
    number = "+12125550156"
    try:
        key = await gw.key()
        await consent(gw, key, number)
        status, _ = await send(gw, key, number)  # the key is now known to the gateway
        assert status == 202
        own_redis.kill()
        status, text = await webhook(gw, "STOP", number)
        assert status == 200 and text.count("<Message>") == 1
        assert "Acme Co" in text and "START" in text and "no more messages" in text
        assert gw.parts.service.pending_count >= 1
        status, body = await send(gw, key, number)
        assert status == 403 and code_of(body) == "opted_out"
        status, body = await send(gw, key, number, **{"from": SENDER2})
        assert status == 403 and code_of(body) == "opted_out"
        status, body = await send(gw, key, "+12125550157")
        assert status == 503 and code_of(body) == "store_unavailable"
        await asyncio.to_thread(own_redis.restart)
        deadline = time.monotonic() + 15
        while gw.parts.service.pending_count:
            assert time.monotonic() < deadline, "journal not applied after Redis came back"
            await asyncio.sleep(0.05)
        stored = await gw.parts.store.get("acme", Channel.SMS, number)
        assert stored is not None and stored.reason.value == "stop_keyword"
        status, body = await send(gw, key, number)
        assert status == 403 and code_of(body) == "opted_out"
        entry = await suppression(gw, key, number)
        assert entry is not None and entry["source"] == "sms"
        assert len(fake.messages) == 1
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_outage_retries_are_confirmed_once_and_unclear_replies_reach_review(
        own_redis: RedisServerProcess, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # With Redis down the gateway cannot take its claims there: a provider's retry of a STOP
    # and a second STOP inside the 5-minute gap are still not confirmed twice (claims held
    # in the process), also once Redis is back; an unclear reply is queued for ops review
    # as soon as Redis answers again, with its own time.
    gw = await _gateway(own_redis.url, tmp_path / "d", sms_upstream=fake.url)
    number, other = "+12125550158", "+12125550159"
    sid = "SM" + uuid.uuid4().hex
    try:
        key = await gw.key()
        assert (await send(gw, key, number))[0] == 403  # no consent: the key is now known
        own_redis.kill()
        first = await webhook(gw, "STOP", number, extra={"MessageSid": sid})
        retry = await webhook(gw, "STOP", number, extra={"MessageSid": sid})
        again = await webhook(gw, "stop please", number)
        assert [s for s, _ in (first, retry, again)] == [200, 200, 200]
        assert [t.count("<Message>") for _, t in (first, retry, again)] == [1, 0, 0]
        before = now_ms()
        status, text = await webhook(gw, "can I cancel my order?", other)
        assert status == 200 and "<Message>" not in text
        await asyncio.to_thread(own_redis.restart)
        deadline = time.monotonic() + 15
        while gw.parts.service.pending_count or not (await review_items(gw, key)):
            assert time.monotonic() < deadline, "outage writes not applied after recovery"
            await asyncio.sleep(0.05)
        (item,) = await review_items(gw, key)
        assert item["from"] == other and "cancel" in item["body"]
        assert before <= item["at_ms"] <= now_ms()
        r = await gw.http.get("/v1/audit", params={"identifier": other}, headers=gw.auth(key))
        assert [e["type"] for e in (await r.json())["items"]] == ["possible_opt_out"]
        status, text = await webhook(gw, "STOP", number, extra={"MessageSid": sid})
        assert status == 200 and "<Message>" not in text  # the retry, after the outage
        assert await suppression(gw, key, number) is not None
    finally:
        await stop_gateway(gw.parts, gw.http)


async def review_items(gw: Gateway, key: str) -> list[dict[str, Any]]:
    r = await gw.http.get("/v1/review", headers=gw.auth(key))
    assert r.status in (200, 503), await r.text()
    return list((await r.json())["items"]) if r.status == 200 else []


# -- quiet hours, multi-zone numbers, Florida and Oklahoma ----------------------------------------


@pytest.mark.parametrize(("number", "at", "code", "retry"), [
    # North Dakota 701 (Central and Mountain): 08:30 CDT is 07:30 MDT -> too early somewhere.
    ("+17015550160", datetime(2026, 6, 10, 13, 30, tzinfo=UTC), "quiet_hours",
     "2026-06-10T14:00:00Z"),
    ("+17015550160", datetime(2026, 6, 10, 14, 30, tzinfo=UTC), None, None),
    # 21:30 CDT is 20:30 MDT: too late in Central.
    ("+17015550160", datetime(2026, 6, 11, 2, 30, tzinfo=UTC), "quiet_hours",
     "2026-06-11T14:00:00Z"),
    ("+17015550160", datetime(2026, 6, 11, 1, 30, tzinfo=UTC), None, None),
    # Florida panhandle 850 (Eastern and Central): 08:30 EDT is 07:30 CDT.
    ("+18505550160", datetime(2026, 6, 10, 12, 30, tzinfo=UTC), "quiet_hours",
     "2026-06-10T13:00:00Z"),
    # Florida 305: 20:30 EDT is past FL's 20:00 end (federal would allow it).
    ("+13055550160", datetime(2026, 6, 11, 0, 30, tzinfo=UTC), "quiet_hours",
     "2026-06-11T12:00:00Z"),
    ("+13055550160", datetime(2026, 6, 10, 23, 30, tzinfo=UTC), None, None),
    ("+12125550160", datetime(2026, 6, 11, 0, 30, tzinfo=UTC), None, None),  # NY 20:30: fine
    # Oklahoma 405: 20:30 CDT is past OK's 20:00 end.
    ("+14055550160", datetime(2026, 6, 11, 1, 30, tzinfo=UTC), "quiet_hours",
     "2026-06-11T13:00:00Z"),
    ("+14055550160", datetime(2026, 6, 11, 0, 30, tzinfo=UTC), None, None),
    # New York 07:59 EDT: one minute early.
    ("+12125550160", datetime(2026, 6, 10, 11, 59, tzinfo=UTC), "quiet_hours",
     "2026-06-10T12:00:00Z"),
])
async def test_quiet_hours_by_zone_and_state(
        sgw: Gateway, fake: FakeSmsProvider, number: str, at: datetime, code: str | None,
        retry: str | None) -> None:
    # Marketing is allowed only inside the window in every zone the number may be in, and
    # 08:00-20:00 under FL/OK law; the refusal names the retry time.
    key = await sgw.key()
    await consent(sgw, key, number)
    set_clock(sgw, at)
    status, body = await send(sgw, key, number)
    if code is None:
        assert status == 202, body
        assert len(fake.messages) == 1
    else:
        assert status == 429 and code_of(body) == code, body
        assert retry is not None and retry in body["error"]["message"]
        assert fake.requests == 0


async def test_oklahoma_cap_three_per_24h_then_allowed_again(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # An Oklahoma 918 number gets 3 marketing texts per rolling 24 h; the 4th is
    # frequency_capped with the retry time; 24 h after the first, one more goes.
    key = await sgw.key()
    number = "+19185550161"
    await consent(sgw, key, number)
    times = [NOON_NY + timedelta(hours=h) for h in (0, 1, 2)]
    for at in times:
        set_clock(sgw, at)
        status, body = await send(sgw, key, number)
        assert status == 202, body
    set_clock(sgw, NOON_NY + timedelta(hours=3))
    status, body = await send(sgw, key, number)
    assert status == 429 and code_of(body) == "frequency_capped"
    assert "OK law" in body["error"]["message"] and "2026-06-11T16:00:00Z" in body[
        "error"]["message"]
    set_clock(sgw, NOON_NY + timedelta(hours=24, seconds=1))
    status, body = await send(sgw, key, number)
    assert status == 202, body
    set_clock(sgw, NOON_NY + timedelta(hours=24, seconds=2))
    status, body = await send(sgw, key, number)
    assert status == 429 and code_of(body) == "frequency_capped"
    assert len(fake.messages) == 4


async def test_concurrent_sends_cannot_pass_the_florida_cap(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Six marketing texts to one Florida number at once: each decide() reads the same
    # empty history, but the slots are taken in Redis before the provider is called, so
    # exactly 3 go out and 3 are frequency_capped.
    key = await sgw.key()
    number = "+13055550941"
    await consent(sgw, key, number)
    set_clock(sgw, NOON_NY)
    results = await asyncio.gather(*[send(sgw, key, number) for _ in range(6)])
    statuses = sorted(status for status, _ in results)
    assert statuses == [202, 202, 202, 429, 429, 429], results
    assert {code_of(b) for st, b in results if st == 429} == {"frequency_capped"}
    assert len(fake.messages) == 3
    # The send times were counted once each (the message records do not add them again).
    set_clock(sgw, NOON_NY + timedelta(hours=24, seconds=1))
    assert [(await send(sgw, key, number))[0] for _ in range(4)] == [202, 202, 202, 429]


async def test_a_refused_capped_send_gives_its_slot_back_a_timeout_keeps_it(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A provider answering 500, or one that could not be reached, did not take the text:
    # the slot is free again. A timeout may have delivered it: the slot stays taken, so the
    # cap can never be exceeded.
    key = await sgw.key()
    number = "+14055550942"  # Oklahoma
    await consent(sgw, key, number)
    set_clock(sgw, NOON_NY)
    fake.fail_next(status=500)
    status, body = await send(sgw, key, number)
    assert status == 502 and code_of(body) == "upstream_failed"
    sgw.parts.sms.upstream = sms_upstream_from_url(f"http://127.0.0.1:{free_port()}/messages")
    status, body = await send(sgw, key, number)  # could not be reached: surely not sent
    assert status == 502 and code_of(body) == "upstream_failed"
    await sgw.parts.sms.upstream.close()
    sgw.parts.sms.upstream = sms_upstream_from_url(fake.url, timeout_s=0.3)
    fake.fail_next(delay_s=2)
    status, body = await send(sgw, key, number)
    await sgw.parts.sms.upstream.close()
    sgw.parts.sms.upstream = sgw.parts.sms_upstream  # closed by stop_gateway
    assert status == 502 and code_of(body) == "upstream_failed"
    assert [(await send(sgw, key, number))[0] for _ in range(3)] == [202, 202, 429]


async def test_quiet_hours_and_caps_say_when_to_retry_in_fields_and_headers(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A 429 carries the retry time as data (error.retry_at, Retry-After), on the JSON API
    # and on the Twilio-compatible one, not only inside the sentence.
    key = await sgw.key()
    number = "+12125550163"
    await consent(sgw, key, number)
    set_clock(sgw, datetime(2026, 6, 10, 11, 59, tzinfo=UTC))  # 07:59 in New York
    r = await sgw.http.post("/v1/sms/messages", headers=sgw.auth(key),
                            json={"to": number, "from": SENDER, "body": "Deals"})
    error = (await r.json())["error"]
    assert r.status == 429 and error["code"] == "quiet_hours"
    assert error["retry_at"] == "2026-06-10T12:00:00.000Z"
    assert int(r.headers["Retry-After"]) >= 1
    twilio_r = await sgw.http.post(
        "/2010-04-01/Accounts/acme/Messages.json",
        headers={"Authorization": basic_authorization("acme", key)},
        data={"To": number, "From": SENDER, "Body": "Deals"})
    body = await twilio_r.json()
    assert twilio_r.status == 400 and body["code"] == 90002
    assert body["retry_at"] == "2026-06-10T12:00:00.000Z"
    assert "Retry-After" in twilio_r.headers
    # A number in no time zone has no retry time: no field, and a sentence that says why.
    await consent(sgw, key, "+80012345678")
    r = await sgw.http.post("/v1/sms/messages", headers=sgw.auth(key),
                            json={"to": "+80012345678", "from": SENDER, "body": "Deals"})
    error = (await r.json())["error"]
    assert r.status == 429 and error["code"] == "quiet_hours", error
    assert "retry_at" not in error and "Retry-After" not in r.headers
    assert "no time zone" in error["message"] and "no time" != error["message"][-7:]
    assert fake.requests == 0


# -- transactional --------------------------------------------------------------------------------


async def test_transactional_skips_consent_quiet_hours_and_caps_never_suppression(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A --transactional key sends transactional texts with no consent, at 23:00 local, more
    # than 3 a day to Florida, with no STOP footer; an opted-out number is still refused.
    tkey = await sgw.key(transactional=True)
    set_clock(sgw, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))  # 23:00 EDT
    for _ in range(5):
        status, body = await send(sgw, tkey, "+13055550162", "Your code is 123456",
                                  category="transactional")
        assert status == 202 and body["category"] == "transactional", body
        assert body["body"] == "Your code is 123456"
    assert [m.category for m in fake.messages] == ["transactional"] * 5
    status, body = await send(sgw, tkey, "+13055550162", "Sale!")  # marketing: still ruled
    assert status == 403 and code_of(body) == "no_consent"
    await webhook(sgw, "STOP", "+13055550162")
    status, body = await send(sgw, tkey, "+13055550162", "Your code is 654321",
                              category="transactional")
    assert status == 403 and code_of(body) == "opted_out"
    assert len(fake.messages) == 5


async def test_transactional_needs_a_transactional_key(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # An ordinary send key asking for category transactional is 403 category_not_allowed.
    key = await sgw.key()
    status, body = await send(sgw, key, "+12125550163", "Your code is 1",
                              category="transactional")
    assert status == 403 and code_of(body) == "category_not_allowed"
    assert "--transactional" in body["error"]["message"]
    assert fake.requests == 0


# -- tenants and senders --------------------------------------------------------------------------


async def test_opt_out_covers_every_sender_of_the_tenant_never_another_tenant(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # STOP to acme's short code suppresses the number for acme's other numbers too; globex
    # still may text it, and a STOP to globex leaves acme untouched.
    acme, globex = await sgw.key(), await sgw.key("globex")
    a, b = "+12125550164", "+12125550165"
    for number in (a, b):
        await consent(sgw, acme, number)
        await consent(sgw, globex, number)
    status, text = await webhook(sgw, "STOP", a, to=SHORT_CODE)
    assert status == 200 and "Acme Co" in text
    for sender in (SENDER, SENDER2, SHORT_CODE):
        status, body = await send(sgw, acme, a, **{"from": sender})
        assert status == 403 and code_of(body) == "opted_out", sender
    r = await sgw.http.post("/v1/sms/messages", json={"to": a, "from": GLOBEX,
                                                       "body": "Globex news"},
                            headers=sgw.auth(globex))
    assert r.status == 202
    assert await suppression(sgw, globex, a) is None
    status, text = await webhook(sgw, "UNSUBSCRIBE", b, to=GLOBEX, token="globex-token")
    assert status == 200 and "Globex" in text and "Acme" not in text
    assert await suppression(sgw, globex, b) is not None
    assert await suppression(sgw, acme, b) is None
    status, _ = await send(sgw, acme, b)
    assert status == 202
    r = await sgw.http.post("/v1/sms/messages", json={"to": b, "from": GLOBEX, "body": "News"},
                            headers=sgw.auth(globex))
    assert r.status == 403 and code_of(await r.json()) == "opted_out"
    status, body = await send(sgw, acme, b, **{"from": GLOBEX})
    assert status == 403 and code_of(body) == "sender_not_allowed"
    assert [m.to for m in fake.messages] == [a, b]


# -- inbound: START, HELP, possible opt-outs, generic API, unknown To -----------------------------


async def test_start_records_consent_and_confirms(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # START from a number with no consent records it: the opt-in confirmation names the brand,
    # HELP/STOP and "Msg & data rates may apply", and marketing is then allowed.
    key = await sgw.key()
    number = "+12125550166"
    status, body = await send(sgw, key, number)
    assert status == 403 and code_of(body) == "no_consent"
    status, text = await webhook(sgw, "START", number)
    assert status == 200 and text.count("<Message>") == 1
    for words in ("Acme Co", "HELP", "STOP", "Msg &amp; data rates may apply"):
        assert words in text, text
    status, body = await send(sgw, key, number)
    assert status == 202 and body["body"].endswith("Reply STOP to opt out.")
    r = await sgw.http.get(f"/v1/audit?identifier={number}", headers=sgw.auth(key))
    types = [i["type"] for i in (await r.json())["items"]]
    assert "opt_in" in types


@pytest.mark.parametrize("keyword", ["UNSTOP", "yes", "Start"])
async def test_opt_in_keyword_after_stop_lifts_the_suppression(
        sgw: Gateway, fake: FakeSmsProvider, keyword: str) -> None:
    # STOP then START/UNSTOP/YES: the suppression is lifted and consent recorded, so
    # marketing flows again.
    key = await sgw.key()
    number = "+12125550167"
    await webhook(sgw, "stop", number)
    status, body = await send(sgw, key, number)
    assert status == 403 and code_of(body) == "opted_out"
    status, text = await webhook(sgw, keyword, number)
    assert status == 200 and "subscribed" in text
    assert await suppression(sgw, key, number) is None
    status, body = await send(sgw, key, number)
    assert status == 202, body


@pytest.mark.parametrize("keyword", ["HELP", "info"])
async def test_help_reply_names_brand_help_text_and_opt_out(
        sgw: Gateway, fake: FakeSmsProvider, keyword: str) -> None:
    # HELP/INFO answers with the brand, the tenant's help text and how to opt out, and
    # changes nothing (no suppression, no consent).
    key = await sgw.key()
    number = "+12125550168"
    status, text = await webhook(sgw, keyword, number)
    assert status == 200 and text.count("<Message>") == 1
    assert "Acme Co" in text and "Help at acme.example/help" in text and "STOP" in text
    assert await suppression(sgw, key, number) is None
    status, body = await send(sgw, key, number)
    assert status == 403 and code_of(body) == "no_consent"


async def test_possible_opt_out_is_audited_not_suppressed(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # "can I cancel my order?" is not an opt-out: no reply, no suppression, but the audit
    # shows it as possible_opt_out and it is queued for review.
    key = await sgw.key()
    number = "+12125550169"
    await consent(sgw, key, number)
    status, text = await webhook(sgw, "can I cancel my order?", number)
    assert status == 200 and "<Message>" not in text and "<Response>" in text
    assert await suppression(sgw, key, number) is None
    r = await sgw.http.get(f"/v1/audit?identifier={number}", headers=sgw.auth(key))
    items = (await r.json())["items"]
    possible = [i for i in items if i["type"] == "possible_opt_out"]
    assert len(possible) == 1 and possible[0]["identifier"] == number
    assert possible[0]["detail"]["body"] == "can I cancel my order?"
    review = await sgw.parts.store.review_items("acme")
    assert review and review[0]["from"] == number
    status, _ = await send(sgw, key, number)
    assert status == 202


async def test_generic_inbound_api(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # POST /v1/sms/inbound (scope inbound) answers {"intent", "reply"} for each kind and
    # acts like the Twilio webhook; other scopes are 403, no key 401.
    key = await sgw.key(scopes="inbound")
    reader = await sgw.key(scopes="read")
    number = "+12125550170"

    async def inbound(body: str, auth: str = key, to: str = SENDER) -> tuple[int, Any]:
        r = await sgw.http.post("/v1/sms/inbound", json={"from": number, "to": to,
                                                           "body": body},
                                headers=sgw.auth(auth))
        return r.status, await r.json()

    status, out = await inbound("hello there")
    assert status == 200 and out == {"intent": "none", "reply": None}
    status, out = await inbound("HELP")
    assert status == 200 and out["intent"] == "help" and "Acme Co" in out["reply"]
    status, out = await inbound("Please stop texting me")
    assert status == 200 and out["intent"] == "opt_out" and "START" in out["reply"]
    assert await suppression(sgw, reader, number) is not None
    status, out = await inbound("START")
    assert status == 200 and out["intent"] == "opt_in" and "Msg & data rates" in out["reply"]
    assert await suppression(sgw, reader, number) is None
    status, out = await inbound("STOP", auth=reader)
    assert status == 403 and code_of(out) == "forbidden"
    r = await sgw.http.post("/v1/sms/inbound", json={"from": number, "to": SENDER,
                                                      "body": "STOP"})
    assert r.status == 401
    assert await suppression(sgw, reader, number) is None


@pytest.mark.parametrize(("payload", "field"), [
    ({"to": SENDER, "body": "STOP"}, "from"),
    ({"from": "+12125550171", "body": "STOP"}, "to"),
    ({"from": "+12125550171", "to": SENDER}, "body"),
    ({"from": 12125550171, "to": SENDER, "body": "STOP"}, "from"),
    ({"from": "+12125550171", "to": SENDER, "body": 7}, "body"),
    ({"from": "+12125550171", "to": SENDER, "body": "s" * 1601}, "body"),
    ({"from": "+12125550171", "to": SENDER, "body": "STOP", "extra": 1}, "extra"),
])
async def test_generic_inbound_bad_input_is_422(
        sgw: Gateway, payload: dict[str, Any], field: str) -> None:
    # Missing fields, wrong types, oversize bodies and unknown fields on the generic inbound
    # API are 422 naming the field; nothing is recorded.
    key = await sgw.key(scopes="inbound")
    before = await data_keys(sgw)
    r = await sgw.http.post("/v1/sms/inbound", json=payload, headers=sgw.auth(key))
    body = await r.json()
    assert r.status == 422 and code_of(body) == "invalid_request" and body["error"][
        "field"] == field, body
    assert await data_keys(sgw) == before


async def test_generic_inbound_non_utf8_and_invalid_from(sgw: Gateway) -> None:
    # Non-UTF-8 bytes are 400; an unparseable sender number is 422; nothing is recorded.
    key = await sgw.key(scopes="inbound")
    before = await data_keys(sgw)
    r = await sgw.http.post("/v1/sms/inbound", data=b'{"from": "\xff", "to": "x", "body": "S"}',
                            headers={**sgw.auth(key), "Content-Type": "application/json"})
    assert r.status == 400 and code_of(await r.json()) == "malformed_json"
    r = await sgw.http.post("/v1/sms/inbound", json={"from": "nobody", "to": SENDER,
                                                      "body": "STOP"}, headers=sgw.auth(key))
    assert r.status == 422 and code_of(await r.json()) == "invalid_recipient"
    assert await data_keys(sgw) == before


async def test_unknown_to_is_404_and_nothing_recorded(sgw: Gateway) -> None:
    # A text to a number no tenant sends from (or another tenant's, on the generic API) is
    # 404 on both inbound doors, and nothing is recorded.
    key = await sgw.key(scopes="inbound,read")
    before = await data_keys(sgw)
    status, _ = await webhook(sgw, "STOP", "+12125550172", to="+14155550111")
    assert status == 404
    status, _ = await webhook(sgw, "STOP", "+12125550172", to="")
    assert status == 404
    for to in ("+14155550111", GLOBEX, "99999"):
        r = await sgw.http.post("/v1/sms/inbound", json={"from": "+12125550172", "to": to,
                                                          "body": "STOP"},
                                headers=sgw.auth(key))
        assert r.status == 404 and code_of(await r.json()) == "not_found", to
    assert await data_keys(sgw) == before
    assert await suppression(sgw, key, "+12125550172") is None


# -- Twilio webhook signatures --------------------------------------------------------------------


@pytest.mark.parametrize(("public_url", "signed"), [
    ("https://gw.example", "https://gw.example:443/v1/sms/inbound/twilio"),
    ("https://gw.example", "https://gw.example/v1/sms/inbound/twilio"),
    ("https://gw.example:443", "https://gw.example/v1/sms/inbound/twilio"),
    ("http://gw.example:80/", "http://gw.example/v1/sms/inbound/twilio"),
    ("http://gw.example", "http://gw.example:80/v1/sms/inbound/twilio"),
])
async def test_signature_url_with_and_without_default_port(
        redis_url: str, tmp_path: Path, public_url: str, signed: str) -> None:
    # Proxies add or strip the default port: a signature over either form is accepted.
    gw = await _gateway(redis_url, tmp_path / "d", public_url=public_url)
    try:
        key = await gw.key()
        status, text = await webhook(gw, "STOP", "+12125550173", url=signed)
        assert status == 200 and "<Message>" in text
        assert await suppression(gw, key, "+12125550173") is not None
    finally:
        await stop_gateway(gw.parts, gw.http)


@pytest.mark.parametrize("query", ["name=a%20b&x=%2Fy", "to=ops%40acme.example&t=10%3A30",
                                   "q=%27it%27s%21%7E%2C"])
async def test_signature_over_a_percent_encoded_query(sgw: Gateway, query: str) -> None:
    # The tenant's webhook URL carries encoded characters: Twilio signs it byte for byte as
    # configured, so the gateway must check the URL as sent, not a decoded form of it.
    key = await sgw.key()
    number = "+12125550179"
    path = f"{INBOUND}?{query}"
    params = {"MessageSid": "SM" + uuid.uuid4().hex, "From": number, "To": SENDER,
              "Body": "STOP"}
    sig = RequestValidator("acme-token").compute_signature(
        sgw.parts.settings.public_url + path, params)
    r = await sgw.http.post(URL(path, encoded=True), data=params,
                            headers={"X-Twilio-Signature": sig})
    assert r.status == 200 and "<Message>" in await r.text()
    assert await suppression(sgw, key, number) is not None


async def test_signature_mismatches_are_403_and_record_nothing(sgw: Gateway) -> None:
    # Wrong scheme, wrong host, wrong port, wrong token, another tenant's token, no header,
    # and a tenant without a Twilio token: 403 and nothing recorded.
    key = await sgw.key()
    base = sgw.parts.settings.public_url
    before = await data_keys(sgw)
    host_port = base.split("://", 1)[1]
    for url in (base.replace("http://", "https://") + INBOUND,
                f"http://gw.example{INBOUND}",
                f"http://{host_port}1{INBOUND}"):
        status, _ = await webhook(sgw, "STOP", "+12125550174", url=url)
        assert status == 403, url
    status, _ = await webhook(sgw, "STOP", "+12125550174", token="wrong")
    assert status == 403
    status, _ = await webhook(sgw, "STOP", "+12125550174", token="globex-token")
    assert status == 403
    r = await sgw.http.post(INBOUND, data={"From": "+12125550174", "To": SENDER, "Body": "STOP"})
    assert r.status == 403
    assert await data_keys(sgw) == before
    assert await suppression(sgw, key, "+12125550174") is None


async def test_signed_webhook_with_query_string_and_unknown_fields(sgw: Gateway) -> None:
    # Twilio signs the full URL, query string included, and all fields it sends (including
    # ones the gateway does not know): such a webhook is accepted and acted on.
    key = await sgw.key()
    extra = {"FromCity": "NEW YORK", "FromState": "NY", "FromZip": "10001",
             "FromCountry": "US", "ToCity": "SAN FRANCISCO", "SmsStatus": "received",
             "NumSegments": "1", "ApiVersion": "2010-04-01", "SmsMessageSid": "SMabc",
             "MessagingServiceSid": "MG" + "1" * 32, "OptOutType": "STOP",
             "Body2": "ignored", "X-Brand-New": "é ü 漢字"}
    path = INBOUND + "?src=carrier&v=2"
    status, text = await webhook(sgw, "Stop", "+12125550175", extra=extra, path=path)
    assert status == 200 and "<Message>" in text
    assert await suppression(sgw, key, "+12125550175") is not None
    # The same webhook signed without the query string does not match.
    status, _ = await webhook(sgw, "Stop", "+12125550176", extra=extra, path=path,
                              url=sgw.parts.settings.public_url + INBOUND)
    assert status == 403


async def test_twilio_webhook_non_utf8_and_oversize_are_client_errors(sgw: Gateway) -> None:
    # A webhook body that is not UTF-8 is a 4xx (never a 500); an oversize Body is still
    # handled (a signed STOP with a 2,000-char Body is not an opt-out keyword) without error.
    key = await sgw.key()
    before = await data_keys(sgw)
    r = await sgw.http.post(INBOUND, data=b"From=%2B12125550177&To=%2B14155550100&Body=caf\xe9",
                            headers={"Content-Type": "application/x-www-form-urlencoded",
                                     "X-Twilio-Signature": "x"})
    assert 400 <= r.status < 500, await r.text()
    assert await data_keys(sgw) == before
    status, text = await webhook(sgw, "STOP " + "x" * 2000, "+12125550177")
    assert status == 200 and "<Response>" in text
    assert await suppression(sgw, key, "+12125550177") is None


def test_help_text_naming_the_brand_is_not_prefixed_twice() -> None:
    # CONTRACT.md's example help_text starts with the brand; the default HELP reply
    # ("{brand}: {help_text} ...") must not read "Acme Co: Acme Co: ...".
    named = Tenant(id="acme", brand="Acme Co",
                   help_text="Acme Co: help at acme.example/help or 1-800-555-0100.")
    assert named.reply("help") == ("Acme Co: help at acme.example/help or 1-800-555-0100. "
                                   "Reply STOP to opt out. Msg & data rates may apply.")
    plain = Tenant(id="acme", brand="Acme Co", help_text="Help at acme.example/help.")
    assert plain.reply("help").startswith("Acme Co: Help at acme.example/help. Reply STOP")
    # A template that does not put the brand right before the help text keeps it whole.
    custom = Tenant(id="acme", brand="Acme Co", help_text="Acme Co: call 1-800-555-0100.",
                    sms_replies=SmsReplies(help="{help_text} STOP to end."))
    assert custom.reply("help") == "Acme Co: call 1-800-555-0100. STOP to end."


def test_local_claims_expire_and_stay_bounded() -> None:
    # Outage-time claims last their TTL and no longer; past the bound the oldest go first.
    now = [0.0]
    claims = LocalClaims(max_items=2, clock=lambda: now[0])
    a, b, c = Claim("a", 10), Claim("b", 10), Claim("c", 10)
    assert claims.take(a) and not claims.take(a) and claims.held(a)
    now[0] = 10.0
    assert not claims.held(a) and claims.take(a)
    assert claims.take(b) and claims.take(c)
    assert not claims.held(a) and claims.held(b) and claims.held(c)


def test_a_sender_number_shared_by_two_tenants_stops_start_up(tmp_path: Path) -> None:
    # Inbound replies are routed by the number they were sent to: shared, one tenant's STOP
    # or YES would be applied to the other. The configuration is refused, naming both.
    tenants = {"a": {"brand": "A", "sms_senders": ["+14155550100"]},
               "b": {"brand": "B", "sms_senders": ["(415) 555-0100"]}}
    with pytest.raises(SettingsError, match="'a' and 'b'"):
        make_settings("redis://127.0.0.1:1/0", tmp_path, tenants=tenants)
