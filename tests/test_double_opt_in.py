"""SMS double opt-in end to end: the real gateway, real Redis and the recording SMS provider.

acme has ``double_opt_in``: a consent recorded through ``POST /v1/consents`` is pending
until the person replies YES to the confirmation text; globex grants at once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import NOON_NY, TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from pydantic import ValidationError
from redis_proc import RedisServerProcess
from twilio.request_validator import RequestValidator

from suppression.models import Channel
from suppression.store import CONSENT_GRANTED, CONSENT_PENDING
from suppression.tenants import Tenant

ACME = "+14155550100"
GLOBEX = "+14155550199"
CONFIRM = ("Acme Co: Reply YES to confirm you want to receive messages. Msg & data rates may "
           "apply. Reply STOP to opt out.")
DOI_TENANTS: dict[str, Any] = {**TENANTS, "acme": {**TENANTS["acme"], "double_opt_in": True}}



async def _start(redis_url: str, data_dir: Path, fake: FakeSmsProvider,
                 tenants: dict[str, Any] = DOI_TENANTS) -> Gateway:
    parts, client = await start_gateway(make_settings(redis_url, data_dir, tenants=tenants,
                                                      sms_upstream=fake.url))
    parts.sms.clock = lambda: NOON_NY
    return Gateway(parts, client)


@pytest.fixture
async def dgw(redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> AsyncIterator[Gateway]:
    gw = await _start(redis_url, tmp_path / "data", fake)
    yield gw
    await stop_gateway(gw.parts, gw.http)


async def consent(gw: Gateway, key: str, number: str) -> tuple[int, dict[str, Any]]:
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": number,
                                                  "source": "web_form",
                                                  "evidence": "checkbox on /signup"},
                           headers=gw.auth(key))
    return r.status, await r.json()


async def send(gw: Gateway, key: str, to: str, sender: str = ACME) -> tuple[int, dict[str, Any]]:
    r = await gw.http.post("/v1/sms/messages", json={"to": to, "from": sender,
                                                      "body": "Deals this week"},
                           headers=gw.auth(key))
    return r.status, await r.json()


async def webhook(gw: Gateway, body: str, from_: str) -> str:
    """A Twilio-signed inbound text to acme's number; returns the TwiML reply."""
    path = "/v1/sms/inbound/twilio"
    params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
              "From": from_, "To": ACME, "Body": body, "NumMedia": "0"}
    sig = RequestValidator("acme-token").compute_signature(
        gw.parts.settings.public_url + path, params)
    r = await gw.http.post(path, data=params, headers={"X-Twilio-Signature": sig})
    assert r.status == 200, await r.text()
    return await r.text()


async def consent_status(gw: Gateway, tenant: str, number: str) -> int | None:
    state = await gw.parts.store.consent_state(tenant, Channel.SMS, number)
    return None if state is None else state[0]


async def audit(gw: Gateway, key: str, number: str) -> list[dict[str, Any]]:
    r = await gw.http.get(f"/v1/audit?identifier={number}", headers=gw.auth(key))
    assert r.status == 200
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def test_consent_is_pending_and_the_confirmation_text_goes_out(
        dgw: Gateway, fake: FakeSmsProvider) -> None:
    # A web-form consent for acme is stored pending, one confirmation text goes from acme's
    # first sender, and marketing is refused no_consent saying confirmation is pending.
    key = await dgw.key("acme")
    number = "+12125550180"
    status, body = await consent(dgw, key, "(212) 555-0180")
    assert status == 201 and body["status"] == "pending" and body["identifier"] == number
    assert [(m.to, m.from_, m.body, m.category) for m in fake.messages] == \
        [(number, ACME, CONFIRM, "transactional")]
    assert await consent_status(dgw, "acme", number) == CONSENT_PENDING
    status, body = await send(dgw, key, number)
    assert status == 403 and body["error"]["code"] == "no_consent"
    assert "pending" in body["error"]["message"] and "YES" in body["error"]["message"]
    assert len(fake.messages) == 1  # the refused marketing text never reached the provider
    pending = [i for i in await audit(dgw, key, number) if i["type"] == "consent"]
    assert len(pending) == 1 and pending[0]["detail"]["status"] == "pending"
    assert pending[0]["detail"]["evidence"] == "checkbox on /signup"
    assert pending[0]["detail"]["confirmation_id"] == fake.messages[0].id
    r = await dgw.http.get(f"/v1/messages?to={number}", headers=dgw.auth(key))
    records = (await r.json())["items"]
    assert [(m["id"], m["outcome"], m["actor"]) for m in records][0] == \
        (fake.messages[0].id, "sent", "double_opt_in")


async def test_yes_confirms_and_marketing_then_goes_out(
        dgw: Gateway, fake: FakeSmsProvider) -> None:
    # The person replies YES (signed Twilio webhook): consent is granted with the inbound
    # message as evidence, the opt-in confirmation is the TwiML reply, marketing is sent.
    key = await dgw.key("acme")
    number = "+12125550181"
    await consent(dgw, key, number)
    twiml = await webhook(dgw, "Yes", number)
    assert "Acme Co: You are subscribed" in twiml and "STOP" in twiml
    assert await consent_status(dgw, "acme", number) == CONSENT_GRANTED
    opt_in = [i for i in await audit(dgw, key, number) if i["type"] == "opt_in"]
    assert len(opt_in) == 1
    assert opt_in[0]["detail"]["evidence"] == "Yes"
    assert opt_in[0]["detail"]["double_opt_in"] == "confirmed"
    assert opt_in[0]["detail"]["message_id"].startswith("SM")
    status, body = await send(dgw, key, number)
    assert status == 202, body
    assert [m.category for m in fake.messages] == ["transactional", "marketing"]
    # Posting the form again later keeps the confirmed consent and sends no second text.
    status, body = await consent(dgw, key, number)
    assert status == 201 and body["status"] == "granted"
    assert await consent_status(dgw, "acme", number) == CONSENT_GRANTED
    assert len(fake.messages) == 2


async def test_stop_while_pending_revokes(dgw: Gateway, fake: FakeSmsProvider) -> None:
    # STOP instead of YES: the number is suppressed, marketing is refused opted_out, and a new
    # consent request is refused without texting the person or writing anything.
    key = await dgw.key("acme")
    number = "+12125550182"
    await consent(dgw, key, number)
    twiml = await webhook(dgw, "STOP", number)
    assert "unsubscribed" in twiml
    status, body = await send(dgw, key, number)
    assert status == 403 and body["error"]["code"] == "opted_out"
    types = [i["type"] for i in await audit(dgw, key, number)]
    assert types == ["consent", "opt_out"]  # the revocation follows the pending consent
    before = await dgw.parts.store.consent_state("acme", Channel.SMS, number)
    status, body = await consent(dgw, key, number)
    assert status == 403 and body["error"]["code"] == "opted_out"
    assert len(fake.messages) == 1  # only the first confirmation text ever went out
    assert await dgw.parts.store.consent_state("acme", Channel.SMS, number) == before
    assert [i["type"] for i in await audit(dgw, key, number)] == types


async def test_posting_again_within_a_day_sends_no_second_text(
        dgw: Gateway, fake: FakeSmsProvider) -> None:
    # A form posted twice cannot be used to text someone twice: the consent stays pending
    # (with the second request audited) and one confirmation text went out.
    key = await dgw.key("acme")
    number = "+12125550183"
    for _ in range(3):
        status, body = await consent(dgw, key, number)
        assert status == 201 and body["status"] == "pending"
    assert len(fake.messages) == 1
    consents = [i for i in await audit(dgw, key, number) if i["type"] == "consent"]
    assert len(consents) == 3


async def test_tenant_without_double_opt_in_grants_at_once(
        dgw: Gateway, fake: FakeSmsProvider) -> None:
    # globex has no double opt-in: the consent is granted, no text goes out, marketing passes.
    key = await dgw.key("globex")
    number = "+12125550184"
    status, body = await consent(dgw, key, number)
    assert status == 201 and body["status"] == "granted"
    assert await consent_status(dgw, "globex", number) == CONSENT_GRANTED
    assert fake.messages == []
    status, body = await send(dgw, key, number, sender=GLOBEX)
    assert status == 202, body
    # acme's pending state is its own: globex's grant does not confirm anything at acme.
    assert await consent_status(dgw, "acme", number) is None


async def test_email_consent_is_not_double_opt_in(dgw: Gateway, fake: FakeSmsProvider) -> None:
    # Double opt-in is an SMS option: an email consent for acme is granted without a text.
    key = await dgw.key("acme")
    r = await dgw.http.post("/v1/consents", json={"channel": "email",
                                                   "identifier": "Ann@Example.com",
                                                   "source": "web_form"},
                            headers=dgw.auth(key))
    assert r.status == 201 and (await r.json())["status"] == "granted"
    assert fake.messages == []


async def test_upstream_failure_records_nothing_and_a_retry_works(
        dgw: Gateway, fake: FakeSmsProvider) -> None:
    # The provider refuses the confirmation text: 502 upstream_failed saying nothing was
    # recorded, no consent stored; repeating the request sends the text and records it.
    key = await dgw.key("acme")
    number = "+12125550185"
    fake.fail_next(status=500)
    status, body = await consent(dgw, key, number)
    assert status == 502 and body["error"]["code"] == "upstream_failed"
    assert "no consent was recorded" in body["error"]["message"]
    assert await consent_status(dgw, "acme", number) is None
    assert [i["type"] for i in await audit(dgw, key, number)] == []
    status, body = await consent(dgw, key, number)
    assert status == 201 and body["status"] == "pending"
    assert [m.body for m in fake.messages] == [CONFIRM]


async def test_store_down_is_503_and_nobody_is_texted(
        own_redis: RedisServerProcess, tmp_path: Path, fake: FakeSmsProvider) -> None:
    # Redis unreachable: the consent request fails closed with 503 and no text goes out.
    gw = await _start(own_redis.url, tmp_path / "data", fake)
    try:
        key = await gw.key("acme")
        own_redis.kill()
        status, body = await consent(gw, key, "+12125550186")
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert fake.requests == 0
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_custom_template_is_used(redis_url: str, tmp_path: Path,
                                       fake: FakeSmsProvider) -> None:
    # The tenant's own confirmation wording goes out, with its brand filled in.
    template = "{brand}: text YES to join our list. Msg & data rates may apply. STOP to end."
    tenants = {**DOI_TENANTS, "acme": {**DOI_TENANTS["acme"],
                                       "sms_replies": {"confirm_opt_in": template}}}
    gw = await _start(redis_url, tmp_path / "data", fake, tenants)
    try:
        status, body = await consent(gw, await gw.key("acme"), "+12125550187")
        assert status == 201 and body["status"] == "pending"
        assert [m.body for m in fake.messages] == [template.format(brand="Acme Co")]
    finally:
        await stop_gateway(gw.parts, gw.http)


@pytest.mark.parametrize(("settings", "needle"), [
    ({"double_opt_in": True}, "sms_senders"),
    ({"sms_senders": [ACME], "sms_replies": {"confirm_opt_in": "{brand} {nope}"}},
     "confirm_opt_in"),
])
def test_bad_double_opt_in_settings_are_refused(settings: dict[str, Any], needle: str) -> None:
    # A tenant with double opt-in but nothing to send from, or a template with an unknown
    # placeholder, is refused at start-up with the setting named.
    with pytest.raises(ValidationError, match=needle):
        Tenant.model_validate(settings)
