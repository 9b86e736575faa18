"""``/openapi.json``: generated from the pydantic models that validate requests.

Every route the app serves is listed in ``OPERATIONS`` (a test compares the
two), including the form-encoded Twilio-compatible ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from . import consents, exports, schemas, sms_schemas, subjects

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"
BODY_ERRORS = (413, 415)  # every route with a JSON body: too large, not JSON
Param = tuple[str, bool, str]  # name, required, description
Auth = Literal["bearer", "basic", "twilio_signature"]

TWILIO_ERROR: dict[str, Any] = {
    "type": "object", "title": "TwilioError",
    "required": ["code", "message", "more_info", "status"],
    "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                   "more_info": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "gateway_code": {"type": "string"},
                   "retry_at": {"type": "string", "format": "date-time"}},
}
TWILIO_MESSAGE: dict[str, Any] = {
    "type": "object", "title": "TwilioMessage", "required": ["sid", "status", "to", "from"],
    "properties": {name: {"type": "string"} for name in (
        "sid", "account_sid", "to", "from", "body", "status", "direction", "api_version",
        "date_created", "date_updated", "num_segments", "num_media", "uri")},
}
ITEMS: dict[str, Any] = {
    "type": "object", "required": ["items"],
    "properties": {"items": {"type": "array", "items": {"type": "object"}}},
}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    scope: str | None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 422, 503)
    path_params: tuple[str, ...] = ()
    auth: Auth | None = None  # default: bearer when the route needs a scope
    form: tuple[Param, ...] = ()  # application/x-www-form-urlencoded fields
    headers: tuple[Param, ...] = ()
    content: tuple[str, dict[str, Any]] | None = None  # (media type, schema) of a non-model reply
    error_schema: dict[str, Any] | None = None  # default: the JSON API's ErrorResponse


SEND_ERRORS = (400, 401, 403, 422, 429, 502, 503)

OPERATIONS: tuple[Op, ...] = (
    Op("get", "/v1/suppressions", "List suppressions (cursor pagination)", "read",
       response=schemas.SuppressionPage,
       query=(("channel", True, "sms or email"), ("q", False, "substring filter"),
              ("limit", False, "1-1000, default 100"), ("cursor", False, "from next_cursor"))),
    Op("get", "/v1/suppressions/{channel}/{identifier}", "Get one suppression", "read",
       response=schemas.SuppressionOut, errors=(401, 403, 404, 422, 503),
       path_params=("channel", "identifier")),
    Op("post", "/v1/suppressions", "Suppress an identifier for the key's tenant", "write",
       body=schemas.SuppressionIn, response=schemas.SuppressionOut, status=201),
    Op("delete", "/v1/suppressions/{channel}/{identifier}", "Lift a suppression", "write",
       status=204, errors=(401, 403, 404, 422, 503), path_params=("channel", "identifier")),
    Op("post", "/v1/suppressions/check", "Check up to 10,000 identifiers in input order",
       "read", body=schemas.CheckIn, response=schemas.CheckOut),
    Op("post", "/v1/consents", "Record consent with its evidence; with the tenant's "
       "double opt-in, an SMS consent is 'pending' until the person replies YES (403 "
       "opted_out for a suppressed or erased person; 502 if the confirmation text failed)",
       "write", body=schemas.ConsentIn, response=schemas.ConsentOut, status=201,
       errors=(400, 401, 403, 422, 502, 503)),
    Op("get", "/v1/consents/{channel}/{identifier}", "Consent history (grants, pending, "
       "revocations, opt-ins; oldest first) and the state now", "read",
       response=consents.ConsentHistoryOut, errors=(401, 403, 422, 503),
       path_params=("channel", "identifier")),
    Op("get", "/v1/subjects/{channel}/{identifier}", "Subject access: everything held about "
       "one person for the key's tenant", "read", response=subjects.SubjectOut,
       errors=(401, 403, 404, 422, 503), path_params=("channel", "identifier")),
    Op("delete", "/v1/subjects/{channel}/{identifier}", "Subject erasure: everything but a "
       "keyed hash that keeps the person suppressed", "write", response=subjects.ErasureOut,
       errors=(401, 403, 404, 422, 503), path_params=("channel", "identifier")),
    Op("get", "/v1/audit", "Audit trail of one identifier", "read", response=schemas.AuditPage,
       query=(("identifier", True, "phone number or address"),
              ("channel", False, "sms or email (guessed when absent)"))),
    Op("post", "/v1/sms/messages", "Send an SMS (refused when the law or the person says no)",
       "send", body=sms_schemas.SmsIn, response=sms_schemas.SmsOut, status=202,
       errors=SEND_ERRORS),
    Op("post", "/2010-04-01/Accounts/{tenant}/Messages.json",
       "Send an SMS, Twilio-compatible (HTTP Basic: tenant id : API key)", "send",
       auth="basic", status=201, path_params=("tenant",),
       form=(("To", True, "recipient"), ("From", True, "one of the tenant's senders"),
             ("Body", True, "message text")),
       content=("application/json", TWILIO_MESSAGE), error_schema=TWILIO_ERROR,
       errors=(400, 401, 403, 404, 429, 502, 503)),
    Op("post", "/v1/sms/inbound", "Handle an inbound text (STOP, START, HELP...)", "inbound",
       body=sms_schemas.InboundIn, response=sms_schemas.InboundOut,
       errors=(400, 401, 403, 404, 422, 503)),
    Op("post", "/v1/sms/inbound/twilio", "Twilio inbound webhook; replies with TwiML", None,
       auth="twilio_signature",
       form=(("From", True, "sender"), ("To", True, "the tenant's number"),
             ("Body", True, "message text"), ("MessageSid", False, "Twilio's message id")),
       headers=(("X-Twilio-Signature", True, "HMAC-SHA1 by the tenant's auth token"),),
       content=("application/xml", {"type": "string"}),
       error_schema={"type": "string"}, errors=(400, 403, 404, 503)),
    Op("get", "/v1/messages", "Every send attempt to one recipient", "read",
       query=(("to", True, "phone number or email address"),
              ("channel", False, "sms or email; default: email if 'to' has '@', else sms")),
       content=("application/json", ITEMS)),
    Op("get", "/v1/review", "Inbound replies that may be opt-outs, newest first", "read",
       query=(("limit", False, "1-1000, default 100"),), content=("application/json", ITEMS)),
    Op("post", "/v1/exports", "Export datasets (JSON lines or CSV, streamed; X-Export-Records "
       "gives the count) if the sharing rules allow it; 403 sharing_prohibited names the rule",
       "export", body=exports.ExportIn,
       content=("application/x-ndjson", {"type": "string", "description": "or text/csv"})),
    Op("get", "/v1/audit/exports", "Export decisions, allowed or refused, newest first", "read",
       query=(("limit", False, "1-1000, default 100"), ("cursor", False, "from next_cursor")),
       content=("application/json", ITEMS)),
    Op("get", "/u/{token}", "Unsubscribe page (HTML; HEAD too): shows the choice, changes "
       "nothing", None, path_params=("token",), content=("text/html", {"type": "string"}),
       error_schema={"type": "string"}, errors=(404, 503)),
    Op("post", "/u/{token}", "Unsubscribe: RFC 8058 one-click (urlencoded or multipart) or "
       "the page's button; 200 HTML confirmation, no redirect", None, path_params=("token",),
       form=(("List-Unsubscribe", False, "One-Click (RFC 8058)"),
             ("action", False, "the page's buttons: all, or topic")),
       content=("text/html", {"type": "string"}), error_schema={"type": "string"},
       errors=(400, 404, 413, 503)),
    Op("get", "/preferences/{token}", "Preference centre (HTML; HEAD too): topics and "
       "unsubscribe from all", None, path_params=("token",),
       content=("text/html", {"type": "string"}), error_schema={"type": "string"},
       errors=(404, 503)),
    Op("post", "/preferences/{token}", "Save topic choices, or unsubscribe from all; 200 HTML",
       None, path_params=("token",),
       form=(("action", True, "save or all"), ("topic", False, "a topic to receive (repeated)"),
             ("shown", False, "a topic the page showed as received (repeated)")),
       content=("text/html", {"type": "string"}), error_schema={"type": "string"},
       errors=(400, 404, 413, 503)),
    Op("get", "/healthz", "Liveness", None, errors=()),
    Op("get", "/readyz", "Readiness: 200 only while the store answers", None, errors=(503,)),
    Op("get", "/metrics", "Prometheus metrics", None, errors=(),
       content=("text/plain", {"type": "string"})),
    Op("get", "/openapi.json", "This OpenAPI document", None, errors=(),
       content=("application/json", {"type": "object"})),
)


def _params(op: Op) -> list[dict[str, Any]]:
    params = [{"name": n, "in": "query", "required": req, "description": desc,
               "schema": {"type": "string"}} for n, req, desc in op.query]
    params += [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
               for n in op.path_params]
    params += [{"name": n, "in": "header", "required": req, "description": desc,
                "schema": {"type": "string"}} for n, req, desc in op.headers]
    return params


def _form(op: Op) -> dict[str, Any]:
    schema = {"type": "object", "required": [n for n, req, _ in op.form if req],
              "properties": {n: {"type": "string", "description": d} for n, _, d in op.form}}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": schema}}}


def build_document() -> dict[str, Any]:
    components: dict[str, Any] = {}

    def ref(model: type[BaseModel], mode: Literal["validation", "serialization"]
            ) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}

    error_ref = ref(schemas.ErrorResponse, "serialization")
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        error_schema = op.error_schema or error_ref
        error_type = "application/json"
        if error_schema.get("type") == "string":  # HTML pages answer errors as pages
            error_type = op.content[0] if op.content and op.content[0] == "text/html" \
                else "text/plain"
        responses: dict[str, Any] = {str(op.status): {"description": "success"}}
        if op.response is not None:
            responses[str(op.status)]["content"] = {
                "application/json": {"schema": ref(op.response, "serialization")}}
        elif op.content is not None:
            responses[str(op.status)]["content"] = {op.content[0]: {"schema": op.content[1]}}
        errors = op.errors + (BODY_ERRORS if op.body is not None else ())
        for code in errors:
            responses[str(code)] = {"description": "error",
                                    "content": {error_type: {"schema": error_schema}}}
        entry: dict[str, Any] = {"summary": op.summary, "parameters": _params(op),
                                 "responses": responses}
        auth = op.auth or ("bearer" if op.scope else None)
        if auth in ("bearer", "basic"):
            entry["security"] = [{auth: []}]
        if op.scope:
            entry["description"] = f"Requires an API key with the '{op.scope}' scope."
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(op.body, "validation")}}}
        elif op.form:
            entry["requestBody"] = _form(op)
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "optout-gateway", "version": "0.1.0",
                 "description": "SMS and email opt-out compliance gateway: ops API."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "username = tenant id, password = API key"}}},
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document())
