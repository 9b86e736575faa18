"""The real ``optout-gateway`` process: start-up, readiness lines, signals, crash recovery."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from conftest import make_settings
from redis_proc import RedisServerProcess, free_port

from gateway.server import EXIT_JOURNAL_FAILED, serve
from suppression import keys
from suppression.models import Channel

EXE = str(Path(sys.executable).with_name("optout-gateway"))
START_GUARD_S = 20.0


def _env(data_dir: Path, port: int, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(OPTOUT_DATA_DIR=str(data_dir), OPTOUT_HTTP_PORT=str(port),
               OPTOUT_SMTP_PORT=str(free_port()), OPTOUT_STORE_HEALTH_INTERVAL_S="0.2")
    if redis_url:
        env["OPTOUT_REDIS_URL"] = redis_url
    return env


class Served:
    """``optout-gateway serve`` as a child process, its log in a file (a pipe could fill up)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = int(env["OPTOUT_HTTP_PORT"])
        self.log = Path(env["OPTOUT_DATA_DIR"]).parent / f"serve-{self.port}.log"
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen([EXE, "serve"], env=env, stderr=fh,
                                         stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_GUARD_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            if "SMTP listening on" in self.log.read_text():
                return
            time.sleep(0.05)
        raise AssertionError("gateway did not become ready:\n" + self.log.read_text())

    @property
    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def cli(self, *args: str) -> str:
        out = subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True,
                             check=True, timeout=START_GUARD_S)
        return out.stdout.strip()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def served_procs() -> Iterator[list[Served]]:
    procs: list[Served] = []
    yield procs
    for s in procs:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


async def _post(url: str, key: str, body: dict[str, object]) -> int:
    async with aiohttp.ClientSession() as http, http.post(
            url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status


async def _get(url: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status


async def test_serve_logs_listener_and_exits_0_on_sigterm(
        redis_url: str, tmp_path: Path, served_procs: list[Served]) -> None:
    # serve logs one line per listener when ready, answers /healthz and SMTP, and SIGTERM
    # drains and exits 0.
    s = Served(_env(tmp_path / "d", free_port(), redis_url))
    served_procs.append(s)
    smtp_port = int(s.env["OPTOUT_SMTP_PORT"])
    assert sum(f"HTTP listening on http://127.0.0.1:{s.port}" in line for line in s.lines) == 1
    assert sum(f"SMTP listening on 127.0.0.1:{smtp_port}" in line for line in s.lines) == 1
    assert await _get(s.url("/healthz")) == 200
    assert await _get(s.url("/readyz")) == 200
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        assert smtp.ehlo()[0] == 250
        smtp.mail("someone@example.com")
        assert smtp.rcpt("ann@example.com")[0] == 530  # no AUTH, no relay
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=START_GUARD_S) == 0


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
async def test_embedded_redis_default_persists_across_restarts(
        tmp_path: Path, served_procs: list[Served]) -> None:
    # With no OPTOUT_REDIS_URL, serve runs its own redis-server; the CLI reuses it; data
    # survives a restart of the gateway (AOF under the data dir).
    data = tmp_path / "d"
    s = Served(_env(data, free_port(), None))
    served_procs.append(s)
    key = s.cli("keys", "create", "--tenant", "default", "--scopes", "read,write")
    assert key.startswith("og_") and "\n" not in key
    assert await _post(s.url("/v1/suppressions"), key,
                       {"channel": "email", "identifier": "a@example.com"}) == 201
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=START_GUARD_S) == 0
    assert not (data / "redis" / "redis.sock").exists()  # the embedded Redis stopped too
    s2 = Served(_env(data, free_port(), None))
    served_procs.append(s2)
    assert await _get(s2.url("/v1/suppressions/email/a@example.com"), key) == 200
    s2.proc.send_signal(signal.SIGTERM)
    assert s2.proc.wait(timeout=START_GUARD_S) == 0


async def test_killed_gateway_loses_no_acknowledged_opt_out(
        own_redis: RedisServerProcess, tmp_path: Path, served_procs: list[Served]) -> None:
    # Redis hangs, an opt-out is acknowledged from the journal, the gateway is SIGKILLed;
    # the next gateway adopts the orphaned journal and applies the opt-out.
    env = _env(tmp_path / "d", free_port(), own_redis.url)
    s = Served(env)
    served_procs.append(s)
    key = s.cli("keys", "create", "--tenant", "default", "--scopes", "read,write")
    assert await _get(s.url("/v1/suppressions?channel=sms"), key) == 200  # key now cached
    own_redis.pause()
    try:
        assert await _post(s.url("/v1/suppressions"), key,
                           {"channel": "sms", "identifier": "+14155550131"}) == 201
        s.proc.kill()
        s.proc.wait()
    finally:
        own_redis.resume()
    sup = keys.suppressions("default", Channel.SMS, keys.bucket_of("+14155550131"))
    with redis.Redis.from_url(own_redis.url) as raw:
        assert raw.hget(sup, "14155550131") is None  # only the journal has it
        env2 = dict(env, OPTOUT_HTTP_PORT=str(free_port()))
        served_procs.append(Served(env2))
        assert raw.hget(sup, "14155550131") is not None  # replayed at start-up


async def test_serve_exits_75_after_journal_fsync_failure(redis_url: str,
                                                          tmp_path: Path) -> None:
    # A failed fsync makes serve stop and exit with EX_TEMPFAIL so a supervisor restarts it.
    failing = {"on": False}

    def fsync(fd: int) -> None:
        if failing["on"]:
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    port = free_port()
    settings = make_settings(redis_url, tmp_path / "d", http_port=port, smtp_port=free_port())
    task = asyncio.create_task(serve(settings, fsync=fsync))
    async with asyncio.timeout(START_GUARD_S):
        while True:
            try:
                if await _get(f"http://127.0.0.1:{port}/healthz") == 200:
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
    from suppression.apikeys import ApiKeys, parse_scopes
    from suppression.store import RedisStore

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        key, _ = await ApiKeys(RedisStore(client)).create("acme", parse_scopes("write"))
    finally:
        await client.aclose()
    failing["on"] = True
    assert await _post(f"http://127.0.0.1:{port}/v1/suppressions", key,
                       {"channel": "sms", "identifier": "+14155550132"}) == 503
    async with asyncio.timeout(START_GUARD_S):
        assert await task == EXIT_JOURNAL_FAILED


def test_invalid_setting_is_named_without_traceback(tmp_path: Path) -> None:
    # A bad environment variable gives one clear line naming it, exit 2, no traceback.
    env = _env(tmp_path, free_port(), None)
    env["OPTOUT_HTTP_PORT"] = "eighty"
    out = subprocess.run([EXE, "serve"], env=env, capture_output=True, text=True,
                         timeout=START_GUARD_S)
    assert out.returncode == 2
    assert "OPTOUT_HTTP_PORT" in out.stderr and "Traceback" not in out.stderr


def test_bad_config_file_is_named(tmp_path: Path) -> None:
    # A config file with invalid TOML or an unknown tenant field is refused with its name.
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[tenants.acme]\nbrand = "Acme"\ncolour = "red"\n')
    env = _env(tmp_path, free_port(), None)
    out = subprocess.run([EXE, "--config", str(cfg), "serve"], env=env, capture_output=True,
                         text=True, timeout=START_GUARD_S)
    assert out.returncode == 2
    assert "colour" in out.stderr and "Traceback" not in out.stderr
    cfg.write_text("[tenants.acme\n")
    out = subprocess.run([EXE, "serve"], env=dict(env, OPTOUT_CONFIG=str(cfg)),
                         capture_output=True, text=True, timeout=START_GUARD_S)
    assert out.returncode == 2 and "not valid TOML" in out.stderr


def test_smtp_protocol_log_never_shows_addresses_in_clear() -> None:
    # aiosmtpd's own logger would print every RCPT address at INFO; serve quiets it.
    import logging

    from gateway.logs import setup_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("INFO")
        assert not logging.getLogger("mail.log").isEnabledFor(logging.INFO)
    finally:  # pytest's own capture handlers
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("mail.log").setLevel(logging.NOTSET)
