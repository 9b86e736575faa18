"""Bad input on the ops API: 4xx naming the problem, never a 500, nothing half-written."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from aiohttp import ClientResponse
from conftest import Gateway
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression.keys import API_KEYS, META

PHONE = "+14155550123"
JSON = {"Content-Type": "application/json"}
BODY_ROUTES = ["/v1/suppressions", "/v1/suppressions/check", "/v1/consents"]
VALID: dict[str, dict[str, Any]] = {
    "/v1/suppressions": {"channel": "sms", "identifier": PHONE, "reason": "manual"},
    "/v1/suppressions/check": {"channel": "sms", "identifiers": [PHONE]},
    "/v1/consents": {"channel": "sms", "identifier": PHONE, "source": "web_form",
                     "evidence": "checked the box on /signup"},
}


async def assert_error(r: ClientResponse, status: int, code: str,
                       field: str | None = None) -> dict[str, Any]:
    text = await r.text()
    assert r.status == status, (r.method, str(r.url), text)
    assert r.content_type == "application/json", text
    body = json.loads(text)
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    if field is not None:
        assert err.get("field") == field, err
    return err


async def data_keys(gw: Gateway) -> list[str]:
    """Every key in Redis that holds tenant data (not the API keys, not the layout marker)."""
    found = [k.decode() if isinstance(k, bytes) else k for k in await gw.parts.client.keys("*")]
    return sorted(k for k in found if k not in (API_KEYS, META))


async def post_raw(gw: Gateway, path: str, data: bytes | str, key: str,
                   headers: dict[str, str] | None = None) -> ClientResponse:
    return await gw.http.post(path, data=data, headers={**gw.auth(key), **(headers or JSON)})


# -- bodies that are not JSON ---------------------------------------------------------------


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", ['{"channel": "sms",', "", "not json", "{'channel': 'sms'}",
                                 '{"channel": "sms"} trailing', "\ufeff{}"])
async def test_malformed_json_is_400(gw: Gateway, path: str, raw: str) -> None:
    # Bytes that are not JSON (truncated, empty, single quotes, BOM...): 400 malformed_json.
    r = await post_raw(gw, path, raw.encode(), await gw.key())
    await assert_error(r, 400, "malformed_json")
    assert await data_keys(gw) == []


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_non_utf8_body_is_400(gw: Gateway, path: str) -> None:
    # A body in Latin-1 (not UTF-8) is refused with 400 malformed_json saying so.
    raw = '{"channel": "email", "identifier": "caf\u00e9@example.com"}'.encode("latin-1")
    err = await assert_error(await post_raw(gw, path, raw, await gw.key()), 400, "malformed_json")
    assert "UTF-8" in err["message"]


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_utf16_body_is_400(gw: Gateway, path: str) -> None:
    # A JSON body encoded as UTF-16 is not UTF-8: 400 malformed_json, not a guess.
    raw = json.dumps(VALID[path]).encode("utf-16")
    await assert_error(await post_raw(gw, path, raw, await gw.key()), 400, "malformed_json")


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", ["[1, 2]", '"a string"', "42", "null", "true",
                                 json.dumps([VALID["/v1/suppressions"]])])
async def test_json_that_is_not_an_object_is_422(gw: Gateway, path: str, raw: str) -> None:
    # A JSON array, string, number, null or boolean body is 422 invalid_request on 'body'.
    r = await post_raw(gw, path, raw, await gw.key())
    await assert_error(r, 422, "invalid_request", field="body")
    assert await data_keys(gw) == []


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_deeply_nested_json_is_4xx(gw: Gateway, path: str) -> None:
    # JSON nested 100,000 levels deep (a parser bomb) is refused as 400, not a 500.
    raw = "[" * 100_000 + "]" * 100_000
    await assert_error(await post_raw(gw, path, raw, await gw.key()), 400, "malformed_json")
    raw = '{"channel": ' + "[" * 100_000 + "]" * 100_000 + "}"
    await assert_error(await post_raw(gw, path, raw, await gw.key()), 400, "malformed_json")


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_integer_too_long_to_parse_is_400(gw: Gateway, path: str) -> None:
    # A JSON integer of 5,000 digits (past Python's int parsing limit) is a 400, not a 500.
    raw = '{"channel": "sms", "identifier": ' + "9" * 5000 + "}"
    await assert_error(await post_raw(gw, path, raw, await gw.key()), 400, "malformed_json")


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_wrong_content_type_is_415(gw: Gateway, path: str) -> None:
    # A form-encoded or text/plain body is refused with 415 unsupported_media_type.
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        r = await post_raw(gw, path, json.dumps(VALID[path]), await gw.key(),
                           headers={"Content-Type": ctype})
        err = await assert_error(r, 415, "unsupported_media_type")
        assert "application/json" in err["message"]
    assert await data_keys(gw) == []


async def test_json_without_content_type_is_accepted(gw: Gateway) -> None:
    # A JSON body sent with no Content-Type header at all (curl --data-binary) is read as JSON.
    r = await gw.http.post("/v1/suppressions", data=json.dumps(VALID["/v1/suppressions"]),
                           headers=gw.auth(await gw.key()), skip_auto_headers=["Content-Type"])
    assert r.status == 201, await r.text()


async def test_json_suffix_content_type_is_accepted(gw: Gateway) -> None:
    # application/merge-patch+json style types and a charset parameter are accepted as JSON.
    key = await gw.key()
    for ctype in ("application/json; charset=utf-8", "application/vnd.api+json"):
        r = await post_raw(gw, "/v1/suppressions/check", json.dumps(VALID[
            "/v1/suppressions/check"]), key, headers={"Content-Type": ctype})
        assert r.status == 200, await r.text()


# -- JSON objects with wrong fields ---------------------------------------------------------


WRONG_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/suppressions", {"channel": "sms", "identifier": 4155550123}, "identifier"),
    ("/v1/suppressions", {"channel": "sms", "identifier": None}, "identifier"),
    ("/v1/suppressions", {"channel": "sms", "identifier": [PHONE]}, "identifier"),
    ("/v1/suppressions", {"channel": "sms", "identifier": ""}, "identifier"),
    ("/v1/suppressions", {"channel": "fax", "identifier": PHONE}, "channel"),
    ("/v1/suppressions", {"channel": "SMS", "identifier": PHONE}, "channel"),
    ("/v1/suppressions", {"channel": 1, "identifier": PHONE}, "channel"),
    ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "reason": "because"}, "reason"),
    ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "reason": None}, "reason"),
    ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "reason": "opt_in_manual"},
     "reason"),
    ("/v1/suppressions", {"identifier": PHONE}, "channel"),
    ("/v1/suppressions", {"channel": "sms"}, "identifier"),
    ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "tenant": "globex"}, "tenant"),
    ("/v1/suppressions/check", {"channel": "sms", "identifiers": PHONE}, "identifiers"),
    ("/v1/suppressions/check", {"channel": "sms", "identifiers": [PHONE, 4155550124]},
     "identifiers.1"),
    ("/v1/suppressions/check", {"channel": "sms", "identifiers": {"a": PHONE}}, "identifiers"),
    ("/v1/suppressions/check", {"channel": "fax", "identifiers": [PHONE]}, "channel"),
    ("/v1/suppressions/check", {"channel": "sms"}, "identifiers"),
    ("/v1/suppressions/check", {"identifiers": [PHONE]}, "channel"),
    ("/v1/suppressions/check", {"channel": "sms", "identifiers": [PHONE], "limit": 3}, "limit"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE}, "source"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": ""}, "source"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": 7}, "source"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web",
                      "evidence": {"form": "signup"}}, "evidence"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web",
                      "evidence": "x" * 4001}, "evidence"),
    ("/v1/consents", {"channel": "email", "source": "web"}, "identifier"),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web", "status": "no"},
     "status"),
]


@pytest.mark.parametrize("path,body,field", WRONG_FIELDS,
                         ids=[f"{p.split('/')[-1]}-{f}-{i}"
                              for i, (p, _, f) in enumerate(WRONG_FIELDS)])
async def test_wrong_field_is_422_naming_it(gw: Gateway, path: str, body: dict[str, Any],
                                            field: str) -> None:
    # A wrong type, bad enum value, missing or unknown field is 422 invalid_request naming it.
    r = await gw.http.post(path, json=body, headers=gw.auth(await gw.key()))
    err = await assert_error(r, 422, "invalid_request", field=field)
    assert f"'{field}'" in err["message"]
    assert await data_keys(gw) == []


async def test_several_problems_are_counted(gw: Gateway) -> None:
    # With several bad fields the first is named and the message says how many more there are.
    r = await gw.http.post("/v1/suppressions", json={"channel": "fax", "identifier": 1,
                                                     "reason": "x"},
                           headers=gw.auth(await gw.key()))
    err = await assert_error(r, 422, "invalid_request", field="channel")
    assert "2 more problems" in err["message"]


async def test_check_of_10001_identifiers_is_422(gw: Gateway) -> None:
    # A bulk check over the 10,000-identifier limit is refused as a whole, naming 'identifiers'.
    idents = [f"+1415555{i:04d}" for i in range(10_001)]
    r = await gw.http.post("/v1/suppressions/check", json={"channel": "sms",
                                                           "identifiers": idents},
                           headers=gw.auth(await gw.key()))
    err = await assert_error(r, 422, "invalid_request", field="identifiers")
    assert "10000" in err["message"].replace(",", "")


async def test_check_of_10000_identifiers_is_200(gw: Gateway) -> None:
    # Exactly 10,000 identifiers is within the limit and answers each in order.
    idents = [f"user{i}@example.com" for i in range(10_000)]
    r = await gw.http.post("/v1/suppressions/check", json={"channel": "email",
                                                           "identifiers": idents},
                           headers=gw.auth(await gw.key()))
    assert r.status == 200
    results = (await r.json())["results"]
    assert [x["identifier"] for x in results] == idents


async def test_empty_check_is_422(gw: Gateway) -> None:
    # An empty identifiers list is 422 naming 'identifiers' (nothing to check is a client bug).
    r = await gw.http.post("/v1/suppressions/check", json={"channel": "sms", "identifiers": []},
                           headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_request", field="identifiers")


@pytest.mark.parametrize("path,body", [
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web\ud800"}),
    ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web",
                      "evidence": "shown \udfff"}),
    ("/v1/suppressions", {"channel": "sms", "identifier": "+1415555\ud8000123"}),
    ("/v1/suppressions", {"channel": "email", "identifier": "a\udc00@example.com"}),
])
async def test_lone_surrogates_are_4xx(gw: Gateway, path: str, body: dict[str, Any]) -> None:
    # A JSON string holding a lone UTF-16 surrogate (\ud800) is refused, never a 500, nothing kept.
    r = await gw.http.post(path, json=body, headers=gw.auth(await gw.key()))
    err = await assert_error(r, 422, "invalid_request")
    assert err.get("field") in ("source", "evidence", "identifier"), err
    assert await data_keys(gw) == []


# -- identifiers that are not phone numbers or addresses ------------------------------------


@pytest.mark.parametrize("channel,ident", [
    ("sms", "12345"), ("sms", "+10000000000"), ("sms", "1-800-FLOWERS"), ("sms", "abc"),
    ("sms", "+1415555012\n3"), ("email", "not-an-address"), ("email", "a@b"),
    ("email", "Ann <ann@example.com>"), ("email", "a" * 70 + "@example.com"),
])
async def test_invalid_recipient_is_422(gw: Gateway, channel: str, ident: str) -> None:
    # A value that is no phone number / address is 422 invalid_recipient naming 'identifier'.
    key = await gw.key()
    for path, body in (
        ("/v1/suppressions", {"channel": channel, "identifier": ident}),
        ("/v1/consents", {"channel": channel, "identifier": ident, "source": "web"}),
    ):
        r = await gw.http.post(path, json=body, headers=gw.auth(key))
        await assert_error(r, 422, "invalid_recipient", field="identifier")
    assert await data_keys(gw) == []


async def test_invalid_recipient_in_path_and_query_is_422(gw: Gateway) -> None:
    # GET/DELETE with an invalid identifier in the path, and audit with one, are 422, not 404/500.
    key = gw.auth(await gw.key())
    for method in ("GET", "DELETE"):
        r = await gw.http.request(method, "/v1/suppressions/sms/12345", headers=key)
        await assert_error(r, 422, "invalid_recipient", field="identifier")
        r = await gw.http.request(method, "/v1/suppressions/email/nobody", headers=key)
        await assert_error(r, 422, "invalid_recipient", field="identifier")
        r = await gw.http.request(method, "/v1/suppressions/fax/12345", headers=key)
        await assert_error(r, 422, "invalid_request", field="channel")
    r = await gw.http.get("/v1/audit", params={"identifier": "12345"}, headers=key)
    await assert_error(r, 422, "invalid_recipient", field="identifier")
    r = await gw.http.get("/v1/audit", params={"identifier": PHONE, "channel": "fax"},
                          headers=key)
    await assert_error(r, 422, "invalid_request", field="channel")
    r = await gw.http.get("/v1/audit", headers=key)
    await assert_error(r, 422, "invalid_request", field="identifier")
    assert await data_keys(gw) == []


async def test_invalid_item_in_check_is_flagged_not_refused(gw: Gateway) -> None:
    # One bad identifier in a bulk check gets a per-item error; the others are still answered.
    r = await gw.http.post("/v1/suppressions/check", json={
        "channel": "sms", "identifiers": [PHONE, "12345", ""]}, headers=gw.auth(await gw.key()))
    assert r.status == 200
    results = (await r.json())["results"]
    assert [x["suppressed"] for x in results] == [False, None, None]
    assert all(x["error"] for x in results[1:])


# -- query strings ----------------------------------------------------------------------------


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "garbage!", "@@@@", _cursor({"a": 1}), _cursor([1]), _cursor(["x", "y"]), _cursor([-1, "a"]),
    _cursor([1, 2]), _cursor("[1,"), base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    _cursor([[[[[[[[[[1]]]]]]]]]]), "W" * 3000,
    base64.urlsafe_b64encode(b"[" * 1500 + b"]" * 1500).decode(),
    base64.urlsafe_b64encode(b"[" * 700 + b"]" * 700).decode(),
    base64.urlsafe_b64encode(b"[" + b"9" * 5000 + b', "a"]').decode(),
])
async def test_bad_cursor_is_422(gw: Gateway, cursor: str) -> None:
    # A cursor this API did not hand out is 422 invalid_request naming 'cursor'.
    r = await gw.http.get("/v1/suppressions", params={"channel": "sms", "cursor": cursor},
                          headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_request", field="cursor")


@pytest.mark.parametrize("limit", ["0", "abc", "5000", "1001", "-1", "1.5", "", " 5", "\u00b2",
                                   "\u0663", "9" * 5000, "0x10", "1e3"])
async def test_bad_limit_is_422(gw: Gateway, limit: str) -> None:
    # limit=0, abc, 5000, negative, fractional, Unicode digits, 5,000 nines: 422 naming 'limit'.
    r = await gw.http.get("/v1/suppressions", params={"channel": "sms", "limit": limit},
                          headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_request", field="limit")


@pytest.mark.parametrize("limit", ["0", "\u00b2", "9" * 5000, "1001"])
async def test_bad_review_limit_is_422(gw: Gateway, limit: str) -> None:
    # GET /v1/review applies the same limit rules: 422 naming 'limit', never a 500.
    r = await gw.http.get("/v1/review", params={"limit": limit}, headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_request", field="limit")


async def test_bad_messages_number_is_422(gw: Gateway) -> None:
    # GET /v1/messages?to= with something that is not a number is 422 naming 'to'.
    r = await gw.http.get("/v1/messages", params={"to": "12345"}, headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_recipient", field="to")


@pytest.mark.parametrize("query", ["", "?channel=fax", "?channel=", "?channel=SMS",
                                   "?channel=%FF", "?limit=10"])
async def test_list_without_a_valid_channel_is_422(gw: Gateway, query: str) -> None:
    # Listing needs channel=sms|email: missing, empty, unknown or undecodable is 422 naming it.
    r = await gw.http.get("/v1/suppressions" + query, headers=gw.auth(await gw.key()))
    await assert_error(r, 422, "invalid_request", field="channel")


# -- routes, methods, sizes -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/nope", "/v1/suppressions/sms",
                                  "/v1/suppressions/sms/a/b", "/V1/suppressions", "/%FF"])
async def test_unknown_route_is_404_json(gw: Gateway, path: str) -> None:
    # A path no route serves is 404 not_found in the JSON error shape.
    r = await gw.http.get(path, headers=gw.auth(await gw.key()))
    await assert_error(r, 404, "not_found")
    r = await gw.http.post(path, json={}, headers=gw.auth(await gw.key()))
    await assert_error(r, 404, "not_found")


@pytest.mark.parametrize("method,path,allowed", [
    ("PUT", "/v1/suppressions", {"GET", "POST"}),
    ("DELETE", "/v1/suppressions", {"GET", "POST"}),
    ("PATCH", f"/v1/suppressions/sms/{PHONE}", {"GET", "DELETE"}),
    ("GET", "/v1/suppressions/check", {"POST"}),
    ("GET", "/v1/consents", {"POST"}),
    ("POST", "/v1/audit", {"GET"}),
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/openapi.json", {"GET"}),
])
async def test_wrong_method_is_405_json(gw: Gateway, method: str, path: str,
                                        allowed: set[str]) -> None:
    # A known path with a method it does not serve is 405 in the JSON shape with an Allow header.
    r = await gw.http.request(method, path, headers=gw.auth(await gw.key()))
    await assert_error(r, 405, "method_not_allowed")
    assert allowed <= {m.strip() for m in r.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_body_over_the_size_limit_is_413_json(gw: Gateway, path: str) -> None:
    # A 5 MiB body (over the 4 MiB limit) is 413 payload_too_large in the JSON shape, nothing kept.
    big = json.dumps({**VALID[path], "evidence": "x" * (5 << 20)}).encode()
    r = await gw.http.post(path, data=io.BytesIO(big),
                           headers={**gw.auth(await gw.key()), **JSON})
    await assert_error(r, 413, "payload_too_large")
    assert await data_keys(gw) == []


# -- nothing partial ---------------------------------------------------------------------------


async def test_rejected_requests_store_nothing(gw: Gateway) -> None:
    # After rejected writes (bad field, bad recipient, bad JSON, no scope) the list is empty.
    key, reader = await gw.key(), await gw.key("acme", "read")
    bad: list[tuple[str, Any, str]] = [
        ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "reason": "because"}, key),
        ("/v1/suppressions", {"channel": "sms", "identifier": PHONE, "extra": 1}, key),
        ("/v1/suppressions", {"channel": "sms", "identifier": "12345"}, key),
        ("/v1/suppressions", {"channel": "sms", "identifier": PHONE}, reader),
        ("/v1/suppressions", [{"channel": "sms", "identifier": PHONE}], key),
        ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": ""}, key),
        ("/v1/consents", {"channel": "sms", "identifier": PHONE, "source": "web"}, reader),
        ("/v1/suppressions/check", {"channel": "sms", "identifiers": [PHONE] * 10_001}, key),
    ]
    for path, body, k in bad:
        r = await gw.http.post(path, json=body, headers=gw.auth(k))
        assert 400 <= r.status < 500, (path, body, await r.text())
    r = await post_raw(gw, "/v1/suppressions", '{"channel": "sms", "identifier": "' + PHONE, key)
    assert r.status == 400
    r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
    assert await r.json() == {"items": [], "next_cursor": None}
    r = await gw.http.get("/v1/audit", params={"identifier": PHONE}, headers=gw.auth(key))
    assert (await r.json())["items"] == []
    assert await data_keys(gw) == []
    # Control: an accepted write does show up in the same probe.
    r = await gw.http.post("/v1/suppressions", json=VALID["/v1/suppressions"],
                           headers=gw.auth(key))
    assert r.status == 201
    assert await data_keys(gw) != []


# -- never a 500 (property) ------------------------------------------------------------------

_lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.one_of(st.characters(), _lone_surrogates), max_size=10),
    st.sampled_from(["sms", "email", "", PHONE, "(415) 555-0123", "ann@example.com",
                     "manual", "because", "tel:+1-415-555-0123", "a@xn--bad", "\x00"]),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     _text)
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=12)
_fields = st.sampled_from(["channel", "identifier", "identifiers", "reason", "source",
                           "evidence", "extra"])
_bodies = st.one_of(
    _json,
    st.dictionaries(_fields, _json, max_size=5),
    st.fixed_dictionaries({"channel": st.sampled_from(["sms", "email"]),
                           "identifier": _text},
                          optional={"reason": _text, "source": _text, "evidence": _json}),
    st.fixed_dictionaries({"channel": st.sampled_from(["sms", "email"]),
                           "identifiers": st.lists(_text, max_size=6)}),
)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_random_json_never_500(gw: Gateway, data: st.DataObject) -> None:
    # Random JSON-ish bodies on the write and check routes get 2xx or a 4xx in the error shape.
    key = await gw.key()
    path = data.draw(st.sampled_from(BODY_ROUTES), label="path")
    body = data.draw(_bodies, label="body")
    raw = json.dumps(body, allow_nan=True)
    r = await post_raw(gw, path, raw, key)
    text = await r.text()
    assert r.status < 500, (path, raw, text)
    if r.status >= 400:
        err = json.loads(text)["error"]
        assert isinstance(err["code"], str) and isinstance(err["message"], str)
        assert err["message"]
