"""Shared fixtures: a private redis-server per session, a real gateway on loopback.

No mocks: every test talks to a real ``redis-server`` child and to the
gateway's own aiohttp server over HTTP.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess, tcp_redis

from gateway.app import build_app
from gateway.components import Components
from gateway.logs import RouteAccessLogger
from gateway.settings import Settings, load_settings
from suppression.apikeys import parse_scopes
from suppression.journal import FsyncFn

for name in list(os.environ):
    if name.startswith("OPTOUT_"):  # the machine's settings must not leak into tests
        del os.environ[name]

TENANTS: dict[str, Any] = {
    "acme": {"brand": "Acme Co", "sms_senders": ["+14155550100"],
             "twilio_auth_token": "acme-token", "email_domains": ["acme.example"],
             "help_text": "Acme Co: help at acme.example/help", "postal_address": "1 Main St"},
    "globex": {"brand": "Globex", "sms_senders": ["+14155550199"],
               "email_domains": ["globex.example"]},
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """One private redis-server for the session; tests that kill Redis use ``own_redis``."""
    proc = tcp_redis(tmp_path_factory.mktemp("redis"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServerProcess]:
    """A redis-server this test alone may kill, pause and restart."""
    proc = tcp_redis(tmp_path / "own-redis")
    proc.start()
    yield proc
    proc.stop()


def make_settings(redis_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"redis_url": redis_url, "data_dir": data_dir,
                              "tenants": TENANTS, "store_health_interval_s": 0.2,
                              "secret_key": "test-secret-key",
                              # Tests write records at fixed past dates: no sweeper unless
                              # a test asks for one (tests/test_retention.py drives it).
                              "retention_cycle_s": 0}
    values.update(overrides)
    return load_settings(None, **values)


@dataclass
class Gateway:
    """A running gateway: its parts and an HTTP client bound to its real server."""

    parts: Components
    http: TestClient[Any, Any]

    async def key(self, tenant: str = "acme", scopes: str = "send,read,write,inbound,export",
                  *, transactional: bool = False) -> str:
        plaintext, _ = await self.parts.apikeys.create(tenant, parse_scopes(scopes),
                                                       transactional=transactional,
                                                       name="test")
        return plaintext

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}




async def start_gateway(settings: Settings, *, fsync: FsyncFn = os.fsync
                        ) -> tuple[Components, TestClient[Any, Any]]:
    parts = await Components.start(settings, fsync=fsync)
    server = TestServer(build_app(parts))
    await server.start_server(access_log_class=RouteAccessLogger)  # as serve() logs
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    return parts, client


async def stop_gateway(parts: Components, client: TestClient[Any, Any]) -> None:
    await client.close()
    await parts.close()


@pytest.fixture
async def gw(redis_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data"))
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


# A fixed "now" for SMS sends: 12:00 in New York, 09:00 in California, inside every US
# zone's 08:00-21:00 window, so marketing rules other than quiet hours can be tested.
NOON_NY = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmsProvider]:
    """A recording SMS provider (generic JSON and Twilio APIs) with fault injection."""
    async with FakeSmsProvider() as provider:
        yield provider


@pytest.fixture
async def sgw(redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> AsyncIterator[Gateway]:
    """A gateway sending SMS to ``fake``, its clock at ``NOON_NY``."""
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data",
                                                      sms_upstream=fake.url))
    parts.sms.clock = lambda: NOON_NY
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


def cli_runner(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], config: str
               ) -> Callable[..., tuple[int, str, str]]:
    """Run ``optout-gateway ARGS`` in-process with this TOML config; returns a function
    giving (exit status, stdout, stderr)."""
    from gateway.cli import main

    path = tmp_path / "gateway.toml"
    path.write_text(config)
    monkeypatch.setenv("OPTOUT_REDIS_URL", redis_url)
    monkeypatch.setenv("OPTOUT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPTOUT_CONFIG", str(path))

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run
