"""``optout-gateway serve --workers N``: worker processes sharing the HTTP port.

Real processes (the console script), a real redis-server, real HTTP: connections are spread
by the kernel (SO_REUSEPORT), each worker journals on its own, and a worker's death stops the
rest so a restart adopts its journal.
"""

from __future__ import annotations

import asyncio
import os
import re
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
from redis_proc import RedisServerProcess, free_port

from suppression import keys
from suppression.models import Channel

EXE = str(Path(sys.executable).with_name("optout-gateway"))
GUARD_S = 30.0


class Supervised:
    """``serve --workers N`` as a child process, logging to a file."""

    def __init__(self, data_dir: Path, redis_url: str, workers: int = 2) -> None:
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
        self.env.update(OPTOUT_DATA_DIR=str(data_dir), OPTOUT_HTTP_PORT=str(self.port),
                        OPTOUT_SMTP_PORT=str(free_port()), OPTOUT_REDIS_URL=redis_url,
                        OPTOUT_PEPPER="test-pepper-0123456789",
                        OPTOUT_STORE_HEALTH_INTERVAL_S="0.2")
        self.log = data_dir.parent / f"serve-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen([EXE, "serve", "--workers", str(workers)],
                                         env=self.env, stderr=fh, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + GUARD_S
        while self.text.count("HTTP listening on") < workers or \
                self.text.count("SMTP listening on") < workers:
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text
            time.sleep(0.05)

    @property
    def text(self) -> str:
        return self.log.read_text()

    @property
    def worker_pids(self) -> list[int]:
        found = re.search(r"with \d+ workers \(pids ([\d, ]+)\)", self.text)
        assert found, self.text
        return [int(p) for p in found.group(1).split(", ")]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def key(self) -> str:
        out = subprocess.run([EXE, "keys", "create", "--tenant", "default", "--scopes",
                              "read,write"], env=self.env, capture_output=True, text=True,
                             check=True, timeout=GUARD_S)
        return out.stdout.strip()


@pytest.fixture
def supervised() -> Iterator[list[Supervised]]:
    procs: list[Supervised] = []
    yield procs
    for s in procs:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        for pid in s.worker_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def on_new_connections(s: Supervised, key: str, n: int, path: str = "/v1/suppressions",
                             body: dict[str, str] | None = None) -> list[int]:
    """``n`` requests, each on its own connection (so the kernel may pick any worker)."""
    statuses = []
    for i in range(n):
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {key}"}
            if body is None:
                async with http.get(s.url(path + "?channel=sms"), headers=headers) as r:
                    statuses.append(r.status)
            else:
                data = {k: v.format(i=i) for k, v in body.items()}
                async with http.post(s.url(path), json=data, headers=headers) as r:
                    statuses.append(r.status)
    return statuses


def journals_with_events(data_dir: Path) -> int:
    journal = data_dir / "journal"
    return sum(1 for d in journal.iterdir()
               if d.is_dir() and any(f.stat().st_size for f in d.glob("seg-*.jsonl")))


async def test_workers_share_the_port_journal_apart_and_stop_on_sigterm(
        redis_url: str, tmp_path: Path, supervised: list[Supervised]) -> None:
    # Two workers answer on one port; opt-outs over 24 connections land in both workers'
    # own journals; SIGTERM drains both and the supervisor exits 0.
    s = Supervised(tmp_path / "d", redis_url)
    supervised.append(s)
    assert re.search(rf"serving on port {s.port} with 2 workers", s.text)
    key = s.key()
    statuses = await on_new_connections(s, key, 24, body={
        "channel": "sms", "identifier": "+1415555{i:04d}", "reason": "manual"})
    assert set(statuses) == {201}
    assert journals_with_events(tmp_path / "d") == 2
    # Both workers serve SMTP on the one shared port.
    smtp_port = int(s.env["OPTOUT_SMTP_PORT"])
    assert s.text.count(f"SMTP listening on 127.0.0.1:{smtp_port}") == 2
    for _ in range(6):
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            assert smtp.ehlo()[0] == 250
    with redis.Redis.from_url(redis_url) as raw:
        sup = keys.suppressions("default", Channel.SMS, keys.bucket_of("+14155550023"))
        assert raw.hget(sup, "14155550023") is not None
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=GUARD_S) == 0
    assert not any(alive(pid) for pid in s.worker_pids)
    assert s.text.count("stopped") == 3  # both workers and the supervisor


async def test_dead_worker_stops_all_and_its_journal_is_adopted(
        own_redis: RedisServerProcess, tmp_path: Path, supervised: list[Supervised]) -> None:
    # Redis hangs, an opt-out is acknowledged from a worker's journal, the workers are
    # SIGKILLed: the supervisor exits 1, and the next `serve --workers 2` adopts the
    # orphaned journals and applies the opt-out.
    data = tmp_path / "d"
    s = Supervised(data, own_redis.url)
    supervised.append(s)
    key = s.key()
    assert set(await on_new_connections(s, key, 16)) == {200}  # both workers know the key
    own_redis.pause()
    try:
        statuses = await on_new_connections(s, key, 1, body={
            "channel": "sms", "identifier": "+14155550131", "reason": "manual"})
        assert statuses == [201]
        for pid in s.worker_pids:
            os.kill(pid, signal.SIGKILL)
        assert s.proc.wait(timeout=GUARD_S) == 1
    finally:
        own_redis.resume()
    sup = keys.suppressions("default", Channel.SMS, keys.bucket_of("+14155550131"))
    with redis.Redis.from_url(own_redis.url) as raw:
        assert raw.hget(sup, "14155550131") is None  # only a journal has it
        supervised.append(Supervised(data, own_redis.url))
        deadline = time.monotonic() + 10
        while raw.hget(sup, "14155550131") is None:
            assert time.monotonic() < deadline, "orphaned journal not replayed"
            await asyncio.sleep(0.05)


def test_workers_must_be_a_positive_number(tmp_path: Path) -> None:
    # A bad worker count is refused by name, before anything starts.
    out = subprocess.run([EXE, "serve", "--workers", "0"], capture_output=True, text=True,
                         env={**os.environ, "OPTOUT_DATA_DIR": str(tmp_path / "d")},
                         timeout=GUARD_S)
    assert out.returncode == 2 and "--workers" in out.stderr and "1 to 64" in out.stderr
