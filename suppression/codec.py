"""Compact encodings of suppression entries and consent states for Redis hashes.

An entry value is one integer, so Redis stores it in a listpack as a 64-bit
int (9 bytes + 1) instead of a string:

    value = (at_ms - EPOCH_MS) << 9 | active << 8 | reason << 4 | source

``at_ms`` is the time of the event that set the state (ms since 2020, 41 bits,
good until 2089), so the whole value stays below 2**53 and Lua (doubles)
compares it exactly. ``active`` = 0 is an opt-in tombstone: it remembers that
a later opt-in lifted the suppression so that a replayed older opt-out cannot
bring it back. Phone fields drop the leading ``+`` so Redis stores them as
integers too: ~20 bytes per entry in all.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Channel, Reason, Source

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
_REASONS = list(Reason)
_SOURCES = list(Source)
MAX_CODE = 16


@dataclass(frozen=True, slots=True)
class EntryState:
    at_ms: int
    active: bool
    reason: Reason
    source: Source


def encode_entry(state: EntryState) -> int:
    delta = state.at_ms - EPOCH_MS
    if not 0 <= delta < 1 << 41:
        raise ValueError(f"event time {state.at_ms} is outside the storable range")
    return (
        delta << 9
        | int(state.active) << 8
        | _REASONS.index(state.reason) << 4
        | _SOURCES.index(state.source)
    )


def decode_entry(raw: bytes | str | int) -> EntryState:
    value = int(raw)
    return EntryState(
        at_ms=(value >> 9) + EPOCH_MS,
        active=bool(value >> 8 & 1),
        reason=_REASONS[value >> 4 & 0xF],
        source=_SOURCES[value & 0xF],
    )


def encode_field(channel: Channel, identifier: str) -> str:
    if channel is Channel.SMS and identifier.startswith("+"):
        return identifier[1:]
    return identifier


def decode_field(channel: Channel, field: bytes | str) -> str:
    text = field.decode() if isinstance(field, bytes) else field
    if channel is Channel.SMS and text[:1].isdigit():
        return "+" + text
    return text


assert len(_REASONS) <= MAX_CODE and len(_SOURCES) <= MAX_CODE
