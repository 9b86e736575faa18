"""``/openapi.json``: generated from the pydantic models that validate requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from . import schemas

routes = web.RouteTableDef()
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    scope: str | None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[tuple[str, bool, str], ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 422, 503)
    path_params: tuple[str, ...] = field(default=())


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
    Op("post", "/v1/consents", "Record consent with its evidence", "write",
       body=schemas.ConsentIn, response=schemas.ConsentOut, status=201),
    Op("get", "/v1/audit", "Audit trail of one identifier", "read", response=schemas.AuditPage,
       query=(("identifier", True, "phone number or address"),
              ("channel", False, "sms or email (guessed when absent)"))),
    Op("get", "/healthz", "Liveness", None, errors=()),
    Op("get", "/readyz", "Readiness: 200 only while the store answers", None, errors=(503,)),
    Op("get", "/metrics", "Prometheus metrics", None, errors=()),
)


def build_document() -> dict[str, Any]:
    components: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF)
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}

    error_ref = ref(schemas.ErrorResponse)
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        params = [{"name": n, "in": "query", "required": req, "description": desc,
                   "schema": {"type": "string"}} for n, req, desc in op.query]
        params += [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                   for n in op.path_params]
        responses: dict[str, Any] = {str(op.status): {"description": "success"}}
        if op.response is not None:
            responses[str(op.status)]["content"] = {
                "application/json": {"schema": ref(op.response)}}
        for code in op.errors:
            responses[str(code)] = {"description": "error",
                                    "content": {"application/json": {"schema": error_ref}}}
        entry: dict[str, Any] = {"summary": op.summary, "parameters": params,
                                 "responses": responses}
        if op.scope:
            entry["security"] = [{"bearer": []}]
            entry["description"] = f"Requires an API key with the '{op.scope}' scope."
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(op.body)}}}
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "optout-gateway", "version": "0.1.0",
                 "description": "SMS and email opt-out compliance gateway: ops API."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document())
