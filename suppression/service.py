"""The single door for every opt-out and opt-in, and the suppression check.

Write path (``record``): journal the events and fsync (group commit), then
acknowledge; apply them to Redis right away if it answers, else keep them
pending in memory and apply them when it is back. Checks merge Redis state
with the pending and recently applied events, so an acknowledged opt-out is
honoured during an outage and across a Redis restart that lost its last
second of AOF, until the journal has been replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import subjects
from .errors import GatewayError, JournalFailed, OptedOut, StoreUnavailable
from .identifiers import normalize
from .journal import Journal
from .models import (
    Channel,
    OptEvent,
    Reason,
    Source,
    Suppression,
    new_event_id,
    now_ms,
    scoped,
)
from .store import CONSENT_GRANTED, CONSENT_PENDING, Claim, RedisStore, to_suppression
from .tasks import cancel_requested

log = logging.getLogger(__name__)

Key = tuple[str, Channel, str]
APPLY_BATCH = 1000
LOCAL_CLAIMS_MAX = 100_000
DEFERRED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class CheckResult:
    identifier: str
    normalized: str | None
    suppressed: bool | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedOptOut:
    """What ``opt_out_claimed`` did: ``duplicate`` = a retry, nothing applied or journalled;
    ``confirm`` = the confirmation claim was free (or the store could not tell)."""

    event: OptEvent
    duplicate: bool
    confirm: bool


def _wins(a: tuple[int, bool], b: tuple[int, bool]) -> bool:
    """Does state a=(at_ms, active) win over b? Later wins; an opt-out wins a tie."""
    return a[0] > b[0] or (a[0] == b[0] and a[1] and not b[1])


class LocalClaims:
    """Claims taken while Redis could not be asked (``Claim`` keys, held in this process):
    a provider's retry of a STOP, or a second STOP inside the confirmation gap, is still
    told apart during an outage and after it (Redis never saw these claims). Bounded (the
    oldest go first) and expiring with each claim's TTL; per process, so with several
    workers a retry that reaches another worker is applied again (harmless) and may be
    confirmed again."""

    def __init__(self, *, max_items: int = LOCAL_CLAIMS_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def held(self, claim: Claim) -> bool:
        until = self._until.get(claim.key)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[claim.key]
            return False
        return True

    def take(self, claim: Claim) -> bool:
        """True if the claim was free (now held), False if it was held."""
        if self.held(claim):
            return False
        self._until[claim.key] = self.clock() + claim.ttl_s
        while len(self._until) > self.max_items:
            self._until.popitem(last=False)
        return True


class SuppressionService:
    def __init__(
        self,
        store: RedisStore,
        journal: Journal,
        *,
        on_fatal: Callable[[BaseException], None] | None = None,
        apply_interval_s: float = 0.5,
        health_interval_s: float = 1.0,
        recent_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.journal = journal
        self.on_fatal = on_fatal
        self.apply_interval_s = apply_interval_s
        self.health_interval_s = health_interval_s
        self.recent_s = recent_s  # = the journal's retention window
        self.clock = clock
        self._pending: dict[str, OptEvent] = {}  # journalled, not yet applied, by event id
        # Per identifier, the newest journalled event of the retention window:
        # what checks must honour even if Redis lost it. Ordered by arrival for expiry.
        self._recent: OrderedDict[Key, tuple[float, OptEvent]] = OrderedDict()
        self._commit_queue: list[tuple[Sequence[OptEvent], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._run_id: str | None = None
        self.store_ok = False
        self._closing = False
        self._inflight: set[str] = set()
        self.local_claims = LocalClaims()
        # Best-effort writes (e.g. a reply queued for ops review) that found Redis down:
        # retried by the applier once Redis answers; lost only if the process dies first.
        self._deferred: OrderedDict[int, tuple[str, Callable[[], Awaitable[None]]]] = \
            OrderedDict()
        self._deferred_ids = 0

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        replay = await asyncio.to_thread(self.journal.open)
        for ev in replay:
            self._pending[ev.id] = ev
            self._remember(ev)
        if replay:
            log.info("journal: %d event(s) to replay", len(replay))
        await self._health_once()  # replays the retained journal when Redis answers
        with contextlib.suppress(StoreUnavailable):
            await self._apply_pending()
        self._tasks = [
            asyncio.create_task(self._applier(), name="journal-applier"),
            asyncio.create_task(self._health(), name="store-health"),
        ]

    async def close(self) -> None:
        self._closing = True
        # Cancel until done: on Python 3.11 asyncio.wait_for (inside redis-py) can swallow
        # a cancellation, and a loop that swallowed one would otherwise run forever.
        pending = {t for t in self._tasks if not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        with contextlib.suppress(StoreUnavailable):
            await self._apply_pending()
            await self._run_deferred()
        for what, _ in self._deferred.values():
            log.warning("%s not written: the store did not answer before shutdown", what)
        await asyncio.to_thread(self.journal.close)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # -- the single write path ------------------------------------------------

    async def opt_out(self, tenant: str, channel: Channel, identifier: str, *, reason: Reason,
                      source: Source, detail: dict[str, str] | None = None,
                      scope: str = "") -> OptEvent:
        """Suppress ``identifier`` (normalised) for the tenant. Idempotent.

        ``scope`` narrows it to one email topic (or a reserved scope such as
        ``HARD_BOUNCE_SCOPE``); '' suppresses every message of the channel.
        Returns once the event is durable in the journal, whether or not Redis
        answered. Raises ``JournalFailed`` if it could not be made durable.
        """
        ev = OptEvent("opt_out", tenant, channel, identifier, reason, source,
                      detail=dict(detail or {}), scope=scope)
        await self.record([ev])
        return ev

    async def opt_in(self, tenant: str, channel: Channel, identifier: str, *, reason: Reason,
                     source: Source, detail: dict[str, str] | None = None,
                     scope: str = "") -> OptEvent:
        """Lift the tenant's suppression of ``identifier`` and record consent. Idempotent.

        With a ``scope`` only that topic's opt-out is lifted, and no consent is recorded."""
        at = now_ms()
        # The store lets an opt-out win a tie; a deliberate opt-in in the same millisecond
        # as the opt-out it lifts (or from a host whose clock is a little behind) must
        # still be later. Best effort: during an outage the local clock is all there is.
        with contextlib.suppress(StoreUnavailable):
            entry = (await self.store.entries(tenant, channel, [scoped(identifier, scope)]))[0]
            if entry is not None and entry.at_ms >= at:
                at = entry.at_ms + 1
        # An erased person: only their own keyword may lift it; others raise OptedOut.
        lift = not scope and await subjects.erasure_lifted_by(self.store, tenant, channel,
                                                              identifier, reason)
        ev = OptEvent("opt_in", tenant, channel, identifier, reason, source, at_ms=at,
                      detail=dict(detail or {}), scope=scope)
        if lift:  # first: while the hash is there the store skips every event of the person
            await subjects.lift_erasure(self.store, tenant, channel, identifier)
        await self.record([ev])
        return ev

    async def opt_out_claimed(self, tenant: str, channel: Channel, identifier: str, *,
                              reason: Reason, source: Source,
                              detail: dict[str, str] | None = None,
                              dedupe: Claim | None = None,
                              confirm: Claim | None = None) -> ClaimedOptOut:
        """``opt_out`` for a door that must act once per provider message (``dedupe``: webhook
        retries) and confirm at most once per gap (``confirm``): apply and claims are one
        store call (``apply_claimed.lua``) instead of three round trips.

        Store first, then the journal: a retry changes nothing and is never journalled (a
        journalled retry would be re-applied by a replay, perhaps after the person's later
        opt-in). Still acknowledged only once durable in the journal: a crash before the
        fsync loses no acknowledged opt-out (the provider retries; if Redis kept the first
        try, the retry is a duplicate and the opt-out stands). Store down: journalled and
        kept pending like ``record``; a retry cannot be told then (applying twice is
        harmless) and the opt-out is confirmed (CONTRACT.md: confirmed during an outage).
        """
        if self.journal.failed:
            raise JournalFailed()
        ev = OptEvent("opt_out", tenant, channel, identifier, reason, source,
                      detail=dict(detail or {}))
        if dedupe is not None and self.local_claims.held(dedupe):
            return ClaimedOptOut(ev, duplicate=True, confirm=False)  # retried since an outage
        confirmed_locally = confirm is not None and self.local_claims.held(confirm)
        try:
            result, confirmed = await self.store.apply_claimed(ev, dedupe=dedupe,
                                                               confirm=confirm)
        except StoreUnavailable:
            log.warning("store down: opt-out journalled, applying later")
            await self._commit([ev])
            self._pending[ev.id] = ev
            self._remember(ev)
            self._wake.set()
            if dedupe is not None:
                self.local_claims.take(dedupe)
            return ClaimedOptOut(ev, duplicate=False,
                                 confirm=confirm is None or self.local_claims.take(confirm))
        if result == -2:
            return ClaimedOptOut(ev, duplicate=True, confirm=False)
        await self._commit([ev])
        self._remember(ev)  # honoured even if Redis loses its last second of writes
        self.journal.mark_applied([ev.id])
        return ClaimedOptOut(ev, duplicate=False, confirm=confirmed and not confirmed_locally)

    async def claim(self, claim: Claim) -> bool:
        """Take a claim (True the first time within its TTL). With Redis down it is taken
        in this process (``local_claims``), so a retry is still told apart; if in doubt
        (another worker) the answer is True: acting twice is harmless, dropping one is not."""
        if self.local_claims.held(claim):
            return False  # taken during an outage
        try:
            return await self.store.claim(claim.key, claim.ttl_s)
        except StoreUnavailable:
            self.local_claims.take(claim)
            return True

    def defer(self, what: str, write: Callable[[], Awaitable[None]]) -> None:
        """Retry a best-effort store write once Redis answers again (bounded: past
        ``DEFERRED_MAX`` the oldest is dropped with a warning)."""
        self._deferred_ids += 1
        self._deferred[self._deferred_ids] = (what, write)
        while len(self._deferred) > DEFERRED_MAX:
            _, (dropped, _) = self._deferred.popitem(last=False)
            log.warning("%s dropped: too many writes waiting for the store", dropped)
        self._wake.set()

    async def _run_deferred(self) -> None:
        """Run the deferred writes in order; StoreUnavailable leaves the rest waiting."""
        while self._deferred:
            key, (what, write) = next(iter(self._deferred.items()))
            try:
                await write()
            except StoreUnavailable:
                raise
            except Exception:  # one bad write must not hold back the others for ever
                log.exception("%s could not be written; dropped", what)
            else:
                log.info("%s written now that the store answers", what)
            self._deferred.pop(key, None)

    async def settle(self, tenant: str, channel: Channel, identifier: str) -> None:
        """Apply the identifier's journalled events still waiting for Redis (an erasure must
        come after them, or they would write the identifier back). StoreUnavailable if not."""
        def waiting() -> bool:
            return any(ev.tenant == tenant and ev.channel == channel and
                       ev.identifier == identifier for ev in self._pending.values())
        if waiting():
            await self._apply_pending()
        if waiting():  # being applied by a request right now
            raise StoreUnavailable("An opt-out or opt-in of this person is being applied "
                                   "right now; retry in a moment.")

    async def list_page(self, tenant: str, channel: Channel, *, cursor: str | None, limit: int,
                        query: str | None) -> tuple[list[Suppression], str | None]:
        """A page of the tenant's suppressions that includes every acknowledged opt-out:
        events still waiting for Redis (its answer came too late) are applied first."""
        if any(ev.tenant == tenant and ev.channel == channel for ev in self._pending.values()):
            await self._apply_pending()
        return await self.store.list_page(tenant, channel, cursor=cursor, limit=limit,
                                          query=query)

    async def record(self, events: Sequence[OptEvent], *, remember: bool = True) -> None:
        """Journal, acknowledge, apply. ``remember=False`` (bulk imports) keeps
        the events out of the in-memory recent window once applied."""
        if not events:
            return
        await self._commit(events)
        ids = {ev.id for ev in events}
        for ev in events:
            self._pending[ev.id] = ev
            if remember:
                self._remember(ev)
        self._inflight |= ids  # the applier leaves these to us (no double apply)
        try:
            await self.store.apply(events)
        except StoreUnavailable:
            log.warning("store down: %d event(s) journalled, applying later", len(events))
            self._wake.set()
            return
        finally:
            self._inflight -= ids
        self._applied(events)

    def _remember(self, ev: OptEvent) -> None:
        now = self.clock()
        cur = self._recent.get(ev.key)
        # A repeated opt-out changes nothing (the store keeps the first one, with its
        # time and reason): keep the first here too.
        repeated = cur is not None and cur[1].action == "opt_out" and ev.action == "opt_out"
        if cur is None or (not repeated and _wins((ev.at_ms, ev.action == "opt_out"),
                                                  (cur[1].at_ms, cur[1].action == "opt_out"))):
            self._recent[ev.key] = (now, ev)
            self._recent.move_to_end(ev.key)
        horizon = now - self.recent_s
        while self._recent:
            key, (seen, old) = next(iter(self._recent.items()))
            if seen >= horizon or old.id in self._pending:
                break
            del self._recent[key]

    def _applied(self, events: Iterable[OptEvent]) -> None:
        ids = [ev.id for ev in events]
        for eid in ids:
            self._pending.pop(eid, None)
        self.journal.mark_applied(ids)

    async def _commit(self, events: Sequence[OptEvent]) -> None:
        """Group commit: concurrent callers share one write + fsync."""
        if self.journal.failed:
            raise JournalFailed()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_queue.append((events, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_commits())
        await fut

    async def _write_commits(self) -> None:
        while self._commit_queue:
            batch, self._commit_queue = self._commit_queue, []
            flat = [ev for events, _ in batch for ev in events]
            try:
                await asyncio.to_thread(self.journal.append, flat)
            except JournalFailed as exc:
                for _, fut in batch + self._commit_queue:
                    if not fut.done():
                        fut.set_exception(JournalFailed())
                self._commit_queue = []
                log.critical("journal fsync failed: refusing writes and shutting down")
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                return
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    # -- background: apply pending, replay after a Redis restart ---------------

    async def _apply_pending(self) -> None:
        while waiting := [e for e in self._pending.values() if e.id not in self._inflight]:
            batch = sorted(waiting, key=lambda e: e.at_ms)[:APPLY_BATCH]
            await self.store.apply(batch)
            self._applied(batch)
            log.info("journal: applied %d pending event(s), %d left", len(batch),
                     len(self._pending))
        await asyncio.to_thread(self.journal.prune)

    async def _applier(self) -> None:
        while not self._closing and not cancel_requested():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.apply_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._apply_pending()
                await self._run_deferred()
            except StoreUnavailable:
                pass  # still down: the events stay pending and honoured by checks
            except Exception:  # a background loop must outlive any one failure
                log.exception("journal applier failed; retrying")

    async def _health(self) -> None:
        while not self._closing and not cancel_requested():
            await asyncio.sleep(self.health_interval_s)
            try:
                await self._health_once()
            except Exception:
                log.exception("store health check failed; retrying")

    async def _health_once(self) -> None:
        try:
            run_id = await self.store.run_id()
        except StoreUnavailable:
            self.store_ok = False
            return
        if run_id != self._run_id:
            # First contact, a restart or a failover: Redis may have lost its last
            # second of AOF (or a replica its last replicated writes), so replay the
            # retained journal. A mere blip (same run id) lost nothing: the applier
            # only has to catch up with pending events.
            if not await self.replay():
                return
            self._run_id = run_id
        elif self._pending or self._deferred:
            self._wake.set()
        self.store_ok = True

    async def replay(self) -> bool:
        """Re-apply every retained journal event (idempotent). False if Redis failed."""
        events = await asyncio.to_thread(self.journal.retained_events)
        try:
            for i in range(0, len(events), APPLY_BATCH):
                chunk = events[i:i + APPLY_BATCH]
                await self.store.apply(chunk)
                self._applied(chunk)
            await self._apply_pending()
        except StoreUnavailable:
            self.store_ok = False
            return False
        if events:
            log.info("journal: replayed %d retained event(s)", len(events))
        return True

    async def record_consent(self, tenant: str, channel: Channel, identifier: str, *,
                             method: str, evidence: str | None = None,
                             detail: dict[str, str] | None = None,
                             status: int = CONSENT_GRANTED) -> int:
        """Record that the person consented (who, when, how, what they were shown).

        Consent is written straight to the store (503 when it is down): unlike an
        opt-out, a lost consent only means a marketing message is not sent.
        ``status=CONSENT_PENDING``: double opt-in, confirmed by the person's YES later.
        Returns the time recorded (ms).
        """
        at = now_ms()
        info: dict[str, str] = {"method": method, **(detail or {})}
        if evidence is not None:
            info["evidence"] = evidence
        if status == CONSENT_PENDING:
            info["status"] = "pending"  # the audit tells a pending consent from a granted one
        # An erased person cannot be permissioned again by the API or an import: the store
        # refuses the write in the same call that checks.
        if not await self.store.record_consent(tenant, channel, identifier, status=status,
                                               at_ms=at, event_id=new_event_id(),
                                               source=method, detail=info):
            raise OptedOut(subjects.erased_message(identifier, channel), field="identifier")
        return at

    # -- checks -------------------------------------------------------------

    def _overlay(self, tenant: str, channel: Channel, identifier: str) -> tuple[int, bool] | None:
        hit = self._recent.get((tenant, channel, identifier))
        if hit is None:
            return None
        return hit[1].at_ms, hit[1].action == "opt_out"

    async def suppressed(self, tenant: str, channel: Channel,
                         identifiers: Sequence[str]) -> list[bool]:
        """Whether each normalised identifier is suppressed, in input order.

        Fails closed: if Redis cannot answer, identifiers with an acknowledged
        opt-out are known suppressed; any other makes it raise StoreUnavailable.
        """
        return (await self.suppressed_and(tenant, channel, identifiers))[0]

    async def suppressed_and(self, tenant: str, channel: Channel, identifiers: Sequence[str],
                             also: Sequence[Sequence[str | int]] = ()
                             ) -> tuple[list[bool], list[Any] | None]:
        """``suppressed``, plus the replies of the store commands ``also`` in the same round
        trip (None when Redis is down and every identifier is known suppressed)."""
        try:
            entries, replies = await self.store.entries_and(tenant, channel, identifiers, also)
        except StoreUnavailable:
            known = [self._overlay(tenant, channel, i) for i in identifiers]
            if all(k is not None and k[1] for k in known):
                return [True] * len(identifiers), None
            raise
        out = []
        for ident, entry in zip(identifiers, entries, strict=True):
            state = (entry.at_ms, entry.active) if entry is not None else None
            over = self._overlay(tenant, channel, ident)
            if over is not None and (state is None or _wins(over, state)):
                state = over
            out.append(state is not None and state[1])
        return out, replies

    async def get(self, tenant: str, channel: Channel, identifier: str) -> Suppression | None:
        """The active suppression of one identifier, honouring journalled events."""
        hit = self._recent.get((tenant, channel, identifier))
        try:
            entry = (await self.store.entries(tenant, channel, [identifier]))[0]
        except StoreUnavailable:
            if hit is not None and hit[1].action == "opt_out":
                return from_event(hit[1])
            raise
        if entry is not None and entry.active and hit is not None and hit[1].action == "opt_out":
            hit = None  # both say suppressed: the stored entry has the first time and reason
        if hit is not None and (entry is None or _wins(
                (hit[1].at_ms, hit[1].action == "opt_out"), (entry.at_ms, entry.active))):
            return from_event(hit[1]) if hit[1].action == "opt_out" else None
        if entry is None or not entry.active:
            return None
        return to_suppression(tenant, channel, identifier, entry)

    async def send_state(self, tenant: str, channel: Channel, identifier: str
                         ) -> tuple[bool, tuple[int, int] | None, list[int]]:
        """(suppressed, consent, recent send times) for a send decision, one round trip.

        During an outage an acknowledged opt-out still answers "suppressed";
        anything else raises StoreUnavailable (fail closed).
        """
        try:
            entry, consent, sends = await self.store.send_state(tenant, channel, identifier)
        except StoreUnavailable:
            over = self._overlay(tenant, channel, identifier)
            if over is not None and over[1]:
                return True, None, []
            raise
        state = (entry.at_ms, entry.active) if entry is not None else None
        over = self._overlay(tenant, channel, identifier)
        if over is not None and (state is None or _wins(over, state)):
            state = over
        return state is not None and state[1], consent, sends

    async def check(self, tenant: str, channel: Channel, raw: Sequence[str], *,
                    default_region: str = "US") -> list[CheckResult]:
        """Bulk check of raw identifiers: normalise each, one store round trip for all."""
        normalized: list[str | None] = []
        errors: list[str | None] = []
        for item in raw:
            try:
                normalized.append(normalize(channel, item, default_region=default_region))
                errors.append(None)
            except GatewayError as exc:
                normalized.append(None)
                errors.append(exc.message)
        valid = [n for n in normalized if n is not None]
        flags = iter(await self.suppressed(tenant, channel, valid))
        return [
            CheckResult(item, norm, next(flags) if norm is not None else None, err)
            for item, norm, err in zip(raw, normalized, errors, strict=True)
        ]


def from_event(ev: OptEvent) -> Suppression:
    return Suppression(tenant=ev.tenant, channel=ev.channel, identifier=ev.identifier,
                       reason=ev.reason, source=ev.source, created_at_ms=ev.at_ms,
                       scope=ev.scope)
