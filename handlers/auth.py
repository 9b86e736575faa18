"""API-key authentication at the HTTP edge: ``Authorization: Bearer KEY``.

No or wrong credentials: 401. A key without the scope: 403. The key's tenant
is the only tenant the request can see.
"""

from __future__ import annotations

from aiohttp import web

from suppression.apikeys import ApiKey, Scope, Unauthenticated

from .context import parts


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    return token.strip()


async def authenticate(request: web.Request, scope: Scope) -> ApiKey:
    key = await parts(request).apikeys.verify(bearer_token(request))
    key.require(scope)
    return key
