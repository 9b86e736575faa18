"""Retention: personal data kept only as long as each tenant says, trimmed inside Redis.

COMPLIANCE.md (Privacy): message records are kept like call detail records, for a
limited time (``message_retention_days``, 90 by default); the audit trail of opt-outs
and consents for as long as disputes can arise (``audit_retention_days``, 7 years);
possible opt-outs waiting for review only while ops may act on them
(``review_retention_days``, 90). Blocked content already carries its own TTL
(``keys.blocked_content``). Suppressions and consent states never expire: nothing
here touches them.

A background task walks a fixed list of work units, one per tick: each shard of each
tenant and channel (its message records, audit lists and send times, lua/trim_shard.lua,
in slices of ``SLICE_BUCKETS`` buckets), then the tenant's own lists
(lua/trim_tenant.lua). Every call is a short script over keys named by the layout, so
there is no keyspace SCAN and the hot path waits at most one small script (~0.4 ms for
128 empty buckets, ~1 ms when trimming a backlog). The ticks are spread so that every
tenant is swept about once per ``cycle_s`` (an hour: retention counts in days), at most
one unit per ``min_interval_s``; the first waits ``start_delay_s``, as start-up (journal
replay, clients reconnecting) is the busiest minute a process has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

from . import keys
from .errors import StoreUnavailable
from .models import Channel, now_ms
from .store import RedisStore, Script
from .tasks import cancel_requested
from .tenants import Tenant

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
SLICE_BUCKETS = 128  # buckets per script call: 384 keys, well under a millisecond when empty
MAX_TRIM_PER_CALL = 1000  # bounds one script's work on a backlog (~1 ms); it is called again
TENANT_LISTS = -1  # the shard number of the unit holding a tenant's own lists
TRIES_PER_UNIT = 3  # then the unit waits for the next cycle, so one bad unit holds none back


@dataclass(slots=True)
class Trimmed:
    """How many items one sweep (or unit) removed, by kind."""

    messages: int = 0
    audit: int = 0
    send_times: int = 0
    review: int = 0
    tenant_audit: int = 0

    def add(self, other: Trimmed) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class Unit:
    tenant: Tenant
    channel: Channel
    shard: int  # TENANT_LISTS: the tenant's review and tenant-audit lists


def units_of(tenants: Iterable[Tenant]) -> list[Unit]:
    out: list[Unit] = []
    for tenant in tenants:
        out.extend(Unit(tenant, channel, shard)
                   for channel in Channel for shard in range(keys.SHARDS))
        out.append(Unit(tenant, Channel.SMS, TENANT_LISTS))
    return out


class RetentionSweeper:
    """Trims every tenant's data by age, one unit per tick; the task never dies of an error.

    ``clock`` gives the time in epoch ms (injected by tests to age the data).
    """

    def __init__(self, store: RedisStore, tenants: Iterable[Tenant], *,
                 cycle_s: float = 3600.0, min_interval_s: float = 0.2,
                 start_delay_s: float = 60.0, outage_retry_s: float = 5.0,
                 clock: Callable[[], int] = now_ms,
                 slice_buckets: int = SLICE_BUCKETS) -> None:
        self.store = store
        self.units = units_of(tenants)
        self.interval_s = max(min_interval_s, cycle_s / max(1, len(self.units)))
        self.start_delay_s = start_delay_s
        # While the store is down, a slower retry: each failed call logs a store warning.
        self.outage_retry_s = max(self.interval_s, outage_retry_s)
        self.clock = clock
        self.slice_buckets = slice_buckets
        self._shard_script = Script("trim_shard")
        self._tenant_script = Script("trim_tenant")
        self._next = 0
        self._tries = 0  # failed attempts at the unit self._next
        self._task: asyncio.Task[None] | None = None
        self._store_down = False
        self.trimmed = Trimmed()  # since start, for logs and tests

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and self.units:
            self._task = asyncio.create_task(self._run(), name="retention-sweeper")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancel until done: on 3.11 a wait_for inside redis-py can swallow one cancellation.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        await asyncio.sleep(self.start_delay_s)
        while not cancel_requested():
            await asyncio.sleep(self.outage_retry_s if self._store_down else self.interval_s)
            try:
                await self.step()
            except StoreUnavailable:
                if not self._store_down:
                    log.warning("retention sweep paused: store unavailable; retrying every "
                                "%.1f s", self.outage_retry_s)
                self._store_down = True
                self._failed()
            except Exception:  # a background loop must outlive any one failure
                log.exception("retention sweep failed; retrying")
                self._failed()
            else:
                if self._store_down:
                    log.info("retention sweep resumed")
                self._store_down = False

    # -- work -----------------------------------------------------------------

    async def step(self) -> Trimmed:
        """Sweep the next unit. Raises StoreUnavailable (the unit is then retried)."""
        unit = self.units[self._next]
        done = await self.sweep_unit(unit)
        self._advance()
        self.trimmed.add(done)
        if done.total:
            log.info("retention: tenant %s %s: trimmed %s", unit.tenant.id,
                     "own lists" if unit.shard == TENANT_LISTS
                     else f"{unit.channel.value} shard {unit.shard}", done)
        return done

    def _advance(self) -> None:
        self._next = (self._next + 1) % len(self.units)
        self._tries = 0

    def _failed(self) -> None:
        """The next tick retries the unit; after ``TRIES_PER_UNIT`` it moves on (an outage,
        or a key a script cannot read), and the unit comes round again next cycle."""
        self._tries += 1
        if self._tries >= TRIES_PER_UNIT:
            log.debug("retention: unit %d left for the next cycle", self._next)
            self._advance()

    async def sweep_once(self) -> Trimmed:
        """Every unit once, from the first (a full pass, for tests and the CLI)."""
        out = Trimmed()
        for unit in self.units:
            out.add(await self.sweep_unit(unit))
        self.trimmed.add(out)
        return out

    async def sweep_unit(self, unit: Unit) -> Trimmed:
        now = self.clock()
        if unit.shard == TENANT_LISTS:
            return await self._sweep_tenant(unit.tenant, now)
        tenant, channel = unit.tenant, unit.channel
        argv = [now - tenant.message_retention_days * DAY_MS,
                now - tenant.audit_retention_days * DAY_MS, MAX_TRIM_PER_CALL]
        first = unit.shard * keys.BUCKETS_PER_SHARD
        out = Trimmed()
        for start in range(first, first + keys.BUCKETS_PER_SHARD, self.slice_buckets):
            buckets = range(start, min(start + self.slice_buckets,
                                       first + keys.BUCKETS_PER_SHARD))
            names = _bucket_keys(tenant.id, channel, buckets)
            more = True
            while more:  # a call stops after MAX_TRIM_PER_CALL items: a backlog takes several
                reply = await self.store.run_script("retention", self._shard_script, names,
                                                    argv)
                messages, audit, send_times, again = (int(n) for n in reply)
                out.add(Trimmed(messages=messages, audit=audit, send_times=send_times))
                more = again == 1
                await asyncio.sleep(0)  # let requests in between calls
        return out

    async def _sweep_tenant(self, tenant: Tenant, now: int) -> Trimmed:
        reply = await self.store.run_script(
            "retention", self._tenant_script,
            [keys.review(tenant.id), keys.tenant_audit(tenant.id)],
            [now - tenant.review_retention_days * DAY_MS,
             now - tenant.audit_retention_days * DAY_MS, MAX_TRIM_PER_CALL])
        review, tenant_audit = (int(n) for n in reply)
        return Trimmed(review=review, tenant_audit=tenant_audit)


def _bucket_keys(tenant: str, channel: Channel, buckets: Sequence[int]) -> list[str]:
    """Per bucket, in trim_shard.lua's order: message records, audit, send times."""
    out = []
    for b in buckets:
        out += [keys.messages(tenant, channel, b), keys.audit(tenant, channel, b),
                keys.sends(tenant, channel, b)]
    return out
