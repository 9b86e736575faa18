"""The aiohttp application factory."""

from __future__ import annotations

import time

from aiohttp import web

from handlers import (
    admin,
    consents,
    exports,
    health,
    openapi,
    records,
    sms,
    subjects,
    unsubscribe,
)
from handlers.context import COMPONENTS
from handlers.errors import Handler, error_middleware

from .components import Components

MAX_BODY_BYTES = 4 << 20  # a 10,000-identifier check fits with room to spare


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    response = await handler(request)
    metrics = request.app[COMPONENTS].metrics
    metrics.http_requests.labels(name, str(response.status)).inc()
    metrics.http_latency.labels(name).observe(time.perf_counter() - started)
    return response


def build_app(components: Components) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          middlewares=[metrics_middleware, error_middleware])
    app[COMPONENTS] = components
    app.add_routes(health.routes)
    app.add_routes(admin.routes)
    app.add_routes(openapi.routes)
    app.add_routes(sms.routes)
    app.add_routes(records.routes)
    app.add_routes(consents.routes)
    app.add_routes(subjects.routes)
    app.add_routes(exports.routes)
    app.add_routes(unsubscribe.routes)
    return app

