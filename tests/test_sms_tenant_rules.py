"""Tenant SMS rules end to end: content rules, their retention, the STOP footer setting,
reply templates, the classifier rule in the audit, decide()'s order, Twilio API upstream
failures.

Real HTTP (the gateway's own aiohttp server), a real redis-server, the official ``twilio``
SDK, Twilio-signed webhooks and ``FakeSmsProvider`` as the upstream. Each test starts a
gateway with the tenant settings it needs; its clock is injected (``NOON_NY`` unless the
test moves it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from conftest import NOON_NY, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from pydantic import ValidationError
from redis_proc import free_port
from test_sms_more import (
    GLOBEX,
    TENANTS,
    code_of,
    consent,
    sdk_error,
    send,
    set_clock,
    twilio_client,
    webhook,
)

from gateway.sms_upstream import sms_upstream_from_url
from suppression import keys
from suppression.models import Channel
from suppression.tenants import Tenant

DAY_S = 86_400
FOOTER = " Reply STOP to opt out."
NIGHT_NY = datetime(2026, 6, 11, 2, 0, tzinfo=UTC)  # 22:00 EDT: marketing quiet hours
# The content rules of the tenant "acme" in these tests.
RULES: dict[str, Any] = {"blocked_terms": ["SALE", "free money"],
                         "blocked_patterns": [r"win\s+\$\d+"]}

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start(redis_url: str, tmp_path: Path, fake: FakeSmsProvider
                ) -> AsyncIterator[StartGateway]:
    """``await start(**acme_settings)``: a gateway sending to ``fake`` whose tenant "acme"
    has these settings on top of test_sms_more's, its clock at ``NOON_NY``."""
    started: list[Gateway] = []

    async def run(**acme: Any) -> Gateway:
        tenants = {**TENANTS, "acme": {**TENANTS["acme"], **acme}}
        settings = make_settings(redis_url, tmp_path / f"data{len(started)}", tenants=tenants,
                                 sms_upstream=fake.url)
        parts, client = await start_gateway(settings)
        parts.sms.clock = lambda: NOON_NY
        started.append(Gateway(parts, client))
        return started[-1]

    yield run
    for gw in started:
        await stop_gateway(gw.parts, gw.http)


async def records(gw: Gateway, key: str, number: str) -> list[dict[str, Any]]:
    """The message records of ``number`` (GET /v1/messages waits for queued ones)."""
    r = await gw.http.get("/v1/messages", params={"to": number}, headers=gw.auth(key))
    assert r.status == 200, await r.text()
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def audit(gw: Gateway, key: str, number: str) -> list[dict[str, Any]]:
    r = await gw.http.get("/v1/audit", params={"identifier": number}, headers=gw.auth(key))
    assert r.status == 200, await r.text()
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def suppress(gw: Gateway, key: str, number: str) -> None:
    r = await gw.http.post("/v1/suppressions", json={"channel": "sms", "identifier": number,
                                                      "reason": "manual"},
                           headers=gw.auth(key))
    assert r.status == 201, await r.text()


async def blocked_keys(gw: Gateway) -> list[bytes]:
    """Every blocked-content key in Redis (any tenant, any message)."""
    found: list[Any] = await gw.parts.client.keys(keys.blocked_content("*", "*"))
    return [bytes(k) for k in found]


def message_of(twiml: str) -> str | None:
    """The text of the TwiML reply's one <Message>, or None."""
    messages = ElementTree.fromstring(twiml).findall("Message")
    assert len(messages) <= 1, twiml
    return messages[0].text if messages else None


# -- 1. blocked terms and patterns ----------------------------------------------------------------


@pytest.mark.parametrize("body", ["Big SALE this weekend", "Get FREE MONEY now",
                                  "Reply to WIN $500 today"])
async def test_blocked_term_or_pattern_refuses_marketing_and_transactional(
        start: StartGateway, fake: FakeSmsProvider, body: str) -> None:
    # A text with a tenant's blocked term (or matching its blocked regex) is refused
    # 403 content_blocked on the body, marketing and transactional alike; nothing is sent.
    gw = await start(**RULES)
    key, tkey = await gw.key(), await gw.key(transactional=True)
    number = "+12125550300"
    await consent(gw, key, number)
    status, out = await send(gw, key, number, body)
    assert status == 403 and code_of(out) == "content_blocked", out
    assert out["error"]["field"] == "body"
    status, out = await send(gw, tkey, number, body, category="transactional")
    assert status == 403 and code_of(out) == "content_blocked", out
    assert fake.requests == 0
    assert [(r["outcome"], r["code"]) for r in await records(gw, key, number)] == [
        ("refused", "content_blocked")] * 2


async def test_blocked_term_is_whole_word_and_case_insensitive(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # "SALE" blocks "sale" and "Sale!" in any case, but not words containing it
    # ("wholesale", "sales"); an ordinary text passes and reaches the provider.
    gw = await start(**RULES)
    key = await gw.key()
    number = "+12125550301"
    await consent(gw, key, number)
    for body in ("our sale starts now", "Sale! Today only", "end-of-season sAlE"):
        status, out = await send(gw, key, number, body)
        assert status == 403 and code_of(out) == "content_blocked", body
    for body in ("Wholesale prices for members", "Our sales team says hi",
                 "Deals this week at Acme"):
        status, out = await send(gw, key, number, body)
        assert status == 202, (body, out)
    assert [m.body.removesuffix(FOOTER) for m in fake.messages] == [
        "Wholesale prices for members", "Our sales team says hi", "Deals this week at Acme"]


async def test_without_blocked_terms_the_same_texts_pass(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # The refusals above come from the tenant's settings: with none configured, the same
    # texts are sent.
    gw = await start()
    key = await gw.key()
    number = "+12125550302"
    await consent(gw, key, number)
    for body in ("Big SALE this weekend", "Reply to WIN $500 today"):
        status, out = await send(gw, key, number, body)
        assert status == 202, out
    assert len(fake.messages) == 2


# -- 2. blocked content retention -----------------------------------------------------------------


@pytest.mark.parametrize(("setting", "days"), [({}, 30),
                                               ({"blocked_content_retention_days": 7}, 7)])
async def test_blocked_content_is_kept_for_the_retention(
        start: StartGateway, setting: dict[str, Any], days: int) -> None:
    # The refused text is kept in Redis under the refused message's id, with a TTL of
    # blocked_content_retention_days (30 by default, else the configured value).
    gw = await start(**RULES, **setting)
    key = await gw.key()
    number = "+12125550303"
    await consent(gw, key, number)
    body = "Huge SALE: 50% off everything"
    status, out = await send(gw, key, number, body)
    assert status == 403 and code_of(out) == "content_blocked"
    [record] = await records(gw, key, number)
    assert (record["outcome"], record["code"]) == ("refused", "content_blocked")
    stored = keys.blocked_content("acme", record["id"])
    assert await blocked_keys(gw) == [stored.encode()]
    assert await gw.parts.client.get(stored) == body.encode()
    ttl = await gw.parts.client.ttl(stored)
    assert days * DAY_S - 10 <= ttl <= days * DAY_S, ttl


async def test_content_is_kept_only_when_content_is_the_refusal(start: StartGateway) -> None:
    # A text with blocked content refused for an earlier rule (no consent, quiet hours) is
    # not kept as blocked content.
    gw = await start(**RULES)
    key = await gw.key()
    status, out = await send(gw, key, "+12125550304", "SALE")
    assert status == 403 and code_of(out) == "no_consent"
    await consent(gw, key, "+12125550304")
    set_clock(gw, NIGHT_NY)
    status, out = await send(gw, key, "+12125550304", "SALE")
    assert status == 429 and code_of(out) == "quiet_hours"
    assert await blocked_keys(gw) == []


# -- 3. append_stop -------------------------------------------------------------------------------


async def test_append_stop_first_footers_only_the_first_text_in_30_days(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # Default ("first"): the first marketing text to a number gets the STOP footer, the next
    # one within 30 days does not; 30 days later the footer comes back.
    gw = await start()
    key = await gw.key()
    number = "+12125550305"
    await consent(gw, key, number)
    for _ in range(2):
        status, out = await send(gw, key, number)
        assert status == 202, out
        await records(gw, key, number)  # the send is recorded before the next decision
    set_clock(gw, NOON_NY + timedelta(days=30, seconds=1))
    status, out = await send(gw, key, number)
    assert status == 202, out
    assert [m.body for m in fake.messages] == ["Deals this week at Acme" + FOOTER,
                                               "Deals this week at Acme",
                                               "Deals this week at Acme" + FOOTER]


async def test_append_stop_always_footers_every_text(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # append_stop = "always": every marketing text lacking opt-out language gets the footer,
    # not only the first in 30 days; one with opt-out language is left as it is.
    gw = await start(append_stop="always")
    key = await gw.key()
    number = "+12125550306"
    await consent(gw, key, number)
    for _ in range(3):
        status, out = await send(gw, key, number)
        assert status == 202 and out["body"] == "Deals this week at Acme" + FOOTER, out
        await records(gw, key, number)  # the send is recorded before the next decision
    status, out = await send(gw, key, number, "Deals today. Text STOP to quit")
    assert status == 202 and out["body"] == "Deals today. Text STOP to quit"
    assert [m.body for m in fake.messages] == ["Deals this week at Acme" + FOOTER] * 3 + [
        "Deals today. Text STOP to quit"]
    flags = [r["footer_added"] for r in await records(gw, key, number)]
    assert flags == [True, True, True, False]


# -- 4. reply templates ---------------------------------------------------------------------------


async def test_custom_reply_templates_answer_stop_start_and_help(start: StartGateway) -> None:
    # The tenant's sms_replies templates, filled with {brand}, {help_text} and {frequency},
    # are the TwiML <Message> for STOP, START and HELP.
    replies = {"opt_out": "{brand} here: you are out. Text START to come back.",
               "opt_in": "{brand} here: you are in ({frequency}). HELP or STOP anytime.",
               "help": "{brand} support - {help_text} Text STOP to quit."}
    gw = await start(sms_replies=replies, frequency="Up to 4 msgs/month")
    number = "+12125550307"
    status, text = await webhook(gw, "STOP", number)
    assert status == 200
    assert message_of(text) == "Acme Co here: you are out. Text START to come back."
    status, text = await webhook(gw, "START", number)
    assert status == 200
    assert message_of(text) == "Acme Co here: you are in (Up to 4 msgs/month). HELP or STOP " \
                               "anytime."
    status, text = await webhook(gw, "HELP", number)
    assert status == 200
    assert message_of(text) == ("Acme Co support - Help at acme.example/help or "
                                "1-800-555-0100. Text STOP to quit.")


# -- 5. the classifier's rule in the audit --------------------------------------------------------


async def test_audit_of_inbound_opt_out_names_the_matching_rule(start: StartGateway) -> None:
    # The audit event of an inbound opt-out names the classifier rule that matched: the
    # keyword rule for "STOP", a phrase rule for "please stop texting me".
    gw = await start()
    key = await gw.key()
    rules: dict[str, str] = {}
    for number, body in (("+12125550308", "STOP"), ("+12125550309", "please stop texting me")):
        status, _ = await webhook(gw, body, number)
        assert status == 200
        [event] = [i for i in await audit(gw, key, number) if i["type"] == "opt_out"]
        assert event["reason"] == "stop_keyword" and event["source"] == "sms", event
        rules[body] = event["detail"]["rule"]
    assert rules["STOP"] == "keyword:STOP"
    assert rules["please stop texting me"].startswith("phrase:"), rules


# -- 6. decide() order ----------------------------------------------------------------------------


async def test_order_sender_before_category_and_recipient(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # A bad sender wins over a transactional text on a plain key and over an invalid
    # recipient; a transactional text on a plain key wins over an invalid recipient.
    gw = await start(**RULES)
    key = await gw.key()
    status, out = await send(gw, key, "12", "SALE", category="transactional",
                             **{"from": GLOBEX})
    assert status == 403 and code_of(out) == "sender_not_allowed", out
    status, out = await send(gw, key, "+12125550310", category="transactional",
                             **{"from": GLOBEX})
    assert status == 403 and code_of(out) == "sender_not_allowed", out
    status, out = await send(gw, key, "12", **{"from": GLOBEX})
    assert status == 403 and code_of(out) == "sender_not_allowed", out
    status, out = await send(gw, key, "12", "SALE", category="transactional")
    assert status == 403 and code_of(out) == "category_not_allowed", out
    assert fake.requests == 0


async def test_order_recipient_before_suppression_consent_and_content(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # An invalid recipient is refused as such (422), before consent, quiet hours and
    # content are looked at, for marketing and transactional texts.
    gw = await start(**RULES)
    key, tkey = await gw.key(), await gw.key(transactional=True)
    set_clock(gw, NIGHT_NY)
    status, out = await send(gw, key, "12", "SALE")
    assert status == 422 and code_of(out) == "invalid_recipient", out
    status, out = await send(gw, tkey, "+1 415 555", "SALE", category="transactional")
    assert status == 422 and code_of(out) == "invalid_recipient", out
    assert fake.requests == 0


async def test_order_opted_out_before_consent_quiet_hours_and_content(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # A suppressed number is refused opted_out whatever else is wrong: no consent, quiet
    # hours, blocked content, or a transactional text with blocked content.
    gw = await start(**RULES)
    key, tkey = await gw.key(), await gw.key(transactional=True)
    number = "+12125550311"
    await suppress(gw, key, number)
    status, out = await send(gw, key, number, "SALE")
    assert status == 403 and code_of(out) == "opted_out", out
    set_clock(gw, NIGHT_NY)
    status, out = await send(gw, key, number, "SALE")
    assert status == 403 and code_of(out) == "opted_out", out
    status, out = await send(gw, tkey, number, "SALE", category="transactional")
    assert status == 403 and code_of(out) == "opted_out", out
    assert fake.requests == 0


async def test_order_no_consent_before_quiet_hours_and_content(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # With no consent, a marketing text with blocked content, at night, is no_consent.
    gw = await start(**RULES)
    key = await gw.key()
    status, out = await send(gw, key, "+12125550312", "SALE")
    assert status == 403 and code_of(out) == "no_consent", out
    set_clock(gw, NIGHT_NY)
    status, out = await send(gw, key, "+12125550312", "SALE")
    assert status == 403 and code_of(out) == "no_consent", out
    assert fake.requests == 0


async def test_order_quiet_hours_and_cap_before_content(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # Consented: at night blocked content is quiet_hours; a Florida number past its 3 texts
    # a day is frequency_capped (quiet_hours at night); in the day, under the cap, it is
    # content_blocked.
    gw = await start(**RULES)
    key = await gw.key()
    ny, fl = "+12125550313", "+13055550313"
    await consent(gw, key, ny)
    await consent(gw, key, fl)
    set_clock(gw, NIGHT_NY)
    status, out = await send(gw, key, ny, "SALE")
    assert status == 429 and code_of(out) == "quiet_hours", out
    set_clock(gw, NOON_NY)
    status, out = await send(gw, key, ny, "SALE")
    assert status == 403 and code_of(out) == "content_blocked", out
    status, out = await send(gw, key, fl, "SALE")
    assert status == 403 and code_of(out) == "content_blocked", out
    for _ in range(3):
        status, out = await send(gw, key, fl)
        assert status == 202, out
    status, out = await send(gw, key, fl, "SALE")
    assert status == 429 and code_of(out) == "frequency_capped", out
    set_clock(gw, NIGHT_NY)  # 22:00 in Miami: outside Florida's window and still capped
    status, out = await send(gw, key, fl, "SALE")
    assert status == 429 and code_of(out) == "quiet_hours", out
    assert [m.to for m in fake.messages] == [fl] * 3


# -- 7. Twilio API: upstream failure --------------------------------------------------------------


async def test_twilio_api_upstream_failure_is_502_and_recorded_failed(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # Through the official SDK, an upstream that answers 500, or is not listening, is
    # TwilioRestException with HTTP 502 (30008); each attempt is recorded "failed", none
    # "sent", and nothing counts as a marketing send.
    gw = await start()
    key = await gw.key()
    number = "+12125550314"
    await consent(gw, key, number)
    client = twilio_client(gw, key)
    fake.fail_next(status=500)
    err = await sdk_error(client, number)
    assert (err.status, err.code) == (502, 30008), (err.status, err.code, err.msg)
    assert fake.requests == 1 and fake.messages == []
    gw.parts.sms.upstream = sms_upstream_from_url(f"http://127.0.0.1:{free_port()}/messages")
    try:
        err = await sdk_error(client, number)
        assert (err.status, err.code) == (502, 30008), (err.status, err.code, err.msg)
    finally:
        await gw.parts.sms.upstream.close()
        gw.parts.sms.upstream = gw.parts.sms_upstream  # closed by stop_gateway
    items = await records(gw, key, number)
    assert [(r["outcome"], r["code"]) for r in items] == [("failed", "upstream_failed")] * 2
    _, _, sends = await gw.parts.store.send_state("acme", Channel.SMS, number)
    assert sends == []
    assert fake.messages == []


# -- content rules: configuration mistakes and disguised terms ------------------------------------


@pytest.mark.parametrize(("setting", "value", "says"), [
    ("blocked_terms", ["SALE", "  "], "empty"),
    ("blocked_patterns", [""], "every message"),
    ("blocked_patterns", [r"(win)?"], "every message"),
])
def test_rules_that_would_block_everything_are_refused_at_start(
        setting: str, value: list[str], says: str) -> None:
    # An empty term matched any text with punctuation or a double space; a pattern that
    # matches the empty text blocks every message: both stop start-up, naming the value.
    with pytest.raises(ValidationError, match=says):
        Tenant(id="acme", **{setting: value})


def test_terms_are_stripped_and_disguised_terms_still_match() -> None:
    # " SALE " was never matched; full-width letters and a zero-width space slipped past.
    rules = Tenant(id="acme", blocked_terms=[" SALE "]).content_rules
    assert rules.blocked_terms == ("SALE",)
    for body in ("Big s\u200bale today", "Big ＳＡＬＥ today", "big sale!"):
        assert rules.violation(body) is not None, body
    assert rules.violation("Wholesale prices") is None


async def test_text_with_no_room_for_the_footer_is_kept_like_other_blocked_content(
        start: StartGateway, fake: FakeSmsProvider) -> None:
    # Refused as content_blocked because " Reply STOP to opt out." would pass 1,600
    # characters: its text is kept for review like any blocked content.
    gw = await start()
    key = await gw.key()
    number = "+12125550185"
    await consent(gw, key, number)
    status, body = await send(gw, key, number, body="x" * 1590)
    assert status == 403 and code_of(body) == "content_blocked", body
    (kept,) = await blocked_keys(gw)
    assert await gw.parts.client.get(kept) == b"x" * 1590
    assert fake.requests == 0
