"""SMS edges: the JSON send API, the Twilio-compatible send API, inbound webhooks.

Each route parses, authenticates, calls one domain function (``SmsSender.send``
or ``InboundHandler.handle``) and shapes the reply for its protocol.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from suppression.apikeys import ApiKey, Scope, Unauthenticated
from suppression.errors import GatewayError, InvalidRecipient, InvalidRequest, NotFound
from suppression.identifiers import normalize_phone
from suppression.outbound import MAX_BODY_CHARS, SentSms, SmsRequest
from suppression.tenants import Tenant

from . import twilio
from .auth import authenticate
from .context import parts
from .errors import parse_json, retry_response
from .sms_schemas import InboundIn, SmsIn

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _tenant(request: web.Request, tenant_id: str) -> Tenant:
    tenant = parts(request).settings.tenant(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant '{tenant_id}' is not configured")
    return tenant


@routes.post("/v1/sms/messages")
async def send_sms(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.SEND)
    body = await parse_json(request, SmsIn)
    sent = await parts(request).sms.send(SmsRequest(
        tenant=_tenant(request, key.tenant), to=body.to, from_=body.from_, body=body.body,
        category=body.category, transactional_key=key.transactional, actor=key.id))
    m = sent.message
    return web.json_response({"id": m.id, "status": sent.status, "to": m.to, "from": m.from_,
                              "body": m.body, "category": m.category,
                              "upstream_id": sent.upstream_id}, status=202)


# -- Twilio-compatible ----------------------------------------------------------------


def _twilio_error(exc: GatewayError) -> web.Response:
    status, payload = twilio.error_body(exc)
    return retry_response(payload, payload, status, getattr(exc, "retry_at_ms", None))


async def _basic_key(request: web.Request, tenant_id: str) -> ApiKey:
    """HTTP Basic: username = tenant id, password = API key (CONTRACT.md)."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        user, _, password = b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    if scheme.lower() != "basic" or not password:
        raise Unauthenticated("authenticate with HTTP Basic: username = tenant id, "
                              "password = API key")
    key = await parts(request).apikeys.verify(password)
    if user != key.tenant or tenant_id != key.tenant:
        raise Unauthenticated("the API key does not belong to this account (tenant)")
    key.require(Scope.SEND)
    return key


def _resource(tenant_id: str, sent: SentSms, base: str) -> dict[str, object]:
    m = sent.message
    now = format_datetime(datetime.now(UTC), usegmt=True)
    uri = f"/2010-04-01/Accounts/{tenant_id}/Messages/{m.id}.json"
    return {
        "sid": m.id, "account_sid": tenant_id, "to": m.to, "from": m.from_, "body": m.body,
        "status": sent.status, "direction": "outbound-api", "api_version": "2010-04-01",
        "date_created": now, "date_updated": now, "date_sent": None,
        "num_segments": str(max(1, -(-len(m.body) // 153))), "num_media": "0",
        "price": None, "price_unit": "USD", "error_code": None, "error_message": None,
        "messaging_service_sid": None, "uri": uri,
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
    }


@routes.post("/2010-04-01/Accounts/{tenant}/Messages.json")
async def twilio_send(request: web.Request) -> web.Response:
    tenant_id = request.match_info["tenant"]
    try:
        key = await _basic_key(request, tenant_id)
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        missing = [f for f in ("To", "Body") if not fields.get(f)]
        if "From" not in fields:
            missing.append("From" if "MessagingServiceSid" not in fields
                           else "From (MessagingServiceSid is not supported)")
        if missing:
            raise InvalidRequest(f"A '{missing[0]}' parameter is required.", field=missing[0])
        if "MediaUrl" in fields:  # sending the text alone would drop what the sender meant
            raise InvalidRequest("'MediaUrl' is not supported: this gateway relays text "
                                 "messages (SMS) only; nothing was sent", field="MediaUrl")
        if len(fields["Body"]) > MAX_BODY_CHARS:
            raise InvalidRequest(f"The 'Body' exceeds the {MAX_BODY_CHARS} character limit.",
                                 field="Body")
        sent = await parts(request).sms.send(SmsRequest(
            tenant=_tenant(request, tenant_id), to=fields["To"], from_=fields["From"],
            body=fields["Body"], category="marketing", transactional_key=key.transactional,
            actor=key.id))
    except GatewayError as exc:
        return _twilio_error(exc)
    except UnicodeDecodeError:
        return _twilio_error(InvalidRequest("the form is not valid UTF-8"))
    return web.json_response(_resource(tenant_id, sent, str(request.url)), status=201)


# -- inbound --------------------------------------------------------------------------


def _owner(request: web.Request, to: str) -> tuple[Tenant, str]:
    """The tenant whose sender number received the text; 404 for a number nobody owns."""
    settings = parts(request).settings
    raw = to.strip()
    number = raw if raw.isdigit() and len(raw) <= 6 else None
    if number is None:
        try:
            number = normalize_phone(raw)
        except InvalidRecipient:
            number = raw
    tenant = settings.tenant_for_sender(number)
    if tenant is None:
        raise NotFound(f"no tenant sends from {raw}; nothing was recorded")
    return tenant, number


@routes.post("/v1/sms/inbound/twilio")
async def twilio_inbound(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except UnicodeDecodeError:
        return web.Response(status=400, text="the form is not valid UTF-8")
    fields = [(k, v) for k, v in form.items() if isinstance(v, str)]
    values = dict(fields)
    tenant, number = _owner(request, values.get("To", ""))
    token = tenant.twilio_auth_token
    # Twilio signs the URL exactly as configured: check the request target as received
    # (raw_path), percent-encoding and all, not a re-serialised form of it.
    url = parts(request).settings.public_url + request.raw_path
    presented = request.headers.get("X-Twilio-Signature", "")
    if token is None or not presented or not twilio.valid_signature(
            token.get_secret_value(), url, fields, presented):
        log.warning("inbound webhook for tenant %s: bad or missing X-Twilio-Signature",
                    tenant.id)
        return web.Response(status=403, text="invalid X-Twilio-Signature")
    result = await parts(request).inbound.handle(
        tenant, values.get("From", ""), number, values.get("Body", ""),
        provider_id=values.get("MessageSid") or values.get("SmsSid"), provider="twilio")
    return web.Response(text=twilio.twiml(result.reply), content_type="application/xml")


@routes.post("/v1/sms/inbound")
async def generic_inbound(request: web.Request) -> web.Response:
    key = await authenticate(request, Scope.INBOUND)
    body = await parse_json(request, InboundIn)
    tenant, number = _owner(request, body.to)
    if tenant.id != key.tenant:
        raise NotFound(f"no tenant of this key sends from {body.to}; nothing was recorded")
    result = await parts(request).inbound.handle(tenant, body.from_, number, body.body,
                                                 provider_id=body.id, provider="api")
    return web.json_response({"intent": result.intent.kind.value, "reply": result.reply})
