"""SMTP relay throughput: through the gateway vs straight to the same sink, same client, same run;
and the gateway with its sharing guard (DLP scan) on vs off.

    .venv/bin/python bench/bench_smtp.py [--clients 20] [--duration 10] [--warmup 2] [--rounds 2]

Processes (all on 127.0.0.1, all started and stopped here):

* a private ``redis-server`` (``_common.private_redis``);
* a sink MTA (this script with ``--serve-sink PORT``): aiosmtpd on its own event loop, accepts
  and discards every message, counts them;
* ``optout-gateway serve``: ``OPTOUT_EMAIL_UPSTREAM=smtp://127.0.0.1:SINK?tls=none``, pool
  size = ``--clients``, two tenants that differ only in ``dlp_enabled`` (``dlp`` on,
  ``nodlp`` off), keys from ``optout-gateway keys create``.

The client is aiosmtplib: ``--clients`` connections, each sending back to back for ``--warmup`` +
``--duration`` s, one recipient per message (a distinct address each time, so every message
pays its suppression check and its own upstream transaction). Through the gateway the client
authenticates once per connection (AUTH PLAIN), as a marketing system would. Messages
completing in the timed window are counted; latency is MAIL FROM to the DATA reply.

The message is ordinary marketing mail: ~12 KB multipart/alternative (text and HTML, quoted-
printable), the tenant's postal address, one phone number in the footer. Through the gateway
every message is decided, personalised (List-Unsubscribe with its own token), DLP-scanned
(tenant ``dlp``) and recorded. Phases run in the order direct, gateway+DLP, gateway-DLP, repeated
``--rounds`` times; the ratios use the medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CpuMeter, fmt, machine_line, percentile, print_table, private_redis  # noqa: E402

DOMAIN = "shop.example"


def serve_sink(port: int) -> None:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Sink:
        count = 0

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            Sink.count += 1
            return "250 2.0.0 OK: queued"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = Sink()
        server = await loop.create_server(
            lambda: SMTP(handler, loop=loop, hostname="sink.test", enable_SMTPUTF8=True,
                         data_size_limit=50 << 20), "127.0.0.1", port)
        print("sink ready", flush=True)
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], logfile: Path,
              timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"child exited early:\n{logfile.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"child not ready on port {port}:\n{logfile.read_text()}")


@contextmanager
def child(cmd: list[str], env: dict[str, str], logfile: Path, port: int
          ) -> Iterator[subprocess.Popen[bytes]]:
    with logfile.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_port(port, proc, logfile)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gateway_cmd() -> list[str]:
    return [str(Path(sys.executable).with_name("optout-gateway"))]


def worker_pids(pid: int) -> list[int]:
    """The worker processes of a ``serve --workers N`` supervisor (none for one process)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def gateway_cpu(cpu: dict[str, float]) -> float:
    """CPU of the gateway: the process, plus its workers when there are several."""
    return cpu["gateway"] + sum(v for k, v in cpu.items() if k.startswith("worker"))


def marketing_message(sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Shop <{sender}>"
    msg["To"] = "customer@example.com"
    msg["Subject"] = "This week's deals"
    msg["Message-ID"] = f"<bench.{time.time_ns()}@{DOMAIN}>"
    items = "\n".join(f"- Item {i}: a fine thing at ${i * 3}.99, now {i % 40}% off"
                      for i in range(120))
    footer = ("\nShop Inc, 1 Main St, Springfield\nQuestions? Call +1 415 555 0100.\n")
    msg.set_content(f"Hello,\n\nThis week only:\n{items}\n{footer}")
    html_items = "".join(f"<li>Item {i}: <b>${i * 3}.99</b></li>" for i in range(120))
    msg.add_alternative(f"<html><body><h1>Deals</h1><ul>{html_items}</ul>"
                        f"<p>{footer}</p></body></html>", subtype="html")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@dataclass
class Result:
    name: str
    sent: int
    rate: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float]


async def drive(name: str, port: int, login: tuple[str, str] | None, data: bytes, sender: str,
                clients: int, warmup_s: float, duration_s: float, meter: CpuMeter,
                prefix: str) -> Result:
    import aiosmtplib

    latencies: list[float] = []
    counter = iter(range(10**9))
    t_start = time.perf_counter()
    t_from = t_start + warmup_s
    t_to = t_from + duration_s
    errors = 0

    async def one_client(c: int) -> None:
        nonlocal errors
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await smtp.connect()
        if login is not None:
            await smtp.login(*login)
        try:
            while (now := time.perf_counter()) < t_to:
                rcpt = f"{prefix}{next(counter)}@example.com"
                t0 = time.perf_counter()
                try:
                    await smtp.sendmail(sender, [rcpt], data)
                except aiosmtplib.SMTPException:
                    errors += 1
                    continue
                t1 = time.perf_counter()
                if t_from <= now and t1 <= t_to:
                    latencies.append(t1 - t0)
        finally:
            await smtp.quit()

    async def metered() -> None:
        await asyncio.sleep(max(0.0, t_from - time.perf_counter()))
        meter.start()

    tasks = [asyncio.create_task(one_client(c)) for c in range(clients)]
    await metered()
    await asyncio.gather(*tasks)
    cpu = meter.stop()
    if errors:
        print(f"  {name}: {errors} message(s) refused or failed", flush=True)
    ms = [x * 1000 for x in latencies]
    return Result(name, len(ms), len(ms) / duration_s, percentile(ms, 50), percentile(ms, 99),
                  cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway worker processes (serve --workers)")
    parser.add_argument("--serve-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return
    with private_redis() as redis_proc, tempfile.TemporaryDirectory(prefix="og-smtp-") as tmp:
        work = Path(tmp)
        import redis

        with redis.Redis.from_url(redis_proc.url) as client:
            print(machine_line(client))
        sink_port, http_port, smtp_port = free_port(), free_port(), free_port()
        config = work / "gateway.toml"
        config.write_text(
            "[tenants.dlp]\n"
            f'brand = "Shop"\nemail_domains = ["{DOMAIN}"]\n'
            'postal_address = "1 Main St, Springfield"\n'
            "[tenants.nodlp]\n"
            f'brand = "Shop"\nemail_domains = ["{DOMAIN}"]\n'
            'postal_address = "1 Main St, Springfield"\ndlp_enabled = false\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
        env.update(OPTOUT_REDIS_URL=redis_proc.url, OPTOUT_DATA_DIR=str(work / "data"),
                   OPTOUT_HTTP_PORT=str(http_port), OPTOUT_SMTP_PORT=str(smtp_port),
                   OPTOUT_PUBLIC_URL="https://gw.example", OPTOUT_CONFIG=str(config),
                   OPTOUT_EMAIL_UPSTREAM=f"smtp://127.0.0.1:{sink_port}?tls=none",
                   OPTOUT_EMAIL_UPSTREAM_POOL_SIZE=str(args.clients),
                   OPTOUT_LOG_LEVEL="WARNING")

        def key(tenant: str) -> str:
            out = subprocess.run(gateway_cmd() + ["keys", "create", "--tenant", tenant,
                                                  "--scopes", "send"],
                                 env=env, capture_output=True, text=True, check=True)
            return out.stdout.strip()

        sender = f"news@{DOMAIN}"
        data = marketing_message(sender)
        with child([sys.executable, __file__, "--serve-sink", str(sink_port)], env,
                   work / "sink.log", sink_port) as sink, \
                child(gateway_cmd() + ["serve", "--workers", str(args.workers)], env,
                      work / "gateway.log", smtp_port) as gw:
            keys = {t: key(t) for t in ("dlp", "nodlp")}
            time.sleep(1.0 if args.workers > 1 else 0.0)  # every worker listening
            meter = CpuMeter({"gateway": gw.pid, "sink": sink.pid, "client": os.getpid(),
                              **{f"worker{i}": pid for i, pid in enumerate(worker_pids(gw.pid))}})
            print(f"message: {len(data):,} bytes, {args.clients} clients, "
                  f"{args.duration:g} s per phase after {args.warmup:g} s warm-up, "
                  f"{args.rounds} round(s)\n")
            results: dict[str, list[Result]] = {"direct": [], "gateway+dlp": [],
                                                "gateway-dlp": []}
            for r in range(args.rounds):
                phases = [("direct", sink_port, None),
                          ("gateway+dlp", smtp_port, ("dlp", keys["dlp"])),
                          ("gateway-dlp", smtp_port, ("nodlp", keys["nodlp"]))]
                for name, port, login in phases:
                    res = asyncio.run(drive(name, port, login, data, sender, args.clients,
                                            args.warmup, args.duration, meter,
                                            prefix=f"r{r}.{name}."))
                    results[name].append(res)
            rows = [[res.name, str(i + 1), fmt(res.rate), fmt(res.p50_ms, 2),
                     fmt(res.p99_ms, 2), fmt(gateway_cpu(res.cpu), 2), fmt(res.cpu["sink"], 2),
                     fmt(res.cpu["client"], 2)]
                    for name in results for i, res in enumerate(results[name])]
            print_table(["phase", "round", "msg/s", "p50 ms", "p99 ms", "gw cpu", "sink cpu",
                         "client cpu"], rows)
            med = {n: statistics.median(r.rate for r in rs) for n, rs in results.items()}
            print()
            print(f"relay through the gateway vs straight to the sink: "
                  f"{med['gateway+dlp'] / med['direct']:.2f}x "
                  f"({fmt(med['gateway+dlp'])} vs {fmt(med['direct'])} msg/s; goal >= 0.6x)")
            print(f"sharing guard (DLP scan) on vs off: "
                  f"{med['gateway+dlp'] / med['gateway-dlp']:.2f}x "
                  f"({fmt(med['gateway+dlp'])} vs {fmt(med['gateway-dlp'])} msg/s; "
                  "goal >= 0.9x)")


if __name__ == "__main__":
    main()
