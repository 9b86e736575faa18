"""Bulk suppression checks through the real HTTP API, next to raw SMISMEMBER.

    .venv/bin/python bench/bench_bulk_check.py [--clients 4] [--duration 10] [--batch 1000]

One private redis-server (the embedded server's command line) holds ``--background``
suppressions of tenant ``default`` (SMS) plus half of the checked numbers, written in the
store's stored format; the same suppressed numbers are the members of one plain SET.
Each phase runs ``--clients`` concurrent clients for ``--warmup`` + ``--duration`` seconds and
counts the requests that complete inside the timed window:

baseline      raw ``SMISMEMBER set id1..id1000`` with redis-py asyncio (this process)
store         ``RedisStore.entries`` (the store layer alone, this process, gateway's client)
variants      what the store layer could do instead (``--variant-duration``): the same Lua
              script per shard sent as plain EVALSHA (no SCRIPT EXISTS), and one pipelined
              HGET per identifier (no Lua)
http warm     ``POST /v1/suppressions/check`` with 1,000 E.164 numbers to ``optout-gateway serve``
              running as its own process (so the client does not share its event loop);
              the numbers come from a pool the normaliser's LRU cache holds (warm)
http cold     the same, cycling through a pool larger than that cache: every number is
              parsed and validated by ``phonenumbers``

Then an in-process gateway (aiohttp ``AppRunner``/``TCPSite`` on 127.0.0.1, the same
``build_app``) proves the round trips: redis-py connection writes (one per round trip) and
``INFO commandstats`` deltas per bulk and per single-identifier check, and each per-request
step of the check path is timed alone (where the gateway's CPU goes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis
import redis.asyncio as aioredis
from _common import (
    CpuMeter,
    check_valid_sample,
    commandstats,
    e164_numbers,
    fmt,
    machine_line,
    percentile,
    print_table,
    private_redis,
    resp,
    send_all,
    stats_delta,
    write_entries,
)
from redis.asyncio.connection import AbstractConnection

from suppression import codec, keys
from suppression.models import Channel

TENANT = "default"
SET_KEY = "bench:suppressed"
GOAL_RATIO = 0.6


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Body:
    ids: list[str]
    payload: bytes
    suppressed: int


def make_bodies(pool: Sequence[str], batch: int, seed: int) -> list[Body]:
    """Requests of ``batch`` numbers; in ``pool`` even positions are the suppressed ones."""
    rng = random.Random(seed)
    out = []
    for start in range(0, len(pool) - batch + 1, batch):
        ids = list(pool[start:start + batch])
        suppressed = sum(1 for i in range(start, start + batch) if i % 2 == 0)
        rng.shuffle(ids)
        payload = json.dumps({"channel": "sms", "identifiers": ids}).encode()
        out.append(Body(ids, payload, suppressed))
    return out


def load_data(client: redis.Redis, args: argparse.Namespace
              ) -> tuple[list[Body], list[Body]]:
    background = e164_numbers(args.background, start=0)
    warm = e164_numbers(args.warm_pool, start=args.background)
    cold = e164_numbers(args.cold_pool, start=args.background + args.warm_pool)
    check_valid_sample(warm + cold)
    suppressed = background + warm[0::2] + cold[0::2]
    write_entries(client, TENANT, Channel.SMS, suppressed)
    send_all(client, (resp("SADD", SET_KEY, *suppressed[i:i + 10_000])
                      for i in range(0, len(suppressed), 10_000)))
    return make_bodies(warm, args.batch, 1), make_bodies(cold, args.batch, 2)


# -- the load driver -------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int = 0
    ids: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def ids_per_s(self) -> float:
        return self.ids / self.seconds if self.seconds else 0.0


async def drive(name: str, call: Callable[[Body], Awaitable[None]], bodies: Sequence[Body], *,
                clients: int, warmup: float, duration: float, pids: dict[str, int],
                stats: redis.Redis) -> Result:
    """``clients`` workers call ``call`` back to back on ``bodies`` in order (shared cursor);
    the requests that complete in [warmup, warmup + duration] are counted."""
    result = Result(name)
    cursor = itertools.count()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    start, end = begin + warmup, begin + warmup + duration
    meter = CpuMeter(pids)

    async def window() -> None:
        await asyncio.sleep(warmup)
        before = commandstats(stats)
        meter.start()
        await asyncio.sleep(duration)
        result.cpu = meter.stop()
        result.commands = stats_delta(before, commandstats(stats))

    async def worker() -> None:
        while loop.time() < end:
            body = bodies[next(cursor) % len(bodies)]
            t0 = loop.time()
            await call(body)
            t1 = loop.time()
            if start <= t1 <= end:
                result.requests += 1
                result.ids += len(body.ids)
                result.latencies.append(t1 - t0)

    await asyncio.gather(window(), *(worker() for _ in range(clients)))
    result.seconds = duration
    return result


# -- the gateway as its own process ----------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gateway_cmd() -> list[str]:
    script = Path(sys.executable).with_name("optout-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


@contextmanager
def gateway_process(redis_url: str, workdir: Path) -> Iterator[tuple[str, str, int]]:
    """``optout-gateway serve`` on a free loopback port: yields (base url, API key, pid)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(OPTOUT_REDIS_URL=redis_url, OPTOUT_DATA_DIR=str(workdir / "data"),
               OPTOUT_HTTP_HOST="127.0.0.1", OPTOUT_HTTP_PORT=str(port),
               OPTOUT_LOG_LEVEL="WARNING")
    key = subprocess.run(_gateway_cmd() + ["keys", "create", "--tenant", TENANT, "--scopes",
                                           "read", "--name", "bench"],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    log = open(workdir / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(_gateway_cmd() + ["serve"], env=env, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base + "/healthz", proc, workdir / "gateway.log")
        yield base, key, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        tail = (workdir / "gateway.log").read_text(errors="replace").strip()
        if tail:
            print("gateway log (tail):\n" + tail[-3000:])


def _wait_http(url: str, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {logfile.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gateway did not answer {url}: {logfile.read_text()[-2000:]}")


# -- phases --------------------------------------------------------------------------------------


async def phase_baseline(url: str, bodies: Sequence[Body], args: argparse.Namespace,
                         pids: dict[str, int], stats: redis.Redis) -> Result:
    client = aioredis.Redis.from_url(url, max_connections=args.clients * 2)
    try:
        for body in bodies[:3]:
            flags = await client.smismember(SET_KEY, body.ids)
            assert sum(flags) == body.suppressed, (sum(flags), body.suppressed)

        async def call(body: Body) -> None:
            await client.smismember(SET_KEY, body.ids)

        return await drive("baseline: SMISMEMBER, redis-py asyncio", call, bodies,
                           clients=args.clients, warmup=args.warmup, duration=args.duration,
                           pids=pids, stats=stats)
    finally:
        await client.aclose()


async def phase_store(url: str, bodies: Sequence[Body], args: argparse.Namespace,
                      pids: dict[str, int], stats: redis.Redis) -> Result:
    from gateway.redis_client import make_client
    from suppression.store import RedisStore

    client = make_client(url)
    store = RedisStore(client, op_timeout_s=0.5)
    try:
        for body in bodies[:3]:
            entries = await store.entries(TENANT, Channel.SMS, body.ids)
            assert sum(1 for e in entries if e is not None and e.active) == body.suppressed

        async def call(body: Body) -> None:
            await store.entries(TENANT, Channel.SMS, body.ids)

        return await drive("store: RedisStore.entries, in-process", call, bodies,
                           clients=args.clients, warmup=args.warmup, duration=args.duration,
                           pids=pids, stats=stats)
    finally:
        await client.aclose()


# -- store-layer variants (what RedisStore.entries could do; measured, not used by the product) --


def _key_names(tenant: str, channel: Channel) -> list[str]:
    """``keys.suppressions`` of every bucket, built once (the store builds one per identifier)."""
    return [keys.suppressions(tenant, channel, b) for b in range(keys.BUCKETS)]


class PipelinedHget:
    """One ``HGET bucket field`` per identifier in one pipeline: no Lua, no SCRIPT EXISTS."""

    name = "variant: pipelined HGET per id, no Lua"

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.names = _key_names(TENANT, Channel.SMS)

    async def prepare(self) -> None:
        return None

    async def entries(self, ids: Sequence[str]) -> list[int | None]:
        names, bucket_of, field = self.names, keys.bucket_of, codec.encode_field
        pipe = self.client.pipeline(transaction=False)
        for ident in ids:
            pipe.hget(names[bucket_of(ident)], field(Channel.SMS, ident))
        return [None if v is None else int(v) for v in await pipe.execute()]


class EvalshaNoExists(PipelinedHget):
    """The store's script, one call per shard, sent as plain EVALSHA (loaded once up front):
    what the store does minus redis-py's SCRIPT EXISTS round trip and the second bucket_of."""

    name = "variant: Lua per shard, EVALSHA without SCRIPT EXISTS"

    async def prepare(self) -> None:
        from importlib import resources

        lua = resources.files("suppression").joinpath("lua/check_many.lua").read_text()
        self.sha = await self.client.script_load(lua)

    async def entries(self, ids: Sequence[str]) -> list[int | None]:
        names, bucket_of, field = self.names, keys.bucket_of, codec.encode_field
        shards: dict[int, tuple[list[int], list[str], list[str]]] = {}
        for i, ident in enumerate(ids):
            bucket = bucket_of(ident)
            pos, ks, fs = shards.setdefault(bucket // keys.BUCKETS_PER_SHARD, ([], [], []))
            pos.append(i)
            ks.append(names[bucket])
            fs.append(field(Channel.SMS, ident))
        pipe = self.client.pipeline(transaction=False)
        for _, ks, fs in shards.values():
            pipe.execute_command("EVALSHA", self.sha, len(ks), *ks, *fs)
        out: list[int | None] = [None] * len(ids)
        for (pos, _, _), values in zip(shards.values(), await pipe.execute(), strict=True):
            for i, v in zip(pos, values, strict=True):
                out[i] = None if v is None else int(v)
        return out


async def phase_variant(cls: type[PipelinedHget], url: str, bodies: Sequence[Body],
                        args: argparse.Namespace, pids: dict[str, int], stats: redis.Redis
                        ) -> Result:
    from gateway.redis_client import make_client

    client = make_client(url)
    variant = cls(client)
    try:
        await variant.prepare()
        for body in bodies[:3]:
            values = await variant.entries(body.ids)
            assert sum(1 for v in values if v is not None and v >> 8 & 1) == body.suppressed

        async def call(body: Body) -> None:
            await variant.entries(body.ids)

        return await drive(cls.name, call, bodies, clients=args.clients, warmup=args.warmup,
                           duration=args.variant_duration, pids=pids, stats=stats)
    finally:
        await client.aclose()


async def _verify_http(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
                       bodies: Sequence[Body]) -> None:
    for body in bodies:
        async with session.post(url, data=body.payload, headers=headers) as reply:
            data = await reply.json()
            assert reply.status == 200, data
        results = data["results"]
        assert [r["normalized"] for r in results] == body.ids
        assert sum(1 for r in results if r["suppressed"]) == body.suppressed


async def phase_http(name: str, base: str, key: str, bodies: Sequence[Body],
                     args: argparse.Namespace, pids: dict[str, int], stats: redis.Redis,
                     duration: float, *, prime: bool, spy: str | None = None) -> Result:
    url = base + "/v1/suppressions/check"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.clients)
    errors: Counter[str] = Counter()
    async with aiohttp.ClientSession(connector=connector) as session:
        await _verify_http(session, url, headers, [bodies[0], bodies[len(bodies) // 2]])

        async def call(body: Body) -> None:
            async with session.post(url, data=body.payload, headers=headers) as reply:
                raw = await reply.read()
                if reply.status != 200:
                    errors[f"HTTP {reply.status}: {raw[:120].decode(errors='replace')}"] += 1

        if prime:  # every body once, so the normaliser's cache holds the whole pool
            todo = iter(bodies)

            async def primer() -> None:
                for body in todo:
                    await call(body)

            await asyncio.gather(*(primer() for _ in range(args.clients)))
        profiler = _py_spy(pids["gateway"], args.warmup + duration, spy) if spy else None
        result = await drive(name, call, bodies, clients=args.clients, warmup=args.warmup,
                             duration=duration, pids=pids, stats=stats)
        if profiler is not None:
            profiler.wait()
    result.errors = dict(errors)
    return result


# -- round trips, in-process ---------------------------------------------------------------------


class SendCounter:
    """Counts redis-py asyncio connection writes: one per round trip (a pipeline is one)."""

    def __init__(self) -> None:
        self.sends = 0
        self._orig = AbstractConnection.send_packed_command

    def __enter__(self) -> SendCounter:
        orig = self._orig

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            self.sends += 1
            await orig(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AbstractConnection.send_packed_command = self._orig  # type: ignore[method-assign]


async def round_trips(url: str, workdir: Path, body: Body, stats: redis.Redis,
                      repeat: int = 20) -> list[list[str]]:
    from aiohttp import web

    from gateway.app import build_app
    from gateway.components import Components
    from gateway.settings import load_settings
    from suppression.apikeys import parse_scopes

    settings = load_settings(None, redis_url=url, data_dir=workdir / "inproc",
                             store_health_interval_s=60, api_key_cache_s=600)
    parts = await Components.start(settings)
    runner = web.AppRunner(build_app(parts), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    key, _ = await parts.apikeys.create(TENANT, parse_scopes("read"), name="bench")
    rows = []
    try:
        async with aiohttp.ClientSession() as session:
            check_url = f"http://127.0.0.1:{port}/v1/suppressions/check"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            single = Body(body.ids[:1], json.dumps(
                {"channel": "sms", "identifiers": body.ids[:1]}).encode(), 0)
            for label, req in ((f"bulk check, {len(body.ids)} ids", body),
                               ("single-identifier check", single)):
                for _ in range(3):  # warm: auth cache, normaliser cache, connections
                    async with session.post(check_url, data=req.payload,
                                            headers=headers) as reply:
                        await reply.read()
                before = commandstats(stats)
                with SendCounter() as counter:
                    for _ in range(repeat):
                        async with session.post(check_url, data=req.payload,
                                                headers=headers) as reply:
                            await reply.read()
                            assert reply.status == 200, await reply.text()
                delta = stats_delta(before, commandstats(stats))
                delta.pop("info", None)  # our own INFO commandstats
                rows.append([label, fmt(counter.sends / repeat, 2), ", ".join(
                    f"{name} {calls / repeat:g}" for name, calls in sorted(delta.items()))])
    finally:
        await runner.cleanup()
        await parts.close()
    return rows


async def variant_round_trips(url: str, body: Body, stats: redis.Redis, repeat: int = 20
                              ) -> list[str]:
    """The same count for the EVALSHA-without-SCRIPT-EXISTS variant (store layer)."""
    from gateway.redis_client import make_client

    client = make_client(url)
    variant = EvalshaNoExists(client)
    try:
        await variant.prepare()
        await variant.entries(body.ids)
        before = commandstats(stats)
        with SendCounter() as counter:
            for _ in range(repeat):
                await variant.entries(body.ids)
        delta = stats_delta(before, commandstats(stats))
        delta.pop("info", None)
    finally:
        await client.aclose()
    return [f"{EvalshaNoExists.name} (store layer), {len(body.ids)} ids",
            fmt(counter.sends / repeat, 2),
            ", ".join(f"{k} {v / repeat:g}" for k, v in sorted(delta.items()))]


# -- where the gateway's CPU goes: the steps of one bulk check, timed alone --------------------


def micro_costs(bodies: Sequence[Body], repeat: int = 20) -> list[list[str]]:
    """CPU of each per-request step of the check path, run alone in this process, in ms per
    request (``--batch`` identifiers), using the product's own functions."""
    from redis.asyncio.connection import Connection

    from handlers.schemas import CheckIn
    from suppression.identifiers import normalize
    from suppression.service import CheckResult

    sample = list(bodies[:repeat])
    for body in sample:  # the warm phase's state: every number in the normaliser's cache
        for ident in body.ids:
            normalize(Channel.SMS, ident)
    conn = Connection()
    sha = "0" * 40
    hit = codec.encode_entry(codec.EntryState(1_700_000_000_000, True, codec._REASONS[0],
                                              codec._SOURCES[0]))
    raw_hits = [str(hit).encode()] * (len(sample[0].ids) // 2)

    def commands(body: Body) -> list[tuple[Any, ...]]:
        shards: dict[int, list[str]] = {}
        for ident in body.ids:
            shards.setdefault(keys.shard_of(keys.bucket_of(ident)), []).append(ident)
        return [("EVALSHA", sha, len(ids), *(keys.suppressions(TENANT, Channel.SMS,
                 keys.bucket_of(i)) for i in ids), *(i[1:] for i in ids))
                for ids in shards.values()]

    packed = {id(b): commands(b) for b in sample}

    def results(body: Body) -> bytes:
        out = [CheckResult(i, i, n % 2 == 0) for n, i in enumerate(body.ids)]
        return json.dumps({"results": [
            {"identifier": r.identifier, "normalized": r.normalized, "suppressed": r.suppressed}
            for r in out]}).encode()

    steps: list[tuple[str, Callable[[Body], object]]] = [
        ("request body: json.loads + pydantic CheckIn",
         lambda b: CheckIn.model_validate(json.loads(b.payload))),
        ("normalize() per id, warm LRU cache",
         lambda b: [normalize(Channel.SMS, i, default_region="US") for i in b.ids]),
        ("keys.bucket_of per id (the store calls it twice)",
         lambda b: [keys.bucket_of(i) for i in b.ids]),
        ("keys.suppressions key name per id",
         lambda b: [keys.suppressions(TENANT, Channel.SMS, 4242) for _ in b.ids]),
        ("codec.encode_field per id", lambda b: [codec.encode_field(Channel.SMS, i)
                                                 for i in b.ids]),
        ("redis-py pack_commands, 64 EVALSHA (asyncio, pure Python)",
         lambda b: conn.pack_commands(packed[id(b)])),
        ("codec.decode_entry per hit (half the ids)",
         lambda b: [codec.decode_entry(v) for v in raw_hits]),
        ("CheckResult objects + response dicts + json.dumps", results),
    ]
    rows = []
    for label, fn in steps:
        t0 = time.process_time()
        for body in sample:
            fn(body)
        rows.append([label, fmt((time.process_time() - t0) / len(sample) * 1000, 2)])
    return rows


# -- report --------------------------------------------------------------------------------------


def result_rows(results: Sequence[Result], batch: int) -> list[list[str]]:
    rows = []
    for r in results:
        reqs = max(r.requests, 1)
        per_req = ", ".join(f"{k} {v / reqs:.2f}" for k, v in sorted(r.commands.items())
                            if k != "info" and v / reqs >= 0.01)
        rows.append([r.name, fmt(r.ids_per_s, 0), fmt(r.requests / r.seconds, 1),
                     fmt(percentile(r.latencies, 50) * 1000, 2),
                     fmt(percentile(r.latencies, 99) * 1000, 2),
                     ", ".join(f"{k} {v:.2f} = {v * r.seconds / reqs * 1000:.1f} ms"
                               for k, v in r.cpu.items()), per_req])
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=4, help="concurrent clients")
    p.add_argument("--batch", type=int, default=1000, help="identifiers per request")
    p.add_argument("--duration", type=float, default=10.0, help="timed seconds per phase")
    p.add_argument("--cold-duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per phase")
    p.add_argument("--variant-duration", type=float, default=6.0,
                   help="timed seconds of each store-layer variant (0: skip them)")
    p.add_argument("--background", type=int, default=1_000_000,
                   help="other suppressions of the tenant (sets the buckets' size)")
    p.add_argument("--warm-pool", type=int, default=50_000,
                   help="numbers the warm phase cycles through (< the normaliser's cache)")
    p.add_argument("--cold-pool", type=int, default=300_000,
                   help="numbers the cold phase cycles through (> the normaliser's cache)")
    p.add_argument("--py-spy", metavar="OUT",
                   help="record the gateway process with py-spy (on PATH) during the warm HTTP "
                        "phase: OUT.svg flame graph, OUT.txt collapsed stacks, OUT.json "
                        "speedscope")
    return p.parse_args(argv)


def _py_spy(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        print("py-spy not on PATH: not profiling")
        return None
    fmt_name = {".txt": "raw", ".json": "speedscope"}.get(Path(out).suffix, "flamegraph")
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds)),
                             "-o", out, "-f", fmt_name, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run(args: argparse.Namespace, url: str, redis_pid: int, workdir: Path) -> int:
    stats = redis.Redis.from_url(url)
    print(f"machine: {machine_line(stats)}")
    t0 = time.perf_counter()
    warm, cold = load_data(stats, args)
    print(f"data: {args.background:,} background + {len(warm) * args.batch // 2:,} warm + "
          f"{len(cold) * args.batch // 2:,} cold suppressions; {stats.dbsize():,} keys; "
          f"{time.perf_counter() - t0:.0f} s")
    me = {"client": os.getpid(), "redis": redis_pid}
    results = [await phase_baseline(url, warm, args, me, stats),
               await phase_store(url, warm, args, me, stats)]
    variants = []
    if args.variant_duration > 0:
        for cls in (EvalshaNoExists, PipelinedHget):
            variants.append(await phase_variant(cls, url, warm, args, me, stats))
    with gateway_process(url, workdir) as (base, key, gw_pid):
        pids = {**me, "gateway": gw_pid}
        results.append(await phase_http("http: POST /v1/suppressions/check, warm", base, key,
                                        warm, args, pids, stats, args.duration, prime=True,
                                        spy=args.py_spy))
        if args.cold_duration > 0:
            results.append(await phase_http("http: same, cold normaliser cache", base, key,
                                            cold, args, pids, stats, args.cold_duration,
                                            prime=False))
    trips = await round_trips(url, workdir, warm[0], stats)
    trips.append(await variant_round_trips(url, warm[0], stats))
    micro = micro_costs(warm)
    stats.close()

    print(f"\n{args.clients} concurrent clients, {args.batch} identifiers per request, "
          f"{args.duration:g} s timed per phase\n")
    rows = result_rows(results[:2] + variants + results[2:], args.batch)
    print_table(["phase", "ids/s", "req/s", "p50 ms", "p99 ms",
                 "CPU share (1.00 = a core) = CPU per request",
                 "Redis commands per request"], rows)
    ratio = results[2].ids_per_s / results[0].ids_per_s
    verdict = "MET" if ratio >= GOAL_RATIO else "MISSED"
    print(f"\nratio http warm / baseline = {ratio:.2f} (goal >= {GOAL_RATIO}): {verdict}")
    if len(results) > 3:
        print(f"ratio http cold / baseline = {results[3].ids_per_s / results[0].ids_per_s:.2f}")
    print(f"ratio store / baseline     = {results[1].ids_per_s / results[0].ids_per_s:.2f}")
    for v in variants:
        print(f"ratio {v.name} / baseline = {v.ids_per_s / results[0].ids_per_s:.2f}")
    print()
    for r in results:
        for what, count in r.errors.items():
            print(f"!! {r.name} (warm-up included): {count} x {what}")
    print("round trips per request, in-process gateway (redis-py connection writes; "
          "INFO commandstats calls):")
    print_table(["request", "round trips", "Redis commands per request"], trips)
    print(f"\nCPU of each step of one {args.batch}-id check, timed alone in this process:")
    print_table(["step", "ms per request"], micro)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name in list(os.environ):
        if name.startswith("OPTOUT_"):
            del os.environ[name]  # settings come from this script only
    workdir = Path(tempfile.mkdtemp(prefix="og-bench-check-"))
    try:
        with private_redis() as proc:
            assert proc.pid is not None
            return asyncio.run(run(args, proc.url, proc.pid, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
