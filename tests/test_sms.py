"""SMS end to end: the real twilio SDK and signed webhooks against a real gateway and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import NOON_NY, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from suppression.models import Channel

SENDER = "+14155550100"  # acme's number (conftest TENANTS)




async def _consent(gw: Gateway, key: str, number: str) -> None:
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": number,
                                                  "source": "web_form",
                                                  "evidence": "checkbox on /signup"},
                           headers=gw.auth(key))
    assert r.status == 201


def _twilio_client(gw: Gateway, key: str) -> Client:
    client = Client("acme", key, http_client=TwilioHttpClient(timeout=10))
    client.api.base_url = str(gw.http.make_url("")).rstrip("/")
    return client


async def test_twilio_sdk_sends_and_gets_21610_for_opted_out(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # The official SDK pointed at the gateway sends a consented text, then gets 21610 once
    # the person opted out, and the provider never sees the second message.
    key = await sgw.key()
    await _consent(sgw, key, "+12125550123")
    client = _twilio_client(sgw, key)
    msg = await asyncio.to_thread(client.messages.create, to="+12125550123", from_=SENDER,
                                  body="Sale today. Reply STOP to opt out.")
    assert msg.sid.startswith("SM") and msg.status == "queued" and msg.to == "+12125550123"
    assert len(fake.messages) == 1
    await sgw.http.post("/v1/suppressions", json={"channel": "sms",
                                                   "identifier": "+12125550123",
                                                   "reason": "stop_keyword"},
                        headers=sgw.auth(key))
    with pytest.raises(TwilioRestException) as err:
        await asyncio.to_thread(client.messages.create, to="+12125550123", from_=SENDER,
                                body="Another sale")
    assert err.value.status == 400 and err.value.code == 21610
    assert "unsubscribed recipient" in err.value.msg
    assert len(fake.messages) == 1


async def test_json_send_rules_in_order(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Each rule refuses with its code; a consented text gets the STOP footer the first time.
    key = await sgw.key()

    async def send(**body: Any) -> tuple[int, dict[str, Any]]:
        payload = {"to": "+12125550124", "from": SENDER, "body": "Hello from Acme", **body}
        r = await sgw.http.post("/v1/sms/messages", json=payload, headers=sgw.auth(key))
        return r.status, await r.json()

    status, body = await send(**{"from": "+14155550199"})
    assert status == 403 and body["error"]["code"] == "sender_not_allowed"
    status, body = await send(category="transactional")
    assert status == 403 and body["error"]["code"] == "category_not_allowed"
    status, body = await send(to="+1 415 555")
    assert status == 422 and body["error"]["code"] == "invalid_recipient"
    status, body = await send()
    assert status == 403 and body["error"]["code"] == "no_consent"
    await _consent(sgw, key, "+12125550124")
    status, body = await send(body="Deals at bit.ly/xyz")
    assert status == 403 and body["error"]["code"] == "content_blocked"
    assert "bit.ly" in body["error"]["message"]
    status, body = await send()
    assert status == 202 and body["body"] == "Hello from Acme Reply STOP to opt out."
    status, body = await send()
    assert status == 202 and body["body"] == "Hello from Acme"  # not again within 30 days
    assert [m.body for m in fake.messages] == ["Hello from Acme Reply STOP to opt out.",
                                               "Hello from Acme"]


async def test_quiet_hours_and_florida_cap(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # 21:30 in New York is outside the federal window; a Florida number gets 3 per 24 h.
    key = await sgw.key()
    for n in ("+12125550125", "+13055550125"):
        await _consent(sgw, key, n)
    sgw.parts.sms.clock = lambda: datetime(2026, 6, 11, 1, 30, tzinfo=UTC)  # 21:30 EDT
    r = await sgw.http.post("/v1/sms/messages", json={"to": "+12125550125", "from": SENDER,
                                                       "body": "Late deal"},
                            headers=sgw.auth(key))
    body = await r.json()
    assert r.status == 429 and body["error"]["code"] == "quiet_hours"
    assert "2026-06-11T12:00:00Z" in body["error"]["message"]  # 08:00 EDT next morning
    sgw.parts.sms.clock = lambda: NOON_NY
    for _ in range(3):
        r = await sgw.http.post("/v1/sms/messages", json={
            "to": "+13055550125", "from": SENDER, "body": "FL deal"}, headers=sgw.auth(key))
        assert r.status == 202
    r = await sgw.http.post("/v1/sms/messages", json={"to": "+13055550125", "from": SENDER,
                                                       "body": "FL deal"},
                            headers=sgw.auth(key))
    assert r.status == 429 and (await r.json())["error"]["code"] == "frequency_capped"


async def test_signed_stop_webhook_confirms_once_and_suppresses(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A Twilio-signed "Stop please" suppresses the number for every acme sender, confirms
    # once (a retried webhook gets no second confirmation); a forged one records nothing.
    key = await sgw.key()
    url = sgw.parts.settings.public_url + "/v1/sms/inbound/twilio"
    params = {"MessageSid": "SMinbound1", "From": "+12125550126", "To": SENDER,
              "Body": "Stop please", "AccountSid": "ACx", "NumMedia": "0"}
    sig = RequestValidator("acme-token").compute_signature(url, params)
    r = await sgw.http.post("/v1/sms/inbound/twilio", data=params,
                            headers={"X-Twilio-Signature": sig})
    text = await r.text()
    assert r.status == 200 and text.count("<Message>") == 1
    assert "Acme Co" in text and "START" in text
    r = await sgw.http.post("/v1/sms/inbound/twilio", data=params,
                            headers={"X-Twilio-Signature": sig})
    assert "<Message>" not in await r.text()
    r = await sgw.http.get("/v1/suppressions/sms/+12125550126", headers=sgw.auth(key))
    assert r.status == 200 and (await r.json())["reason"] == "stop_keyword"
    forged = dict(params, From="+12125550127", MessageSid="SMinbound2")
    r = await sgw.http.post("/v1/sms/inbound/twilio", data=forged,
                            headers={"X-Twilio-Signature": sig})
    assert r.status == 403
    r = await sgw.http.get("/v1/suppressions/sms/+12125550127", headers=sgw.auth(key))
    assert r.status == 404


async def test_upstream_down_is_502_and_redis_down_is_503(
        own_redis: RedisServerProcess, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # The provider fails: 502 and nothing counted as sent. Redis dies: 503, nothing forwarded.
    parts, client = await start_gateway(make_settings(own_redis.url, tmp_path / "d",
                                                      sms_upstream=fake.url))
    parts.sms.clock = lambda: NOON_NY
    gw = Gateway(parts, client)
    try:
        key = await gw.key()
        await _consent(gw, key, "+12125550128")
        fake.fail_next(status=500)
        r = await gw.http.post("/v1/sms/messages", json={"to": "+12125550128", "from": SENDER,
                                                          "body": "Hi"}, headers=gw.auth(key))
        assert r.status == 502 and (await r.json())["error"]["code"] == "upstream_failed"
        records = await parts.store.message_records("acme", Channel.SMS,
                                                    "+12125550128")
        assert [x["outcome"] for x in records] == ["failed"]
        own_redis.kill()
        before = fake.requests
        r = await gw.http.post("/v1/sms/messages", json={"to": "+12125550128", "from": SENDER,
                                                          "body": "Hi"}, headers=gw.auth(key))
        assert r.status == 503 and fake.requests == before
    finally:
        await stop_gateway(parts, client)


async def test_message_records_and_review_queue(sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Ops see every attempt to a number (refused and sent), and unclear replies to review.
    key = await sgw.key()
    await sgw.http.post("/v1/sms/messages", json={"to": "(212) 555-0129", "from": SENDER,
                                                   "body": "Hi"}, headers=sgw.auth(key))
    await _consent(sgw, key, "+12125550129")
    await sgw.http.post("/v1/sms/messages", json={"to": "+12125550129", "from": SENDER,
                                                   "body": "Hi"}, headers=sgw.auth(key))
    r = await sgw.http.get("/v1/messages?to=2125550129", headers=sgw.auth(key))
    items = (await r.json())["items"]
    assert [(i["outcome"], i["code"]) for i in items] == [("refused", "no_consent"),
                                                          ("sent", None)]
    assert items[1]["upstream_id"] == fake.messages[0].upstream_id
    r = await sgw.http.post("/v1/sms/inbound", json={"from": "+12125550129", "to": SENDER,
                                                      "body": "can I cancel my order?"},
                            headers=sgw.auth(key))
    assert (await r.json()) == {"intent": "none", "reply": None}
    r = await sgw.http.get("/v1/review", headers=sgw.auth(key))
    review = (await r.json())["items"]
    assert review[0]["from"] == "+12125550129" and "cancel" in review[0]["body"]
    r = await sgw.http.get("/v1/audit?identifier=%2B12125550129", headers=sgw.auth(key))
    assert "possible_opt_out" in [i["type"] for i in (await r.json())["items"]]
    r = await sgw.http.get("/v1/suppressions/sms/+12125550129", headers=sgw.auth(key))
    assert r.status == 404
