"""The unsubscribe page and the preference centre in a real headless Chromium.

Debian's ``chromium`` driven by playwright (``executable_path``), against the
gateway's own HTTP server on loopback. Skipped only when the browser is missing.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from suppression.models import Channel, scoped

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ANN = "ann@example.com"
BROWSER_TENANTS: dict[str, Any] = copy.deepcopy(TENANTS)
BROWSER_TENANTS["acme"]["topics"] = {"news": "Weekly news", "deals": "Deals and offers"}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture
async def gwt(redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(redis_url, tmp_path / "data", tenants=BROWSER_TENANTS)
    parts, client = await start_gateway(settings)
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


class Visit:
    """A fresh browser context that records every request and console complaint."""

    def __init__(self, context: BrowserContext, page: Page, base: str) -> None:
        self.context, self.page, self.base = context, page, base
        self.requests: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.console.append(m.text))

    async def check_clean(self) -> None:
        """No cookie was set, nothing was fetched from elsewhere, no CSP violation."""
        assert await self.context.cookies() == []
        assert self.requests and all(u.startswith(self.base + "/") for u in self.requests), \
            self.requests
        assert not [m for m in self.console if "Content Security Policy" in m], self.console


async def visit(browser: Browser, gw: Gateway, *, javascript: bool = True) -> Visit:
    context = await browser.new_context(java_script_enabled=javascript)
    base = str(gw.http.make_url("/")).rstrip("/")
    return Visit(context, await context.new_page(), base)


async def scopes(gw: Gateway, *topics: str) -> list[bool]:
    return await gw.parts.service.suppressed(
        "acme", Channel.EMAIL, [ANN, *(scoped(ANN, t) for t in topics)])


async def test_unsubscribe_page_button_without_javascript(gw: Gateway, browser: Browser) -> None:
    # With scripts off: brand and masked address shown, the button (by its accessible name)
    # unsubscribes, the confirmation shows on the same URL, no cookie, only our own origin.
    v = await visit(browser, gw, javascript=False)
    url = f"{v.base}/u/{gw.parts.tokens.issue('acme', Channel.EMAIL, ANN)}"
    try:
        response = await v.page.goto(url)
        assert response is not None and response.status == 200
        await expect(v.page.get_by_text("Acme Co").first).to_be_visible()
        await expect(v.page.get_by_text("a***@example.com")).to_be_visible()
        await expect(v.page.get_by_role("heading", level=1)).to_have_text("Unsubscribe")
        assert await scopes(gw) == [False]  # opening the page changed nothing
        await v.page.get_by_role("button", name="Unsubscribe", exact=True).click()
        await expect(v.page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        assert v.page.url == url  # no redirect
        await v.check_clean()
    finally:
        await v.context.close()
    entry = await gw.parts.store.get("acme", Channel.EMAIL, ANN)
    assert entry is not None and entry.reason.value == "unsubscribe_click"
    assert entry.source.value == "web"


async def test_keyboard_focus_is_visible(gw: Gateway, browser: Browser) -> None:
    # Tabbing to the button shows a focus ring (WCAG 2.4.7), and Enter presses it.
    v = await visit(browser, gw)
    try:
        await v.page.goto(f"{v.base}/u/{gw.parts.tokens.issue('acme', Channel.EMAIL, ANN)}")
        await v.page.keyboard.press("Tab")
        focused = await v.page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return [e.tagName, s.outlineStyle, s.outlineWidth]; }")
        assert focused[0] == "BUTTON" and focused[1] != "none" and focused[2] != "0px", focused
        await v.page.keyboard.press("Enter")
        await expect(v.page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        await v.check_clean()
    finally:
        await v.context.close()
    assert await scopes(gw) == [True]


async def test_topic_link_leaves_only_that_topic(gwt: Gateway, browser: Browser) -> None:
    # A topic link: "Unsubscribe from Weekly news" suppresses news only.
    gw = gwt
    v = await visit(browser, gw)
    try:
        await v.page.goto(f"{v.base}/u/{gw.parts.tokens.issue('acme', Channel.EMAIL, ANN, 'news')}")
        await expect(v.page.get_by_role(
            "button", name="Unsubscribe from all marketing email from Acme Co")).to_be_visible()
        await v.page.get_by_role("button", name="Unsubscribe from Weekly news").click()
        await expect(v.page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        await expect(v.page.get_by_text("Weekly news")).to_be_visible()
        await v.check_clean()
    finally:
        await v.context.close()
    assert await scopes(gw, "news", "deals") == [False, True, False]


async def test_preference_centre_topic_then_everything(gwt: Gateway, browser: Browser) -> None:
    # Untick "Weekly news" by its label and save: only news is suppressed. Then "unsubscribe
    # from all": the address is suppressed and the centre says so, offering no re-subscribe.
    gw = gwt
    v = await visit(browser, gw)
    prefs = f"{v.base}/preferences/{gw.parts.tokens.issue('acme', Channel.EMAIL, ANN)}"
    try:
        await v.page.goto(prefs)
        news, deals = v.page.get_by_label("Weekly news"), v.page.get_by_label("Deals and offers")
        await expect(news).to_be_checked()
        await expect(deals).to_be_checked()
        await news.uncheck()
        await v.page.get_by_role("button", name="Save preferences").click()
        await expect(v.page.get_by_role("heading", name="Preferences saved")).to_be_visible()
        assert await scopes(gw, "news", "deals") == [False, True, False]

        await v.page.goto(prefs)
        await expect(v.page.get_by_label("Weekly news")).not_to_be_checked()
        await expect(v.page.get_by_label("Deals and offers")).to_be_checked()
        await v.page.get_by_role(
            "button", name="Unsubscribe from all marketing email from Acme Co").click()
        await expect(v.page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
        assert (await scopes(gw, "news", "deals"))[0] is True

        await v.page.goto(prefs)
        await expect(v.page.get_by_text("is unsubscribed from all marketing email")
                     ).to_be_visible()
        assert await v.page.get_by_role("checkbox").count() == 0
        assert await v.page.get_by_role("button").count() == 0
        await v.check_clean()
    finally:
        await v.context.close()
    entry = await gw.parts.store.get("acme", Channel.EMAIL, ANN)
    assert entry is not None and entry.reason.value == "unsubscribe_click"


async def test_bad_link_shows_the_not_found_page(gw: Gateway, browser: Browser) -> None:
    # A mangled link opens a readable 404 page, not a stack trace or JSON.
    v = await visit(browser, gw)
    try:
        response = await v.page.goto(f"{v.base}/u/not-a-real-token")
        assert response is not None and response.status == 404
        await expect(v.page.get_by_role("heading", name="Link not recognised")).to_be_visible()
        await v.check_clean()
    finally:
        await v.context.close()
