"""Subject access and erasure end to end: real gateway, real Redis, a recording SMS provider."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from conftest import NOON_NY, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess

from handlers.subjects import ErasureOut, SubjectOut
from suppression import keys
from suppression.bulk import Row, import_rows
from suppression.identifiers import normalize_email
from suppression.models import Channel, OptEvent, Reason, Source, now_ms

SENDER = "+14155550100"  # acme's number (conftest TENANTS)
PHONE = "+12125550187"
PHONE_VARIANTS = (PHONE, PHONE[1:], PHONE[2:])  # E.164, without '+', national digits
EMAIL = "Zed.Erasure-Subject@example.org"
EMAIL_VARIANTS = (EMAIL, "zed.erasure-subject")  # the address and its local part
BLOCKED_BODY = "Flash sale at https://bit.ly/acme-zed-7 Reply STOP to opt out."




async def body_of(r: ClientResponse, status: int) -> Any:
    text = await r.text()
    assert r.status == status, (r.method, str(r.url), text)
    return json.loads(text)


async def plaintext_hits(client: aioredis.Redis, needles: tuple[str, ...]) -> list[str]:
    """Every key whose name or any value (strings, hashes, lists, sets, zsets, streams)
    holds one of the needles (case-insensitive), as 'key: where'."""
    wanted = [n.lower() for n in needles]
    hits: list[str] = []
    async for raw_key in client.scan_iter(count=1000):
        name = raw_key.decode(errors="replace")
        if any(n in name.lower() for n in wanted):
            hits.append(f"{name}: key name")
        kind = (await client.type(raw_key)).decode()
        values: list[Any]
        if kind == "string":
            values = [await client.get(raw_key)]
        elif kind == "hash":
            mapping = await client.hgetall(raw_key)
            values = [*mapping.keys(), *mapping.values()]
        elif kind == "list":
            values = await client.lrange(raw_key, 0, -1)
        elif kind == "set":
            values = list(await client.smembers(raw_key))
        elif kind == "zset":
            values = [x for pair in await client.zrange(raw_key, 0, -1, withscores=True)
                      for x in pair]
        elif kind == "stream":
            values = [x for _, fields in await client.xrange(raw_key)
                      for pair in fields.items() for x in pair]
        else:
            raise AssertionError(f"{name} has a type the scan does not read: {kind}")
        for value in values:
            text = (value if isinstance(value, bytes) else str(value).encode()
                    ).decode(errors="replace").lower()
            if any(n in text for n in wanted):
                hits.append(f"{name}: {kind} value")
    return hits


async def populate_sms(gw: Gateway, key: str) -> None:
    """One person with every kind of SMS data: consent with evidence, a sent marketing text,
    a text refused for its content, an unclear reply for review, then STOP (confirmation)."""
    r = await gw.http.post("/v1/consents", json={
        "channel": "sms", "identifier": PHONE, "source": "web_form",
        "evidence": "Checked 'Text me offers' on /signup", "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0 (test)"}, headers=gw.auth(key))
    await body_of(r, 201)
    send = {"to": PHONE, "from": SENDER, "body": "Sale today at acme.example"}
    await body_of(await gw.http.post("/v1/sms/messages", json=send, headers=gw.auth(key)), 202)
    r = await gw.http.post("/v1/sms/messages", json={**send, "body": BLOCKED_BODY},
                           headers=gw.auth(key))
    assert (await body_of(r, 403))["error"]["code"] == "content_blocked"
    r = await gw.http.post("/v1/sms/inbound", json={"from": PHONE, "to": SENDER,
                                                    "body": "can I cancel my order?"},
                           headers=gw.auth(key))
    assert (await body_of(r, 200))["intent"] == "none"
    r = await gw.http.post("/v1/sms/inbound", json={"from": PHONE, "to": SENDER,
                                                    "body": "STOP"}, headers=gw.auth(key))
    assert (await body_of(r, 200))["intent"] == "opt_out"


async def test_access_returns_every_kind_of_data(sgw: Gateway) -> None:
    # GET /v1/subjects: suppression, consent with evidence, audit, message records, the
    # blocked text, the review item, send times and the confirmation throttle, all present.
    key = await sgw.key()
    await populate_sms(sgw, key)
    r = await sgw.http.get("/v1/subjects/sms/(212) 555-0187", headers=sgw.auth(key))
    body = await body_of(r, 200)
    SubjectOut.model_validate_json(json.dumps(body))
    assert body["identifier"] == PHONE and body["tenant"] == "acme" and body["erased"] is None
    [sup] = body["suppressions"]
    assert (sup["scope"], sup["reason"], sup["active"]) == ("tenant", "stop_keyword", True)
    assert body["consent"]["status"] == "revoked"  # the STOP revoked it
    types = [a["type"] for a in body["audit"]]
    assert types == ["consent", "possible_opt_out", "opt_out"]
    assert body["audit"][0]["detail"]["ip"] == "203.0.113.9"
    outcomes = [(m["outcome"], m["code"]) for m in body["message_records"]]
    assert outcomes == [("sent", None), ("refused", "content_blocked")]
    [blocked] = body["blocked_content"]
    assert blocked["body"] == BLOCKED_BODY
    assert blocked["message_id"] == body["message_records"][1]["id"]
    [item] = body["review_items"]
    assert item["from"] == PHONE and "cancel" in item["body"]
    assert len(body["marketing_sends"]) == 1
    assert body["opt_out_confirmation_throttled"] is True


async def test_access_sees_every_scope_of_an_address(sgw: Gateway) -> None:
    # An address's own opt-out, a topic opt-out and a hard bounce are all listed.
    key = await sgw.key()
    service = sgw.parts.service
    ident = normalize_email(EMAIL)  # the service takes normalised identifiers
    await service.opt_out("acme", Channel.EMAIL, ident, reason=Reason.UNSUBSCRIBE_CLICK,
                          source=Source.WEB, scope="news")
    await service.opt_out("acme", Channel.EMAIL, ident, reason=Reason.BOUNCE,
                          source=Source.EMAIL, scope="!bounce")
    await service.opt_out("acme", Channel.EMAIL, ident, reason=Reason.COMPLAINT,
                          source=Source.EMAIL)
    body = await body_of(await sgw.http.get(f"/v1/subjects/email/{ident}",
                                            headers=sgw.auth(key)), 200)
    assert sorted(s["scope"] for s in body["suppressions"]) == [
        "hard_bounce", "tenant", "topic:news"]


async def test_erasure_leaves_no_plaintext_and_keeps_refusing(sgw: Gateway,
                                                              fake: FakeSmsProvider) -> None:
    # After DELETE /v1/subjects, a scan of every Redis key finds the number nowhere (only
    # in globex's own data), yet a bulk check says suppressed, a marketing text is refused
    # and globex's data about the same number is untouched.
    acme, globex = await sgw.key("acme"), await sgw.key("globex")
    await populate_sms(sgw, acme)
    await body_of(await sgw.http.post("/v1/suppressions", json={
        "channel": "sms", "identifier": PHONE}, headers=sgw.auth(globex)), 201)
    globex_before = await body_of(await sgw.http.get(f"/v1/subjects/sms/{PHONE}",
                                                     headers=sgw.auth(globex)), 200)
    before = await plaintext_hits(sgw.parts.client, PHONE_VARIANTS)
    acme_hits = [h for h in before if "globex" not in h]
    # The scan can fail: before erasure it finds the number in names, hashes, lists, strings.
    for where in ("key name", "hash value", "list value"):
        assert any(where in h for h in acme_hits), (where, acme_hits)
    assert any(":rv:" in h for h in acme_hits) and any(":cf:" in h for h in acme_hits)
    blocked = keys.blocked_content("acme", "*")
    assert len([k async for k in sgw.parts.client.scan_iter(match=blocked)]) == 1

    r = await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(acme))
    done = await body_of(r, 200)
    ErasureOut.model_validate_json(json.dumps(done))
    assert done["erased"] and done["suppressed"] and not done["already_erased"]
    assert done["removed"] == {"suppressions": 1, "consents": 1, "audit": 3,
                               "message_records": 2, "blocked_content": 1, "review_items": 1,
                               "marketing_sends": 1, "confirmation_throttle": 1}
    after = await plaintext_hits(sgw.parts.client, PHONE_VARIANTS)
    assert after and all("globex" in h for h in after), after
    assert [k async for k in sgw.parts.client.scan_iter(match=blocked)] == []

    r = await sgw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE, "2125550187", "+12125550188"]},
        headers=sgw.auth(acme))
    flags = [x["suppressed"] for x in (await body_of(r, 200))["results"]]
    assert flags == [True, True, False]
    assert (await body_of(await sgw.http.get(f"/v1/suppressions/sms/{PHONE}",
                                             headers=sgw.auth(acme)), 200))["scope"] == "tenant"
    sent_before = len(fake.messages)
    r = await sgw.http.post("/v1/sms/messages", json={"to": PHONE, "from": SENDER,
                                                      "body": "We miss you"},
                            headers=sgw.auth(acme))
    assert (await body_of(r, 403))["error"]["code"] == "opted_out"
    assert len(fake.messages) == sent_before
    # ...and refusing that send kept no record naming the number.
    await sgw.parts.sms.recorder.flush()
    after_send = await plaintext_hits(sgw.parts.client, PHONE_VARIANTS)
    assert all("globex" in h for h in after_send), after_send
    assert (await body_of(await sgw.http.get("/v1/audit", params={"identifier": PHONE},
                                             headers=sgw.auth(acme)), 200))["items"] == []
    globex_after = await body_of(await sgw.http.get(f"/v1/subjects/sms/{PHONE}",
                                                    headers=sgw.auth(globex)), 200)
    assert globex_after == globex_before


async def test_erased_person_without_opt_out_is_refused_not_unconsented(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # A consented person who never said STOP is erased: the next marketing text is refused
    # opted_out (the hashed entry), not merely no_consent, and the Twilio path gives 21610.
    key = await sgw.key()
    await body_of(await sgw.http.post("/v1/consents", json={
        "channel": "sms", "identifier": PHONE, "source": "web_form"}, headers=sgw.auth(key)),
        201)
    send = {"to": PHONE, "from": SENDER, "body": "Sale today at acme.example"}
    await body_of(await sgw.http.post("/v1/sms/messages", json=send, headers=sgw.auth(key)), 202)
    await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(key)),
                  200)
    assert await plaintext_hits(sgw.parts.client, PHONE_VARIANTS) == []
    # No opt-out of this person is in the service's memory: only the hashed entry answers.
    r = await sgw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE, "+12125550188"]}, headers=sgw.auth(key))
    assert [x["suppressed"] for x in (await body_of(r, 200))["results"]] == [True, False]
    r = await sgw.http.post("/v1/sms/messages", json=send, headers=sgw.auth(key))
    assert (await body_of(r, 403))["error"]["code"] == "opted_out"
    r = await sgw.http.post("/2010-04-01/Accounts/acme/Messages.json",
                            data={"To": PHONE, "From": SENDER, "Body": "Hi"},
                            headers={"Authorization": "Basic " + base64.b64encode(
                                f"acme:{key}".encode()).decode()})
    assert (await body_of(r, 400))["code"] == 21610
    assert len(fake.messages) == 1


async def test_access_after_erasure_shows_only_the_fact(sgw: Gateway) -> None:
    # GET after erasure: 200, nothing personal, the erasure's reference, time and requester;
    # a second DELETE is idempotent (already_erased, nothing removed).
    key = await sgw.key()
    await populate_sms(sgw, key)
    done = await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}",
                                               headers=sgw.auth(key)), 200)
    body = await body_of(await sgw.http.get(f"/v1/subjects/sms/{PHONE}",
                                            headers=sgw.auth(key)), 200)
    SubjectOut.model_validate_json(json.dumps(body))
    assert body["erased"]["reference"] == done["reference"]
    assert body["erased"]["requested_by"]["key_name"] == "test"
    assert body["erased"]["suppression"]["reason"] == "stop_keyword"
    for kind in ("suppressions", "audit", "message_records", "blocked_content",
                 "review_items", "marketing_sends"):
        assert body[kind] == [], kind
    assert body["consent"] is None and not body["opt_out_confirmation_throttled"]
    again = await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}",
                                                headers=sgw.auth(key)), 200)
    assert again["already_erased"] and set(again["removed"].values()) == {0}
    assert again["reference"] == done["reference"]


async def test_email_erasure_removes_every_scope_and_local_part(sgw: Gateway) -> None:
    # An address with scoped entries and a consent: after erasure neither the address nor
    # its local part is anywhere in Redis, and every scope check still refuses it.
    key = await sgw.key()
    ident = normalize_email(EMAIL)
    service = sgw.parts.service
    await body_of(await sgw.http.post("/v1/consents", json={
        "channel": "email", "identifier": EMAIL, "source": "double_opt_in"},
        headers=sgw.auth(key)), 201)
    await service.opt_out("acme", Channel.EMAIL, ident, reason=Reason.UNSUBSCRIBE_CLICK,
                          source=Source.WEB, scope="news")
    assert await plaintext_hits(sgw.parts.client, EMAIL_VARIANTS)
    await body_of(await sgw.http.delete(f"/v1/subjects/email/{EMAIL}", headers=sgw.auth(key)),
                  200)
    assert await plaintext_hits(sgw.parts.client, EMAIL_VARIANTS) == []
    assert await service.suppressed("acme", Channel.EMAIL, [ident]) == [True]


async def test_regranting_an_erased_person_is_refused(sgw: Gateway) -> None:
    # API consent, ops opt-in (DELETE suppression) and a re-import cannot re-permission an
    # erased person or write the number back; the person's own START can (documented).
    key = await sgw.key()
    await populate_sms(sgw, key)
    await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(key)),
                  200)
    r = await sgw.http.post("/v1/consents", json={"channel": "sms", "identifier": PHONE,
                                                  "source": "import"}, headers=sgw.auth(key))
    err = (await body_of(r, 403))["error"]
    assert err["code"] == "opted_out" and "erased" in err["message"]
    r = await sgw.http.delete(f"/v1/suppressions/sms/{PHONE}", headers=sgw.auth(key))
    assert (await body_of(r, 403))["error"]["code"] == "opted_out"
    report = await import_rows(sgw.parts.service, "acme", Channel.SMS,
                               [Row(1, PHONE), Row(2, "212-555-0187")], default_region="US")
    assert report.added == 0
    assert await plaintext_hits(sgw.parts.client, PHONE_VARIANTS) == []
    # The person texts START: their own fresh consent lifts the erasure.
    r = await sgw.http.post("/v1/sms/inbound", json={"from": PHONE, "to": SENDER,
                                                    "body": "START"}, headers=sgw.auth(key))
    assert (await body_of(r, 200))["intent"] == "opt_in"
    r = await sgw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE]}, headers=sgw.auth(key))
    assert (await body_of(r, 200))["results"][0]["suppressed"] is False
    r = await sgw.http.post("/v1/sms/messages", json={"to": PHONE, "from": SENDER,
                                                      "body": "Welcome back"},
                            headers=sgw.auth(key))
    await body_of(r, 202)


async def test_journal_replay_cannot_write_an_erased_person_back(sgw: Gateway) -> None:
    # The STOP is still in the local journal when the person is erased; replaying the
    # journal (as after a Redis restart) leaves no plaintext behind.
    key = await sgw.key()
    await populate_sms(sgw, key)
    await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(key)),
                  200)
    retained = await asyncio.to_thread(sgw.parts.journal.retained_events)
    assert any(ev.identifier == PHONE for ev in retained)
    assert await sgw.parts.service.replay()
    assert await plaintext_hits(sgw.parts.client, PHONE_VARIANTS) == []


async def test_no_event_writes_an_erased_person_back(sgw: Gateway) -> None:
    # Events older than the erasure's replay markers (a journal segment left unrotated for
    # hours) and new ops opt-outs alike: the store skips every event of an erased person.
    key = await sgw.key()
    await populate_sms(sgw, key)
    await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(key)),
                  200)
    old_stop = OptEvent("opt_out", "acme", Channel.SMS, PHONE, Reason.STOP_KEYWORD, Source.SMS,
                        at_ms=now_ms() - 3 * 3600_000, id="an-old-unmarked-event")
    assert await sgw.parts.store.apply([old_stop]) == [-1]
    await sgw.parts.service.opt_out("acme", Channel.SMS, PHONE, reason=Reason.MANUAL,
                                    source=Source.API)
    assert await plaintext_hits(sgw.parts.client, PHONE_VARIANTS) == []
    assert await sgw.parts.service.suppressed("acme", Channel.SMS, [PHONE]) == [True]


@pytest.mark.parametrize("method", ["get", "delete"])
async def test_auth_scope_tenant_and_input_errors(sgw: Gateway, method: str) -> None:
    # 401 without a key, 403 without the scope, 404 for a person the tenant holds nothing
    # about (another tenant's person included), 422 for a bad channel or identifier.
    acme = await sgw.key()
    await populate_sms(sgw, acme)
    path = f"/v1/subjects/sms/{PHONE}"
    call = getattr(sgw.http, method)
    assert (await body_of(await call(path), 401))["error"]["code"] == "unauthenticated"
    narrow = await sgw.key(scopes="send" if method == "get" else "read,send")
    assert (await body_of(await call(path, headers=sgw.auth(narrow)), 403)
            )["error"]["code"] == "forbidden"
    globex = await sgw.key("globex")
    assert (await body_of(await call(path, headers=sgw.auth(globex)), 404)
            )["error"]["code"] == "not_found"
    assert (await body_of(await call("/v1/subjects/sms/+12125550188",
                                     headers=sgw.auth(acme)), 404))["error"]["code"] == \
        "not_found"
    err = (await body_of(await call(f"/v1/subjects/fax/{PHONE}", headers=sgw.auth(acme)),
                         422))["error"]
    assert err["field"] == "channel"
    err = (await body_of(await call("/v1/subjects/sms/12345", headers=sgw.auth(acme)),
                         422))["error"]
    assert (err["code"], err["field"]) == ("invalid_recipient", "identifier")
    # None of the refusals erased anything.
    held = await body_of(await sgw.http.get(path, headers=sgw.auth(acme)), 200)
    assert held["erased"] is None and len(held["audit"]) == 3


async def test_redis_down_is_503_and_nothing_is_erased(own_redis: RedisServerProcess,
                                                       tmp_path: Path) -> None:
    # Redis hangs during DELETE: 503 store_unavailable; once back, every record is still
    # there (nothing partially erased) and asking again erases it all.
    parts, client = await start_gateway(make_settings(own_redis.url, tmp_path / "data"))
    gw = Gateway(parts, client)
    try:
        key = await gw.key()
        await body_of(await gw.http.post("/v1/consents", json={
            "channel": "sms", "identifier": PHONE, "source": "web_form"},
            headers=gw.auth(key)), 201)
        await body_of(await gw.http.post("/v1/suppressions", json={
            "channel": "sms", "identifier": PHONE}, headers=gw.auth(key)), 201)
        before = await body_of(await gw.http.get(f"/v1/subjects/sms/{PHONE}",
                                                 headers=gw.auth(key)), 200)
        own_redis.pause()
        try:
            r = await gw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=gw.auth(key))
            assert (await body_of(r, 503))["error"]["code"] == "store_unavailable"
            r = await gw.http.get(f"/v1/subjects/sms/{PHONE}", headers=gw.auth(key))
            assert (await body_of(r, 503))["error"]["code"] == "store_unavailable"
        finally:
            own_redis.resume()
        after = await body_of(await gw.http.get(f"/v1/subjects/sms/{PHONE}",
                                                headers=gw.auth(key)), 200)
        assert after == before and after["erased"] is None
        await body_of(await gw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=gw.auth(key)),
                      200)
        assert await plaintext_hits(gw.parts.client, PHONE_VARIANTS) == []
    finally:
        await stop_gateway(parts, client)


async def test_hashed_entry_is_keyed_and_never_listed(sgw: Gateway) -> None:
    # The kept entry is an HMAC with the pepper (not a bare hash: another pepper finds
    # nothing), sits in the number's own bucket, and no listing or export shows it.
    key = await sgw.key()
    await populate_sms(sgw, key)
    await body_of(await sgw.http.delete(f"/v1/subjects/sms/{PHONE}", headers=sgw.auth(key)),
                  200)
    store = sgw.parts.store
    assert store.pepper == sgw.parts.settings.resolved_pepper()
    bucket = keys.suppressions("acme", Channel.SMS, keys.bucket_of(PHONE))
    fields = [f.decode() for f in await sgw.parts.client.hkeys(bucket)]
    assert fields == [keys.erased_field(store.pepper, "acme", Channel.SMS, PHONE)]
    assert fields[0].startswith(keys.ERASED_PREFIX)
    assert keys.erased_field(b"another pepper!!", "acme", Channel.SMS, PHONE) not in fields
    assert keys.erased_field(store.pepper, "globex", Channel.SMS, PHONE) not in fields
    page = await body_of(await sgw.http.get("/v1/suppressions?channel=sms",
                                            headers=sgw.auth(key)), 200)
    assert page["items"] == []


async def test_erasure_has_redis_rewrite_its_append_only_file(own_redis: RedisServerProcess,
                                                               tmp_path: Path) -> None:
    # Redis's AOF keeps every old write: after an erasure the gateway asks for a rewrite,
    # and once it is done the number is nowhere in the files on disk either.
    settings = make_settings(own_redis.url, tmp_path / "d")
    parts, client = await start_gateway(settings)
    parts.sms.clock = lambda: NOON_NY
    gw = Gateway(parts, client)
    try:
        key = await gw.key()
        await populate_sms(gw, key)
        aof_dir = own_redis.directory

        def on_disk() -> bool:
            return any(PHONE[2:].encode() in f.read_bytes()
                       for f in aof_dir.rglob("*") if f.is_file() and "aof" in f.name)

        raw = aioredis.Redis.from_url(own_redis.url)
        try:
            await asyncio.sleep(1.1)  # appendfsync everysec: the writes reach the file
            assert on_disk()
            before = int((await raw.info("persistence"))["aof_rewrites"])
            await body_of(await gw.http.delete(f"/v1/subjects/sms/{PHONE}",
                                               headers=gw.auth(key)), 200)
            for _ in range(100):
                info = await raw.info("persistence")
                if int(info["aof_rewrites"]) > before and not int(
                        info["aof_rewrite_in_progress"]):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("no AOF rewrite after the erasure")
            await asyncio.sleep(1.1)
            assert not on_disk()
        finally:
            await raw.aclose()
    finally:
        await stop_gateway(parts, client)
