"""``optout-gateway serve``: the HTTP and SMTP listeners on one event loop.

``serve --workers N`` runs N such processes (``supervise``): one Python process
uses one core, and the HTTP edge is CPU-bound. The workers share the HTTP port
with SO_REUSEPORT (the kernel spreads connections over them), the Redis (the
supervisor starts the embedded one, if any, once) and the data dir; each has
its own journal instance (named by its pid), and a journal left by a worker that
died is adopted by the next process that opens one. Every worker serves SMTP too, on
the shared SMTP port (SO_REUSEPORT as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from aiohttp import web

from suppression.journal import FsyncFn

from .app import build_app
from .components import Components
from .embedded_redis import RedisServerProcess, start_embedded
from .logs import RouteAccessLogger
from .settings import Settings
from .smtp_server import SmtpListener, start_smtp

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_JOURNAL_FAILED = 75  # EX_TEMPFAIL: restart me, the journal will be replayed
DRAIN_TIMEOUT_S = 10.0


async def serve(settings: Settings, *, fsync: FsyncFn = os.fsync,
                worker: int | None = None) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or a journal failure (exit 75).

    ``worker``: this process is that worker of ``supervise`` (which logged the warnings)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for warning in settings.warnings() if worker is None else []:
        log.warning("%s", warning)

    # One retention sweeper per Redis: the first worker's (the work is per tenant, shared).
    components = await Components.start(settings, fsync=fsync, on_fatal=lambda exc: stop.set(),
                                        retention=worker in (None, 0))
    # What start-up built (phone metadata, classifier tables, settings) lives as long as the
    # process: out of the collector's sight, a full collection no longer stalls every
    # request for 10-40 ms (measured: bench/README.md, bench_sms.py).
    gc.collect()
    gc.freeze()
    smtp: SmtpListener | None = None
    runner = web.AppRunner(build_app(components), handle_signals=False,
                           shutdown_timeout=DRAIN_TIMEOUT_S,
                           access_log_class=RouteAccessLogger)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port,
                           reuse_port=worker is not None or None)
        await site.start()
        log.info("HTTP listening on http://%s:%d", settings.http_host, _bound_port(runner))
        smtp = await start_smtp(components, reuse_port=worker is not None)
        log.info("SMTP listening on %s:%d", settings.smtp_host, smtp.port)
        await stop.wait()
        log.info("stopping: draining requests")
    finally:
        if smtp is not None:
            await smtp.close(DRAIN_TIMEOUT_S)
        await runner.cleanup()
        await components.close()
        gc.unfreeze()  # an in-process caller (tests) gets its collector back
    if components.fatal:
        log.critical("exiting after a journal failure; restart to replay the journal")
        return EXIT_JOURNAL_FAILED
    log.info("stopped")
    return EXIT_OK


async def supervise(settings: Settings, workers: int, *, config: Path | None = None) -> int:
    """``serve --workers N``: start N workers, forward SIGTERM/SIGINT, and stop them all
    when one exits. Exit status: 75 if a worker's journal failed (restart: the journals
    are replayed), 0 after a signal once every worker drained, 1 if a worker died."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    for warning in settings.warnings():
        log.warning("%s", warning)
    # Generated once here, so the workers do not race to create them.
    settings.token_keys()
    settings.resolved_pepper()
    env = dict(os.environ)
    redis: RedisServerProcess | None = None
    reserved: list[socket.socket] = []
    try:
        if settings.redis_url is None:
            url, redis = start_embedded(settings.data_dir)
            env["OPTOUT_REDIS_URL"] = url
        port = _shared_port(settings.http_host, settings.http_port, reserved)
        env["OPTOUT_HTTP_PORT"] = str(port)
        env["OPTOUT_SMTP_PORT"] = str(_shared_port(settings.smtp_host, settings.smtp_port,
                                                   reserved))
        prefix = [sys.executable, "-m", "gateway", *(["--config", str(config)] if config else [])]
        children = [await asyncio.create_subprocess_exec(
            *prefix, "serve", "--worker-index", str(i), env=env, stdin=asyncio.subprocess.DEVNULL)
            for i in range(workers)]
        log.info("serving on port %d with %d workers (pids %s)", port, workers,
                 ", ".join(str(c.pid) for c in children))
        return await _watch(children, stop)
    finally:
        for sock in reserved:
            sock.close()
        if redis is not None:
            redis.stop()


async def _watch(children: list[asyncio.subprocess.Process], stop: asyncio.Event) -> int:
    exits = {asyncio.ensure_future(c.wait()): c for c in children}
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    signalled = stopping in done
    if not signalled:
        first = next(c for t, c in exits.items() if t in done)
        log.error("worker pid %d exited with status %s: stopping the others", first.pid,
                  first.returncode)
    stopping.cancel()
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S + 10):
            codes = [await c.wait() for c in children]
    except TimeoutError:
        for child in children:
            if child.returncode is None:
                log.error("worker pid %d did not stop: killing it", child.pid)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        codes = [await c.wait() for c in children]
    if EXIT_JOURNAL_FAILED in codes:
        log.critical("a worker's journal failed; restart to replay the journals")
        return EXIT_JOURNAL_FAILED
    if signalled and all(code == EXIT_OK for code in codes):
        log.info("stopped")
        return EXIT_OK
    return 1


def _shared_port(host: str, port: int, reserved: list[socket.socket]) -> int:
    """``port``, or for 0 (each worker would pick its own) one free port for all of them."""
    if port:
        return port
    sock = _reserve_port(host)
    reserved.append(sock)
    return int(sock.getsockname()[1])


def _reserve_port(host: str) -> socket.socket:
    """A bound, never listening SO_REUSEPORT socket: holds a free port for the workers
    (the kernel gives connections only to listening sockets)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _bound_port(runner: web.AppRunner) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    return 0
