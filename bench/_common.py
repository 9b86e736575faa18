"""Shared helpers for the benchmark scripts in bench/.

Every bench starts its own private ``redis-server`` (the product's
``RedisServerProcess``, on a free 127.0.0.1 TCP port, in a temp dir, with the
embedded server's settings) and stops it at the end: nothing here touches a
Redis the bench did not start.

Also here: deterministic test data (valid E.164 numbers, realistic e-mail
addresses), the stored-format fast writer, latency percentiles, per-process
CPU accounting, ``INFO commandstats`` deltas and plain-text tables.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from gateway.embedded_redis import RedisServerProcess
from suppression import codec, keys
from suppression.models import Channel, Reason, Source

# -- machine -------------------------------------------------------------------------------


def machine_line(client: redis.Redis | None = None) -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    parts = [f"{os.cpu_count()} cores ({cpu})", f"Python {platform.python_version()}"]
    if client is not None:
        info: Any = client.info("server")
        parts.append(f"redis-server {info.get('redis_version')}")
    parts.append(f"redis-py {redis.__version__}")
    try:
        import hiredis  # noqa: F401

        parts.append("hiredis parser")
    except ImportError:
        parts.append("pure-Python RESP parser (no hiredis)")
    return ", ".join(parts)


# -- private redis-server --------------------------------------------------------------------


@contextlib.contextmanager
def private_redis(*, config: Mapping[str, str] | None = None, prefix: str = "og-bench-",
                  unix: bool = False) -> Iterator[RedisServerProcess]:
    """A started redis-server on a free loopback port in a fresh temp dir; stopped on exit.

    The command line is the embedded server's (AOF everysec, hash-max-listpack-entries 256);
    ``config`` entries are appended after it and so override it. ``unix``: on a unix socket
    in that dir instead, as the embedded server (the default deployment) listens.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    proc = RedisServerProcess(directory / "redis", port=0, extra_config=dict(config or {}),
                              unix_socket=directory / "redis.sock" if unix else None)
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


def config_value(client: redis.Redis, name: str) -> str:
    raw: Any = client.config_get(name)
    value = raw.get(name)
    return value.decode() if isinstance(value, bytes) else str(value)


def commandstats(client: redis.Redis) -> dict[str, int]:
    """calls per command (``evalsha``, ``script|exists``, ...) from ``INFO commandstats``."""
    info: Any = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


def stats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def used_memory(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


# -- CPU accounting ----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU share (1.0 = one core busy) of some processes over a window; a name may stand for
    several processes (a multi-worker gateway), whose CPU is added up."""

    def __init__(self, pids: Mapping[str, int | Sequence[int]]) -> None:
        self.pids = {name: [p] if isinstance(p, int) else list(p) for name, p in pids.items()}
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self.seconds: dict[str, float] = {}  # CPU seconds used in the window, by name

    def _now(self, name: str) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids[name])

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = {name: self._now(name) for name in self.pids}

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self._t0
        self.seconds = {name: self._now(name) - self._c0[name] for name in self.pids}
        return {name: used / elapsed for name, used in self.seconds.items()}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a multi-worker gateway's workers), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


# -- statistics and tables ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    for n, row in enumerate(text):
        print("  ".join(c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


# -- test data ---------------------------------------------------------------------------------

# US area codes in service; with an exchange 200-999 (not N11, not 555) every number passes
# phonenumbers.is_valid_number (checked on samples by the benches).
US_AREA_CODES = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224,
    225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270,
    276, 281, 301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318,
    319, 320, 321, 323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 386, 401, 402,
    404, 405, 406, 407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 425, 430, 432, 434,
    435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512,
    513, 515, 516, 517, 518, 520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573,
    574, 575, 580, 585, 586, 601, 602, 603, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616,
    617, 618, 619, 620, 623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 682,
    701, 702, 703, 704, 706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727,
    731, 732, 734, 740, 754, 757, 760, 762, 763, 765, 769, 770, 772, 773, 774, 775, 781, 785,
    786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814, 815, 816, 817, 818, 828, 830,
    831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859, 860, 862, 863, 864, 865, 870, 872,
    878, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913, 914, 915, 916, 917, 918, 919, 920,
    925, 928, 931, 936, 937, 940, 941, 947, 949, 951, 952, 954, 956, 970, 971, 972, 973, 978,
    979, 980, 985, 989,
)


_VALID_NXX = tuple(x for x in range(200, 1000) if x % 100 != 11 and x != 555)
_SPACE = len(US_AREA_CODES) * len(_VALID_NXX) * 10_000
_STRIDE = 2_654_435_761  # coprime with _SPACE: i -> i * _STRIDE mod _SPACE is a permutation
assert math.gcd(_STRIDE, _SPACE) == 1


def e164_numbers(n: int, *, start: int = 0) -> list[str]:
    """Numbers ``start .. start + n - 1`` of a fixed pseudo-random permutation of 2.2 billion
    valid US E.164 numbers (``+1NPANXXXXXX``): distinct, and disjoint for disjoint ranges."""
    codes, nxxs, space, stride = US_AREA_CODES, _VALID_NXX, _SPACE, _STRIDE
    n_nxx = len(nxxs)
    out = []
    for i in range(start, start + n):
        x = (i * stride + 12_345) % space
        rest, line = divmod(x, 10_000)
        npa, nxx = divmod(rest, n_nxx)
        out.append(f"+1{codes[npa]}{nxxs[nxx]}{line:04d}")
    return out


def check_valid_sample(numbers: Sequence[str], k: int = 2000, seed: int = 7) -> None:
    """Raise unless a random sample of ``numbers`` is valid for the gateway's normaliser."""
    from suppression.identifiers import normalize

    for number in random.Random(seed).sample(list(numbers), min(k, len(numbers))):
        if normalize(Channel.SMS, number) != number:
            raise AssertionError(f"{number} does not normalise to itself")


_FIRST = ("james mary john patricia robert jennifer michael linda william elizabeth david "
          "barbara richard susan joseph jessica thomas sarah charles karen chris nancy daniel "
          "lisa matthew betty anthony sandra mark ashley donald kim steven emily paul donna "
          "andrew michelle josh carol kevin amanda brian melissa george deborah tim laura "
          "ana maria jose luis carlos sofia wei li yuki hiro ahmed fatima olga ivan").split()
_LAST = ("smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
         "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
         "white harris sanchez clark ramirez lewis robinson walker young allen king wright "
         "scott torres nguyen hill flores green adams nelson baker hall rivera campbell "
         "mitchell carter roberts mueller schmidt rossi dubois kowalski tanaka chen wang").split()
_DOMAINS = (("gmail.com", 40), ("yahoo.com", 10), ("hotmail.com", 8), ("outlook.com", 8),
            ("icloud.com", 6), ("aol.com", 2), ("comcast.net", 2), ("protonmail.com", 1),
            ("gmx.de", 1), ("web.de", 1), ("orange.fr", 1), ("btinternet.com", 1))


def email_addresses(n: int, *, seed: int = 2) -> list[str]:
    """``n`` distinct, already-normalised, realistic addresses (~22 chars on average)."""
    rng = random.Random(seed)
    domains = [d for d, w in _DOMAINS for _ in range(w)]
    company = [f"corp{i}.example.com" for i in range(200)]
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        style = rng.randrange(6)
        if style == 0:
            local = f"{first}.{last}"
        elif style == 1:
            local = f"{first}{last}{rng.randrange(100)}"
        elif style == 2:
            local = f"{first[0]}{last}{rng.randrange(1000)}"
        elif style == 3:
            local = f"{first}_{last}{rng.randrange(10_000)}"
        elif style == 4:
            local = f"{first}.{last}+news"
        else:
            local = f"{last}.{first}{rng.randrange(100)}"
        domain = rng.choice(company) if rng.random() < 0.15 else rng.choice(domains)
        address = f"{local}@{domain}"
        if address not in seen:
            seen.add(address)
            out.append(address)
    return out


# -- stored-format fast writer ------------------------------------------------------------------

REASONS_SMS = (Reason.STOP_KEYWORD,) * 8 + (Reason.MANUAL, Reason.IMPORT)
REASONS_EMAIL = (Reason.UNSUBSCRIBE_CLICK, Reason.ONE_CLICK, Reason.ONE_CLICK, Reason.MAILTO,
                 Reason.COMPLAINT, Reason.BOUNCE, Reason.IMPORT)
SOURCE_FOR = {Reason.STOP_KEYWORD: Source.SMS, Reason.MANUAL: Source.API,
              Reason.IMPORT: Source.IMPORT, Reason.UNSUBSCRIBE_CLICK: Source.WEB,
              Reason.ONE_CLICK: Source.WEB, Reason.MAILTO: Source.EMAIL,
              Reason.COMPLAINT: Source.EMAIL, Reason.BOUNCE: Source.EMAIL}
# Opt-out times spread over 2021-01-01 .. 2026-01-01 (ms).
T_FROM, T_TO = 1_609_459_200_000, 1_767_225_600_000


def random_state(rng: random.Random, channel: Channel) -> codec.EntryState:
    reasons = REASONS_SMS if channel is Channel.SMS else REASONS_EMAIL
    reason = reasons[int(rng.random() * len(reasons))]
    at = T_FROM + int(rng.random() * (T_TO - T_FROM))
    return codec.EntryState(at, True, reason, SOURCE_FOR[reason])


def resp(*args: bytes | str | int) -> bytes:
    """One command in RESP (what redis-py's pure-Python packer makes, ~4x faster)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def send_all(client: redis.Redis, commands: Iterable[bytes], *, batch: int = 2_000) -> int:
    """Send RESP-packed commands pipelined (``batch`` per write) on one connection, read every
    reply (an error reply raises). Returns how many were sent."""
    conn = client.connection_pool.get_connection()
    sent = 0
    try:
        pending: list[bytes] = []
        for command in commands:
            pending.append(command)
            if len(pending) == batch:
                sent += _round_trip(conn, pending)
                pending = []
        if pending:
            sent += _round_trip(conn, pending)
    finally:
        client.connection_pool.release(conn)
    return sent


def _round_trip(conn: Any, pending: list[bytes]) -> int:
    conn.send_packed_command([b"".join(pending)])
    for _ in pending:
        conn.read_response()
    return len(pending)


def write_entries(client: redis.Redis, tenant: str, channel: Channel,
                  identifiers: Sequence[str], *, seed: int = 3,
                  states: Sequence[codec.EntryState] | None = None) -> None:
    """Write active suppressions exactly as ``apply_event.lua`` stores them (HSET of
    ``codec.encode_field`` -> ``codec.encode_entry`` in ``keys.suppressions``), without the
    audit stream and Lua round trips: the fast path for bulk test data. One HSET per bucket."""
    rng = random.Random(seed)
    by_bucket: dict[int, list[bytes]] = defaultdict(list)
    bucket_of, encode_field, encode_entry = keys.bucket_of, codec.encode_field, codec.encode_entry
    for i, ident in enumerate(identifiers):
        state = states[i] if states is not None else random_state(rng, channel)
        field = encode_field(channel, ident).encode()
        value = b"%d" % encode_entry(state)
        by_bucket[bucket_of(ident)].append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(field), field, len(value), value))
    commands = []
    for bucket, pairs in by_bucket.items():
        key = keys.suppressions(tenant, channel, bucket).encode()
        commands.append(b"*%d\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n%s" % (
            2 + 2 * len(pairs), len(key), key, b"".join(pairs)))
    send_all(client, commands)


_KEY_STATS = """
local cursor, n, total, enc = '0', 0, 0, {}
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    n = n + 1
    total = total + redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')
    local e = redis.call('OBJECT', 'ENCODING', key)
    enc[e] = (enc[e] or 0) + 1
  end
until cursor == '0'
local out = {n, total}
for e, c in pairs(enc) do out[#out + 1] = e; out[#out + 1] = c end
return out
"""


def key_stats(client: redis.Redis, pattern: str) -> tuple[int, int, dict[str, int]]:
    """(keys, sum of ``MEMORY USAGE key SAMPLES 0``, keys per ``OBJECT ENCODING``) over the
    keys matching ``pattern``, computed server-side by one script (SCAN inside Lua)."""
    reply: Any = client.eval(_KEY_STATS, 0, pattern)
    enc = {reply[i].decode(): int(reply[i + 1]) for i in range(2, len(reply), 2)}
    return int(reply[0]), int(reply[1]), enc


def scan_keys(client: redis.Redis, pattern: str) -> list[bytes]:
    return list(client.scan_iter(match=pattern, count=10_000))
