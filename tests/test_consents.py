"""Consent evidence and history end to end: POST /v1/consents, GET /v1/consents/{ch}/{id}."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse
from conftest import Gateway

from handlers.consents import ConsentHistoryOut
from suppression import keys
from suppression.models import Channel, Reason, Source
from suppression.store import CONSENT_PENDING

SENDER = "+14155550100"
PHONE = "+12125550161"
EVIDENCE = {"channel": "sms", "identifier": "(212) 555-0161", "source": "signup-form-v3",
            "method": "web_form", "evidence": "I agree to get offers by text from Acme Co.",
            "evidence_ref": "https://acme.example/forms/signup?v=3",
            "ip": "2001:DB8:0:0::1", "user_agent": "Mozilla/5.0 (X11; Linux) Test/1.0",
            "message_id": "<form-7781@acme.example>",
            "collected_at": "2025-05-01T10:30:00+02:00"}


async def body_of(r: ClientResponse, status: int) -> Any:
    text = await r.text()
    assert r.status == status, (r.method, str(r.url), text)
    return json.loads(text)


async def history(gw: Gateway, key: str, channel: str = "sms", ident: str = PHONE) -> Any:
    body = await body_of(await gw.http.get(f"/v1/consents/{channel}/{ident}",
                                           headers=gw.auth(key)), 200)
    ConsentHistoryOut.model_validate_json(json.dumps(body))
    return body


async def inbound(gw: Gateway, key: str, text: str) -> None:
    r = await gw.http.post("/v1/sms/inbound", json={"from": PHONE, "to": SENDER, "body": text},
                           headers=gw.auth(key))
    await body_of(r, 200)


async def data_keys(gw: Gateway) -> list[str]:
    found = [k.decode() for k in await gw.parts.client.keys("*")]
    return sorted(k for k in found if k not in (keys.API_KEYS, keys.META))


async def test_evidence_is_kept_and_returned(gw: Gateway) -> None:
    # Who (number, API key), when (recorded and collected), how (method, source), what was
    # shown (text and reference), IP, user agent and message id: all in the history.
    key = await gw.key()
    created = await body_of(await gw.http.post("/v1/consents", json=EVIDENCE,
                                               headers=gw.auth(key)), 201)
    body = await history(gw, key)
    assert (body["identifier"], body["status"], body["erased"]) == (PHONE, "granted", False)
    assert body["consent"] == {"status": "granted", "at": created["created_at"]}
    assert body["suppression"] is None
    [event] = body["history"]
    assert (event["event"], event["type"], event["source"]) == ("granted", "consent",
                                                               "signup-form-v3")
    assert event["at"] == created["created_at"]
    detail = event["detail"]
    assert detail["method"] == "web_form" and detail["evidence"] == EVIDENCE["evidence"]
    assert detail["evidence_ref"] == EVIDENCE["evidence_ref"]
    assert detail["ip"] == "2001:db8::1"  # normalised
    assert detail["user_agent"] == EVIDENCE["user_agent"]
    assert detail["message_id"] == EVIDENCE["message_id"]
    assert detail["collected_at"] == "2025-05-01T08:30:00.000Z"
    assert detail["key_name"] == "test" and detail["key_id"] == key.split("_")[1]


async def test_method_defaults_to_the_source(gw: Gateway) -> None:
    # Without 'method' the record keeps the free-text source as how it was collected.
    key = await gw.key()
    await body_of(await gw.http.post("/v1/consents", json={
        "channel": "email", "identifier": "Ann@Example.COM", "source": "double_opt_in"},
        headers=gw.auth(key)), 201)
    body = await history(gw, key, "email", "Ann@example.com")
    assert body["history"][0]["detail"]["method"] == "double_opt_in"
    assert set(body["history"][0]["detail"]) == {"method", "key_id", "key_name"}


async def test_history_has_revocations_and_opt_ins_in_order(gw: Gateway) -> None:
    # Consent, an unclear reply, STOP, STOP again, START: each appears in order, and the
    # state follows (granted, opted_out while suppressed, granted again after START).
    key = await gw.key()
    await body_of(await gw.http.post("/v1/consents", json=EVIDENCE, headers=gw.auth(key)), 201)
    await inbound(gw, key, "can I cancel my order?")
    assert (await history(gw, key))["status"] == "granted"
    await inbound(gw, key, "STOP")
    await inbound(gw, key, "stop please")
    body = await history(gw, key)
    assert body["status"] == "opted_out" and body["suppression"]["reason"] == "stop_keyword"
    await inbound(gw, key, "START")
    body = await history(gw, key)
    events = [(e["event"], e["effect"]) for e in body["history"]]
    assert events == [("granted", "consented"), ("possible_revocation", "none"),
                      ("revoked", "suppressed"), ("revoked", "none"),
                      ("opted_in", "unsuppressed")]
    assert [e["at"] for e in body["history"]] == sorted(e["at"] for e in body["history"])
    assert body["status"] == "granted" and body["suppression"] is None
    assert body["history"][-1]["detail"]["evidence"] == "START"


async def test_pending_consent_and_topic_revocation(gw: Gateway) -> None:
    # A double opt-in consent waiting for YES shows as pending; an email topic opt-out is
    # a revocation of that topic only, with its scope.
    key = await gw.key()
    await gw.parts.service.record_consent("acme", Channel.SMS, PHONE, method="web_form",
                                          status=CONSENT_PENDING)
    body = await history(gw, key)
    assert body["status"] == "pending" and body["history"][0]["event"] == "pending"
    await gw.parts.service.opt_out("acme", Channel.EMAIL, "ann@example.com",
                                   reason=Reason.UNSUBSCRIBE_CLICK, source=Source.WEB,
                                   scope="news")
    body = await history(gw, key, "email", "ann@example.com")
    [event] = body["history"]
    assert (event["event"], event["scope"]) == ("revoked", "topic:news")
    assert body["status"] == "none" and body["suppression"] is None


async def test_consents_are_per_tenant(gw: Gateway) -> None:
    # acme's consent and opt-out are not in globex's history, which says 'none'.
    acme, globex = await gw.key("acme"), await gw.key("globex")
    await body_of(await gw.http.post("/v1/consents", json=EVIDENCE, headers=gw.auth(acme)), 201)
    await inbound(gw, acme, "STOP")
    body = await history(gw, globex)
    assert (body["status"], body["consent"], body["history"]) == ("none", None, [])


async def test_history_after_erasure_and_no_regrant(gw: Gateway) -> None:
    # After erasure the history is empty, the state opted_out and erased; a new API consent
    # is refused with a message saying why, and nothing is written back.
    key = await gw.key()
    await body_of(await gw.http.post("/v1/consents", json=EVIDENCE, headers=gw.auth(key)), 201)
    await body_of(await gw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=gw.auth(key)),
                  200)
    body = await history(gw, key)
    assert (body["status"], body["erased"], body["history"]) == ("opted_out", True, [])
    assert body["consent"] is None
    before = await data_keys(gw)
    err = (await body_of(await gw.http.post("/v1/consents", json=EVIDENCE,
                                            headers=gw.auth(key)), 403))["error"]
    assert err["code"] == "opted_out" and "erased" in err["message"]
    assert "START" in err["message"] and err["field"] == "identifier"
    assert await data_keys(gw) == before


FUTURE = (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.mark.parametrize("field,value", [
    ("ip", "203.0.113.300"), ("ip", "localhost"), ("user_agent", "Mozilla\r\nX-Evil: 1"),
    ("user_agent", "   "), ("user_agent", "a" * 513), ("message_id", "has space"),
    ("message_id", "naïve-id"), ("collected_at", "yesterday"),
    ("collected_at", "2025-05-01T10:30:00"), ("collected_at", FUTURE),
    ("collected_at", "1999-12-31T23:59:59Z"), ("method", "carrier_pigeon"),
    ("method", 3), ("evidence_ref", ""), ("evidence_ref", "x" * 501),
    ("evidence_ref", "line\nbreak"), ("ip", None),
])
async def test_bad_evidence_is_422_naming_the_field(gw: Gateway, field: str,
                                                    value: Any) -> None:
    # Each bad evidence field is a 422 naming it, and nothing at all is written.
    key = await gw.key()
    r = await gw.http.post("/v1/consents", json={**EVIDENCE, field: value},
                           headers=gw.auth(key))
    if value is None:  # null is the same as leaving it out
        await body_of(r, 201)
        return
    err = (await body_of(r, 422))["error"]
    assert err["code"] == "invalid_request" and err["field"] == field, err
    assert field in err["message"]
    assert await data_keys(gw) == []


async def test_history_auth_and_input_errors(gw: Gateway) -> None:
    # 401 without a key, 403 without 'read', 422 for a bad channel or identifier.
    key = await gw.key()
    path = f"/v1/consents/sms/{PHONE}"
    assert (await body_of(await gw.http.get(path), 401))["error"]["code"] == "unauthenticated"
    sender = await gw.key(scopes="send,write")
    assert (await body_of(await gw.http.get(path, headers=gw.auth(sender)), 403)
            )["error"]["code"] == "forbidden"
    err = (await body_of(await gw.http.get(f"/v1/consents/fax/{PHONE}",
                                           headers=gw.auth(key)), 422))["error"]
    assert err["field"] == "channel"
    err = (await body_of(await gw.http.get("/v1/consents/email/not-an-address",
                                           headers=gw.auth(key)), 422))["error"]
    assert (err["code"], err["field"]) == ("invalid_recipient", "identifier")


async def test_openapi_documents_the_new_routes(gw: Gateway) -> None:
    # /openapi.json stays a valid 3.1 document and lists the consent history and subject
    # routes with their scopes, 401/403 and their response models.
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    doc = await body_of(await gw.http.get("/openapi.json"), 200)
    validate(doc, cls=OpenAPIV31SpecValidator)
    consent = doc["paths"]["/v1/consents/{channel}/{identifier}"]["get"]
    subject = doc["paths"]["/v1/subjects/{channel}/{identifier}"]
    assert set(subject) == {"get", "delete"}
    for op, scope in ((consent, "read"), (subject["get"], "read"), (subject["delete"], "write")):
        assert f"'{scope}' scope" in op["description"]
        assert {"200", "401", "403", "422", "503"} <= set(op["responses"])
    assert "404" in subject["get"]["responses"] and "404" in subject["delete"]["responses"]
    props = doc["components"]["schemas"]["ConsentIn"]["properties"]
    assert {"method", "evidence_ref", "ip", "user_agent", "message_id", "collected_at"} <= \
        set(props)
