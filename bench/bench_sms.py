"""SMS through the real HTTP API: send throughput next to aiohttp hello-world, STOP latency.

    .venv/bin/python bench/bench_sms.py [--clients 50] [--duration 10] [--warmup 2]
        [--stop-rate 500] [--stop-duration 10] [--generic-inbound] [--skip-marketing]
        [--stop-only] [--send-rates 500,1000] [--workers 1] [--redis-unix]

Before/after comparisons in the same conditions: run the same script with
``PYTHONPATH=<another checkout>`` (the gateway child then imports that code).

Processes (all on 127.0.0.1, all started and stopped here):

* a private ``redis-server`` (``_common.private_redis``);
* ``optout-gateway serve`` as its own process: ``OPTOUT_REDIS_URL`` = that Redis,
  ``OPTOUT_SMS_UPSTREAM`` = the local provider below, ``OPTOUT_CONFIG`` = a TOML file with one
  tenant (``sms_senders``, ``twilio_auth_token``), ``OPTOUT_PUBLIC_URL`` = its own address
  (the URL the webhook signatures are computed over); keys from ``optout-gateway keys create``;
* a local SMS provider (this script with ``--serve-provider``: a bare asyncio protocol
  speaking the generic JSON API, answers ``200 {"id", "status"}`` and counts what it
  accepted; see ``serve_provider`` for why it is not an aiohttp app);
* an aiohttp hello-world server (this script with ``--serve-hello``: ``POST /`` answers
  ``Hello, world``), the baseline;
* the I/O skeleton (this script with ``--serve-skeleton``, as many processes as
  ``--workers``, sharing a port with SO_REUSEPORT): per send, what the gateway does with no
  policy at all on the same libraries (aiohttp server, one Redis command through the
  gateway's own client, one POST to the provider, a JSON reply) - the bound any gateway on
  this stack and these cores starts from.

(a) send throughput: ``--clients`` concurrent aiohttp clients (one session, keep-alive) POST
``/v1/sms/messages`` back to back for ``--warmup`` + ``--duration`` s; requests completing in
the timed window are counted (req/s, p50/p99 from request start to the body read). The same
client, with the same JSON bodies, drives the hello-world server and then the I/O skeleton
in the same run. Gateway phases:

* marketing: the recipients are valid US numbers whose local time is inside 08:00-21:00 in
  every zone of their area code now and in 15 minutes (no FL/OK area codes, so no 3-per-24h
  cap), with consent recorded beforehand through ``POST /v1/consents``: every rule runs
  (the clock cannot be injected into a separate process). Skipped when no US area code is
  inside its window (about 07:00-12:00 UTC) or with ``--skip-marketing``;
* transactional: a ``--transactional`` key, ``category: "transactional"``: the suppression
  check runs, consent, quiet hours and caps do not.

(a') open-loop sends: transactional sends paced at each of ``--send-rates`` per second (1 s
warm-up, then ``--duration`` s): latency at a fixed offered rate, which closed-loop clients
cannot show once the gateway saturates (50 clients at p99 <= 20 ms need >= 2,500 req/s).

Every phase prints the gateway's CPU per request (CPU seconds of all its processes in the
window / requests completed): steadier than req/s when other work shares the cores.

(b) STOP -> suppressed: Twilio-signed ``POST /v1/sms/inbound/twilio`` webhooks (or the generic
``POST /v1/sms/inbound`` with ``--generic-inbound``), each "STOP" from a different number,
paced at ``--stop-rate`` per second for ``--stop-duration`` s (after a 1 s warm-up at the same
rate). Latency is from the request being sent to the HTTP response, which the gateway gives
after the journal fsync and the Redis apply; also reported from the scheduled send time
(includes any client lag). Every 10th opt-out is looked up in Redis (``RedisStore.entries``
from this process) right after its response, and after the phase every number is checked
through ``POST /v1/suppressions/check``. A raw append+fsync probe in the same directory
gives the disk's own latency next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
from _common import (
    CpuMeter,
    e164_numbers,
    fmt,
    machine_line,
    percentile,
    print_table,
    private_redis,
    process_tree,
)

TENANT = "bench"
SENDER = "+14155550100"
TWILIO_TOKEN = "bench-twilio-token"
GOAL_RATIO, GOAL_SEND_P99_MS, GOAL_STOP_P99_MS = 0.3, 20.0, 5.0
SKELETON = "I/O skeleton, no policy (bound)"
HELLO = b"Hello, world"
Pids = dict[str, int | list[int]]


# -- child servers (this script re-run with --serve-provider / --serve-hello) ----------------


def _http_answer(status: str, payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return 0


class ProviderProtocol(asyncio.Protocol):
    """One connection to the local provider (``serve_provider``)."""

    ids = itertools.count(1)
    accepted = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].decode("latin-1")
            size = end + 4 + _content_length(head)
            if len(self.buf) < size:
                return
            body, self.buf = self.buf[end + 4:size], self.buf[size:]
            self.transport.write(self.respond(head.split(" ", 2)[:2], body))

    def respond(self, request_line: list[str], body: bytes) -> bytes:
        if request_line == ["GET", "/stats"]:
            return _http_answer("200 OK", {"accepted": ProviderProtocol.accepted})
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if request_line != ["POST", "/messages"] or not isinstance(data, dict) \
                or not data.get("to"):
            return _http_answer("422 Unprocessable Entity", {"error": "need to"})
        ProviderProtocol.accepted += 1
        return _http_answer("200 OK", {"id": f"p-{next(self.ids)}", "status": "accepted"})


def serve_provider(port: int) -> None:
    """The stand-in for a remote provider: a bare asyncio protocol, not an aiohttp app, so
    the fixture takes as little as possible of the cores the gateway shares with it (an
    aiohttp app took 0.18-0.23 of a core at 3,000 sends/s; a real provider's CPU is not on
    the gateway's machine). HTTP/1.1 keep-alive, ``Content-Length`` bodies only (what
    aiohttp's client sends): ``POST /messages`` with a JSON object holding ``"to"`` answers
    ``200 {"id", "status"}``, anything else 422; ``GET /stats`` answers the count."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(ProviderProtocol, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def serve_hello(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_post("/", hello)
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_skeleton(port: int, redis_url: str, provider_port: int) -> None:
    """The gateway's I/O and nothing else, on the same libraries: aiohttp server, one Redis
    command through the gateway's own client (``make_client``: hiredis, blocking pool,
    250 ms budget), one POST to the provider through a keep-alive aiohttp session, a JSON
    reply. No authentication, validation, policy or record: what any gateway built on this
    stack pays per send before its first rule, measured on the same cores."""
    from aiohttp import web

    from gateway.redis_client import make_client

    provider = f"http://127.0.0.1:{provider_port}/messages"
    ids = itertools.count(1)

    async def send(request: web.Request) -> web.Response:
        data = await request.json()
        state = request.app["redis"]
        await state.hget("skeleton:suppressions", data["to"])
        message_id = f"SM{next(ids):032x}"
        async with request.app["session"].post(provider, json={
                "id": message_id, "tenant": TENANT, "to": data["to"], "from": data["from"],
                "body": data["body"], "category": data["category"]}) as resp:
            upstream = await resp.json()
        return web.json_response({"id": message_id, "status": "sent", "to": data["to"],
                                  "upstream_id": upstream["id"]}, status=202)

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app["redis"] = make_client(redis_url)
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        yield
        await app["session"].close()
        await app["redis"].aclose()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/sms/messages", send)
    app.router.add_get("/", ready)
    # reuse_port: with --workers N, N skeleton processes share the port as the workers do.
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                reuse_port=True)


# -- process plumbing --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _gateway_cmd() -> list[str]:
    script = Path(sys.executable).with_name("optout-gateway")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


def wait_http(url: str, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {logfile.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within 30 s: {logfile.read_text()[-2000:]}")


@contextmanager
def child(cmd: list[str], env: dict[str, str], logfile: Path, ready_url: str,
          show_log: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """A child process; SIGTERM (then SIGKILL after 20 s) on exit."""
    log = open(logfile, "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_http(ready_url, proc, logfile)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        tail = logfile.read_text(errors="replace").strip()
        if show_log and tail:
            print(f"{logfile.name} (tail):\n" + tail[-2000:])


@dataclass
class Gw:
    base: str
    send_key: str
    tx_key: str
    admin_key: str
    pid: int


@contextmanager
def gateway(redis_url: str, provider_port: int, workdir: Path, workers: int = 1
            ) -> Iterator[Gw]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = workdir / "optout.toml"
    config.write_text(
        f'[tenants.{TENANT}]\nbrand = "Bench Co"\nsms_senders = ["{SENDER}"]\n'
        f'twilio_auth_token = "{TWILIO_TOKEN}"\n'
        'help_text = "Bench Co: help at bench.example/help."\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(OPTOUT_REDIS_URL=redis_url, OPTOUT_DATA_DIR=str(workdir / "data"),
               OPTOUT_HTTP_HOST="127.0.0.1", OPTOUT_HTTP_PORT=str(port),
               OPTOUT_SMTP_HOST="127.0.0.1", OPTOUT_SMTP_PORT=str(free_port()),
               OPTOUT_PUBLIC_URL=base, OPTOUT_CONFIG=str(config),
               OPTOUT_SMS_UPSTREAM=f"http://127.0.0.1:{provider_port}/messages",
               OPTOUT_LOG_LEVEL="WARNING")

    def key(scopes: str, *extra: str) -> str:
        out = subprocess.run(_gateway_cmd() + ["keys", "create", "--tenant", TENANT,
                                               "--scopes", scopes, "--name", "bench", *extra],
                             env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip()

    keys = (key("send"), key("send", "--transactional"), key("read,write,inbound"))
    serve = ["serve"] + (["--workers", str(workers)] if workers > 1 else [])
    with child(_gateway_cmd() + serve, env, workdir / "gateway.log", base + "/healthz",
               show_log=True) as proc:
        yield Gw(base, *keys, pid=proc.pid)


# -- recipients ------------------------------------------------------------------------------


def marketing_recipients(n: int, margin: timedelta) -> list[str]:
    """Valid US numbers inside their calling window now and after ``margin``, no FL/OK."""
    from suppression import quiet_hours

    now = datetime.now(UTC)
    out: list[str] = []
    start = 0
    while len(out) < n and start < 400_000:
        for number in e164_numbers(5_000, start=start):
            rules = quiet_hours.rules_for(number)
            if rules.state_rule is None and quiet_hours.check_window(number, now) is None \
                    and quiet_hours.check_window(number, now + margin) is None:
                out.append(number)
                if len(out) == n:
                    break
        start += 5_000
    return out


# -- (a) closed-loop throughput ---------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_ms_per_request(self, name: str) -> float:
        return 1000 * self.cpu_s.get(name, 0.0) / self.requests if self.requests else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


async def closed_loop(name: str, session: aiohttp.ClientSession, url: str,
                      bodies: Sequence[bytes], headers: dict[str, str], expect: int, *,
                      clients: int, warmup: float, duration: float,
                      pids: Pids) -> Result:
    """``clients`` workers POST back to back; requests completing in the window count."""
    result = Result(name, seconds=duration)
    cursor = itertools.count()
    loop = asyncio.get_running_loop()
    begin = loop.time()
    start, end = begin + warmup, begin + warmup + duration
    meter = CpuMeter(pids)

    async def window() -> None:
        await asyncio.sleep(warmup)
        meter.start()
        await asyncio.sleep(duration)
        result.cpu = meter.stop()
        result.cpu_s = meter.seconds

    async def worker() -> None:
        while loop.time() < end:
            body = bodies[next(cursor) % len(bodies)]
            t0 = loop.time()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except aiohttp.ClientError as exc:
                result.errors[type(exc).__name__] += 1
                continue
            t1 = loop.time()
            if status != expect:
                result.errors[f"HTTP {status}"] += 1
                continue
            if start <= t1 <= end:
                result.requests += 1
                result.latencies.append(t1 - t0)

    await asyncio.gather(window(), *(worker() for _ in range(clients)))
    return result


async def paced_sends(name: str, session: aiohttp.ClientSession, url: str,
                      bodies: Sequence[bytes], headers: dict[str, str], expect: int, *,
                      rate: float, duration: float, pids: Pids) -> Result:
    """Open loop: one request every 1/``rate`` s for ``duration`` s, whatever the answers
    take; latency from the request being sent to its body read."""
    result = Result(name)
    loop = asyncio.get_running_loop()
    meter = CpuMeter(pids)
    cursor = itertools.count()

    async def one() -> None:
        body = bodies[next(cursor) % len(bodies)]
        t0 = loop.time()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            result.errors[type(exc).__name__] += 1
            return
        if status != expect:
            result.errors[f"HTTP {status}"] += 1
            return
        result.requests += 1
        result.latencies.append(loop.time() - t0)

    n = int(rate * duration)
    start = loop.time() + 0.05
    tasks = []
    meter.start()
    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    result.cpu = meter.stop()
    result.cpu_s = meter.seconds
    return result


def send_bodies(numbers: Sequence[str], category: str) -> list[bytes]:
    return [json.dumps({"to": n, "from": SENDER, "body": "Bench Co: 20% off this week.",
                        "category": category}).encode() for n in numbers]


async def record_consents(session: aiohttp.ClientSession, gw: Gw, numbers: Sequence[str]) -> None:
    sem = asyncio.Semaphore(20)
    headers = {"Authorization": f"Bearer {gw.admin_key}"}

    async def one(number: str) -> None:
        async with sem, session.post(gw.base + "/v1/consents", headers=headers, json={
                "channel": "sms", "identifier": number, "source": "web_form",
                "evidence": "bench signup"}) as resp:
            if resp.status != 201:
                raise RuntimeError(f"consent for {number}: HTTP {resp.status} "
                                   f"{await resp.text()}")

    await asyncio.gather(*(one(n) for n in numbers))


async def check_one(session: aiohttp.ClientSession, url: str, body: bytes,
                    headers: dict[str, str], expect: int) -> None:
    async with session.post(url, data=body, headers=headers) as resp:
        text = await resp.text()
        if resp.status != expect:
            raise RuntimeError(f"{url}: expected HTTP {expect}, got {resp.status}: {text}")


# -- (b) paced STOP ------------------------------------------------------------------------------


@dataclass
class StopResult:
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # request sent -> response
    from_schedule: list[float] = field(default_factory=list)  # scheduled -> response
    errors: Counter[str] = field(default_factory=Counter)
    confirmed: int = 0
    spot_checked: int = 0
    spot_visible: int = 0
    not_visible: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)


def stop_requests(gw: Gw, numbers: Sequence[str], generic: bool
                  ) -> list[tuple[str, bytes, dict[str, str]]]:
    """Pre-built (path, body, headers) per STOP: signing costs nothing in the timed loop."""
    from twilio.request_validator import RequestValidator

    out = []
    if generic:
        headers = {"Authorization": f"Bearer {gw.admin_key}",
                   "Content-Type": "application/json"}
        for i, n in enumerate(numbers):
            body = json.dumps({"from": n, "to": SENDER, "body": "STOP",
                               "id": f"SMbench{i:08d}"}).encode()
            out.append(("/v1/sms/inbound", body, headers))
        return out
    path = "/v1/sms/inbound/twilio"
    validator = RequestValidator(TWILIO_TOKEN)
    for i, n in enumerate(numbers):
        params = {"MessageSid": f"SMbench{i:026d}", "AccountSid": "AC" + "0" * 32, "From": n,
                  "To": SENDER, "Body": "STOP", "NumMedia": "0", "NumSegments": "1",
                  "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        sig = validator.compute_signature(gw.base + path, params)
        out.append((path, urlencode(params).encode(), {
            "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"}))
    return out


async def paced_stops(session: aiohttp.ClientSession, gw: Gw,
                      reqs: Sequence[tuple[str, bytes, dict[str, str]]], numbers: Sequence[str],
                      rate: float, *, timed: bool, spot: Callable[[str], Awaitable[bool]],
                      pids: Pids) -> StopResult:
    result = StopResult()
    loop = asyncio.get_running_loop()
    meter = CpuMeter(pids)
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, scheduled: float) -> None:
        path, body, headers = reqs[i]
        t0 = loop.time()
        try:
            async with session.post(gw.base + path, data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except aiohttp.ClientError as exc:
            result.errors[type(exc).__name__] += 1
            return
        t1 = loop.time()
        if status != 200:
            result.errors[f"HTTP {status}"] += 1
            return
        result.latencies.append(t1 - t0)
        result.from_schedule.append(t1 - scheduled)
        if "unsubscribed" in text:
            result.confirmed += 1
        if timed and i % 10 == 0:
            result.spot_checked += 1
            if await spot(numbers[i]):
                result.spot_visible += 1
            else:
                result.not_visible.append(numbers[i])

    start = loop.time() + 0.05
    meter.start()
    for i in range(len(reqs)):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
        result.sent += 1
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    result.cpu = meter.stop()
    result.cpu_s = meter.seconds
    return result


def fsync_probe(directory: Path, n: int = 500) -> tuple[float, float]:
    """p50/p99 ms of a 200-byte append + fsync in ``directory`` (the journal's disk)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 200)
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return percentile(times, 50) * 1000, percentile(times, 99) * 1000


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0, help="timed seconds per send phase")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--recipients", type=int, default=2000)
    p.add_argument("--stop-rate", type=float, default=500.0)
    p.add_argument("--stop-duration", type=float, default=10.0)
    p.add_argument("--generic-inbound", action="store_true",
                   help="POST /v1/sms/inbound instead of signed Twilio webhooks")
    p.add_argument("--skip-marketing", action="store_true")
    p.add_argument("--stop-only", action="store_true", help="run (b) only")
    p.add_argument("--send-rates", default="500",
                   help="comma-separated offered rates (/s) of the open-loop send phase; "
                   "'' skips it")
    p.add_argument("--workers", type=int, default=1, help="optout-gateway serve --workers N")
    p.add_argument("--redis-unix", action="store_true",
                   help="Redis on a unix socket (as the embedded default) instead of TCP")
    p.add_argument("--serve-provider", type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve-hello", type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve-skeleton", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("clients", "recipients"):
        if not 1 <= getattr(args, name) <= 100_000:
            p.error(f"--{name} must be 1..100000")
    for name in ("duration", "warmup", "stop_duration"):
        if not 0 < getattr(args, name) <= 600:
            p.error(f"--{name.replace('_', '-')} must be in (0, 600]")
    if not 1 <= args.stop_rate <= 5_000:
        p.error("--stop-rate must be 1..5000")
    if not 1 <= args.workers <= 64:
        p.error("--workers must be 1..64")
    try:
        args.send_rates = [float(r) for r in args.send_rates.split(",") if r.strip()]
    except ValueError:
        p.error("--send-rates must be numbers separated by commas")
    if any(not 1 <= r <= 20_000 for r in args.send_rates):
        p.error("--send-rates must each be 1..20000")
    return args


def row(r: Result, base: Result | None) -> list[str]:
    ratio = f"{r.rps / base.rps:.2f}x" if base is not None and base.rps else ""
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items() if v >= 0.01)
    server = next((k for k in ("hello", "skeleton") if k in r.cpu_s), "gateway")
    return [r.name, fmt(r.rps, 0), ratio, fmt(r.p(50), 2), fmt(r.p(99), 2),
            fmt(r.cpu_ms_per_request(server), 3), cpu]


@dataclass
class Procs:
    gw: Gw
    hello_url: str
    provider_url: str
    pids: Pids  # client, gateway (all its processes), provider, redis
    hello_pids: Pids  # client, hello
    skeleton_url: str
    skeleton_pids: Pids  # client, skeleton, provider, redis


async def phase_send(args: argparse.Namespace, session: aiohttp.ClientSession,
                     p: Procs) -> tuple[list[Result], int]:
    """(a): hello-world, then marketing (if any number is inside its window), transactional."""
    margin = timedelta(seconds=args.warmup * 2 + args.duration * 3 + 600)
    marketing = [] if args.skip_marketing else marketing_recipients(args.recipients, margin)
    if not args.skip_marketing and len(marketing) < args.recipients:
        print(f"marketing: only {len(marketing)} US numbers are inside their calling window "
              f"now ({datetime.now(UTC):%H:%M} UTC): marketing phase skipped")
        marketing = []
    json_h = {"Content-Type": "application/json"}
    send_h = {**json_h, "Authorization": f"Bearer {p.gw.send_key}"}
    tx_h = {**json_h, "Authorization": f"Bearer {p.gw.tx_key}"}
    if marketing:
        t0 = time.perf_counter()
        await record_consents(session, p.gw, marketing)
        print(f"consent recorded for {len(marketing):,} marketing recipients in "
              f"{time.perf_counter() - t0:.1f} s (area codes inside 08:00-21:00 now: "
              f"{len({n[2:5] for n in marketing})})")
    m_bodies = send_bodies(marketing, "marketing")
    t_bodies = send_bodies(e164_numbers(args.recipients, start=1_000_000), "transactional")
    send_url = p.gw.base + "/v1/sms/messages"
    # Each path answers as expected before anything is timed.
    await check_one(session, p.hello_url, t_bodies[0], send_h, 200)
    await check_one(session, send_url, t_bodies[0], tx_h, 202)
    if marketing:
        await check_one(session, send_url, m_bodies[0], send_h, 202)
    kw = dict(clients=args.clients, warmup=args.warmup, duration=args.duration)
    results = [await closed_loop("aiohttp hello-world (baseline)", session, p.hello_url,
                                 t_bodies, json_h, 200, pids=p.hello_pids, **kw)]
    await check_one(session, p.skeleton_url, t_bodies[0], json_h, 202)
    results.append(await closed_loop(SKELETON, session, p.skeleton_url, t_bodies, json_h, 202,
                                     pids=p.skeleton_pids, **kw))
    if marketing:
        results.append(await closed_loop("gateway send, marketing", session, send_url,
                                         m_bodies, send_h, 202, pids=p.pids, **kw))
    results.append(await closed_loop("gateway send, transactional", session, send_url,
                                     t_bodies, tx_h, 202, pids=p.pids, **kw))
    for rate in args.send_rates:
        await paced_sends("warm-up", session, send_url, t_bodies, tx_h, 202, rate=rate,
                          duration=1.0, pids=p.pids)
        results.append(await paced_sends(f"open loop {rate:g}/s", session, send_url, t_bodies,
                                         tx_h, 202, rate=rate, duration=args.duration,
                                         pids=p.pids))
    async with session.get(p.provider_url) as resp:
        accepted = int((await resp.json())["accepted"])
    return results, accepted


@dataclass
class StopReport:
    warm: StopResult
    stop: StopResult
    numbers: int
    suppressed: int  # per bulk check after the phase
    late: int  # spot checks not visible right after the response but visible after the phase


async def phase_stop(args: argparse.Namespace, session: aiohttp.ClientSession, p: Procs,
                     redis_url: str) -> StopReport:
    """(b): paced STOPs, spot checks in Redis, then a bulk check of every number."""
    from gateway.redis_client import make_client
    from suppression.models import Channel
    from suppression.store import RedisStore

    n_warm = int(args.stop_rate)
    numbers = e164_numbers(int(args.stop_rate * args.stop_duration) + n_warm, start=2_000_000)
    reqs = stop_requests(p.gw, numbers, args.generic_inbound)
    client = make_client(redis_url, timeout_ms=1000, pool_size=4)
    store = RedisStore(client, op_timeout_s=1.0)

    async def visible(number: str) -> bool:
        entry = (await store.entries(TENANT, Channel.SMS, [number]))[0]
        return entry is not None and entry.active

    try:
        warm = await paced_stops(session, p.gw, reqs[:n_warm], numbers[:n_warm],
                                 args.stop_rate, timed=False, spot=visible, pids=p.pids)
        stop = await paced_stops(session, p.gw, reqs[n_warm:], numbers[n_warm:],
                                 args.stop_rate, timed=True, spot=visible, pids=p.pids)
        late = sum([await visible(n) for n in stop.not_visible])
    finally:
        await client.aclose()
    suppressed = 0
    admin_h = {"Authorization": f"Bearer {p.gw.admin_key}"}
    for i in range(0, len(numbers), 10_000):
        async with session.post(p.gw.base + "/v1/suppressions/check", headers=admin_h,
                                json={"channel": "sms", "identifiers": numbers[i:i + 10_000]}
                                ) as resp:
            out = await resp.json()
        suppressed += sum(1 for r in out["results"] if r["suppressed"])
    return StopReport(warm, stop, len(numbers), suppressed, late)


def report_send(args: argparse.Namespace, all_results: Sequence[Result], accepted: int) -> None:
    results = [r for r in all_results if not r.name.startswith("open loop")]
    open_loop = [r for r in all_results if r.name.startswith("open loop")]
    base = results[0]
    print(f"\n(a) send throughput: {args.clients} concurrent clients (one aiohttp session, "
          f"keep-alive), {args.duration:g} s timed after {args.warmup:g} s warm-up\n")
    print_table(["server", "req/s", "vs hello", "p50 ms", "p99 ms", "server CPU ms/req",
                 "CPU share (1.00 = a core)"], [row(r, base) for r in results])
    if open_loop:
        print(f"\n(a') open loop: transactional sends paced at a fixed rate, {args.duration:g} s "
              "timed after 1 s warm-up at the same rate\n")
        pct = [50.0, 90.0, 99.0]
        print_table(["offered", "achieved/s", *[f"p{q:g} ms" for q in pct], "max ms",
                     "gateway CPU ms/req", "CPU share"],
                    [[r.name.removeprefix("open loop "), fmt(r.rps, 0),
                      *[fmt(r.p(q), 2) for q in pct], fmt(max(r.latencies, default=0) * 1000, 2),
                      fmt(r.cpu_ms_per_request("gateway"), 3),
                      ", ".join(f"{k} {v:.2f}" for k, v in r.cpu.items() if v >= 0.01)]
                     for r in open_loop])
        for r in open_loop:
            print(f"{r.name}: p99 {r.p(99):.1f} ms (goal <= {GOAL_SEND_P99_MS:g}): "
                  f"{'MET' if r.p(99) <= GOAL_SEND_P99_MS else 'MISSED'}")
    sent_ok = sum(r.requests for r in all_results[1:])
    print(f"\nprovider accepted {accepted:,} messages (timed 202s: {sent_ok:,}; the rest are "
          "warm-up and checks)")
    for r in results[1:]:
        ratio = r.rps / base.rps if base.rps else 0.0  # closed loop only
        if r.name == SKELETON:
            print(f"{r.name}: ratio {ratio:.2f}, p99 {r.p(99):.1f} ms: what the same I/O "
                  "costs with no policy at all")
            continue
        print(f"{r.name}: ratio {ratio:.2f} (goal >= {GOAL_RATIO}): "
              f"{'MET' if ratio >= GOAL_RATIO else 'MISSED'}; p99 {r.p(99):.1f} ms "
              f"(goal <= {GOAL_SEND_P99_MS:g}): "
              f"{'MET' if r.p(99) <= GOAL_SEND_P99_MS else 'MISSED'}")


def report_stop(args: argparse.Namespace, rep: StopReport, fsync: tuple[float, float]) -> None:
    stop = rep.stop
    door = "POST /v1/sms/inbound" if args.generic_inbound else "signed Twilio webhooks"
    print(f"\n(b) STOP -> suppressed: {door}, {args.stop_rate:g}/s paced, "
          f"{stop.sent:,} timed in {stop.seconds:.1f} s (achieved "
          f"{stop.sent / stop.seconds:.0f}/s, the backlog drained) after "
          f"{rep.warm.sent:,} warm-up\n")
    pct = [50.0, 90.0, 99.0, 99.9]

    def line(name: str, values: Sequence[float]) -> list[str]:
        return [name, *[fmt(percentile(values, q) * 1000, 2) for q in pct],
                fmt(max(values, default=0) * 1000, 2)]

    print_table(["latency, ms", *[f"p{q:g}" for q in pct], "max"],
                [line("request sent -> response", stop.latencies),
                 line("scheduled -> response", stop.from_schedule)])
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in stop.cpu.items())
    per_stop = 1000 * stop.cpu_s.get("gateway", 0.0) / max(1, len(stop.latencies))
    print(f"\nCPU share during the timed STOP phase: {cpu}; gateway CPU per STOP "
          f"{per_stop:.3f} ms")
    print(f"confirmation replies: {stop.confirmed:,} of {len(stop.latencies):,}; "
          f"visible in Redis right after the response: {stop.spot_visible} of "
          f"{stop.spot_checked} spot checks ({rep.late} of the others visible after the "
          f"phase); suppressed per bulk check afterwards: {rep.suppressed:,} of "
          f"{rep.numbers:,}")
    print(f"raw append + fsync in the same directory: p50 {fsync[0]:.2f} ms, "
          f"p99 {fsync[1]:.2f} ms")
    p99 = percentile(stop.latencies, 99) * 1000
    print(f"STOP p99 {p99:.2f} ms (goal <= {GOAL_STOP_P99_MS:g}): "
          f"{'MET' if p99 <= GOAL_STOP_P99_MS else 'MISSED'}")


async def run(args: argparse.Namespace, redis_url: str, redis_pid: int, workdir: Path) -> int:
    import redis

    stats = redis.Redis.from_url(redis_url)
    print(f"machine: {machine_line(stats)}")
    stats.close()
    me = sys.executable, os.path.abspath(__file__)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    hello_port, provider_port = free_port(), free_port()
    hello_url = f"http://127.0.0.1:{hello_port}/"
    provider_url = f"http://127.0.0.1:{provider_port}/stats"
    results: list[Result] = []
    skeleton_port = free_port()
    skeleton_url = f"http://127.0.0.1:{skeleton_port}/"
    with child([*me, "--serve-hello", str(hello_port)], env, workdir / "hello.log",
               hello_url) as hello, \
            child([*me, "--serve-provider", str(provider_port)], env, workdir / "provider.log",
                  provider_url) as provider, \
            ExitStack() as skeletons, \
            gateway(redis_url, provider_port, workdir, args.workers) as gw:
        skeleton = [skeletons.enter_context(child(
            [*me, "--serve-skeleton", str(skeleton_port), redis_url, str(provider_port)], env,
            workdir / f"skeleton-{i}.log", skeleton_url)) for i in range(args.workers)]
        procs = Procs(gw, hello_url, provider_url,
                      {"client": os.getpid(), "gateway": process_tree(gw.pid),
                       "provider": provider.pid,
                       "redis": redis_pid}, {"client": os.getpid(), "hello": hello.pid},
                      skeleton_url + "v1/sms/messages",
                      {"client": os.getpid(), "skeleton": [s.pid for s in skeleton],
                       "provider": provider.pid, "redis": redis_pid})
        connector = aiohttp.TCPConnector(limit=args.clients + 50, limit_per_host=args.clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            if not args.stop_only:
                results, accepted = await phase_send(args, session, procs)
            rep = await phase_stop(args, session, procs, redis_url)
    if results:
        report_send(args, results, accepted)
    report_stop(args, rep, fsync_probe(workdir))
    failed = False
    for name, errors in [(r.name, r.errors) for r in results] + [
            ("STOP", rep.warm.errors + rep.stop.errors)]:
        for what, count in errors.items():
            print(f"!! {name}: {count} x {what}")
            failed = True
    if rep.suppressed != rep.numbers or rep.stop.spot_visible != rep.stop.spot_checked:
        print("!! some acknowledged opt-outs were not visible")
        failed = True
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_provider:
        serve_provider(args.serve_provider)
        return 0
    if args.serve_hello:
        serve_hello(args.serve_hello)
        return 0
    if args.serve_skeleton:
        port, redis_url, provider_port = args.serve_skeleton
        serve_skeleton(int(port), redis_url, int(provider_port))
        return 0
    for name in list(os.environ):
        if name.startswith("OPTOUT_"):
            del os.environ[name]  # settings come from this script only
    workdir = Path(tempfile.mkdtemp(prefix="og-bench-sms-"))
    try:
        with private_redis(unix=args.redis_unix) as proc:
            assert proc.pid is not None
            return asyncio.run(run(args, proc.url, proc.pid, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
