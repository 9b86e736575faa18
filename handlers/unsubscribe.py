"""The unsubscribe link (``/u/{token}``, RFC 8058 one-click) and the preference centre.

Each route verifies the token, reads the form, and calls the service's single
write path (``opt_out``/``opt_in``, scoped to a topic where asked). Rules:

* GET and HEAD never change anything: link scanners (Safe Links, Proofpoint,
  Mimecast) fetch every link in a message, so only a POST unsubscribes.
* Every token we cannot use (forged, altered, expired, garbage, signed by a key
  we do not hold, naming a tenant no longer configured) gets the same 404 page,
  before the body is read: the answer says nothing about why (no oracle).
* A POST opt-out is journalled before it is acknowledged, so it succeeds while
  Redis is down (COMPLIANCE.md: Gmail/Yahoo honour within 48 h, CAN-SPAM 10 days).
  Showing a page needs the store's state; without it, GET is a 503 page that
  still offers the button.
* No login, no cookie, nothing asked but the choice (CAN-SPAM: no more than one
  page and the address). No redirect after the POST (RFC 8058 section 3.2).
* Re-subscribing to all marketing is not offered: an opt-out of everything is
  lifted only by fresh consent through the sender's own sign-up (or ops), never by
  a link in an old message. Single topics can be re-subscribed (the address itself
  stays opted in to the tenant's mail, so this is a narrowing choice, not consent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from suppression import preferences
from suppression.errors import StoreUnavailable
from suppression.identifiers import mask
from suppression.models import Channel, OptEvent, Source
from suppression.tenants import Tenant
from suppression.tokens import TokenClaims

from . import pages
from .context import parts
from .pages import Who

routes = web.RouteTableDef()

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_BYTES = 64 << 10  # the largest real form (a few hundred topics) is a few KiB
RETRY_AFTER_S = 30
NOT_FOUND_HTML = pages.not_found_page()
Form = MultiDictProxy[str | bytes | bytearray | web.FileField]  # what request.post() returns


class Choice(StrEnum):
    ONE_CLICK = "one_click"  # RFC 8058: List-Unsubscribe=One-Click, from a mailbox provider
    ALL = "all"  # a button: every marketing message of the tenant
    TOPIC = "topic"  # a button: only the token's topic
    SAVE = "save"  # the preference centre's checkboxes


@dataclass(frozen=True, slots=True)
class Target:
    claims: TokenClaims
    tenant: Tenant
    who: Who

    @property
    def topic_label(self) -> str | None:
        topic = self.claims.topic
        return self.tenant.topics.get(topic, topic) if topic else None

    @property
    def topics(self) -> dict[str, str]:
        return dict(self.tenant.topics) if self.claims.channel == Channel.EMAIL else {}


@dataclass(frozen=True, slots=True)
class Submitted:
    choice: Choice
    topics: frozenset[str] = field(default_factory=frozenset)  # boxes ticked
    shown: frozenset[str] = field(default_factory=frozenset)  # boxes the page showed ticked


class BadForm(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _target(request: web.Request) -> Target | None:
    p = parts(request)
    claims = p.tokens.verify(request.match_info["token"])
    if claims is None:
        return None
    tenant = p.settings.tenant(claims.tenant)
    if tenant is None:
        return None
    noun = "email" if claims.channel == Channel.EMAIL else "text messages"
    who = Who(tenant.brand, mask(claims.channel, claims.identifier), noun,
              tenant.postal_address)
    return Target(claims, tenant, who)


def _not_found() -> web.Response:
    return pages.respond(NOT_FOUND_HTML, 404)


async def _read_form(request: web.Request) -> Form:
    ctype = request.content_type if hdrs.CONTENT_TYPE in request.headers else ""
    if ctype not in FORM_TYPES:
        raise BadForm("This address only accepts the unsubscribe form or an RFC 8058 one-click "
                      "request (List-Unsubscribe=One-Click, sent as "
                      "application/x-www-form-urlencoded or multipart/form-data).")
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise BadForm("The request is too large for an unsubscribe form.", 413)
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise BadForm("The request is too large for an unsubscribe form.", 413) from None
    # What aiohttp's form parsers raise for bytes that are no form: bad part headers
    # (HttpProcessingError), a torn part (warns BadContentDispositionHeader first, an
    # error where warnings are errors), then ValueError; bad UTF-8 in a urlencoded body.
    except (ValueError, UnicodeError, LookupError, AssertionError, Warning,
            HttpProcessingError, web.HTTPBadRequest):  # LookupError: an unknown charset
        raise BadForm("The form could not be read (malformed or not UTF-8).") from None


def _texts(form: Form, name: str) -> list[str]:
    values = form.getall(name, [])
    if not all(isinstance(v, str) for v in values):
        raise BadForm(f"The form field '{name}' must be text, not a file.")
    return [v for v in values if isinstance(v, str)]


async def _submitted(request: web.Request) -> Submitted:
    form = await _read_form(request)
    one_click = _texts(form, "List-Unsubscribe")
    if one_click:
        if [v.strip().lower() for v in one_click] != ["one-click"]:
            raise BadForm("List-Unsubscribe must be 'One-Click' (RFC 8058).")
        return Submitted(Choice.ONE_CLICK)
    actions = _texts(form, "action")
    try:
        choice = Choice(actions[0]) if len(actions) == 1 else None
    except ValueError:
        choice = None
    if choice is None or choice == Choice.ONE_CLICK:
        raise BadForm("The request holds neither List-Unsubscribe=One-Click nor a choice from "
                      "this page; nothing was changed.")
    return Submitted(choice, frozenset(_texts(form, "topic")), frozenset(_texts(form, "shown")))


def _detail(target: Target, via: str) -> dict[str, str]:
    return {"via": via, "token_issued_s": str(target.claims.issued_at_s)}


def _count(request: web.Request, events: list[OptEvent]) -> None:
    metrics = parts(request).metrics
    for ev in events:
        metrics.opt_events.labels(ev.action, ev.channel.value, Source.WEB.value).inc()


async def _leave(request: web.Request, target: Target, choice: Choice, via: str
                 ) -> web.Response:
    """One opt-out: the token's topic (the page's topic button) or everything: a one-click
    POST (RFC 8058) leaves all of the tenant's marketing, whatever the message's topic —
    the mailbox provider's button promises the person no more mail from this sender."""
    c = target.claims
    scope = c.topic if choice == Choice.TOPIC else ""
    try:
        ev = await preferences.leave(parts(request).service, c, topic_only=bool(scope),
                                     one_click=choice == Choice.ONE_CLICK,
                                     detail=_detail(target, via))
    except StoreUnavailable:  # JournalFailed: not durable, so not acknowledged
        return pages.respond(pages.failed_page(target.who), 503, retry_after_s=RETRY_AFTER_S)
    _count(request, [ev])
    label = target.tenant.topics.get(scope, scope) if scope else None
    return pages.respond(pages.confirmation_page(target.who, topic_label=label))


# -- /u/{token} ----------------------------------------------------------------------


@routes.get("/u/{token}")
async def unsubscribe_page(request: web.Request) -> web.Response:
    """The page behind the link (and HEAD): shows the choice, changes nothing."""
    target = _target(request)
    if target is None:
        return _not_found()
    c = target.claims
    try:
        state = await preferences.subscriptions(parts(request).service, c,
                                                [c.topic] if c.topic else [])
    except StoreUnavailable:
        return pages.respond(pages.unsubscribe_unavailable_page(
            target.who, topic_label=target.topic_label), 503, retry_after_s=RETRY_AFTER_S)
    # Relative, so the link survives a reverse proxy that mounts us under a prefix.
    prefs = f"../preferences/{request.match_info['token']}" if target.topics else None
    return pages.respond(pages.unsubscribe_page(
        target.who, topic_label=target.topic_label,
        topic_done=state.topics_off.get(c.topic, False), all_done=state.all_off,
        prefs_href=prefs))


@routes.post("/u/{token}")
async def unsubscribe(request: web.Request) -> web.Response:
    """RFC 8058 one-click, or the page's buttons: 200 and a confirmation, no redirect."""
    target = _target(request)
    if target is None:
        return _not_found()
    try:
        sub = await _submitted(request)
        if sub.choice == Choice.SAVE or (sub.choice == Choice.TOPIC and not target.claims.topic):
            raise BadForm("That choice is not offered on this page; nothing was changed.")
    except BadForm as exc:
        return pages.respond(pages.bad_request_page(target.who, exc.message), exc.status)
    via = "one_click" if sub.choice == Choice.ONE_CLICK else "unsubscribe_page"
    return await _leave(request, target, sub.choice, via)


# -- /preferences/{token} ------------------------------------------------------------


@routes.get("/preferences/{token}")
async def preferences_page(request: web.Request) -> web.Response:
    """Per-topic subscriptions and "leave everything"; changes nothing."""
    target = _target(request)
    if target is None:
        return _not_found()
    topics = target.topics
    try:
        state = await preferences.subscriptions(parts(request).service, target.claims,
                                                list(topics))
    except StoreUnavailable:
        return pages.respond(pages.preferences_unavailable_page(target.who), 503,
                             retry_after_s=RETRY_AFTER_S)
    subscribed = [t for t in topics if not state.topics_off[t]]
    return pages.respond(pages.preferences_page(target.who, topics, subscribed,
                                                all_done=state.all_off))


@routes.post("/preferences/{token}")
async def save_preferences(request: web.Request) -> web.Response:
    """Apply exactly the boxes the person changed, or leave everything."""
    target = _target(request)
    if target is None:
        return _not_found()
    try:
        sub = await _submitted(request)
        if sub.choice == Choice.TOPIC and not target.claims.topic:
            raise BadForm("That choice is not offered on this page; nothing was changed.")
        unknown = sorted((sub.topics | sub.shown) - set(target.topics))
        if unknown:
            raise BadForm(f"Unknown topic '{unknown[0]}'; nothing was changed.")
    except BadForm as exc:
        return pages.respond(pages.bad_request_page(target.who, exc.message), exc.status)
    if sub.choice != Choice.SAVE:
        return await _leave(request, target, sub.choice, "preference_centre")
    return await _save(request, target, sub)


async def _save(request: web.Request, target: Target, sub: Submitted) -> web.Response:
    try:
        events = await preferences.save(parts(request).service, target.claims,
                                        list(target.topics), shown=sub.shown,
                                        wanted=sub.topics,
                                        detail=_detail(target, "preference_centre"))
    except StoreUnavailable:  # JournalFailed: not durable, so not acknowledged
        return pages.respond(pages.failed_page(target.who), 503, retry_after_s=RETRY_AFTER_S)
    _count(request, events)
    wanted = {t for t in target.topics if t in sub.topics}
    return pages.respond(pages.preferences_saved_page(target.who, target.topics, wanted))
