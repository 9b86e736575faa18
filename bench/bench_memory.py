"""Redis memory per suppression entry, audit event and baseline structure.

    .venv/bin/python bench/bench_memory.py [--entries 1000000] [--emails 200000]
                                           [--audit-events 100000] [--equiv 10000000]

Each measurement runs on a fresh private redis-server (the embedded server's command line,
``hash-max-listpack-entries`` 256, or Redis's default 128 where said; AOF off so no rewrite
fork runs mid-measurement; AOF does not change ``used_memory``) and is reported two ways:

(a) sum of ``MEMORY USAGE key SAMPLES 0`` over the structure's keys / N
(b) ``INFO memory used_memory`` delta / N (includes the keyspace's hash table slots)

Suppressions are written in the stored format of ``RedisStore.apply`` (``keys.suppressions``
bucket hash, ``codec.encode_field`` -> ``codec.encode_entry``) with one pipelined HSET per
bucket (``_common.write_entries``), not through the Lua script, which writes nothing else to
that hash; before measuring, the script checks on a sample that both paths leave the same keys
with the same fields, values and encodings. The audit streams are measured through
``RedisStore.apply`` itself (100k opt-out events in batches of 1,000, as the service applies).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import redis
import redis.asyncio as aioredis
from _common import (
    check_valid_sample,
    config_value,
    e164_numbers,
    email_addresses,
    fmt,
    key_stats,
    machine_line,
    print_table,
    private_redis,
    random_state,
    resp,
    scan_keys,
    send_all,
    used_memory,
    write_entries,
)

from suppression import keys
from suppression.models import Channel, OptEvent, Reason, Source
from suppression.store import RedisStore

TENANT = "acme"
GOAL_BYTES = 32
NO_AOF = {"appendonly": "no"}


class Meter:
    """used_memory deltas measured on a connection of its own, after the writer has closed
    its connection (so its query buffer is not counted)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url)
        self.mark = used_memory(self.client)

    def writer(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def delta(self, writer: redis.Redis | None = None) -> int:
        if writer is not None:
            writer.close()
            writer.connection_pool.disconnect()
            time.sleep(0.05)
        now = used_memory(self.client)
        out, self.mark = now - self.mark, now
        return out


def row(label: str, n: int, usage: int, delta: int, extra: str = "") -> list[str]:
    return [label, f"{n:,}", fmt(usage / n), fmt(delta / n), extra]


# -- 0: the fast writer stores what apply() stores -------------------------------------------


async def _apply_sample(url: str, events: Sequence[OptEvent]) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await RedisStore(client, op_timeout_s=10).apply(events)
    finally:
        await client.aclose()


def check_format(sample: int) -> str:
    numbers = e164_numbers(sample, start=500_000_000)
    emails = email_addresses(sample, seed=99)
    rng = random.Random(5)
    with private_redis(config=NO_AOF) as proc:
        for channel, idents in ((Channel.SMS, numbers), (Channel.EMAIL, emails)):
            states = [random_state(rng, channel) for _ in idents]
            events = [OptEvent("opt_out", TENANT, channel, i, s.reason, s.source, at_ms=s.at_ms)
                      for i, s in zip(idents, states, strict=True)]
            asyncio.run(_apply_sample(proc.url.replace("/0", "/1"), events))
            fast = redis.Redis.from_url(proc.url.replace("/0", "/2"))
            write_entries(fast, TENANT, channel, idents, states=states)
            via_apply = redis.Redis.from_url(proc.url.replace("/0", "/1"))
            pattern = f"og:s:{{{TENANT}:{channel.value}:*"
            names = scan_keys(via_apply, pattern)
            if sorted(names) != sorted(scan_keys(fast, pattern)):
                raise AssertionError("the fast writer and apply() wrote different keys")
            for name in names:
                a, b = via_apply.hgetall(name), fast.hgetall(name)
                if a != b or via_apply.object("encoding", name) != fast.object("encoding", name):
                    raise AssertionError(f"stored format differs in {name!r}")
            fast.close()
            via_apply.close()
    return f"fast writer == RedisStore.apply on {sample} SMS + {sample} email entries"


# -- 1: suppression entries at growing N -------------------------------------------------------


def suppressions(numbers: Sequence[str], listpack: int, checkpoints: Sequence[int]
                 ) -> list[list[str]]:
    rows = []
    with private_redis(config={**NO_AOF, "hash-max-listpack-entries": str(listpack)}) as proc:
        meter = Meter(proc.url)
        assert config_value(meter.client, "hash-max-listpack-entries") == str(listpack)
        total_delta, done = 0, 0
        for n in checkpoints:
            writer = meter.writer()
            write_entries(writer, TENANT, Channel.SMS, numbers[done:n], seed=n)
            total_delta += meter.delta(writer)
            done = n
            _, usage, enc = key_stats(meter.client, f"og:s:{{{TENANT}:sms:*")
            rows.append(row(f"sms suppressions, listpack {listpack}", n, usage, total_delta,
                            f"{n / keys.BUCKETS:.1f}/bucket, " + ", ".join(
                                f"{v:,} {k}" for k, v in sorted(enc.items()))))
        meter.client.close()
    return rows


# -- 2: baselines: one plain SET, one plain HASH ------------------------------------------------


def baselines(numbers: Sequence[str]) -> list[list[str]]:
    rng = random.Random(11)
    from suppression import codec

    values = [codec.encode_entry(random_state(rng, Channel.SMS)) for _ in numbers]
    rows = []
    with private_redis(config=NO_AOF) as proc:
        meter = Meter(proc.url)
        writer = meter.writer()
        send_all(writer, (resp("SADD", "bench:set", *numbers[start:start + 10_000])
                          for start in range(0, len(numbers), 10_000)))
        delta = meter.delta(writer)
        usage = key_stats(meter.client, "bench:set")[1]
        rows.append(row("baseline: one SET, E.164 members", len(numbers), usage, delta,
                        "no metadata"))
        writer = meter.writer()
        send_all(writer, (resp("HSET", "bench:hash", *[
            x for i in range(start, min(start + 10_000, len(numbers)))
            for x in (numbers[i][1:], values[i])]) for start in range(0, len(numbers), 10_000)))
        delta = meter.delta(writer)
        usage = key_stats(meter.client, "bench:hash")[1]
        rows.append(row("baseline: one HASH, digits -> packed entry", len(numbers), usage,
                        delta, "same data as a bucket"))
        meter.client.close()
    return rows


# -- 3: email entries ------------------------------------------------------------------------


def emails(n: int) -> list[list[str]]:
    addresses = email_addresses(n)
    mean_len = sum(map(len, addresses)) / n
    with private_redis(config=NO_AOF) as proc:
        meter = Meter(proc.url)
        writer = meter.writer()
        write_entries(writer, TENANT, Channel.EMAIL, addresses)
        delta = meter.delta(writer)
        usage = key_stats(meter.client, f"og:s:{{{TENANT}:email:*")[1]
        meter.client.close()
    return [row("email suppressions, listpack 256", n, usage, delta,
                f"{n / keys.BUCKETS:.1f}/bucket, address {mean_len:.1f} chars avg")]


# -- 4: a slice of the buckets filled to the density of a bigger list --------------------------


def _slice_chunk(start: int, n: int, every: int) -> list[str]:
    bucket_of = keys.bucket_of
    return [x for x in e164_numbers(n, start=start) if bucket_of(x) % every == 0]


def slice_numbers(equiv: int, every: int, chunk: int = 500_000) -> list[str]:
    """Numbers that fall in buckets ``b % every == 0``, as many as ``equiv`` distinct numbers
    would put there: those buckets then hold what they would hold at ``equiv`` entries.
    (Hashes ``equiv`` candidates, on every core.)"""
    base = 1_000_000_000
    starts = range(base, base + equiv, chunk)
    sizes = [min(chunk, base + equiv - s) for s in starts]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        parts = pool.map(_slice_chunk, starts, sizes, [every] * len(sizes))
        return [x for part in parts for x in part]


def density(equiv: int, every: int) -> list[list[str]]:
    numbers = slice_numbers(equiv, every)
    per_bucket = len(numbers) / (keys.BUCKETS // every)
    rows = []
    for listpack in (256, 128):
        config = {**NO_AOF, "hash-max-listpack-entries": str(listpack)}
        with private_redis(config=config) as proc:
            meter = Meter(proc.url)
            writer = meter.writer()
            write_entries(writer, TENANT, Channel.SMS, numbers, seed=23)
            delta = meter.delta(writer)
            _, usage, enc = key_stats(meter.client, "og:s:*")
            rows.append(row(f"sms at {equiv:,}-entry density, listpack {listpack}",
                            len(numbers), usage, delta,
                            f"1/{every} of buckets, {per_bucket:.0f}/bucket, " + ", ".join(
                                f"{v:,} {k}" for k, v in sorted(enc.items()))))
            meter.client.close()
    return rows


# -- 5: audit streams written by RedisStore.apply ------------------------------------------------


def audit_events(numbers: Sequence[str], n: int, dense_every: int) -> list[OptEvent]:
    """Sparse: one opt-out per number. Dense (``dense_every`` > 1): alternating opt-outs and
    opt-ins on the numbers of 1/dense_every of the buckets, so each stream holds many events."""
    rng = random.Random(31)
    detail = {"key_id": "3fa2c1d9e0b1", "key_name": "crm-sync"}
    if dense_every <= 1:
        pool = list(numbers[:n])
    else:
        pool = [x for x in numbers if keys.bucket_of(x) % dense_every == 0]
        pool = pool[:max(1, n // 8)]  # ~8 events per number
    events = []
    at = 1_767_225_600_000
    for i in range(n):
        ident = pool[i % len(pool)]
        out = (i // len(pool)) % 2 == 0
        at += rng.randrange(1, 50)
        events.append(OptEvent("opt_out" if out else "opt_in", TENANT, Channel.SMS, ident,
                               Reason.STOP_KEYWORD if out else Reason.OPT_IN_KEYWORD,
                               Source.SMS if out else Source.API, at_ms=at, detail=detail))
    return events


async def _apply_all(url: str, events: Sequence[OptEvent], batch: int = 1000) -> float:
    client = aioredis.Redis.from_url(url)
    store = RedisStore(client, op_timeout_s=30)
    started = time.perf_counter()
    try:
        for start in range(0, len(events), batch):
            await store.apply(events[start:start + batch])
    finally:
        await client.aclose()
    return time.perf_counter() - started


def audit(numbers: Sequence[str], n: int, dense_every: int, node_bytes: int = 0
          ) -> list[list[str]]:
    events = audit_events(numbers, n, dense_every)
    streams_label = "sparse" if dense_every <= 1 else f"dense (1/{dense_every} of buckets)"
    config = dict(NO_AOF)
    if node_bytes:
        config["stream-node-max-bytes"] = str(node_bytes)
        streams_label += f", stream-node-max-bytes {node_bytes}"
    with private_redis(config=config) as proc:
        meter = Meter(proc.url)
        elapsed = asyncio.run(_apply_all(proc.url, events))
        delta = meter.delta()
        a_names = scan_keys(meter.client, "og:a:*")
        _, a_usage, _ = key_stats(meter.client, "og:a:*")
        _, other, _ = key_stats(meter.client, "og:[sc]:*")
        length = sum(int(v) for v in _lengths(meter.client, a_names))
        meter.client.close()
    assert length == n, (length, n)
    return [
        [f"audit lists, {streams_label}", f"{n:,}", fmt(a_usage / n),
         fmt((delta - other) / n),
         f"{len(a_names):,} lists, {n / len(a_names):.1f} events/list, "
         f"apply {n / elapsed:,.0f} events/s"],
        [f"  all keys written by apply(), {streams_label}", f"{n:,}",
         fmt((a_usage + other) / n), fmt(delta / n), "audit + suppression + consent"],
    ]


def _lengths(client: redis.Redis, names: Sequence[bytes]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return [int(v) for v in pipe.execute()]


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000, help="SMS suppressions (N)")
    p.add_argument("--emails", type=int, default=200_000, help="email suppressions (0: skip)")
    p.add_argument("--equiv", type=int, default=10_000_000,
                   help="emulate the bucket density of this many entries (0: skip)")
    p.add_argument("--slice", type=int, default=16,
                   help="fill 1 bucket in SLICE for the --equiv density run")
    p.add_argument("--audit-events", type=int, default=100_000,
                   help="sparse audit run: one opt-out on each of this many numbers (0: skip)")
    p.add_argument("--dense-events", type=int, default=30_000,
                   help="dense audit run: events on the numbers of 1 bucket in --dense-every")
    p.add_argument("--dense-every", type=int, default=256)
    p.add_argument("--audit-node-bytes", type=int, default=512,
                   help="also run both audit runs with this stream-node-max-bytes (0: skip)")
    return p.parse_args(argv)


class Sections:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.rows: list[list[str]] = []

    def run(self, name: str, fn: Callable[[], list[list[str]]]) -> list[list[str]]:
        t0 = time.perf_counter()
        rows = fn()
        self.rows += rows
        print(f"  [{time.perf_counter() - self.started:5.0f} s] {name} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        return rows


def audit_model(sparse: list[list[str]], dense: list[list[str]], label: str) -> str:
    """Solve bytes = streams * fixed + events * marginal from the two audit runs (used_memory)
    and extrapolate to 1M opt-outs (every bucket's stream exists)."""
    def parse(r: list[str]) -> tuple[float, float, float]:
        n = float(r[1].replace(",", ""))
        streams = float(r[4].split(" lists")[0].replace(",", ""))
        return streams, n, float(r[3].replace(",", "")) * n

    s1, n1, b1 = parse(sparse[0])
    s2, n2, b2 = parse(dense[0])
    det = s1 * n2 - s2 * n1
    fixed, marginal = (b1 * n2 - b2 * n1) / det, (s1 * b2 - s2 * b1) / det
    at_1m = (keys.BUCKETS * fixed + 1_000_000 * marginal) / 1_000_000
    return (f"audit model, {label} (used_memory): {fixed:,.0f} B per list + "
            f"{marginal:,.0f} B per event"
            f" -> at 1,000,000 opt-outs of one tenant-channel ({keys.BUCKETS:,} lists): "
            f"{at_1m:,.0f} B per event")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.entries
    checkpoints = sorted({c for c in (10_000, 100_000) if c < n} | {n})
    with private_redis(config=NO_AOF) as proc:
        probe = redis.Redis.from_url(proc.url)
        print(f"machine: {machine_line(probe)}")
        probe.close()
    print(f"stored format: {check_format(500)}")
    numbers = e164_numbers(n)
    check_valid_sample(numbers)
    sec = Sections()
    sec.run("sms, listpack 256", lambda: suppressions(numbers, 256, checkpoints))
    sec.run("sms, listpack 128", lambda: suppressions(numbers, 128, [n]))
    sec.run("baselines", lambda: baselines(numbers))
    if args.emails:
        sec.run("email", lambda: emails(args.emails))
    if args.equiv:
        sec.run("density", lambda: density(args.equiv, args.slice))
    models = []
    if args.audit_events:
        sparse = sec.run("audit sparse", lambda: audit(numbers, args.audit_events, 1))
        if args.dense_events:
            dense = sec.run("audit dense", lambda: audit(numbers, args.dense_events,
                                                         args.dense_every))
            models.append(audit_model(sparse, dense, "default config"))
        if args.audit_node_bytes:
            nb = args.audit_node_bytes
            sparse = sec.run("audit sparse, small nodes",
                             lambda: audit(numbers, args.audit_events, 1, nb))
            if args.dense_events:
                dense = sec.run("audit dense, small nodes",
                                lambda: audit(numbers, args.dense_events, args.dense_every, nb))
                models.append(audit_model(sparse, dense, f"stream-node-max-bytes {nb}"))
    print()
    print_table(["structure", "N", "(a) MEMORY USAGE B/N", "(b) used_memory B/N", "notes"],
                sec.rows)
    print()
    for model in models:
        print(model)
    goal = [r for r in sec.rows
            if r[0] == "sms suppressions, listpack 256" and r[1] == f"{n:,}"][0]
    worst = max(float(goal[2].replace(",", "")), float(goal[3].replace(",", "")))
    verdict = "MET" if worst <= GOAL_BYTES else "MISSED"
    print(f"goal <= {GOAL_BYTES} B per suppression entry at {n:,} (listpack 256): {verdict} "
          f"((a) {goal[2]} B, (b) {goal[3]} B)")
    print(f"total time {time.perf_counter() - sec.started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
