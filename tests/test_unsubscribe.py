"""The unsubscribe link, RFC 8058 one-click and the preference centre over real HTTP."""

from __future__ import annotations

import asyncio
import copy
import errno
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from conftest import TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from redis_proc import RedisServerProcess

from suppression.models import Channel, scoped
from suppression.tokens import TokenSigner

ANN = "ann@example.com"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
TOPIC_TENANTS: dict[str, Any] = copy.deepcopy(TENANTS)
TOPIC_TENANTS["acme"]["topics"] = {"news": "Weekly news", "deals": "Deals and offers"}
TOPIC_TENANTS["evil"] = {"brand": '<script>alert(1)</script> & "Co"',
                         "topics": {"x": "<img src=x onerror=alert(1)>"}}
YEAR_S = 365 * 86400


@pytest.fixture
async def gwt(redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway whose tenant acme has email topics (news, deals)."""
    settings = make_settings(redis_url, tmp_path / "data", tenants=TOPIC_TENANTS)
    parts, client = await start_gateway(settings)
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


def token(gw: Gateway, ident: str = ANN, topic: str = "", tenant: str = "acme") -> str:
    return gw.parts.tokens.issue(tenant, Channel.EMAIL, ident, topic)


async def footprint(gw: Gateway) -> dict[str, Any]:
    """Every Redis key with its value, the journal's bytes, the pending count."""
    client: aioredis.Redis = gw.parts.client
    out: dict[Any, Any] = {}
    for key in sorted(await client.keys("*")):
        kind = await client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "list":
            out[key] = await client.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(await client.smembers(key))
        elif kind == "zset":
            out[key] = await client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await client.get(key)
    journal = gw.parts.settings.journal_dir
    out["journal"] = {str(p): p.read_bytes() for p in sorted(journal.rglob("*.jsonl"))}
    out["pending"] = gw.parts.service.pending_count
    return out


async def suppression(gw: Gateway, key: str, ident: str = ANN) -> dict[str, Any] | None:
    r = await gw.http.get(f"/v1/suppressions/email/{ident}", headers=gw.auth(key))
    if r.status == 404:
        return None
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def audit(gw: Gateway, key: str, ident: str = ANN) -> list[dict[str, Any]]:
    r = await gw.http.get("/v1/audit", params={"identifier": ident}, headers=gw.auth(key))
    assert r.status == 200
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def scopes(gw: Gateway, *topics: str, tenant: str = "acme") -> list[bool]:
    names = [ANN, *(scoped(ANN, t) for t in topics)]
    return await gw.parts.service.suppressed(tenant, Channel.EMAIL, names)


def assert_page(r: ClientResponse) -> None:
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        assert r.headers[name] == value, name
    assert "Set-Cookie" not in r.headers
    assert "Location" not in r.headers


def multipart(fields: list[tuple[str, str]], boundary: str = "----b0undary") -> tuple[
        bytes, dict[str, str]]:
    """A multipart/form-data body as mailbox providers send it (RFC 8058 section 3.1)."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{value}\r\n".encode() for name, value in fields) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# -- GET and HEAD ----------------------------------------------------------------------


async def test_get_and_head_change_nothing(gw: Gateway) -> None:
    # Link scanners fetch the page (GET and HEAD, repeatedly): the store, audit and journal
    # stay exactly as they were, and the page shows brand, masked address and a button.
    key = await gw.key()
    t = token(gw)
    before = await footprint(gw)
    for _ in range(3):
        r = await gw.http.get(f"/u/{t}")
        assert r.status == 200
        assert_page(r)
        html = await r.text()
        assert "Acme Co" in html and "a***@example.com" in html and ANN not in html
        assert '<form method="post">' in html and "<button" in html
        r = await gw.http.head(f"/u/{t}")
        assert r.status == 200 and await r.read() == b""
        assert_page(r)
        assert (await gw.http.get(f"/preferences/{t}")).status == 200
        assert (await gw.http.head(f"/preferences/{t}")).status == 200
    assert await footprint(gw) == before
    assert await suppression(gw, key) is None and await audit(gw, key) == []


async def test_page_is_accessible_html(gw: Gateway) -> None:
    # One h1, a lang, a title, no script, nothing loaded from elsewhere, the postal address.
    html = await (await gw.http.get(f"/u/{token(gw)}")).text()
    assert html.startswith("<!doctype html>") and '<html lang="en">' in html
    assert html.count("<h1>") == 1 and "<title>" in html
    assert "<script" not in html and "src=" not in html and "http" not in html
    assert ":focus-visible" in html and "1 Main St" in html


# -- one-click and the page's button ----------------------------------------------------


async def test_one_click_urlencoded_suppresses(gw: Gateway) -> None:
    # RFC 8058 POST (urlencoded): 200 confirmation, no redirect; reason one_click, source web.
    key = await gw.key()
    r = await gw.http.post(f"/u/{token(gw)}", data=ONE_CLICK, headers=FORM,
                           allow_redirects=False)
    assert r.status == 200
    assert_page(r)
    assert "You are unsubscribed" in await r.text()
    entry = await suppression(gw, key)
    assert entry is not None
    assert (entry["reason"], entry["source"], entry["scope"]) == ("one_click", "web", "tenant")
    items = await audit(gw, key)
    assert [(i["type"], i["reason"], i["source"]) for i in items] == [
        ("opt_out", "one_click", "web")]
    assert items[0]["detail"]["via"] == "one_click"


async def test_one_click_multipart_suppresses(gw: Gateway) -> None:
    # RFC 8058 POST as multipart/form-data (as Gmail sends it): suppressed, reason one_click.
    key = await gw.key()
    body, headers = multipart([("List-Unsubscribe", "One-Click")])
    r = await gw.http.post(f"/u/{token(gw)}", data=body, headers=headers,
                           allow_redirects=False)
    assert r.status == 200
    entry = await suppression(gw, key)
    assert entry is not None and (entry["reason"], entry["source"]) == ("one_click", "web")


async def test_one_click_twice_keeps_the_first(gw: Gateway) -> None:
    # Providers may POST more than once: still 200, the entry keeps its first time.
    key = await gw.key()
    t = token(gw)
    assert (await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)).status == 200
    first = await suppression(gw, key)
    assert (await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)).status == 200
    assert await suppression(gw, key) == first


async def test_page_button_is_unsubscribe_click(gw: Gateway) -> None:
    # The page's own form posts action=all: reason unsubscribe_click.
    key = await gw.key()
    r = await gw.http.post(f"/u/{token(gw)}", data={"action": "all"}, allow_redirects=False)
    assert r.status == 200 and "a***@example.com" in await r.text()
    entry = await suppression(gw, key)
    assert entry is not None and (entry["reason"], entry["source"]) == ("unsubscribe_click", "web")
    r = await gw.http.get(f"/u/{token(gw)}")
    assert r.status == 200 and "is unsubscribed from all marketing" in await r.text()


async def test_topic_token_one_click_leaves_all_marketing(gwt: Gateway) -> None:
    # A topic token: the page offers the topic or everything; a one-click POST (the
    # mailbox provider's button) leaves all of the tenant's marketing, as the contract says.
    gw = gwt
    key = await gw.key()
    t = token(gw, topic="news")
    html = await (await gw.http.get(f"/u/{t}")).text()
    assert "Unsubscribe from Weekly news" in html
    assert "Unsubscribe from all marketing email from Acme Co" in html
    assert f'href="../preferences/{t}"' in html
    assert (await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)).status == 200
    assert await scopes(gw, "news", "deals") == [True, False, False]
    sup = await suppression(gw, key)
    assert sup is not None and sup["reason"] == "one_click"


async def test_topic_token_buttons(gwt: Gateway) -> None:
    # The topic button leaves the topic; the "all" button then leaves everything.
    gw = gwt
    t = token(gw, topic="deals")
    r = await gw.http.post(f"/u/{t}", data={"action": "topic"})
    assert r.status == 200 and "Deals and offers" in await r.text()
    assert await scopes(gw, "deals", "news") == [False, True, False]
    assert (await gw.http.post(f"/u/{t}", data={"action": "all"})).status == 200
    assert (await scopes(gw))[0] is True


async def test_topic_button_without_a_topic_token_is_400(gw: Gateway) -> None:
    # action=topic on a plain token is not a choice the page offered: 400, nothing changed.
    before = await footprint(gw)
    r = await gw.http.post(f"/u/{token(gw)}", data={"action": "topic"})
    assert r.status == 400
    assert_page(r)
    assert await footprint(gw) == before


# -- tokens that are not ours ----------------------------------------------------------------


def bad_tokens(gw: Gateway) -> dict[str, str]:
    good = token(gw)
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    expired = TokenSigner([b"test-secret-key"], max_age_s=2 * YEAR_S,
                          clock=lambda: time.time() - 3 * YEAR_S).issue(
                              "acme", Channel.EMAIL, ANN)
    return {
        "forged": TokenSigner([b"attacker-key"], max_age_s=YEAR_S).issue(
            "acme", Channel.EMAIL, ANN),
        "altered": flipped,
        "truncated": good[:-1],
        "expired": expired,
        "garbage": "not-a-token",
        "unknown tenant": gw.parts.tokens.issue("initech", Channel.EMAIL, ANN),
        "another gateway's key": TokenSigner([b"other-gateway"], max_age_s=YEAR_S).issue(
            "globex", Channel.EMAIL, ANN),
        "too long": "A" * 600,
    }


async def test_every_bad_token_gets_the_identical_404_and_changes_nothing(gw: Gateway) -> None:
    # Forged, altered, expired, garbage, another key's, unknown tenant: the same 404 (status,
    # headers, bytes) for GET/HEAD/POST on both paths, and nothing changes.
    key = await gw.key()
    before = await footprint(gw)
    seen: set[tuple[int, bytes, tuple[tuple[str, str], ...]]] = set()
    for name, bad in bad_tokens(gw).items():
        for path in (f"/u/{bad}", f"/preferences/{bad}"):
            for method, kwargs in (("GET", {}), ("POST", {"data": ONE_CLICK, "headers": FORM}),
                                   ("POST", {"data": {"action": "all"}}),
                                   ("POST", {"data": "junk", "headers": {"Content-Type":
                                                                         "text/plain"}})):
                r = await gw.http.request(method, path, **kwargs)
                assert r.status == 404, (name, method, path)
                assert_page(r)
                headers = tuple(sorted((k, v) for k, v in r.headers.items() if k != "Date"))
                seen.add((r.status, await r.read(), headers))
            head = await gw.http.head(path)
            assert head.status == 404 and "Set-Cookie" not in head.headers
    assert len(seen) == 1
    assert await footprint(gw) == before
    assert await suppression(gw, key) is None


async def test_u_without_a_token_is_not_a_token_route(gw: Gateway) -> None:
    # /u/ with no token is not a token route: the API's ordinary 404.
    r = await gw.http.get("/u/")
    assert r.status == 404


# -- bad bodies ----------------------------------------------------------------------------


async def test_bad_post_bodies_are_400_and_change_nothing(gw: Gateway) -> None:
    # Anything but One-Click or the page's choice: a 400 page naming the problem; no write.
    t = token(gw)
    mp_bad, mp_headers = multipart([("List-Unsubscribe", "Maybe")])
    mp_file = (b'------b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"; '
               b'filename="x.txt"\r\nContent-Type: text/plain\r\n\r\nOne-Click\r\n'
               b"------b0undary--\r\n")
    cases: list[tuple[str, bytes | str, dict[str, str]]] = [
        ("empty form", b"", FORM),
        ("no content type", ONE_CLICK, {}),
        ("text/plain", ONE_CLICK, {"Content-Type": "text/plain"}),
        ("json", '{"List-Unsubscribe": "One-Click"}', {"Content-Type": "application/json"}),
        ("wrong value", "List-Unsubscribe=Yes", FORM),
        ("two values", ONE_CLICK + "&" + ONE_CLICK.replace("One", "Two"), FORM),
        ("unrelated field", "foo=bar", FORM),
        ("unknown action", "action=everything", FORM),
        ("save on /u", "action=save", FORM),
        ("two actions", "action=all&action=topic", FORM),
        ("not utf-8", b"action=\xff\xfe", FORM),
        ("multipart wrong value", mp_bad, mp_headers),
        ("multipart file", mp_file, mp_headers),
        ("multipart no boundary", b"garbage", {"Content-Type": "multipart/form-data"}),
        ("multipart torn", b"------b0undary\r\nContent-Disposition: form-data; name=", mp_headers),
    ]
    before = await footprint(gw)
    for name, body, headers in cases:
        r = await gw.http.post(f"/u/{t}", data=body, headers=headers, allow_redirects=False)
        assert r.status == 400, (name, r.status, await r.text())
        assert_page(r)
        assert "changed" in await r.text() or "accepts" in await r.text(), name
    r = await gw.http.post(f"/u/{t}", data="List-Unsubscribe=" + "x" * (70 << 10), headers=FORM)
    assert r.status == 413
    assert await footprint(gw) == before


# -- preference centre ----------------------------------------------------------------------


async def test_preferences_show_topics_and_save_only_changes(gwt: Gateway) -> None:
    # Untick "news": only news is suppressed (reason unsubscribe_click); tick it again: lifted
    # with opt_in_preferences; "deals" is never written.
    gw = gwt
    key = await gw.key()
    t = token(gw)
    html = await (await gw.http.get(f"/preferences/{t}")).text()
    assert '<label for="topic-news">Weekly news</label>' in html
    assert 'value="news" checked' in html and 'value="deals" checked' in html
    r = await gw.http.post(f"/preferences/{t}", data=[
        ("topic", "deals"), ("shown", "news"), ("shown", "deals"), ("action", "save")])
    assert r.status == 200
    assert_page(r)
    assert await scopes(gw, "news", "deals") == [False, True, False]
    html = await (await gw.http.get(f"/preferences/{t}")).text()
    assert 'value="news">' in html and 'value="deals" checked' in html
    r = await gw.http.post(f"/preferences/{t}", data=[
        ("topic", "deals"), ("topic", "news"), ("shown", "deals"), ("action", "save")])
    assert r.status == 200
    assert await scopes(gw, "news", "deals") == [False, False, False]
    items = await audit(gw, key)
    assert [(i["type"], i["reason"], i["detail"]["scope"]) for i in items] == [
        ("opt_out", "unsubscribe_click", "topic:news"),
        ("opt_in", "opt_in_preferences", "topic:news")]
    assert await suppression(gw, key) is None


async def test_preferences_stale_page_does_not_undo_a_later_unsubscribe(gwt: Gateway) -> None:
    # A page opened before leaving "news" (the page's topic button), saved unchanged
    # afterwards, changes nothing.
    gw = gwt
    t = token(gw)
    assert (await gw.http.post(f"/u/{token(gw, topic='news')}", data={"action": "topic"},
                               headers=FORM)).status == 200
    r = await gw.http.post(f"/preferences/{t}", data=[
        ("topic", "news"), ("topic", "deals"), ("shown", "news"), ("shown", "deals"),
        ("action", "save")])
    assert r.status == 200
    assert await scopes(gw, "news") == [False, True]


async def test_preferences_unsubscribe_from_all(gwt: Gateway) -> None:
    # "Unsubscribe from all": the address itself is suppressed; the page then says so and
    # offers no re-subscribe to everything.
    gw = gwt
    key = await gw.key()
    t = token(gw)
    r = await gw.http.post(f"/preferences/{t}", data={"action": "all"})
    assert r.status == 200
    entry = await suppression(gw, key)
    assert entry is not None and entry["reason"] == "unsubscribe_click"
    html = await (await gw.http.get(f"/preferences/{t}")).text()
    assert "is unsubscribed from all marketing email" in html
    assert "<form" not in html and "checkbox" not in html


async def test_preferences_bad_input_is_400_and_changes_nothing(gwt: Gateway) -> None:
    # An unknown topic, a file, or no choice: 400 naming it, nothing written.
    gw = gwt
    t = token(gw)
    before = await footprint(gw)
    for data in ([("topic", "secret"), ("action", "save")], [("shown", "zzz"), ("action", "save")],
                 [("topic", "news")], [("action", "topic")]):
        r = await gw.http.post(f"/preferences/{t}", data=data)
        assert r.status == 400, data
        assert_page(r)
    assert "Unknown topic &#x27;secret&#x27;" in await (await gw.http.post(
        f"/preferences/{t}", data=[("topic", "secret"), ("action", "save")])).text()
    assert await footprint(gw) == before


async def test_tenant_values_are_escaped(gwt: Gateway) -> None:
    # A brand or topic label holding markup is shown as text, never run.
    gw = gwt
    t = token(gw, tenant="evil", topic="x")
    for path in (f"/u/{t}", f"/preferences/{t}"):
        html = await (await gw.http.get(path)).text()
        assert "<script>" not in html and "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Co&quot;" in html


async def test_sms_token_page_works(gw: Gateway) -> None:
    # A token for a phone number: masked number, "text messages", no topics offered.
    t = gw.parts.tokens.issue("acme", Channel.SMS, "+14155550123")
    html = await (await gw.http.get(f"/u/{t}")).text()
    assert "+1415***0123" in html and "text messages" in html and "preferences" not in html
    assert (await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)).status == 200
    assert await gw.parts.service.suppressed("acme", Channel.SMS, ["+14155550123"]) == [True]


# -- store down ------------------------------------------------------------------------------


async def test_redis_down_post_succeeds_and_is_honoured_after_restart(
        own_redis: RedisServerProcess, tmp_path: Path) -> None:
    # Redis is stopped: GET is a 503 page that still offers the button; one-click POST is 200
    # (journalled); after Redis and the gateway restart the opt-out is in the store.
    settings = make_settings(own_redis.url, tmp_path / "data", tenants=TOPIC_TENANTS)
    parts, http = await start_gateway(settings)
    gw = Gateway(parts, http)
    t = token(gw)
    try:
        assert (await gw.http.get(f"/u/{t}")).status == 200
        own_redis.kill()
        r = await gw.http.get(f"/u/{t}")
        assert r.status == 503 and r.headers["Retry-After"] == "30"
        assert_page(r)
        assert '<button type="submit" name="action" value="all"' in await r.text()
        assert (await gw.http.get(f"/preferences/{t}")).status == 503
        r = await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)
        assert r.status == 200 and "You are unsubscribed" in await r.text()
        r = await gw.http.post(f"/preferences/{t}", data=[("shown", "news"), ("action", "save")])
        assert r.status == 200
        # Journalled opt-outs are honoured by checks during the outage.
        assert await gw.parts.service.suppressed("acme", Channel.EMAIL, [ANN]) == [True]
    finally:
        await stop_gateway(gw.parts, gw.http)
    own_redis.restart()
    parts, http = await start_gateway(settings)
    gw = Gateway(parts, http)
    try:
        async with asyncio.timeout(10):
            while gw.parts.service.pending_count:
                await asyncio.sleep(0.05)
        entry = await gw.parts.store.get("acme", Channel.EMAIL, ANN)
        assert entry is not None and entry.reason.value == "one_click"
        assert await scopes(gw, "news", "deals") == [True, True, False]
        assert (await gw.http.get(f"/u/{t}")).status == 200
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_failed_journal_is_503_and_records_nothing(redis_url: str, tmp_path: Path) -> None:
    # The journal cannot fsync: the click is not acknowledged (503 page, never a 200 or a
    # 500) and nothing reaches the store.
    fail = {"on": False}

    def flaky_fsync(fd: int) -> None:
        if fail["on"]:
            raise OSError(errno.EIO, "Input/output error")

    settings = make_settings(redis_url, tmp_path / "data", tenants=TOPIC_TENANTS)
    parts, http = await start_gateway(settings, fsync=flaky_fsync)
    gw = Gateway(parts, http)
    try:
        t = token(gw)
        fail["on"] = True
        r = await gw.http.post(f"/u/{t}", data=ONE_CLICK, headers=FORM)
        assert r.status == 503 and "nothing was changed" in await r.text()
        assert_page(r)
        r = await gw.http.post(f"/preferences/{t}", data=[("shown", "news"), ("action", "save")])
        assert r.status == 503
        assert await gw.parts.store.entries("acme", Channel.EMAIL,
                                            [ANN, scoped(ANN, "news")]) == [None, None]
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_mangled_forms_never_cause_a_500(gw: Gateway) -> None:
    # Valid one-click bodies with bytes cut, flipped or inserted (both encodings): each answer
    # is the confirmation or a 400/413 page, never a 500.
    rng = random.Random(8058)
    t = token(gw)
    mp_body, mp_headers = multipart([("List-Unsubscribe", "One-Click")])
    seeds = [(mp_body, mp_headers), (ONE_CLICK.encode(), FORM)]
    for i in range(300):
        body, headers = seeds[i % 2]
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(mutated) + 1)
            op = rng.choice(("cut", "flip", "insert"))
            if op == "cut":
                del mutated[pos:pos + rng.randint(1, 8)]
            elif op == "flip" and pos < len(mutated):
                mutated[pos] ^= 1 << rng.randrange(8)
            else:
                mutated[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        r = await gw.http.post(f"/u/{t}", data=bytes(mutated), headers=headers)
        assert r.status in (200, 400, 413), (bytes(mutated), r.status, await r.text())
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"


async def test_rotated_gateway_accepts_links_signed_with_a_previous_key(
        redis_url: str, tmp_path: Path) -> None:
    # After rotation (new OPTOUT_SECRET_KEY, old one in previous_secret_keys) old links still
    # work; a link signed with a key no longer listed gets the not-found page.
    old = TokenSigner([b"test-secret-key"], max_age_s=YEAR_S).issue("acme", Channel.EMAIL, ANN)
    gone = TokenSigner([b"retired-long-ago"], max_age_s=YEAR_S).issue("acme", Channel.EMAIL, ANN)
    settings = make_settings(redis_url, tmp_path / "data", secret_key="rotated-key",
                             previous_secret_keys=["test-secret-key"])
    parts, http = await start_gateway(settings)
    gw = Gateway(parts, http)
    try:
        assert (await gw.http.get(f"/u/{gone}")).status == 404
        assert (await gw.http.get(f"/u/{old}")).status == 200
        assert (await gw.http.post(f"/u/{old}", data=ONE_CLICK, headers=FORM)).status == 200
        assert await scopes(gw) == [True]
        fresh = token(gw)
        assert TokenSigner([b"test-secret-key"], max_age_s=YEAR_S).verify(fresh) is None
        assert TokenSigner([b"rotated-key"], max_age_s=YEAR_S).verify(fresh) is not None
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_unknown_charset_in_a_one_click_post_is_400(gw: Gateway) -> None:
    # A form in a charset nobody knows is a bad request, never a 500; nothing changes.
    key = await gw.key()
    r = await gw.http.post(f"/u/{token(gw)}", data=b"List-Unsubscribe=One-Click", headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=nonexistent"})
    assert r.status == 400
    assert await suppression(gw, key) is None
