"""Logging set-up: one named logger per module, %-style arguments, one line per record."""

from __future__ import annotations

import logging
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command at INFO with the addresses in clear ("sender: …",
    # "recip: …"): ours log one masked line per message instead (handlers.smtp).
    logging.getLogger("mail.log").setLevel(max(logging.WARNING, root.level))


class RouteAccessLogger(AbstractAccessLogger):
    """An access log line per request naming the route, never the path.

    Paths carry phone numbers, addresses and unsubscribe tokens
    (``/v1/suppressions/sms/+14155550123``); the route template does not.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        try:
            info = request.match_info if isinstance(request, web.Request) else None
        except AssertionError:  # rejected before routing (e.g. an over-long request line)
            info = None
        resource = info.route.resource if info is not None else None
        route = resource.canonical if resource is not None else "(unmatched)"
        self.logger.info("%s %s %d %.1fms", request.method, route, response.status,
                         time * 1000)
