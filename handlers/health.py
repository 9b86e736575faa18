"""Liveness, readiness and metrics."""

from __future__ import annotations

from aiohttp import web

from suppression.errors import StoreUnavailable

from .context import parts

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 only while the store answers (and the journal is healthy)."""
    p = parts(request)
    pending = p.service.pending_count
    if p.journal.failed:
        return web.json_response({"status": "journal_failed"}, status=503)
    try:
        await p.store.ping()
    except StoreUnavailable:
        p.metrics.store_up.set(0)
        return web.json_response({"status": "store_unavailable", "pending_events": pending},
                                 status=503)
    p.metrics.store_up.set(1)
    return web.json_response({"status": "ready", "pending_events": pending})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    p = parts(request)
    p.metrics.journal_pending.set(p.service.pending_count)
    return web.Response(body=p.metrics.render(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
