"""Whole datasets of one tenant, read in batches for exports; and the tenant-level audit.

``authorize_export`` is the one domain call behind every export (HTTP and CLI): it asks
``sharing.decide_sharing``, counts what an allowed export will hold, and audits the
decision, allowed or refused, with who asked, before a byte of data is read.

Reading a dataset never loads it whole:

- suppression lists walk the store's own listing (``RedisStore.list_page``: the
  used-bucket bitmaps, 256 buckets per round trip), so scoped entries and any later
  change of the entry format are exported exactly as the API lists them;
- consents and message records have no bitmap: their sizes come from one Lua call per
  shard (1,024 buckets, one slot, so cluster-safe), all pipelined in one round trip,
  which also tells which buckets are worth reading; those are then read 256 a trip.

Counts are taken up front (``X-Export-Records``): Redis-side, one round trip per
dataset (two for suppression lists), a few hundred bytes of reply whatever the size.
A count is the state when the export started; records written while it streams may
make the body differ by those records.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from redis.exceptions import NoScriptError

from . import keys
from .bulk import EXPORT_COLUMNS
from .codec import decode_entry, decode_field
from .errors import InvalidRequest, SharingProhibited
from .models import Channel, iso_ms, new_event_id, now_ms
from .sharing import Dataset, SharingDecision, SharingRequest, decide_sharing
from .store import (
    CONSENT_STATUS,
    RedisStore,
    Script,
    decode_consent,
    json_object,
    parse_audit,
    parse_message,
)
from .tenants import Tenant

log = logging.getLogger(__name__)

ExportFormat = Literal["jsonl", "csv"]
READ_BATCH = 256  # buckets read per round trip
SUPPRESSION_PAGE = 1000  # suppressions per listing call (one chunk of the stream)
BULK_TIMEOUT_S = 2.0  # a whole-shard size scan is one call: more than a send's budget
AUDIT_PAGE_MAX = 1000
EXPORT_EVENT = "export"

SIZES = Script("sizes")  # sizes of many keys of one slot (lua/sizes.lua)

SUPPRESSION_COLUMNS = EXPORT_COLUMNS  # the same rows as the CLI export
CONSENT_COLUMNS = ("channel", "identifier", "status", "consented_at", "method", "evidence",
                   "recorded_by", "opted_out_at", "detail")
MESSAGE_COLUMNS = ("channel", "id", "at", "from", "to", "category", "outcome", "code",
                   "upstream_id", "actor", "footer_added")
COLUMNS: dict[Dataset, tuple[str, ...]] = {
    Dataset.SMS_CONSENTS: CONSENT_COLUMNS,
    Dataset.SMS_SUPPRESSIONS: SUPPRESSION_COLUMNS,
    Dataset.EMAIL_SUPPRESSIONS: SUPPRESSION_COLUMNS,
    Dataset.MESSAGE_RECORDS: MESSAGE_COLUMNS,
}
MESSAGE_CHANNELS = (Channel.SMS, Channel.EMAIL)
Bucket = tuple[Channel, int]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DatasetPlan:
    """What one dataset's export will read: its record count, and for datasets without a
    used-bucket bitmap, the (channel, bucket) pairs that hold anything."""

    dataset: Dataset
    count: int
    buckets: tuple[Bucket, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """An allowed, audited export: what to stream, in which format, and its audit id."""

    id: str
    tenant: str
    request: SharingRequest
    decision: SharingDecision
    format: ExportFormat
    datasets: tuple[DatasetPlan, ...] = ()

    @property
    def total(self) -> int:
        return sum(d.count for d in self.datasets)


class DatasetStore:
    """Dataset reads and the tenant audit on top of the store's client and time budget."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.timeout_s = max(store.op_timeout_s, BULK_TIMEOUT_S)

    async def _run(self, what: str, commands: Sequence[Sequence[str | int]]) -> list[Any]:
        async def go() -> list[Any]:
            try:
                return await self.store._pipeline(commands)
            except NoScriptError:  # a restarted Redis forgot the script: load, retry once
                await self.store.client.script_load(SIZES.source)
                return await self.store._pipeline(commands)

        return await self.store._call(what, go, self.timeout_s)

    # -- sizes ----------------------------------------------------------------------

    async def _sizes(self, groups: Sequence[tuple[list[Bucket], list[str]]], mode: str
                     ) -> tuple[int, list[Bucket]]:
        """Total size and non-empty buckets of key groups (one group = one shard's keys)."""
        commands: list[list[str | int]] = [["EVALSHA", *SIZES.args(k, [mode])]
                                           for _, k in groups if k]
        used = [b for b, k in groups if k]
        replies = await self._run("export.count", commands) if commands else []
        total, found = 0, []
        for buckets, flat in zip(used, replies, strict=True):
            for i in range(0, len(flat), 2):
                found.append(buckets[int(flat[i]) - 1])
                total += int(flat[i + 1])
        return total, found

    async def plan(self, tenant: str, dataset: Dataset) -> DatasetPlan:
        if dataset in (Dataset.SMS_SUPPRESSIONS, Dataset.EMAIL_SUPPRESSIONS):
            channel = _suppression_channel(dataset)
            used = await self.store._used_buckets(tenant, channel, 0)
            groups: dict[int, tuple[list[Bucket], list[str]]] = {}
            for b in used:
                bs, ks = groups.setdefault(keys.shard_of(b), ([], []))
                bs.append((channel, b))
                ks.append(keys.suppressions(tenant, channel, b))
            count, _ = await self._sizes(list(groups.values()), "active")
            return DatasetPlan(dataset, count)
        if dataset is Dataset.SMS_CONSENTS:
            count, found = await self._sizes(
                _all_buckets(tenant, (Channel.SMS,), keys.consents), "hlen")
        elif dataset is Dataset.MESSAGE_RECORDS:
            count, found = await self._sizes(
                _all_buckets(tenant, MESSAGE_CHANNELS, keys.messages), "llen")
        else:  # a new dataset must be taught here as well as in sharing.DATASETS
            raise InvalidRequest(f"dataset '{dataset.value}' cannot be exported yet",
                                 field="datasets")
        return DatasetPlan(dataset, count, tuple(found))

    # -- rows ---------------------------------------------------------------------

    async def rows(self, tenant: str, plan: DatasetPlan) -> AsyncIterator[list[Row]]:
        """The dataset's records, a batch (one or a few round trips) at a time."""
        if plan.dataset in (Dataset.SMS_SUPPRESSIONS, Dataset.EMAIL_SUPPRESSIONS):
            channel = _suppression_channel(plan.dataset)
            cursor: str | None = None
            while True:
                items, cursor = await self.store.list_page(
                    tenant, channel, cursor=cursor, limit=SUPPRESSION_PAGE, query=None)
                if items:
                    yield [i.to_json() for i in items]
                if cursor is None:
                    return
        for i in range(0, len(plan.buckets), READ_BATCH):
            batch = plan.buckets[i:i + READ_BATCH]
            if plan.dataset is Dataset.SMS_CONSENTS:
                yield await self._consent_rows(tenant, [b for _, b in batch])
            else:
                yield await self._message_rows(tenant, batch)

    async def _consent_rows(self, tenant: str, buckets: list[int]) -> list[Row]:
        ch = Channel.SMS
        commands: list[tuple[str, ...]] = []
        for b in buckets:
            commands += [("HGETALL", keys.consents(tenant, ch, b)),
                         ("HGETALL", keys.suppressions(tenant, ch, b)),
                         ("LRANGE", keys.audit(tenant, ch, b), "0", "-1")]
        replies = await self._run("export.consents", commands)
        out: list[Row] = []
        for i in range(0, len(replies), 3):
            consents, sups, audit = replies[i:i + 3]
            out += _consents_of_bucket(ch, consents, sups, audit)
        return out

    async def _message_rows(self, tenant: str, buckets: Sequence[Bucket]) -> list[Row]:
        commands = [("LRANGE", keys.messages(tenant, ch, b), "0", "-1") for ch, b in buckets]
        replies = await self._run("export.messages", commands)
        out: list[Row] = []
        for (ch, _), lines in zip(buckets, replies, strict=True):
            for raw in lines:
                record = parse_message(raw)
                if record is None:
                    log.warning("skipping an unreadable message record")
                    continue
                out.append({"channel": ch.value, **record})
        return out

    # -- tenant audit ---------------------------------------------------------------

    async def append_tenant_audit(self, tenant: str, record: Row) -> None:
        """Append one tenant-level audit record (kept like the rest of the audit trail)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        key = keys.tenant_audit(tenant)
        await self.store._call("tenant_audit", partial(self.store._pipeline,
                                                       [("RPUSH", key, line)]))

    async def tenant_audit(self, tenant: str, *, kind: str | None = None, limit: int = 100,
                           cursor: str | None = None) -> tuple[list[Row], str | None]:
        """Records newest first, ``limit`` a page; the cursor is the list position to go on
        from (positions count from the oldest record, so new records do not shift it)."""
        key = keys.tenant_audit(tenant)
        if cursor is not None and not re.fullmatch(r"[0-9]{1,12}", cursor):
            raise InvalidRequest("'cursor' is not a cursor this API returned; start again "
                                 "without it", field="cursor")
        last = int(await self.store._call("tenant_audit",
                                          lambda: self.store.client.llen(key))) - 1
        # A cursor past the end (made up, or from before a trim) starts at the newest record
        # instead of stepping down to it 100 positions per Redis call.
        end = last if cursor is None else min(int(cursor), last)
        items: list[Row] = []
        window = max(limit, 100)
        while end >= 0 and len(items) < limit:
            start = max(0, end - window + 1)
            rows: Any = await self.store._call(
                "tenant_audit", partial(self.store.client.lrange, key, start, end))
            for pos in range(len(rows) - 1, -1, -1):
                record = _parse_record(rows[pos])
                if record is not None and (kind is None or record.get("type") == kind):
                    items.append(record)
                    if len(items) == limit:
                        end = start + pos - 1
                        return items, str(end) if end >= 0 else None
            end = start - 1
        return items, None


def _suppression_channel(dataset: Dataset) -> Channel:
    return Channel.SMS if dataset is Dataset.SMS_SUPPRESSIONS else Channel.EMAIL


def _all_buckets(tenant: str, channels: Sequence[Channel], key: Any
                 ) -> list[tuple[list[Bucket], list[str]]]:
    """Every bucket of the channels, grouped by shard (one group = one slot)."""
    groups = []
    for ch in channels:
        for shard in range(keys.SHARDS):
            first = shard * keys.BUCKETS_PER_SHARD
            buckets = [(ch, b) for b in range(first, first + keys.BUCKETS_PER_SHARD)]
            groups.append((buckets, [key(tenant, ch, b) for _, b in buckets]))
    return groups


def _consents_of_bucket(ch: Channel, consents: dict[bytes, bytes], sups: dict[bytes, bytes],
                        audit: list[bytes]) -> list[Row]:
    # The evidence is in the audit trail: the latest consent or opt-in record of each number.
    evidence: dict[str, Any] = {}
    for raw in audit:
        entry = parse_audit(ch, raw)
        # A topic opt-in (detail names a scope) is not consent to the channel.
        if entry is not None and entry.type in ("consent", "opt_in") \
                and "scope" not in entry.detail:
            evidence[entry.identifier] = entry  # oldest first: the last one wins
    out = []
    for name, field_, raw in sorted((decode_field(ch, f), f, v) for f, v in consents.items()):
        status, at_ms = decode_consent(raw)
        sup = sups.get(field_)  # the number's own entry: consent and it share the field
        state = decode_entry(sup) if sup is not None else None
        entry = evidence.get(name)
        detail: dict[str, Any] = dict(entry.detail) if entry is not None else {}
        method = detail.pop("method", entry.source if entry is not None else None)
        out.append({
            "channel": ch.value, "identifier": name,
            "status": CONSENT_STATUS.get(status, "unknown"), "consented_at": iso_ms(at_ms),
            "method": method, "evidence": detail.pop("evidence", None),
            "recorded_by": detail.get("key_name") or detail.get("actor"),
            # STOP wins over consent: a suppressed number is not messaged whatever this says.
            "opted_out_at": iso_ms(state.at_ms) if state is not None and state.active else None,
            "detail": detail,
        })
    return out


def _parse_record(raw: bytes | str) -> Row | None:
    record = json_object(raw)
    if record is None:
        log.warning("skipping an unreadable tenant audit record")
    return record


# -- the decision -----------------------------------------------------------------------


async def authorize_export(datasets: DatasetStore, tenant: Tenant, request: SharingRequest, *,
                           fmt: ExportFormat, actor: dict[str, str], via: str,
                           count: bool = True) -> ExportPlan:
    """Decide, count (when ``count``), audit; raise SharingProhibited after auditing a refusal.

    No decision without its audit record: if the audit cannot be written the call raises
    StoreUnavailable and nothing is exported.
    """
    if fmt == "csv" and len(request.datasets) > 1:
        raise InvalidRequest("a CSV export holds one dataset (one set of columns): ask for "
                             "one dataset, or use format 'jsonl'", field="format")
    decision = decide_sharing(request, tenant.sharing)
    export_id = new_event_id()
    at = now_ms()
    record: Row = {
        # at_ms: the retention sweeper dates tenant-audit lines by it (trim_tenant.lua).
        "id": export_id, "type": EXPORT_EVENT, "at": iso_ms(at), "at_ms": at, "via": via,
        "actor": actor, "datasets": [d.value for d in request.datasets],
        "recipient": request.recipient.to_json(), "purpose": request.purpose.value,
        "format": fmt, "allowed": decision.allowed, "rule": decision.rule,
        "rules": {d.value: rule for d, rule in decision.rules}, "message": decision.message,
        "records": None,
    }
    if not decision.allowed:
        await datasets.append_tenant_audit(tenant.id, record)
        log.warning("export refused for tenant %s by rule %s (%s)", tenant.id, decision.rule,
                    actor)
        raise SharingProhibited(f"{decision.message} (rule: {decision.rule})",
                                rule=decision.rule)
    plans = [await datasets.plan(tenant.id, d) for d in request.datasets] if count else []
    if count:
        record["records"] = {p.dataset.value: p.count for p in plans}
    await datasets.append_tenant_audit(tenant.id, record)
    log.info("export %s allowed for tenant %s by %s (%s)", export_id, tenant.id,
             decision.rule, actor)
    return ExportPlan(export_id, tenant.id, request, decision, fmt, tuple(plans))


# -- rendering --------------------------------------------------------------------------

_FORMULA_START = ("=", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-][0-9][0-9 ().-]*")


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection): text
    starting with = @ tab CR, or + - not followed by a number, gets a leading quote;
    E.164 numbers stay as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = str(value)
    if text.startswith(_FORMULA_START) or (
            text[:1] in "+-" and text and not _SIGNED_NUMBER.fullmatch(text)):
        return "'" + text
    return text


def render(dataset: Dataset, rows: Sequence[Row], fmt: ExportFormat, *,
           header: bool = False) -> str:
    """Rows as JSON lines (each with its ``dataset``) or CSV (the dataset's columns)."""
    if fmt == "jsonl":
        return "".join(json.dumps({"dataset": dataset.value, **r}, ensure_ascii=False) + "\n"
                       for r in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
    columns = COLUMNS[dataset]
    if header:
        writer.writerow(columns)
    for r in rows:
        writer.writerow([csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


async def export_text(datasets: DatasetStore, plan: ExportPlan) -> AsyncIterator[str]:
    """The export's body, a chunk per batch read (a CSV export holds one dataset)."""
    for dp in plan.datasets:
        if plan.format == "csv":
            yield render(dp.dataset, [], "csv", header=True)
        async for rows in datasets.rows(plan.tenant, dp):
            yield render(dp.dataset, rows, plan.format)
