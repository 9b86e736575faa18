"""Authentication, scopes and tenant isolation of the ops API (real HTTP, real Redis)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse
from conftest import Gateway

from suppression.keys import API_KEYS, META
from suppression.models import Channel

PHONE = "+14155550123"
EMAIL = "ann@example.com"

# (method, path, JSON body or None, scope the route needs)
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/suppressions?channel=sms", None, "read"),
    ("GET", f"/v1/suppressions/sms/{PHONE}", None, "read"),
    ("POST", "/v1/suppressions/check", {"channel": "sms", "identifiers": [PHONE]}, "read"),
    ("GET", f"/v1/audit?identifier={EMAIL}", None, "read"),
    ("POST", "/v1/suppressions", {"channel": "sms", "identifier": PHONE}, "write"),
    ("DELETE", f"/v1/suppressions/sms/{PHONE}", None, "write"),
    ("POST", "/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web_form"},
     "write"),
]
ALL_SCOPES = ("send", "read", "write", "inbound", "export")


async def call(gw: Gateway, method: str, path: str, body: dict[str, Any] | None,
               headers: dict[str, str]) -> ClientResponse:
    return await gw.http.request(method, path, json=body, headers=headers)


async def assert_error(r: ClientResponse, status: int, code: str) -> dict[str, Any]:
    assert r.status == status, (r.method, r.url, await r.text())
    assert r.content_type == "application/json"
    body = await r.json()
    assert set(body) == {"error"}
    err: dict[str, Any] = body["error"]
    assert err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    return err


async def stored_sms(gw: Gateway, tenant: str = "acme") -> list[dict[str, Any]]:
    key = await gw.key(tenant, "read")
    r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
    assert r.status == 200
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def data_keys(gw: Gateway) -> list[str]:
    """Every key in Redis that holds tenant data (not the API keys, not the layout marker)."""
    found = [k.decode() if isinstance(k, bytes) else k for k in await gw.parts.client.keys("*")]
    return sorted(k for k in found if k not in (API_KEYS, META))


async def bad_headers(gw: Gateway, case: str) -> dict[str, str]:
    if case == "none":
        return {}
    if case == "wrong_scheme":
        return {"Authorization": f"Basic {await gw.key()}"}
    if case == "bearer_without_key":
        return {"Authorization": "Bearer "}
    if case == "malformed":
        return gw.auth("not-a-key")
    if case == "unknown":
        return gw.auth("og_0123456789ab_" + "A" * 32)
    if case == "altered_secret":
        key = await gw.key()
        return gw.auth(key[:-1] + ("B" if key[-1] != "B" else "C"))
    assert case == "revoked"
    key = await gw.key()
    assert await gw.parts.apikeys.revoke(key.split("_")[1])
    return gw.auth(key)


@pytest.mark.parametrize("case", ["none", "wrong_scheme", "bearer_without_key", "malformed",
                                  "unknown", "altered_secret", "revoked"])
async def test_bad_credentials_are_401_on_every_route(gw: Gateway, case: str) -> None:
    # Missing, mis-schemed, malformed, unknown, altered or revoked keys get a JSON 401 everywhere.
    headers = await bad_headers(gw, case)
    for method, path, body, _ in ROUTES:
        r = await call(gw, method, path, body, headers)
        await assert_error(r, 401, "unauthenticated")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await data_keys(gw) == []


async def test_revoked_key_stops_working_at_once(gw: Gateway) -> None:
    # A key that worked (and is cached) is refused right after it is revoked.
    key = await gw.key()
    r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
    assert r.status == 200
    assert await gw.parts.apikeys.revoke(key.split("_")[1])
    r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
    err = await assert_error(r, 401, "unauthenticated")
    assert "revoked" in err["message"]


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in ROUTES])
async def test_key_without_the_scope_is_403_naming_it(
        gw: Gateway, route: tuple[str, str, dict[str, Any] | None, str]) -> None:
    # A key holding every scope but the one a route needs gets 403 forbidden naming that scope.
    method, path, body, scope = route
    key = await gw.key("acme", ",".join(s for s in ALL_SCOPES if s != scope))
    r = await call(gw, method, path, body, gw.auth(key))
    err = await assert_error(r, 403, "forbidden")
    assert f"'{scope}'" in err["message"]
    assert await data_keys(gw) == []


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in ROUTES])
async def test_key_with_only_the_scope_is_allowed(
        gw: Gateway, route: tuple[str, str, dict[str, Any] | None, str]) -> None:
    # A key holding only the scope a route needs gets past authorisation (no 401/403).
    method, path, body, scope = route
    key = await gw.key("acme", scope)
    r = await call(gw, method, path, body, gw.auth(key))
    assert r.status not in (401, 403, 500), await r.text()


async def test_scheme_is_case_insensitive(gw: Gateway) -> None:
    # 'bearer' in lower case (RFC 7235: schemes are case-insensitive) is accepted.
    key = await gw.key()
    r = await gw.http.get("/v1/suppressions?channel=sms",
                          headers={"Authorization": f"bearer {key}"})
    assert r.status == 200


async def test_other_tenant_cannot_see_suppressions(gw: Gateway) -> None:
    # acme's suppression is invisible to globex: get 404, list empty, check false, audit empty.
    acme, globex = gw.auth(await gw.key("acme")), gw.auth(await gw.key("globex"))
    for body in ({"channel": "sms", "identifier": PHONE},
                 {"channel": "email", "identifier": EMAIL}):
        r = await gw.http.post("/v1/suppressions", json=body, headers=acme)
        assert r.status == 201
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": PHONE,
                                                 "source": "web_form"}, headers=acme)
    assert r.status == 201

    for path in (f"/v1/suppressions/sms/{PHONE}", f"/v1/suppressions/email/{EMAIL}"):
        await assert_error(await gw.http.get(path, headers=globex), 404, "not_found")
        assert (await gw.http.get(path, headers=acme)).status == 200
    for channel in ("sms", "email"):
        r = await gw.http.get(f"/v1/suppressions?channel={channel}", headers=globex)
        assert await r.json() == {"items": [], "next_cursor": None}
    r = await gw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE]}, headers=globex)
    assert [x["suppressed"] for x in (await r.json())["results"]] == [False]
    for ident in (PHONE, EMAIL):
        r = await gw.http.get("/v1/audit", params={"identifier": ident}, headers=globex)
        assert r.status == 200 and (await r.json())["items"] == []
        r = await gw.http.get("/v1/audit", params={"identifier": ident}, headers=acme)
        assert (await r.json())["items"]


async def test_other_tenant_cannot_delete(gw: Gateway) -> None:
    # A globex DELETE of acme's suppression is a 404 and leaves acme's suppression in place.
    acme, globex = gw.auth(await gw.key("acme")), gw.auth(await gw.key("globex"))
    r = await gw.http.post("/v1/suppressions", json={"channel": "sms", "identifier": PHONE},
                           headers=acme)
    assert r.status == 201
    r = await gw.http.delete(f"/v1/suppressions/sms/{PHONE}", headers=globex)
    await assert_error(r, 404, "not_found")
    assert (await gw.http.get(f"/v1/suppressions/sms/{PHONE}", headers=acme)).status == 200


async def test_suppression_by_other_tenant_does_not_suppress(gw: Gateway) -> None:
    # globex suppressing a number leaves it unsuppressed for acme (and vice versa for the list).
    acme, globex = gw.auth(await gw.key("acme")), gw.auth(await gw.key("globex"))
    r = await gw.http.post("/v1/suppressions", json={"channel": "sms", "identifier": PHONE},
                           headers=globex)
    assert r.status == 201
    r = await gw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE]}, headers=acme)
    assert [x["suppressed"] for x in (await r.json())["results"]] == [False]
    await assert_error(await gw.http.get(f"/v1/suppressions/sms/{PHONE}", headers=acme),
                       404, "not_found")
    assert await stored_sms(gw, "acme") == []
    assert [i["identifier"] for i in await stored_sms(gw, "globex")] == [PHONE]
    assert await gw.parts.service.suppressed("acme", Channel.SMS, [PHONE]) == [False]
    assert await gw.parts.service.suppressed("globex", Channel.SMS, [PHONE]) == [True]
