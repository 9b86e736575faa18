"""Twilio's wire formats: request signatures, TwiML replies, REST error bodies.

Signature (COMPLIANCE.md, Twilio's security docs): base64(HMAC-SHA1(auth token,
full URL + each POST parameter name and value, sorted by name)), compared in
constant time; the URL is tried with and without its default port, since
proxies add or strip it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape

from yarl import URL

from suppression.errors import GatewayError

# Our refusals in Twilio's REST error shape. 21610 is Twilio's own for an unsubscribed
# recipient (the SDK and integrations key on it); the 9xxxx codes are the gateway's own.
TWILIO_CODES: dict[str, tuple[int, int]] = {
    "opted_out": (400, 21610),
    "invalid_recipient": (400, 21211),
    "sender_not_allowed": (400, 21606),
    "invalid_request": (400, 21602),
    "malformed_json": (400, 21602),
    "content_blocked": (400, 30007),
    "no_consent": (400, 90001),
    "quiet_hours": (400, 90002),
    "frequency_capped": (400, 90003),
    "category_not_allowed": (400, 90004),
    "unauthenticated": (401, 20003),
    "forbidden": (403, 20403),
    "not_found": (404, 20404),
    "store_unavailable": (503, 20503),
    "upstream_failed": (502, 30008),
}
OPTED_OUT_MESSAGE = "Attempt to send to unsubscribed recipient"


def signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, with its default port made explicit, and without it."""
    u = URL(url)
    default = {"http": 80, "https": 443}.get(u.scheme)
    if default is None or u.host is None:
        return [url]
    # Edited as text: yarl (1.9+) leaves a default port out of str() even when set.
    start = url.index("://") + 3
    end = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    suffix = f":{default}"
    if u.explicit_port is None:
        return [url, url[:end] + suffix + url[end:]]
    if u.explicit_port == default and url[start:end].endswith(suffix):
        return [url, url[:end - len(suffix)] + url[end:]]
    return [url]


def valid_signature(token: str, url: str, params: Iterable[tuple[str, str]],
                    presented: str) -> bool:
    items = list(params)
    return any(hmac.compare_digest(signature(token, u, items), presented)
               for u in url_variants(url))


def twiml(message: str | None) -> str:
    body = f"<Message>{escape(message)}</Message>" if message else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


def error_body(exc: GatewayError) -> tuple[int, dict[str, object]]:
    status, code = TWILIO_CODES.get(exc.code, (400, 90000))
    message = OPTED_OUT_MESSAGE if exc.code == "opted_out" else exc.message
    return status, {"code": code, "message": message, "status": status,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}"
                    if code < 90000 else "https://github.com/optout-gateway#errors",
                    "detail": exc.message, "gateway_code": exc.code}


def form_items(form: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in form.items()]
