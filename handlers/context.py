"""Typed access to the gateway's parts from a request (aiohttp AppKeys)."""

from __future__ import annotations

from aiohttp import web

from gateway.components import Components

COMPONENTS = web.AppKey("components", Components)


def parts(request: web.Request) -> Components:
    return request.app[COMPONENTS]
