"""The ops API end to end: pagination, bulk checks, consents, audit, health, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from aiohttp import ClientResponse
from conftest import Gateway
from prometheus_client.parser import text_string_to_metric_families

from handlers import schemas

PHONE = "+14155550123"


def phone(i: int) -> str:
    """Distinct valid numbers in the fictional 555-01xx range, across area codes."""
    area = ("415", "212", "312", "617", "202", "303", "512", "206", "646", "718")[i // 100]
    return f"+1{area}55501{i % 100:02d}"


async def ok_json(r: ClientResponse, status: int = 200) -> Any:
    text = await r.text()
    assert r.status == status, (r.method, str(r.url), text)
    assert r.content_type == "application/json"
    return json.loads(text)


async def suppress(gw: Gateway, key: str, channel: str, ident: str,
                   reason: str = "manual") -> dict[str, Any]:
    r = await gw.http.post("/v1/suppressions", json={"channel": channel, "identifier": ident,
                                                     "reason": reason}, headers=gw.auth(key))
    body: dict[str, Any] = await ok_json(r, 201)
    return body


async def suppress_many(gw: Gateway, key: str, channel: str, idents: list[str]) -> None:
    for i in range(0, len(idents), 50):
        await asyncio.gather(*(suppress(gw, key, channel, x) for x in idents[i:i + 50]))


async def list_all(gw: Gateway, key: str, channel: str, limit: int,
                   between_pages: Any = None) -> tuple[list[str], int]:
    """Page through the list; returns the identifiers in order and the number of pages."""
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"channel": channel, "limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        page = await ok_json(await gw.http.get("/v1/suppressions", params=params,
                                               headers=gw.auth(key)))
        schemas.SuppressionPage.model_validate_json(json.dumps(page))
        pages += 1
        assert len(page["items"]) <= limit
        seen += [i["identifier"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages
        if between_pages is not None:
            await between_pages(pages)


# -- pagination ----------------------------------------------------------------------------


async def test_pagination_returns_every_item_once(gw: Gateway) -> None:
    # 250 addresses paged 100 at a time: 3 pages, each item exactly once, null cursor at the end.
    key = await gw.key()
    idents = [f"user{i:03d}@example.com" for i in range(250)]
    await suppress_many(gw, key, "email", idents)
    seen, pages = await list_all(gw, key, "email", 100)
    assert pages == 3
    assert sorted(seen) == sorted(idents) and len(seen) == len(set(seen))


async def test_page_items_have_the_contract_fields(gw: Gateway) -> None:
    # Each listed item has channel, normalised identifier, scope, reason, source and created_at.
    key = await gw.key()
    await suppress(gw, key, "sms", "(415) 555-0123", reason="complaint")
    page = await ok_json(await gw.http.get("/v1/suppressions?channel=sms&limit=1000",
                                           headers=gw.auth(key)))
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert set(item) == {"channel", "identifier", "scope", "reason", "source", "created_at"}
    assert item["channel"] == "sms" and item["identifier"] == PHONE
    assert item["reason"] == "complaint" and item["source"] == "api"
    assert item["created_at"].endswith("Z")


async def test_pagination_filter_and_channel(gw: Gateway) -> None:
    # q= filters by substring (case-insensitive); each channel lists only its own entries.
    key = await gw.key()
    await suppress_many(gw, key, "email", ["ann@example.com", "bob@example.com",
                                           "Annie@other.example"])
    await suppress(gw, key, "sms", PHONE)
    page = await ok_json(await gw.http.get("/v1/suppressions", params={
        "channel": "email", "q": "ANN"}, headers=gw.auth(key)))
    assert sorted(i["identifier"] for i in page["items"]) == ["ann@example.com",
                                                              "annie@other.example"]
    page = await ok_json(await gw.http.get("/v1/suppressions?channel=sms",
                                           headers=gw.auth(key)))
    assert [i["identifier"] for i in page["items"]] == [PHONE]


async def test_pagination_is_stable_under_concurrent_writes(gw: Gateway) -> None:
    # While paging, other entries are added and deleted: every entry present throughout
    # the iteration is returned exactly once, and nothing is returned twice.
    key = await gw.key()
    rng = random.Random(7)
    stable = [f"stable{i:03d}@example.com" for i in range(200)]
    doomed = [f"doomed{i:03d}@example.com" for i in range(60)]
    await suppress_many(gw, key, "email", stable + doomed)
    added: list[str] = []

    async def churn(page: int) -> None:
        # Between pages: delete a few pre-existing entries and add new ones.
        for ident in [doomed.pop() for _ in range(min(4, len(doomed)))]:
            r = await gw.http.delete(f"/v1/suppressions/email/{ident}", headers=gw.auth(key))
            assert r.status == 204
        new = [f"new{page:02d}x{j}@example.com" for j in range(5)]
        await suppress_many(gw, key, "email", new)
        added.extend(new)

    async def background() -> None:
        # Meanwhile, truly concurrent writers add and remove entries of their own.
        for n in range(40):
            ident = f"bg{n:03d}{rng.randrange(1000)}@example.com"
            await suppress(gw, key, "email", ident)
            if n % 2:
                r = await gw.http.delete(f"/v1/suppressions/email/{ident}",
                                         headers=gw.auth(key))
                assert r.status == 204

    (seen, pages), _ = await asyncio.gather(list_all(gw, key, "email", 15, churn),
                                            background())
    assert pages >= 14
    assert len(seen) == len(set(seen)), "an entry was returned twice"
    counts = {s: seen.count(s) for s in stable}
    assert all(c == 1 for c in counts.values()), [s for s, c in counts.items() if c != 1]
    assert set(stable) <= set(seen)


# -- bulk check ------------------------------------------------------------------------------


async def test_bulk_check_of_1000_keeps_order_and_flags_exactly_the_suppressed(
        gw: Gateway) -> None:
    # 1,000 numbers in mixed spellings, every 7th suppressed: results in input order, exact flags.
    key = await gw.key()
    numbers = [phone(i) for i in range(1000)]
    suppressed = set(numbers[::7])
    await suppress_many(gw, key, "sms", sorted(suppressed))
    order = numbers[:]
    random.Random(3).shuffle(order)

    def spelled(n: str, i: int) -> str:  # national and punctuated forms of the same numbers
        return [n, n[2:], f"({n[2:5]}) {n[5:8]}-{n[8:]}", f"1-{n[2:5]}-{n[5:8]}-{n[8:]}"][i % 4]

    raw = [spelled(n, i) for i, n in enumerate(order)]
    body = await ok_json(await gw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": raw}, headers=gw.auth(key)))
    schemas.CheckOut.model_validate_json(json.dumps(body))
    results = body["results"]
    assert [x["identifier"] for x in results] == raw
    assert [x["normalized"] for x in results] == order
    assert [x["suppressed"] for x in results] == [n in suppressed for n in order]
    assert sum(x["suppressed"] for x in results) == len(suppressed)


async def test_check_after_delete_is_not_suppressed(gw: Gateway) -> None:
    # A lifted suppression checks as not suppressed; the others stay suppressed.
    key = await gw.key()
    await suppress_many(gw, key, "email", ["a@example.com", "b@example.com"])
    r = await gw.http.delete("/v1/suppressions/email/a@example.com", headers=gw.auth(key))
    assert r.status == 204
    body = await ok_json(await gw.http.post("/v1/suppressions/check", json={
        "channel": "email", "identifiers": ["a@example.com", "b@example.com"]},
        headers=gw.auth(key)))
    assert [x["suppressed"] for x in body["results"]] == [False, True]


# -- add, delete, idempotency --------------------------------------------------------------


async def test_delete_of_not_suppressed_is_404(gw: Gateway) -> None:
    # DELETE of an identifier never suppressed, or already lifted, is 404 not_found.
    key = await gw.key()
    r = await gw.http.delete(f"/v1/suppressions/sms/{PHONE}", headers=gw.auth(key))
    assert (await ok_json(r, 404))["error"]["code"] == "not_found"
    await suppress(gw, key, "sms", PHONE)
    assert (await gw.http.delete(f"/v1/suppressions/sms/{PHONE}",
                                 headers=gw.auth(key))).status == 204
    r = await gw.http.delete(f"/v1/suppressions/sms/{PHONE}", headers=gw.auth(key))
    assert (await ok_json(r, 404))["error"]["code"] == "not_found"


async def test_repeat_post_is_idempotent(gw: Gateway) -> None:
    # Suppressing an already suppressed number again is 201 and keeps the original
    # created_at and reason, in the reply, in GET and in the list.
    key = await gw.key()
    first = await suppress(gw, key, "sms", PHONE, reason="complaint")
    await asyncio.sleep(0.01)
    again = await suppress(gw, key, "sms", "415-555-0123", reason="manual")
    assert again == first
    got = await ok_json(await gw.http.get(f"/v1/suppressions/sms/{PHONE}",
                                          headers=gw.auth(key)))
    assert got == first
    page = await ok_json(await gw.http.get("/v1/suppressions?channel=sms",
                                           headers=gw.auth(key)))
    assert page["items"] == [first]


async def test_resuppress_after_delete_is_a_new_entry(gw: Gateway) -> None:
    # After a suppression is lifted, suppressing again records the new reason and a later time.
    key = await gw.key()
    first = await suppress(gw, key, "email", "ann@example.com", reason="complaint")
    await asyncio.sleep(0.01)
    assert (await gw.http.delete("/v1/suppressions/email/ann@example.com",
                                 headers=gw.auth(key))).status == 204
    await asyncio.sleep(0.01)
    second = await suppress(gw, key, "email", "ann@example.com", reason="bounce")
    assert second["reason"] == "bounce" and second["created_at"] > first["created_at"]


async def test_get_normalises_the_path(gw: Gateway) -> None:
    # GET with the national form or a mixed-case address finds the normalised entry.
    key = await gw.key()
    await suppress(gw, key, "email", "Ann@Example.COM")
    body = await ok_json(await gw.http.get("/v1/suppressions/email/Ann@EXAMPLE.com",
                                           headers=gw.auth(key)))
    assert body["identifier"] == "ann@example.com"
    schemas.SuppressionOut.model_validate_json(json.dumps(body))
    r = await gw.http.get("/v1/suppressions/email/ann@example.com", headers=gw.auth(key))
    assert r.status == 200  # "Ann@" and "ann@" are one entry: no opt-out missed for a capital


# -- consents and audit ----------------------------------------------------------------------


async def test_consent_is_recorded_and_audited_with_evidence(gw: Gateway) -> None:
    # POST /v1/consents is 201; the audit trail shows a 'consent' event carrying the evidence.
    key = await gw.key()
    evidence = "Checked 'Text me offers' on /signup, form v3, IP 203.0.113.9"
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": "4155550123",
                                                 "source": "web_form", "evidence": evidence},
                           headers=gw.auth(key))
    body = await ok_json(r, 201)
    schemas.ConsentOut.model_validate_json(json.dumps(body))
    assert body["identifier"] == PHONE and body["source"] == "web_form"
    assert body["status"] == "granted"
    audit = await ok_json(await gw.http.get("/v1/audit", params={"identifier": PHONE},
                                            headers=gw.auth(key)))
    schemas.AuditPage.model_validate_json(json.dumps(audit))
    [item] = audit["items"]
    assert item["type"] == "consent" and item["channel"] == "sms"
    assert item["identifier"] == PHONE and item["source"] == "web_form"
    assert item["detail"]["evidence"] == evidence
    assert item["at"] == body["created_at"]


async def test_consent_records_consent_state(gw: Gateway) -> None:
    # A consent recorded over the API is what the send path will find in the store.
    key = await gw.key()
    r = await gw.http.post("/v1/consents", json={"channel": "email",
                                                 "identifier": "ann@example.com",
                                                 "source": "double_opt_in"},
                           headers=gw.auth(key))
    await ok_json(r, 201)
    from suppression.models import Channel
    from suppression.store import CONSENT_GRANTED

    state = await gw.parts.store.consent_state("acme", Channel.EMAIL, "ann@example.com")
    assert state is not None and state[0] == CONSENT_GRANTED


async def test_audit_shows_opt_out_then_opt_in(gw: Gateway) -> None:
    # Add then delete: the audit has opt_out then opt_in, source 'api', with the contract fields.
    key = await gw.key()
    await suppress(gw, key, "email", "ann@example.com", reason="complaint")
    assert (await gw.http.delete("/v1/suppressions/email/ann@example.com",
                                 headers=gw.auth(key))).status == 204
    audit = await ok_json(await gw.http.get("/v1/audit", params={
        "identifier": "ann@example.com"}, headers=gw.auth(key)))
    schemas.AuditPage.model_validate_json(json.dumps(audit))
    items = audit["items"]
    assert [i["type"] for i in items] == ["opt_out", "opt_in"]
    for item in items:
        assert {"type", "channel", "identifier", "at", "source"} <= set(item)
        assert item["source"] == "api" and item["channel"] == "email"
        assert item["identifier"] == "ann@example.com"
    assert items[0]["reason"] == "complaint"
    assert items[0]["at"] <= items[1]["at"]
    assert items[0]["detail"]["key_id"] == key.split("_")[1]


async def test_audit_finds_any_spelling_and_explicit_channel(gw: Gateway) -> None:
    # The audit query normalises the identifier; channel= picks the channel explicitly.
    key = await gw.key()
    await suppress(gw, key, "sms", PHONE)
    for spelling in ("(415) 555-0123", "+1 415 555 0123", "4155550123"):
        audit = await ok_json(await gw.http.get("/v1/audit", params={
            "identifier": spelling, "channel": "sms"}, headers=gw.auth(key)))
        assert [i["type"] for i in audit["items"]] == ["opt_out"]
    audit = await ok_json(await gw.http.get("/v1/audit", params={
        "identifier": "nobody@example.com"}, headers=gw.auth(key)))
    assert audit == {"items": []}


# -- health, metrics, OpenAPI ----------------------------------------------------------------


async def test_healthz_and_readyz(gw: Gateway) -> None:
    # /healthz is 200 while the process runs; /readyz is 200 while Redis answers. No key needed.
    r = await gw.http.get("/healthz")
    assert (await ok_json(r))["status"] == "ok"
    r = await gw.http.get("/readyz")
    body = await ok_json(r)
    assert body["status"] == "ready" and body["pending_events"] == 0


async def test_metrics_is_prometheus_text(gw: Gateway) -> None:
    # /metrics is Prometheus text exposition that counts the requests served, by route and status.
    key = await gw.key()
    await gw.http.get("/v1/suppressions/sms/" + PHONE, headers=gw.auth(key))
    await gw.http.get("/v1/nope")
    r = await gw.http.get("/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    assert "optout_http_requests_total" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [(s.labels, s.value) for s in families["optout_http_requests"].samples
               if s.name == "optout_http_requests_total"]
    assert ({"route": "/v1/suppressions/{channel}/{identifier}", "status": "404"}, 1.0) in samples
    assert any(lbl["status"] == "404" and lbl["route"] == "unmatched" for lbl, _ in samples)


async def test_openapi_is_valid_and_documents_every_route(gw: Gateway) -> None:
    # /openapi.json validates as OpenAPI 3.1 and documents exactly the routes the app serves.
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    doc = await ok_json(await gw.http.get("/openapi.json"))
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    served = set()
    for route in gw.http.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method not in ("HEAD", "*") and path:
            served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/") and path != "/v1/sms/inbound/twilio":
                assert op["security"] == [{"bearer": []}], (method, path)
                assert "401" in op["responses"] and "403" in op["responses"]
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {"413", "415", "422"} <= set(op["responses"]), (method, path)


async def test_responses_match_the_documented_error_schema(gw: Gateway) -> None:
    # Error replies validate against the ErrorResponse schema that /openapi.json publishes.
    key = await gw.key()
    replies = [
        await gw.http.get("/v1/suppressions?channel=sms"),
        await gw.http.get("/v1/suppressions?channel=fax", headers=gw.auth(key)),
        await gw.http.post("/v1/suppressions", data="{", headers={
            **gw.auth(key), "Content-Type": "application/json"}),
        await gw.http.get("/v1/nope"),
    ]
    for r in replies:
        assert r.status >= 400
        schemas.ErrorResponse.model_validate_json(await r.text())
