"""Bulk import and export of suppression lists (CSV or JSON lines), streaming.

Import reads rows lazily and works in batches of ``batch_size`` rows, so memory
stays constant whatever the file size: each batch is normalised, deduplicated,
checked against the store in one round trip, and its new entries go through
the service's single write path (``record``: journal + fsync, then Redis).
Importing the same file twice adds nothing the second time.

Export walks the store's cursor pages and writes as it goes.

Input decoding: UTF-8 (a leading BOM, as Excel writes, is skipped). Bytes that
are not UTF-8 are kept as lone surrogates (``surrogateescape``), so the row
holding them is refused by normalisation with its line number instead of the
whole file failing or garbage being imported.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber, ValidationResult

from .errors import InvalidRecipient, StoreUnavailable
from .identifiers import normalize
from .models import Channel, OptEvent, Reason, Source
from .service import SuppressionService
from .store import RedisStore

__all__ = [
    "EXPORT_COLUMNS",
    "Format",
    "IMPORT_REASONS",
    "IDENTIFIER_COLUMNS",
    "ImportReport",
    "MAX_KEPT_ERRORS",
    "Row",
    "export_rows",
    "fast_e164",
    "format_for_path",
    "import_rows",
    "iter_rows",
    "open_input",
]

Format = Literal["csv", "jsonl"]

# Header names that mark a CSV column as the identifier, in order of preference.
IDENTIFIER_COLUMNS = ("identifier", "phone_number", "phone", "number", "email", "address")
REASON_COLUMN = "reason"
EXPORT_COLUMNS = ("channel", "identifier", "scope", "reason", "source", "created_at")
MAX_KEPT_ERRORS = 1000
MAX_JSONL_LINE_CHARS = 64 * 1024
PENDING_POLL_S = 0.05
# Opt-in reasons describe what lifted a suppression; an import only suppresses.
IMPORT_REASONS = frozenset(r for r in Reason if not r.value.startswith("opt_in"))

# A file without an extension is taken for a plain list, one identifier a line.
_EXTENSIONS: dict[str, Format] = {
    "": "csv", ".csv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One input row: its 1-based line number, the raw identifier, an optional reason.

    ``error`` is set when the line itself could not be read (bad JSON, missing
    column): such a row is counted invalid without being normalised.
    """

    line: int
    identifier: str
    reason: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- reading


def format_for_path(path: str) -> Format | None:
    """The format implied by a file name's extension, or None if it does not say."""
    return _EXTENSIONS.get(Path(path).suffix.lower())


def open_input(path: str | os.PathLike[str]) -> IO[str]:
    """Open a file for ``iter_rows`` (raises OSError if it cannot be read)."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def iter_rows(source: IO[str] | str | os.PathLike[str], fmt: Format) -> Iterator[Row]:
    """Stream the rows of a CSV or JSON-lines input (a path or an open text stream).

    CSV: if the first row names a column ``identifier``, ``phone``, ``phone_number``,
    ``number``, ``email`` or ``address`` (any case; ``Phone Number`` and
    ``phone-number`` count as ``phone_number``), it is a header and that
    column holds the identifier, and a ``reason`` column, if any, the reason;
    otherwise every row's first column is the identifier. JSON lines: one object
    per line with ``"identifier"`` and optionally ``"reason"``. Blank lines are
    skipped; a line that cannot be read becomes a Row with ``error`` set.
    """
    if isinstance(source, str | os.PathLike):
        with open_input(source) as stream:
            yield from iter_rows(stream, fmt)
        return
    if fmt == "csv":
        yield from _csv_rows(source)
    elif fmt == "jsonl":
        yield from _jsonl_rows(source)
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _header_columns(cells: list[str]) -> tuple[int, int | None] | None:
    """(identifier column, reason column) if ``cells`` is a header row, else None."""
    names = [c.strip().lower().replace(" ", "_").replace("-", "_") for c in cells]
    for wanted in IDENTIFIER_COLUMNS:
        if wanted in names:
            reason = names.index(REASON_COLUMN) if REASON_COLUMN in names else None
            return names.index(wanted), reason
    return None


def _csv_rows(stream: IO[str]) -> Iterator[Row]:
    reader = csv.reader(stream)
    ident_col, reason_col = 0, None
    first = True
    end = 0  # physical line where the previous record ended
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num == end:
                return  # no progress: the reader cannot go on
            yield Row(end + 1, "", error=f"The line is not valid CSV ({exc}).")
            end = reader.line_num
            continue
        start, end = end + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if first:
            first = False
            header = _header_columns(cells)
            if header is not None:
                ident_col, reason_col = header
                continue
        if ident_col >= len(cells):
            yield Row(start, "", error=f"The row has {len(cells)} column(s); the identifier "
                                         f"is in column {ident_col + 1}.")
            continue
        reason = cells[reason_col].strip() if reason_col is not None and \
            reason_col < len(cells) else ""
        yield Row(start, cells[ident_col], reason or None)


def _jsonl_rows(stream: IO[str]) -> Iterator[Row]:
    number = 0
    while True:
        text = stream.readline(MAX_JSONL_LINE_CHARS)
        if not text:
            return
        number += 1
        if len(text) == MAX_JSONL_LINE_CHARS and not text.endswith(("\n", "\r")):
            while (rest := stream.readline(MAX_JSONL_LINE_CHARS)) and \
                    not rest.endswith(("\n", "\r")):
                pass
            yield Row(number, "",
                      error=f"The line is longer than {MAX_JSONL_LINE_CHARS} characters.")
            continue
        if not text.strip():
            continue
        yield _jsonl_row(number, text)


def _jsonl_row(number: int, text: str) -> Row:
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or a bad surrogate
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        col = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return Row(number, "", error=f"The line is not valid JSON ({msg}{col}).")
    if not isinstance(data, dict):
        return Row(number, "", error='The line is not a JSON object with an "identifier".')
    ident = data.get("identifier")
    if ident is None:
        return Row(number, "", error='The object has no "identifier".')
    if not isinstance(ident, str):
        return Row(number, "", error=f'"identifier" must be a string, not {_json_type(ident)}.')
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        return Row(number, ident, error=f'"reason" must be a string, not {_json_type(reason)}.')
    return Row(number, ident, reason.strip() or None if reason is not None else None)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- normalising

_E164 = re.compile(r"\+([1-9][0-9]{6,15})")


@lru_cache(maxsize=1024)
def _plan(country_code: int) -> tuple[PhoneMetadata, re.Pattern[str] | None] | None:
    """The metadata ``phonenumbers.parse`` would use for a country code, and its
    national-prefix-for-parsing pattern (None if the plan has none)."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing
    return metadata, re.compile(prefix) if prefix else None


def fast_e164(raw: str) -> str | None:
    """The normalised form of input already in E.164, or None to take the full path.

    Gives exactly what ``normalize_phone`` gives (the same validity test:
    possible length, then ``is_valid_number``) while skipping the parsing that
    plain ``+<digits>`` does not need: ``phonenumbers.parse`` on such input
    takes the country code off the front and only changes the rest when the
    plan's national prefix matches it, or it starts with 0. Those cases, and
    every invalid number (for its precise message), go the full way.
    """
    match = _E164.fullmatch(raw)
    if match is None:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):  # country codes are prefix-free: at most one matches
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    if len(national) < 2 or national[0] == "0":
        return None
    plan = _plan(country_code)
    if plan is None:
        return None
    _, prefix = plan
    if prefix is not None and prefix.match(national):
        return None
    number = PhoneNumber(country_code=country_code, national_number=int(national))
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return raw


def _normalizer(channel: Channel, default_region: str) -> Callable[[str], str]:
    if channel is Channel.SMS:
        def sms(raw: str) -> str:
            return fast_e164(raw) or normalize(channel, raw, default_region=default_region)
        return sms

    def other(raw: str) -> str:
        return normalize(channel, raw, default_region=default_region)
    return other


# --------------------------------------------------------------------------- import


@dataclass(slots=True)
class ImportReport:
    """What an import did. ``errors`` keeps the first ``MAX_KEPT_ERRORS`` invalid
    rows as (line, message); ``invalid`` counts them all."""

    added: int = 0
    duplicate: int = 0
    invalid: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.added + self.duplicate + self.invalid

    def add_error(self, line: int, message: str) -> None:
        self.invalid += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append((line, message))

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "duplicate": self.duplicate, "invalid": self.invalid,
                "errors": [{"line": line, "message": msg} for line, msg in self.errors]}


def _row_reason(row: Row, default: Reason) -> Reason | str:
    """The row's reason, or a message saying why it is not one an import may set."""
    if row.reason is None:
        return default
    try:
        reason = Reason(row.reason.lower())
    except ValueError:
        reason = None
    if reason is None or reason not in IMPORT_REASONS:
        allowed = ", ".join(sorted(r.value for r in IMPORT_REASONS))
        return f"The reason {row.reason[:48]!r} is not one of: {allowed}."
    return reason


def _prepare(rows: list[Row], normal: Callable[[str], str], default: Reason,
             report: ImportReport) -> dict[str, Reason]:
    """Normalise a batch: invalid rows and repeats are counted in ``report``; the
    rest are returned (normalised identifier -> reason, in input order)."""
    fresh: dict[str, Reason] = {}
    for row in rows:
        if row.error is not None:
            report.add_error(row.line, row.error)
            continue
        try:
            ident = normal(row.identifier)
        except InvalidRecipient as exc:
            report.add_error(row.line, exc.message)
            continue
        reason = _row_reason(row, default)
        if not isinstance(reason, Reason):  # (Reason is a str too)
            report.add_error(row.line, reason)
        elif ident in fresh:
            report.duplicate += 1
        else:
            fresh[ident] = reason
    return fresh


async def import_rows(
    service: SuppressionService,
    tenant: str,
    channel: Channel,
    rows: Iterable[Row],
    *,
    default_region: str,
    reason: Reason = Reason.IMPORT,
    source: Source = Source.IMPORT,
    batch_size: int = 1000,
    detail: dict[str, str] | None = None,
    on_progress: Callable[[ImportReport], None] | None = None,
    report: ImportReport | None = None,
    pending_wait_s: float = 30.0,
) -> ImportReport:
    """Suppress every valid identifier of ``rows`` for the tenant; idempotent.

    ``service`` is a ``SuppressionService``. Rows are taken ``batch_size`` at a
    time; per batch: normalise (refusals are ``invalid``), drop repeats, ask the
    store which are already suppressed (one round trip; ``duplicate``), and
    record opt-outs for the rest (``added``) through ``service.record`` (journal
    fsync, then Redis). An opt-in tombstone is not a suppression, so an import
    re-suppresses someone who had opted back in: the list being imported says so.
    ``on_progress`` is called with the running report after each batch; pass
    ``report`` to have the counts so far at hand if the import is interrupted.

    If Redis misses a batch (the events are then durable in the journal only),
    the import waits up to ``pending_wait_s`` for the service to apply them
    before going on, so the next batch's check sees them and memory stays
    bounded; after that it raises ``StoreUnavailable`` (the journalled events
    are applied when the store is back).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = ImportReport() if report is None else report
    normal = _normalizer(channel, default_region)
    info = dict(detail or {})
    batch: list[Row] = []

    async def flush() -> None:
        fresh = _prepare(batch, normal, reason, report)
        batch.clear()
        if fresh:
            idents = list(fresh)
            flags = await service.suppressed(tenant, channel, idents)
            events = [
                OptEvent("opt_out", tenant, channel, ident, fresh[ident], source, detail=info)
                for ident, done in zip(idents, flags, strict=True) if not done
            ]
            report.duplicate += len(idents) - len(events)
            await service.record(events, remember=False)
            report.added += len(events)
            if service.pending_count:
                await _drained(service, pending_wait_s)
        if on_progress is not None:
            on_progress(report)

    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    return report


async def _drained(service: SuppressionService, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while service.pending_count:
        if time.monotonic() >= deadline:
            raise StoreUnavailable(
                f"The suppression store did not accept {service.pending_count} journalled "
                f"opt-out(s) within {wait_s:g}s; the import stopped. They are kept in the "
                "journal and applied when the store is back; import the file again then.")
        await asyncio.sleep(PENDING_POLL_S)


# --------------------------------------------------------------------------- export


async def export_rows(store: RedisStore, tenant: str, channel: Channel, out: IO[str],
                      fmt: Format, *, page_size: int = 1000) -> int:
    """Write every active suppression of the tenant and channel; return how many.

    CSV has a header row and the columns of ``EXPORT_COLUMNS``; JSON lines has one
    object per line, the same fields as the REST API's items.
    """
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    elif fmt != "jsonl":
        raise ValueError(f"unknown format {fmt!r}")
    count = 0
    cursor: str | None = None
    while True:
        items, cursor = await store.list_page(tenant, channel, cursor=cursor, limit=page_size,
                                              query=None)
        for item in items:
            data = item.to_json()
            if writer is not None:
                writer.writerow([data[c] for c in EXPORT_COLUMNS])
            else:
                out.write(json.dumps(data, ensure_ascii=False) + "\n")
        count += len(items)
        if cursor is None:
            return count
