"""Value types shared by the service, the store and the edges."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Reason(StrEnum):
    """Why an identifier is suppressed. The order is part of the stored encoding: append only."""

    STOP_KEYWORD = "stop_keyword"
    UNSUBSCRIBE_CLICK = "unsubscribe_click"
    ONE_CLICK = "one_click"
    MAILTO = "mailto"
    COMPLAINT = "complaint"
    BOUNCE = "bounce"
    MANUAL = "manual"
    IMPORT = "import"
    # Opt-in reasons (what lifted a suppression).
    OPT_IN_KEYWORD = "opt_in_keyword"
    OPT_IN_MANUAL = "opt_in_manual"
    OPT_IN_PREFERENCES = "opt_in_preferences"  # a topic re-subscribed in the preference centre


class Source(StrEnum):
    """Which door an opt-out or opt-in came through. Append only (stored encoding)."""

    SMS = "sms"  # an inbound text (STOP/START)
    WEB = "web"  # unsubscribe page, one-click POST, preference centre
    EMAIL = "email"  # mailto unsubscribe, complaint, bounce
    API = "api"  # ops REST API
    CLI = "cli"  # ops command line
    IMPORT = "import"  # bulk import
    UPSTREAM = "upstream"  # a provider told us (e.g. Twilio 21610)
    CONSOLE = "console"  # ops web console


Action = Literal["opt_out", "opt_in"]

# Scopes narrower than "everything from the tenant on this channel" live beside the
# identifier's own entry, in the same bucket, under "<identifier> <scope>": normalised
# identifiers never contain a space, so the two can never collide, and one round trip
# reads an identifier with all its scopes. A scope is an email topic (tenants.TOPIC_RE)
# or one of the reserved names below, which no topic id can spell.
SCOPE_SEP = " "
HARD_BOUNCE_SCOPE = "!bounce"  # the address does not exist: not even transactional mail


def scoped(identifier: str, scope: str) -> str:
    """The stored name of ``identifier``'s entry for ``scope`` ('' = the whole channel)."""
    return f"{identifier}{SCOPE_SEP}{scope}" if scope else identifier


def split_scoped(name: str) -> tuple[str, str]:
    identifier, _, scope = name.partition(SCOPE_SEP)
    return identifier, scope


def scope_label(scope: str) -> str:
    """How the API names a scope: 'tenant', 'topic:<id>' or 'hard_bounce'."""
    if not scope:
        return "tenant"
    if scope == HARD_BOUNCE_SCOPE:
        return "hard_bounce"
    return f"topic:{scope}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso_ms(at_ms: int) -> str:
    """An epoch-ms time as the API writes it: ISO 8601, UTC, milliseconds, 'Z'."""
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class OptEvent:
    """One opt-out or opt-in, as journalled and applied.

    Applying an event is idempotent and order-independent: the store keeps,
    per identifier, the state of the latest event by ``at_ms`` (an opt-out
    wins a tie), so replaying a journal after a crash cannot resurrect a stale
    state or lose a newer opt-out.
    """

    action: Action
    tenant: str
    channel: Channel
    identifier: str  # normalised
    reason: Reason
    source: Source
    at_ms: int = field(default_factory=now_ms)
    id: str = field(default_factory=new_event_id)
    # Free-form context for the audit trail: actor, key name, inbound message id...
    detail: dict[str, str] = field(default_factory=dict)
    scope: str = ""  # '' = every message of the channel; else a topic (see ``scoped``)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "tenant": self.tenant,
            "channel": self.channel.value,
            "identifier": self.identifier,
            "reason": self.reason.value,
            "source": self.source.value,
            "at_ms": self.at_ms,
            "detail": dict(self.detail),
            **({"scope": self.scope} if self.scope else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OptEvent:
        action = data["action"]
        if action not in ("opt_out", "opt_in"):
            raise ValueError(f"unknown action {action!r}")
        return cls(
            action=action,
            tenant=str(data["tenant"]),
            channel=Channel(data["channel"]),
            identifier=str(data["identifier"]),
            reason=Reason(data["reason"]),
            source=Source(data["source"]),
            at_ms=int(data["at_ms"]),
            id=str(data["id"]),
            detail={str(k): str(v) for k, v in dict(data.get("detail") or {}).items()},
            scope=str(data.get("scope") or ""),
        )

    @property
    def key(self) -> tuple[str, Channel, str]:
        return (self.tenant, self.channel, scoped(self.identifier, self.scope))


@dataclass(frozen=True, slots=True)
class Suppression:
    tenant: str
    channel: Channel
    identifier: str
    reason: Reason
    source: Source
    created_at_ms: int
    scope: str = ""  # see ``scoped``

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "identifier": self.identifier,
            "scope": scope_label(self.scope),
            "reason": self.reason.value,
            "source": self.source.value,
            "created_at": iso_ms(self.created_at_ms),
        }
