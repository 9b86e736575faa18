"""Throughput of ``optout-gateway suppressions import`` against raw Redis writes.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--batch-size 1000]
                                           [--profile-rows 100000] [--no-export]
                                           [--replay]

Starts its own private redis-server (the embedded server's command line: AOF
``appendfsync everysec``, on a loopback TCP port in a temp dir), writes a CSV of
N distinct valid US numbers in E.164, and times, in this process:

1. the stages without the store: reading the CSV (``iter_rows``), then reading
   and normalising every row (the E.164 fast path, and the full
   ``normalize()`` on a sample, for comparison);
2. the CLI import path: ``import_rows`` through a real ``Components`` /
   ``SuppressionService`` (journal write + fsync per batch, ``suppressed()``
   check, ``apply_event.lua`` per entry), as ``suppressions import`` runs it;
3. the same file again (every row a duplicate: read + normalise + check only);
4. ``export_rows`` of everything to a null sink (``suppressions export``);
   with ``--replay``, the next start of a process on the import's data dir
   (it replays every event the journal retains, 600 s by default);
5. baselines on the same server: redis-py pipelined ``HSET`` of the same N
   normalised entries into the same bucketed hashes (one field per command,
   1,000 per pipeline), and the absolute floor (one hand-packed multi-field
   HSET per bucket, ``_common.write_entries``).

Then profiles (cProfile) an import of ``--profile-rows`` fresh rows and prints
where the time goes, grouped by package. The import check: every row must be
counted ``added`` on the first run and ``duplicate`` on the second.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from _common import (
    CpuMeter,
    check_valid_sample,
    e164_numbers,
    fmt,
    machine_line,
    print_table,
    private_redis,
    write_entries,
)

from gateway.cli_transfer import EXPORT_PAGE, bulk_settings
from gateway.components import Components
from gateway.settings import load_settings
from suppression import codec, keys
from suppression.bulk import ImportReport, _normalizer, export_rows, import_rows, iter_rows
from suppression.identifiers import clear_caches, normalize
from suppression.models import Channel, Reason, Source

TENANT = "bench"
GOAL = 100_000  # entries/s, from the issue


class NullSink(io.TextIOBase):
    """A text stream that counts characters and keeps nothing."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, s: str) -> int:
        self.chars += len(s)
        return len(s)


def write_csv(path: Path, numbers: Sequence[str]) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["phone"])
        out.writerows([n] for n in numbers)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


async def run_import(url: str, data_dir: Path, path: Path, tenant: str, batch_size: int
                     ) -> tuple[float, ImportReport]:
    settings = bulk_settings(load_settings(None, redis_url=url, data_dir=data_dir,
                                           tenants={TENANT: {}, "profile": {}}))
    parts = await Components.start(settings)
    try:
        t0 = time.perf_counter()
        report = await import_rows(parts.service, tenant, Channel.SMS,
                                   iter_rows(path, "csv"), default_region="US",
                                   batch_size=batch_size, detail={"actor": "cli"})
        return time.perf_counter() - t0, report
    finally:
        await parts.close()


async def run_export(url: str, data_dir: Path, sink: NullSink) -> tuple[float, int]:
    settings = bulk_settings(load_settings(None, redis_url=url, data_dir=data_dir,
                                           tenants={TENANT: {}}))
    parts = await Components.start(settings)
    try:
        t0 = time.perf_counter()
        count = await export_rows(parts.store, TENANT, Channel.SMS, sink, "csv",
                                  page_size=EXPORT_PAGE)
        return time.perf_counter() - t0, count
    finally:
        await parts.close()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_start(url: str, data_dir: Path) -> tuple[float, float]:
    """Start (and stop) Components on a data dir: (seconds to start, RSS growth in MB)."""
    settings = bulk_settings(load_settings(None, redis_url=url, data_dir=data_dir,
                                           tenants={TENANT: {}}))
    before = rss_mb()
    t0 = time.perf_counter()
    parts = await Components.start(settings)
    elapsed, grown = time.perf_counter() - t0, rss_mb() - before
    await parts.close()
    return elapsed, grown


def redis_py_hset(client: redis.Redis, tenant: str, numbers: Sequence[str]) -> None:
    """The baseline: one HSET per entry, pipelined 1,000 at a time, same keys and encoding."""
    value = codec.encode_entry(codec.EntryState(codec.EPOCH_MS + 10**12, True, Reason.IMPORT,
                                                Source.IMPORT))
    for i in range(0, len(numbers), 1000):
        pipe = client.pipeline(transaction=False)
        for ident in numbers[i:i + 1000]:
            pipe.hset(keys.suppressions(tenant, Channel.SMS, keys.bucket_of(ident)),
                      codec.encode_field(Channel.SMS, ident), value)
        pipe.execute()


def _cpu_note(cpu: dict[str, float]) -> str:
    return f"CPU: python {cpu['python']:.2f}, redis {cpu['redis']:.2f} cores"


def filesystem_of(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True,
                             timeout=5).stdout.splitlines()
        return out[-1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


_GROUPS = (
    ("phonenumbers (validation)", "/phonenumbers/"),
    ("redis-py (pack/parse/IO)", "/redis/"),
    ("journal (encode, write, fsync)", "suppression/journal.py"),
    ("store (build script calls)", "suppression/store.py"),
    ("codec/keys (bucket hash, encode)", "suppression/codec.py"),
    ("codec/keys (bucket hash, encode)", "suppression/keys.py"),
    ("service", "suppression/service.py"),
    ("bulk (read, dedupe, events)", "suppression/bulk.py"),
    ("identifiers (full path)", "suppression/identifiers.py"),
    ("models (OptEvent, uuid4, to_json)", "suppression/models.py"),
    ("models (OptEvent, uuid4, to_json)", "uuid.py"),
    ("json", "/json/"),
    ("asyncio", "/asyncio/"),
)


def profile_summary(stats: pstats.Stats, rows: int, top: int = 18) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    groups: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, tottime, _, _) in raw.items():
        label = next((g for g, needle in _GROUPS if needle in filename), None)
        if label is None:
            if filename == "~":
                label = "builtins: " + name.strip("<>").split(" of ")[0].replace("method ", "")
                if "fsync" in name or "write" in name or "poll" in name or "select" in name:
                    label = f"syscalls ({name.strip('<>')})"
            else:
                label = "other Python"
        groups[label] += tottime
    print(f"\nprofile of an import of {rows:,} rows (cProfile, own time; ~{total:.1f}s "
          f"under the profiler = {total / rows * 1e6:.1f} us/row):")
    ordered = sorted(groups.items(), key=lambda kv: -kv[1])
    print_table(["where", "s", "%", "us/row"],
                [(g, fmt(t, 2), fmt(100 * t / total), fmt(t / rows * 1e6, 2))
                 for g, t in ordered[:top]])
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--profile-rows", type=int, default=100_000,
                        help="rows for the cProfile pass (0: skip)")
    parser.add_argument("--no-export", action="store_true", help="skip the export timing")
    parser.add_argument("--replay", action="store_true",
                        help="also time the next start on the import's data dir (it replays "
                        "the journal's retained events)")
    args = parser.parse_args()
    n = args.rows

    work = Path(tempfile.mkdtemp(prefix="og-bench-import-"))
    try:
        numbers = e164_numbers(n)
        check_valid_sample(numbers)
        csv_path = work / "list.csv"
        write_csv(csv_path, numbers)
        # Each run gets a data dir (journal) of its own: a process that starts on a data
        # dir replays every event its journal retains (600 s), and that is measured apart.
        data_dir = work / "data-import"
        with private_redis() as proc:
            client = redis.Redis.from_url(proc.url)
            print(machine_line(client))
            print(f"{n:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB CSV), batch size "
                  f"{args.batch_size}, journal on {filesystem_of(work)}, Redis AOF everysec\n")
            results: list[tuple[str, float, int, str]] = []
            meter = CpuMeter({"python": os.getpid(), "redis": proc.pid or 0})

            # 1. stages without the store
            t_read, count = timed(lambda: sum(1 for _ in iter_rows(csv_path, "csv")))
            assert count == n
            results.append(("read CSV rows (iter_rows)", t_read, n, "no store"))
            normal = _normalizer(Channel.SMS, "US")
            t_norm, _ = timed(lambda: [normal(r.identifier)
                                       for r in iter_rows(csv_path, "csv")])
            results.append(("read + normalise (E.164 fast path)", t_norm, n, "no store"))
            sample = numbers[:min(n, 100_000)]
            clear_caches()
            t_slow, _ = timed(lambda: [normalize(Channel.SMS, x) for x in sample])
            clear_caches()
            results.append(("normalise only, full normalize()", t_slow, len(sample),
                            "for comparison"))

            # 2. the import path
            meter.start()
            t_imp, report = asyncio.run(run_import(proc.url, data_dir, csv_path, TENANT,
                                                   args.batch_size))
            cpu = meter.stop()
            assert (report.added, report.duplicate, report.invalid) == (n, 0, 0), report
            results.append(("import (CLI path, new entries)", t_imp, n, _cpu_note(cpu)))

            # 3. again: every row already suppressed
            meter.start()
            t_dup, again = asyncio.run(run_import(proc.url, work / "data-reimport",
                                                  csv_path, TENANT, args.batch_size))
            cpu = meter.stop()
            assert (again.added, again.duplicate) == (0, n), again
            results.append(("re-import (all duplicate)", t_dup, n, _cpu_note(cpu)))

            # 4. export
            if not args.no_export:
                sink = NullSink()
                t_exp, exported = asyncio.run(run_export(proc.url, work / "data-export",
                                                         sink))
                assert exported == n, exported
                results.append(("export to CSV (null sink)", t_exp, n,
                                f"{sink.chars / 1e6:.0f} MB"))

            # 4b. the next process to start on the import's data dir replays its journal
            if args.replay:
                t_start, rss_mb = asyncio.run(run_start(proc.url, data_dir))
                results.append(("next start on the import's data dir", t_start, n,
                                f"journal replay, +{rss_mb:,.0f} MB RSS"))

            # 5. baselines, into another tenant's keys on the same server
            t_base, _ = timed(lambda: redis_py_hset(client, "base", numbers))
            results.append(("baseline: redis-py pipelined HSET", t_base, n,
                            "1 field/cmd, 1000/pipeline"))
            t_floor, _ = timed(lambda: write_entries(client, "floor", Channel.SMS, numbers))
            results.append(("floor: 1 multi-field HSET per bucket", t_floor, n,
                            "hand-packed RESP"))

            print_table(["stage", "seconds", "rows/s", "us/row", "note"],
                        [(name, fmt(t, 2), fmt(rows / t, 0), fmt(t / rows * 1e6, 2), note)
                         for name, t, rows, note in results])
            rate = n / t_imp
            print(f"\nimport: {rate:,.0f} entries/s = {rate / (n / t_base):.0%} of the "
                  f"redis-py HSET baseline ({n / t_base:,.0f}/s); goal {GOAL:,}/s: "
                  f"{'met' if rate >= GOAL else 'NOT met'}")

            if args.profile_rows:
                prof_path = work / "profile.csv"
                write_csv(prof_path, e164_numbers(args.profile_rows, start=n))
                profiler = cProfile.Profile()
                profiler.enable()
                _, prof_report = asyncio.run(run_import(proc.url, work / "data-profile",
                                                        prof_path,
                                                        "profile", args.batch_size))
                profiler.disable()
                assert prof_report.added == args.profile_rows
                profile_summary(pstats.Stats(profiler, stream=sys.stdout),
                                args.profile_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
