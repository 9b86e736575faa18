"""Quiet hours: may a marketing SMS reach this number now, and if not, when?

Pure functions, no I/O; the clock is injected (``now``), the answer is an aware
UTC datetime. Informational (transactional) messages are not solicitations, so
callers apply this to marketing traffic only (COMPLIANCE.md, SMS: Quiet hours).

The rules (COMPLIANCE.md, CONTRACT.md "SMS"):

* Federal (TCPA, 47 CFR 64.1200(c)(1)): no solicitation before 08:00 or after
  21:00 at the called party's local time. The gateway applies this window
  (:data:`FEDERAL_WINDOW`, 08:00 inclusive to 21:00 exclusive) to every
  number, whatever its country (CONTRACT.md: "08:00-21:00 at the recipient's
  local time (from the number)").
* Florida (FTSA, Fla. Stat. 501.616(6)(a)-(b)) and Oklahoma (Telephone
  Solicitation Act of 2022, 15 O.S. 775C.1 ff.): 08:00 to 20:00
  (:data:`STATE_WINDOW`) and at most 3 solicitations per 24 h. Residency is
  presumed from the area code (both laws create that rebuttable presumption),
  so every +1 number with a Florida or Oklahoma area code gets the state rule,
  wherever the phone actually is.

Where the recipient may be: :func:`rules_for` resolves the number to the tuple
of IANA zones it may be in, conservatively (more zones = fewer allowed hours):

* NANP (+1) numbers with a known area code: the union of every zone the
  ``phonenumbers`` time-zone data lists anywhere under that area code, plus the
  area codes it overlays (:data:`NANP_OVERLAYS`). ``phonenumbers`` resolves
  down to the exchange (NPA-NXX: 850-200 is Central, 850 by default Eastern),
  but a mobile number keeps its exchange while its owner lives anywhere in the
  area code's territory, pooled numbers are handed out across rate centres,
  and overlays (448 over 850, 364 over 270...) carry only a one-zone default.
  So a Pensacola phone with a Tallahassee exchange, or any 448 number, must
  satisfy both Eastern and Central time. This is the "residency presumed from
  the area code" reading applied to time zones.
* Other numbers: ``phonenumbers.timezone.time_zones_for_number`` (for mobile
  numbers in most countries, that is already the whole country's list).
* Unknown zone (``Etc/Unknown`` or nothing, i.e. the number is not valid for
  its metadata): the prefix lookup ``time_zones_for_geographical_number``,
  which falls back to the country calling code's list; for +1 with an
  unknown area code (usually a new area code, newer than the installed
  metadata) the contiguous United States (:data:`US_CONTIGUOUS_ZONES`),
  because that is where new NANP area codes almost always open.
* Non-geographic numbers with no zone at all (+800, +808, +870, +881, +882,
  +883, +888, +979: international freephone, satellite, networks): no local
  time can be established, so marketing to them is never inside the window
  (``zones == ()``, :func:`check_window` returns :data:`NEVER`).

The multi-zone rule (:func:`check_window`): ``now`` is allowed only when it is
inside the window in *every* zone the number may be in; otherwise the retry
time is the earliest later instant at which that holds. That instant is always
a window opening (local start time) in one of the zones, so it is found by
walking each zone's local calendar days, converting each day's local start to
UTC with zoneinfo (both folds on a fall-back day; the transition instant when
the start falls in a spring-forward gap), and keeping the first candidate that
is inside every zone's window. No hour arithmetic, so DST days come out right.

If no such instant exists within :data:`SEARCH_DAYS` days, the number is
treated as never inside the window and the retry time is :data:`NEVER`
(``datetime.max`` in UTC: "no retry will succeed"; callers refuse with
``quiet_hours`` and should not queue). That happens when the number has no
zone, or when its zones are too far apart for their windows to overlap (two
zones always share part of a 13-hour window; three or more spread around the
globe may not). We refuse rather than pick a time that is outside the window
somewhere the recipient may be. With the installed ``phonenumbers`` data every
zone list it holds and every NANP union above, including the 42 zones of the
NANP country-level list (+1 toll-free) and the 16 of a Russian mobile number,
shares a window every day (checked day by day over 2025-2026, both windows),
so in practice only zone-less numbers get :data:`NEVER`.

Known limit: a UTC-offset change can also *re-open* a window when local time
jumps back from at or after the window's end to before it (a fall-back
transition at 20:00-21:00 local). No zone that ``phonenumbers`` uses has had
or has scheduled such a transition since 1990, so those instants are not
candidates; if one appeared, the retry time could be late, never early.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from suppression.errors import InvalidRecipient

__all__ = [
    "FEDERAL_WINDOW",
    "FLORIDA_AREA_CODES",
    "NANP_OVERLAYS",
    "NEVER",
    "OKLAHOMA_AREA_CODES",
    "SEARCH_DAYS",
    "STATE_MAX_PER_24H",
    "STATE_WINDOW",
    "US_CONTIGUOUS_ZONES",
    "CallingWindow",
    "LocalRules",
    "check_window",
    "check_window_in_zones",
    "rules_for",
]


@dataclass(frozen=True)
class CallingWindow:
    """Local wall-clock hours during which solicitation is allowed.

    ``start`` is inclusive, ``end`` exclusive (21:00:00 is already too late).
    Naive ``time`` values, applied in each zone's local time; the window may
    not wrap midnight.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("CallingWindow times are local wall-clock times: pass naive times")
        if not self.start < self.end:
            raise ValueError("CallingWindow start must be before end (no wrap past midnight)")

    def contains(self, local: time) -> bool:
        """Whether a local wall-clock time is inside the window."""
        return self.start <= local < self.end


@dataclass(frozen=True)
class LocalRules:
    """What the recipient's location (presumed from the number) imposes."""

    window: CallingWindow  # 08:00-21:00 federal; 08:00-20:00 Florida / Oklahoma
    max_per_24h: int | None  # 3 under FTSA / Oklahoma TSA, None otherwise
    zones: tuple[str, ...]  # IANA zones the number may be in, sorted; () = unknown
    state_rule: str | None  # "FL" / "OK" / None: which state law applies


# TCPA, 47 CFR 64.1200(c)(1): not before 8 a.m. or after 9 p.m. local time.
FEDERAL_WINDOW: Final = CallingWindow(time(8, 0), time(21, 0))
# Fla. Stat. 501.616(6)(a) and the Oklahoma Telephone Solicitation Act of 2022:
# not before 8 a.m. or after 8 p.m. local time at the called person's location.
STATE_WINDOW: Final = CallingWindow(time(8, 0), time(20, 0))
# Fla. Stat. 501.616(6)(b) and the Oklahoma act: at most three solicitation
# calls (texts count) to a person over a 24-hour period on the same subject.
STATE_MAX_PER_24H: Final = 3

# Area codes in service or assigned, checked against phonenumbers' geocoder in
# tests/test_quiet_hours.py (which found 689, the Orlando overlay, missing
# from the first draft of this list).
FLORIDA_AREA_CODES: Final = frozenset(
    "239 305 321 324 352 386 407 448 561 645 656 689 727 728 754 772 786 813 850 863"
    " 904 941 954".split()
)
OKLAHOMA_AREA_CODES: Final = frozenset("405 539 572 580 918".split())

# NANP overlays whose parent area code spans several zones in phonenumbers'
# exchange-level data while phonenumbers gives the overlay a single default
# zone (or, for 474, a wrong one: Winnipeg observes DST, Saskatchewan does
# not). An overlay covers the same territory as its parents, so it gets the
# union of their zones. Each pair is checked in tests against the geocoder
# (same state or province).
NANP_OVERLAYS: Final[Mapping[str, tuple[str, ...]]] = {
    "448": ("850",),  # Florida panhandle: Eastern and Central
    "364": ("270",),  # western Kentucky: Central and Eastern
    "930": ("812",),  # southern Indiana: Eastern and Central
    "458": ("541",),  # Oregon: Pacific and Mountain (Malheur County)
    "986": ("208",),  # Idaho: Pacific and Mountain
    "236": ("250", "604"),  # British Columbia: Pacific and Mountain (East Kootenay)
    "257": ("250", "604"),
    "672": ("250", "604"),
    "778": ("250", "604"),
    "367": ("418",),  # eastern Quebec: Eastern and Atlantic
    "581": ("418",),
    "474": ("306",),  # Saskatchewan
    "639": ("306",),
    "879": ("709",),  # Newfoundland and Labrador
}

# Fallback for +1 numbers whose area code the metadata does not know.
US_CONTIGUOUS_ZONES: Final = (
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/New_York",
    "America/Phoenix",
)

# How far ahead check_window looks for an instant inside every zone's window.
SEARCH_DAYS: Final = 7

# "No retry will succeed": the infimum of an empty set of instants.
NEVER: Final = datetime.max.replace(tzinfo=UTC)

_UNKNOWN_ZONES: Final = frozenset({pn_timezone.UNKNOWN_TIMEZONE})


@functools.lru_cache(maxsize=1 << 16)  # ~19 us a call, twice per marketing send
def rules_for(e164: str) -> LocalRules:
    """The calling window, frequency cap and zones that apply to ``e164``.

    ``e164`` should be a normalised number (``suppression.identifiers``); any
    string ``phonenumbers`` can parse is accepted, and one it cannot parse
    raises :class:`~suppression.errors.InvalidRecipient`.
    """
    number = _parse(e164)
    zones = _zones_for(number)
    state = _state_rule(number)
    if state is None:
        return LocalRules(window=FEDERAL_WINDOW, max_per_24h=None, zones=zones, state_rule=None)
    return LocalRules(
        window=STATE_WINDOW, max_per_24h=STATE_MAX_PER_24H, zones=zones, state_rule=state
    )


def check_window(e164: str, now: datetime) -> datetime | None:
    """``None`` if a marketing SMS to ``e164`` may go at ``now``, else the retry time.

    ``now`` must be aware (UTC expected; any offset is accepted). Returns
    ``None`` if ``now`` is inside the number's calling window in EVERY zone the
    number may be in; otherwise the earliest aware-UTC instant after ``now``
    at which it is inside the window in every zone. If there is no such instant
    within :data:`SEARCH_DAYS` days (windows that never overlap, or a number
    with no zone at all), returns :data:`NEVER`: the send can never be made.
    ``rules_for(e164).zones`` tells the caller which zones were applied.
    """
    rules = rules_for(e164)
    return check_window_in_zones(rules.zones, rules.window, now)


def check_window_in_zones(
    zones: Sequence[str], window: CallingWindow, now: datetime
) -> datetime | None:
    """:func:`check_window` for explicit IANA zones and window.

    An empty ``zones`` means the local time is unknown: :data:`NEVER`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC)")
    now = now.astimezone(UTC)
    tzs = [_zone(name) for name in zones]
    if not tzs:
        return NEVER
    if _inside_all(tzs, window, now):
        return None
    # Each zone's window starts come in time order; merging them lazily means
    # only the candidates up to the answer are ever computed or checked.
    starts = (_window_starts(tz, window.start, now) for tz in tzs)
    for candidate in heapq.merge(*starts):
        if candidate > now and _inside_all(tzs, window, candidate):
            return candidate
    return NEVER


# --- zones -------------------------------------------------------------------


def _parse(e164: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidRecipient(
            "The phone number could not be read; send it in E.164 form, e.g. +14155550123."
        ) from exc


def _known(zones: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(zones) - _UNKNOWN_ZONES))


def _zones_for(number: phonenumbers.PhoneNumber) -> tuple[str, ...]:
    if number.country_code == 1:
        area_code = _nanp_area_code(number)
        zones = _nanp_area_code_zones(area_code) if area_code else ()
        if zones:
            return zones
        zones = _known(pn_timezone.time_zones_for_number(number))
        return zones or US_CONTIGUOUS_ZONES
    zones = _known(pn_timezone.time_zones_for_number(number))
    if not zones:
        zones = _known(pn_timezone.time_zones_for_geographical_number(number))
    return zones


@functools.cache
def _nanp_area_code_zones(area_code: str) -> tuple[str, ...]:
    """Every zone phonenumbers lists under an area code and the codes it overlays.

    Keyed by area code (never by a person's number), so caching holds no
    personal data; at most ~800 entries.
    """
    zones: set[str] = set()
    for code in (area_code, *NANP_OVERLAYS.get(area_code, ())):
        prefix = "1" + code
        for key, names in TIMEZONE_DATA.items():
            if key.startswith(prefix):
                zones.update(names)
    return _known(zones)


def _nanp_area_code(number: phonenumbers.PhoneNumber) -> str | None:
    national = phonenumbers.national_significant_number(number)
    return national[:3] if len(national) >= 3 else None


def _state_rule(number: phonenumbers.PhoneNumber) -> str | None:
    if number.country_code != 1:
        return None
    area_code = _nanp_area_code(number)
    if area_code in FLORIDA_AREA_CODES:
        return "FL"
    if area_code in OKLAHOMA_AREA_CODES:
        return "OK"
    return None


# --- window arithmetic --------------------------------------------------------


@functools.cache
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo keeps only 8 zones strongly cached and re-reads the file for the
    # rest; a 42-zone number would reload them on every call. ~300 names exist.
    return ZoneInfo(name)


def _inside_all(tzs: Sequence[ZoneInfo], window: CallingWindow, instant: datetime) -> bool:
    return all(window.contains(instant.astimezone(tz).time()) for tz in tzs)


def _window_starts(tz: ZoneInfo, start: time, now: datetime) -> Iterator[datetime]:
    """UTC instants at which the local clock in ``tz`` reaches ``start``.

    In time order: one per local day from the day before ``now``'s local date
    to :data:`SEARCH_DAYS` days after it; two on a fall-back day that repeats
    ``start``; the transition instant when ``start`` falls in a gap.
    """
    today = now.astimezone(tz).date()
    for offset in range(-1, SEARCH_DAYS + 1):
        yield from _local_to_utc(datetime.combine(today + timedelta(days=offset), start), tz)


def _local_to_utc(wall: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        # The wall time exists: once, or twice (fold 0 then fold 1) in a fall-back.
        yield first
        if second != first:
            yield second
        return
    # Spring-forward gap: the clock jumps over `wall`. fold=1 maps to an
    # instant before the jump (the clock reads earlier than `wall`), fold=0 to
    # one after it; the clock first reads `wall` or later at the jump itself.
    yield _first_at_or_after(wall, tz, lo=second, hi=first)


def _first_at_or_after(wall: datetime, tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """Earliest whole-second instant in (lo, hi] whose local time in ``tz`` is >= ``wall``.

    ``lo`` reads earlier than ``wall`` and ``hi`` reads later. UTC offsets
    change at whole seconds, so bisecting on seconds is exact.
    """
    lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)
