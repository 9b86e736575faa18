"""HTML for the unsubscribe page and the preference centre.

Pages for people who may be on any device, with any assistive technology, and
who must be able to leave a list with no more than one page (CAN-SPAM): plain
semantic HTML (one ``h1``, a ``lang``, every control labelled by its own text),
a little inline CSS that only improves it (contrast >= 4.5:1, a visible focus
ring), no script, no cookie, nothing fetched from anywhere. Every value that
came from a tenant or a token goes through ``html.escape``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from aiohttp import web

# Nothing may load but the page itself; the forms may post only back to us; no framing
# (clickjacking an unsubscribe button), no Referer (the URL holds the token), no caching
# (shared caches must not keep a page naming someone's address), no indexing.
HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}

CSS = """
body{margin:0;background:#f4f4f5;color:#18181b;font:1.05rem/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif}
main{max-width:34rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;
border:1px solid #d4d4d8;border-radius:8px}
.brand{margin:0;color:#3f3f46;font-weight:600}
h1{font-size:1.5rem;margin:.25rem 0 1rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
form{margin:1rem 0}
button{font:inherit;cursor:pointer;padding:.6rem 1.1rem;margin:.25rem .5rem .25rem 0;
border-radius:6px;border:2px solid #1d4ed8;background:#1d4ed8;color:#fff}
button.secondary{background:#fff;color:#1e3a8a}
button:hover{background:#1e40af;color:#fff}
fieldset{border:1px solid #a1a1aa;border-radius:6px;padding:.5rem 1rem}
legend{padding:0 .25rem;font-weight:600}
.choice{display:flex;align-items:center;gap:.5rem;margin:.4rem 0}
.choice input{width:1.25rem;height:1.25rem;margin:0}
a{color:#1e3a8a}
:focus-visible{outline:3px solid #b45309;outline-offset:2px}
.status{padding:.6rem .9rem;border-left:4px solid #15803d;background:#f0fdf4}
.warning{padding:.6rem .9rem;border-left:4px solid #b45309;background:#fffbeb}
footer{margin-top:2rem;color:#52525b;font-size:.9rem}
"""


@dataclass(frozen=True, slots=True)
class Who:
    """Whose page this is, as shown: never the full address."""

    brand: str
    masked: str  # identifiers.mask(...)
    noun: str  # "email" or "text messages"
    postal_address: str = ""


def respond(html: str, status: int = 200, *, retry_after_s: int | None = None) -> web.Response:
    headers = dict(HEADERS)
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8",
                        headers=headers)


def document(title: str, body: str, who: Who | None = None) -> str:
    brand = f'<p class="brand">{escape(who.brand)}</p>' if who else ""
    footer = (f"<footer>{escape(who.brand)} · {escape(who.postal_address)}</footer>"
              if who and who.postal_address else "")
    full = f"{title} – {who.brand}" if who else title
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{escape(full)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{brand}\n<h1>{escape(title)}</h1>\n{body}\n{footer}\n</main>\n</body>\n</html>\n")


def _button(value: str, label: str, *, secondary: bool = False) -> str:
    cls = ' class="secondary"' if secondary else ""
    return (f'<button type="submit" name="action" value="{escape(value)}"{cls}>'
            f"{escape(label)}</button>")


def all_label(who: Who) -> str:
    return f"Unsubscribe from all marketing {who.noun} from {who.brand}"


# -- /u/{token} ----------------------------------------------------------------------


def unsubscribe_page(who: Who, *, topic_label: str | None, topic_done: bool,
                     all_done: bool, prefs_href: str | None) -> str:
    """The page behind the link. Changes nothing: its buttons POST back to the same URL."""
    addr = f"<strong>{escape(who.masked)}</strong>"
    if all_done:
        return document("You are unsubscribed", (
            f'<p class="status">{addr} is unsubscribed from all marketing {escape(who.noun)} '
            f"from {escape(who.brand)}.</p>"), who)
    buttons: list[str] = []
    if topic_label is not None and not topic_done:
        intro = (f"<p>Stop receiving <strong>{escape(topic_label)}</strong> from "
                 f"{escape(who.brand)} at {addr}?</p>")
        buttons.append(_button("topic", f"Unsubscribe from {topic_label}"))
        buttons.append(_button("all", all_label(who), secondary=True))
    else:
        done = (f'<p class="status">{addr} is already unsubscribed from '
                f"<strong>{escape(topic_label)}</strong>.</p>" if topic_label else "")
        intro = (f"{done}<p>Stop receiving marketing {escape(who.noun)} from "
                 f"{escape(who.brand)} at {addr}?</p>")
        buttons.append(_button("all", "Unsubscribe" if not topic_label else all_label(who)))
    prefs = (f'<p><a href="{escape(prefs_href)}">Choose which {escape(who.noun)} you '
             "receive instead</a></p>" if prefs_href else "")
    return document("Unsubscribe", f'{intro}<form method="post">{"".join(buttons)}</form>'
                    f"{prefs}", who)


def unsubscribe_unavailable_page(who: Who, *, topic_label: str | None) -> str:
    """The store cannot say what is recorded; unsubscribing still works (journal)."""
    buttons = ([_button("topic", f"Unsubscribe from {topic_label}")] if topic_label else [])
    buttons.append(_button("all", all_label(who), secondary=bool(topic_label)))
    return document("Unsubscribe", (
        '<p class="warning">We cannot show your current subscription right now. '
        "You can still unsubscribe: it will be recorded.</p>"
        f"<p>Address: <strong>{escape(who.masked)}</strong></p>"
        f'<form method="post">{"".join(buttons)}</form>'), who)


def confirmation_page(who: Who, *, topic_label: str | None) -> str:
    what = (f"<strong>{escape(topic_label)}</strong>" if topic_label
            else f"all marketing {escape(who.noun)}")
    return document("You are unsubscribed", (
        f'<p class="status">{escape(who.masked)} will receive no more {what} from '
        f"{escape(who.brand)}. This takes effect now.</p>"
        "<p>Messages about your account or orders (receipts, security notices) may still "
        "be sent.</p>"), who)


# -- /preferences/{token} ------------------------------------------------------------


def _prefs_title(who: Who) -> str:
    return "Email preferences" if who.noun == "email" else "Message preferences"


def preferences_page(who: Who, topics: Mapping[str, str], subscribed: Iterable[str], *,
                     all_done: bool) -> str:
    """Per-topic checkboxes (save) and one "all marketing" button, in two forms.

    ``shown`` hidden fields record which topics the page showed as subscribed, so a
    save applies exactly the boxes the person changed, even if it must go through
    the journal while the store is down.
    """
    addr = f"<strong>{escape(who.masked)}</strong>"
    if all_done:
        # Re-subscribing to everything is not offered here: it needs fresh consent through
        # the sender's own sign-up, not a click on a link from an old email.
        return document(_prefs_title(who), (
            f'<p class="status">{addr} is unsubscribed from all marketing {escape(who.noun)} '
            f"from {escape(who.brand)}.</p><p>To receive it again, sign up again with "
            f"{escape(who.brand)}.</p>"), who)
    on = set(subscribed)
    parts = [f"<p>Choose what {escape(who.brand)} sends to {addr}.</p>"]
    if topics:
        boxes = "".join(
            f'<div class="choice"><input type="checkbox" id="topic-{escape(tid)}" name="topic" '
            f'value="{escape(tid)}"{" checked" if tid in on else ""}>'
            f'<label for="topic-{escape(tid)}">{escape(label)}</label></div>'
            for tid, label in topics.items())
        shown = "".join(f'<input type="hidden" name="shown" value="{escape(tid)}">'
                        for tid in topics if tid in on)
        parts.append(f'<form method="post"><fieldset><legend>Topics</legend>{boxes}'
                     f"</fieldset>{shown}{_button('save', 'Save preferences')}</form>")
        parts.append("<h2>Or leave every list</h2>")
    parts.append(f'<form method="post">{_button("all", all_label(who), secondary=bool(topics))}'
                 "</form>")
    return document(_prefs_title(who), "".join(parts), who)


def preferences_saved_page(who: Who, topics: Mapping[str, str], wanted: set[str]) -> str:
    """After a save: what the person will and will not receive (no store read needed)."""
    def items(ids: list[str]) -> str:
        return "".join(f"<li>{escape(topics[t])}</li>" for t in ids) or "<li>nothing</li>"

    yes = [t for t in topics if t in wanted]
    no = [t for t in topics if t not in wanted]
    return document("Preferences saved", (
        f'<p class="status">Your preferences for {escape(who.masked)} are saved.</p>'
        f"<h2>You will receive</h2><ul>{items(yes)}</ul>"
        f"<h2>You will not receive</h2><ul>{items(no)}</ul>"
        '<p><a href="">Change them again</a></p>'), who)


def preferences_unavailable_page(who: Who) -> str:
    return document(_prefs_title(who), (
        '<p class="warning">Your preferences cannot be shown right now; please try again in '
        "a few minutes. You can still leave every list: it will be recorded.</p>"
        f'<form method="post">{_button("all", all_label(who))}</form>'), who)


# -- errors --------------------------------------------------------------------------


def not_found_page() -> str:
    """The one answer to every token that is not ours, altered, expired or garbage."""
    return document("Link not recognised", (
        "<p>This unsubscribe link is not valid. It may be incomplete: copy the whole "
        "link from the email, or use the unsubscribe link in a more recent message.</p>"))


def bad_request_page(who: Who, message: str) -> str:
    return document("Nothing was changed", f"<p>{escape(message)}</p>", who)


def failed_page(who: Who) -> str:
    return document("Please try again", (
        "<p>Your request could not be recorded just now, and nothing was changed. "
        "Please try again in a minute.</p>"), who)
