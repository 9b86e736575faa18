"""One error vocabulary, one JSON shape: ``{"error": {"code", "message"}}``.

Domain errors carry a code; this edge maps codes to HTTP statuses. Anything a
client sent that we cannot use is a 4xx naming the problem; a 500 means a bug.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from suppression.errors import GatewayError
from suppression.models import iso_ms, now_ms

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

STATUS = {
    "malformed_json": 400,
    "invalid_request": 422,
    "invalid_recipient": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "opted_out": 403,
    "no_consent": 403,
    "sender_not_allowed": 403,
    "category_not_allowed": 403,
    "content_blocked": 403,
    "sharing_prohibited": 403,
    "quiet_hours": 429,
    "frequency_capped": 429,
    "store_unavailable": 503,
    "upstream_failed": 502,
}


def error_response(code: str, message: str, *, field: str | None = None,
                   status: int | None = None, headers: dict[str, str] | None = None,
                   retry_at_ms: int | None = None) -> web.Response:
    """``retry_at_ms`` (quiet hours, caps): also ``retry_at`` in the body and a
    ``Retry-After`` header, so a client can schedule the retry without parsing the text."""
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return retry_response({"error": body}, body, status or STATUS.get(code, 400),
                          retry_at_ms, headers)


def retry_response(payload: dict[str, Any], carrier: dict[str, Any], status: int,
                   retry_at_ms: int | None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error reply; with ``retry_at_ms`` (quiet hours, caps) ``retry_at`` goes into
    ``carrier`` (the part of ``payload`` holding the error) and ``Retry-After`` (whole
    seconds, at least 1) into the headers. Shared by the JSON and Twilio-shaped errors."""
    if retry_at_ms is not None:
        carrier["retry_at"] = iso_ms(retry_at_ms)
        wait_s = max(1, -(-(retry_at_ms - now_ms()) // 1000))
        headers = {**(headers or {}), "Retry-After": str(wait_s)}
    return web.json_response(payload, status=status, headers=headers)


class ClientError(GatewayError):
    """A request this edge cannot use (bad JSON, wrong content type)."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.code = code


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def validation_message(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    name = _field(tuple(first["loc"]))
    msg = first["msg"]
    if first["type"] == "missing":
        msg = "is required"
    elif first["type"] == "extra_forbidden":
        msg = "is not a known field"
    more = len(exc.errors()) - 1
    text = f"'{name}' {msg[0].lower() + msg[1:] if msg else msg}"
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return name, text


async def parse_json(request: web.Request, model: type[M]) -> M:
    """Read and validate a JSON body: 400 for bytes that are not JSON, 422 naming the field."""
    # A body sent with no Content-Type at all (some clients and SDKs) is read as JSON; aiohttp
    # reports a missing header as application/octet-stream, so look at the header itself.
    ctype = request.content_type if hdrs.CONTENT_TYPE in request.headers else ""
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ClientError("unsupported_media_type",
                          f"send the body as application/json (got {ctype})")
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ClientError("malformed_json", "the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ClientError("malformed_json",
                          f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})") from None
    except RecursionError:
        raise ClientError("malformed_json", "the body's JSON is nested too deeply") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise ClientError("malformed_json",
                          "the body's JSON holds a number too long to read") from None
    if not isinstance(data, dict):
        raise ClientError("invalid_request", "the body must be a JSON object", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        name, text = validation_message(exc)
        raise ClientError("invalid_request", text, field=name) from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        headers = {"Retry-After": "1"} if exc.code == "store_unavailable" else None
        if exc.code == "unauthenticated":
            headers = {"WWW-Authenticate": 'Bearer realm="optout-gateway"'}
        return error_response(exc.code, exc.message, field=exc.field, headers=headers,
                              retry_at_ms=getattr(exc, "retry_at_ms", None))
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response("payload_too_large", f"the body is too large ({exc.text})")
    except web.HTTPNotFound:
        return error_response("not_found", f"no such resource: {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return error_response("method_not_allowed",
                              f"{request.method} is not allowed on {request.path}",
                              headers={"Allow": ", ".join(sorted(exc.allowed_methods))})
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("internal_error", "the gateway hit an internal error; "
                              "nothing was changed by this request", status=500)
