"""``optout-gateway serve``: the HTTP listener (and, later, SMTP) on one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from aiohttp import web

from suppression.journal import FsyncFn

from .app import build_app
from .components import Components
from .logs import RouteAccessLogger
from .settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_JOURNAL_FAILED = 75  # EX_TEMPFAIL: restart me, the journal will be replayed
DRAIN_TIMEOUT_S = 10.0


async def serve(settings: Settings, *, fsync: FsyncFn = os.fsync) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or a journal failure (exit 75)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for warning in settings.warnings():
        log.warning("%s", warning)

    components = await Components.start(settings, fsync=fsync, on_fatal=lambda exc: stop.set())
    runner = web.AppRunner(build_app(components), handle_signals=False,
                           shutdown_timeout=DRAIN_TIMEOUT_S,
                           access_log_class=RouteAccessLogger)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        log.info("HTTP listening on http://%s:%d", settings.http_host, _bound_port(runner))
        await stop.wait()
        log.info("stopping: draining requests")
    finally:
        await runner.cleanup()
        await components.close()
    if components.fatal:
        log.critical("exiting after a journal failure; restart to replay the journal")
        return EXIT_JOURNAL_FAILED
    log.info("stopped")
    return EXIT_OK


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    return 0
