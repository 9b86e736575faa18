"""The ops REST API against a real gateway and a real Redis."""

from __future__ import annotations

from conftest import Gateway


async def test_add_get_delete_roundtrip(gw: Gateway) -> None:
    # An ops key suppresses a number in national format; it is stored in E.164 and can be lifted.
    key = await gw.key()
    r = await gw.http.post("/v1/suppressions", json={"channel": "sms",
                                                      "identifier": "(415) 555-0123",
                                                      "reason": "manual"}, headers=gw.auth(key))
    assert r.status == 201, await r.text()
    body = await r.json()
    assert body["identifier"] == "+14155550123"
    assert body["reason"] == "manual" and body["source"] == "api" and body["scope"] == "tenant"
    r = await gw.http.get("/v1/suppressions/sms/+14155550123", headers=gw.auth(key))
    assert r.status == 200 and (await r.json())["identifier"] == "+14155550123"
    r = await gw.http.delete("/v1/suppressions/sms/4155550123", headers=gw.auth(key))
    assert r.status == 204
    r = await gw.http.get("/v1/suppressions/sms/+14155550123", headers=gw.auth(key))
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "not_found"


async def test_bulk_check_keeps_order_and_normalizes(gw: Gateway) -> None:
    # A bulk check answers in input order with the normalised form and a per-item error.
    key = await gw.key()
    await gw.http.post("/v1/suppressions", json={"channel": "email",
                                                  "identifier": "Ann@Example.COM"},
                       headers=gw.auth(key))
    r = await gw.http.post("/v1/suppressions/check", json={
        "channel": "email", "identifiers": ["bob@example.com", "Ann@EXAMPLE.com", "nope"]},
        headers=gw.auth(key))
    assert r.status == 200
    results = (await r.json())["results"]
    assert [x["identifier"] for x in results] == ["bob@example.com", "Ann@EXAMPLE.com", "nope"]
    assert [x["suppressed"] for x in results] == [False, True, None]
    assert results[1]["normalized"] == "ann@example.com"
    assert results[2]["normalized"] is None and "@" in results[2]["error"]
