"""Quiet hours: the calling window at the recipient's local time, from the number."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import geocoder
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from suppression.errors import InvalidRecipient
from suppression.quiet_hours import (
    FEDERAL_WINDOW,
    FLORIDA_AREA_CODES,
    NANP_OVERLAYS,
    NEVER,
    OKLAHOMA_AREA_CODES,
    STATE_WINDOW,
    US_CONTIGUOUS_ZONES,
    CallingWindow,
    check_window,
    check_window_in_zones,
    rules_for,
)

NEW_YORK = "+12125550123"
SAN_FRANCISCO = "+14155550123"
MIAMI = "+13055550123"
OKLAHOMA_CITY = "+14055550123"
TULSA = "+19185550123"
PENSACOLA = "+18502002345"  # an exchange phonenumbers puts on Central time
FL_PANHANDLE_OVERLAY = "+14482345678"
NORTH_DAKOTA = "+17012345678"
TUBA_CITY = "+19282832345"  # Navajo Nation: Mountain with DST, inside Arizona without
TOLL_FREE = "+18002345678"
UNKNOWN_AREA_CODE = "+15555550100"
RUSSIA_MOBILE = "+79161234567"
AUSTRALIA_MOBILE = "+61412345678"
UK_MOBILE = "+447400123456"
BERLIN = "+493012345678"
GERMAN_MOBILE = "+4915123456789"
INTERNATIONAL_FREEPHONE = "+80012345678"

# Numbers whose zones share a daily window (all real ones do; see below).
PROPERTY_NUMBERS = [
    NEW_YORK,
    SAN_FRANCISCO,
    MIAMI,
    OKLAHOMA_CITY,
    PENSACOLA,
    FL_PANHANDLE_OVERLAY,
    NORTH_DAKOTA,
    TUBA_CITY,
    TOLL_FREE,
    UNKNOWN_AREA_CODE,
    RUSSIA_MOBILE,
    AUSTRALIA_MOBILE,
    UK_MOBILE,
    GERMAN_MOBILE,
    "+64211234567",  # New Zealand mobile: Auckland and Chatham (+12:45)
    "+9779841234567",  # Nepal (+5:45)
    "+68672001234",  # Kiribati: +12, +13, +14
    "+56221234567",  # Chile: DST in the southern summer
    "+12505550123",  # British Columbia: Pacific and Mountain
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    zone: str, year: int, month: int, day: int, hour: int, minute: int, second: int = 0
) -> datetime:
    """An unambiguous local wall time in `zone`, as aware UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def inside_everywhere(zones: tuple[str, ...], window: CallingWindow, instant: datetime) -> bool:
    """Reference check, independent of the module's helpers."""
    return all(window.start <= instant.astimezone(ZoneInfo(z)).time() < window.end for z in zones)


# --------------------------------------------------------------------- single zone


def test_new_york_edges() -> None:
    # New York number at 07:59 / 08:00 / 20:59 / 21:00 local on an ordinary winter day.
    ny = "America/New_York"
    assert check_window(NEW_YORK, local(ny, 2025, 1, 15, 7, 59)) == local(ny, 2025, 1, 15, 8, 0)
    assert check_window(NEW_YORK, local(ny, 2025, 1, 15, 8, 0)) is None
    assert check_window(NEW_YORK, local(ny, 2025, 1, 15, 20, 59)) is None
    assert check_window(NEW_YORK, local(ny, 2025, 1, 15, 21, 0)) == local(ny, 2025, 1, 16, 8, 0)
    assert check_window(NEW_YORK, local(ny, 2025, 1, 15, 20, 59, 59)) is None
    rules = rules_for(NEW_YORK)
    assert rules.window == FEDERAL_WINDOW
    assert (rules.max_per_24h, rules.state_rule, rules.zones) == (None, None, ("America/New_York",))


def test_retry_is_aware_utc() -> None:
    # The retry time is aware UTC, whatever offset `now` came with.
    now = datetime(2025, 1, 15, 7, 0, tzinfo=ZoneInfo("America/New_York"))
    retry = check_window(NEW_YORK, now)
    assert retry == utc(2025, 1, 15, 13, 0)
    assert retry is not None and retry.tzinfo is UTC


def test_california_when_new_york_is_past_nine() -> None:
    # California number when it is 21:30 in New York (18:30 in California): allowed.
    now = local("America/New_York", 2025, 1, 15, 21, 30)
    assert check_window(SAN_FRANCISCO, now) is None
    assert check_window(NEW_YORK, now) is not None
    assert rules_for(SAN_FRANCISCO).zones == ("America/Los_Angeles",)


def test_florida_eight_pm_and_three_a_day() -> None:
    # Florida number at 20:30 local: refused under FTSA, retry next day 08:00 local, cap 3.
    ny = "America/New_York"
    assert check_window(MIAMI, local(ny, 2025, 1, 15, 20, 30)) == local(ny, 2025, 1, 16, 8, 0)
    assert check_window(MIAMI, local(ny, 2025, 1, 15, 19, 59)) is None
    assert check_window(MIAMI, local(ny, 2025, 1, 15, 20, 0)) == local(ny, 2025, 1, 16, 8, 0)
    rules = rules_for(MIAMI)
    assert rules.window == STATE_WINDOW == CallingWindow(time(8), time(20))
    assert (rules.max_per_24h, rules.state_rule) == (3, "FL")


def test_oklahoma_eight_pm_and_three_a_day() -> None:
    # Oklahoma numbers (405, 918) at 19:59 / 20:00 Central: the state's 20:00 close applies.
    ct = "America/Chicago"
    for number in (OKLAHOMA_CITY, TULSA):
        assert check_window(number, local(ct, 2025, 6, 10, 19, 59)) is None
        assert check_window(number, local(ct, 2025, 6, 10, 20, 0)) == local(ct, 2025, 6, 11, 8, 0)
        rules = rules_for(number)
        assert (rules.window, rules.max_per_24h, rules.state_rule) == (STATE_WINDOW, 3, "OK")
        assert rules.zones == ("America/Chicago",)


def test_uk_mobile() -> None:
    # UK mobile in summer (BST, all four British Isles zones agree): 07:59 refused, 08:00 allowed.
    assert set(rules_for(UK_MOBILE).zones) >= {"Europe/London", "Europe/Jersey"}
    assert check_window(UK_MOBILE, utc(2025, 7, 1, 6, 59)) == utc(2025, 7, 1, 7, 0)
    assert check_window(UK_MOBILE, utc(2025, 7, 1, 7, 0)) is None
    rules = rules_for(UK_MOBILE)
    assert (rules.window, rules.max_per_24h, rules.state_rule) == (FEDERAL_WINDOW, None, None)


def test_germany() -> None:
    # Berlin landline and German mobile at 21:00 CET: refused until 08:00 CET next day.
    for number in (BERLIN, GERMAN_MOBILE):
        assert rules_for(number).zones == ("Europe/Berlin",)
        assert check_window(number, utc(2025, 1, 15, 19, 59)) is None
        assert check_window(number, utc(2025, 1, 15, 20, 0)) == utc(2025, 1, 16, 7, 0)


# ---------------------------------------------------------------------- multi zone


def test_north_dakota_needs_mountain_and_central() -> None:
    # North Dakota (701 spans Central and Mountain) at 08:30 Central = 07:30 Mountain: wait.
    zones = rules_for(NORTH_DAKOTA).zones
    assert {"America/Chicago", "America/Denver"} <= set(zones)
    now = local("America/Chicago", 2025, 1, 15, 8, 30)
    assert check_window(NORTH_DAKOTA, now) == local("America/Denver", 2025, 1, 15, 8, 0)
    # ...and it closes at 21:00 Central even though it is 20:00 in Mountain.
    now = local("America/Chicago", 2025, 1, 15, 21, 0)
    assert check_window(NORTH_DAKOTA, now) == local("America/Denver", 2025, 1, 16, 8, 0)


def test_florida_panhandle_is_eastern_and_central() -> None:
    # 850 (and its 448 overlay) span Eastern and Central: 08:00-20:00 must hold in both.
    for number in (PENSACOLA, FL_PANHANDLE_OVERLAY):
        rules = rules_for(number)
        assert rules.zones == ("America/Chicago", "America/New_York")
        assert (rules.window, rules.state_rule) == (STATE_WINDOW, "FL")
        ct = "America/Chicago"
        assert check_window(number, local(ct, 2025, 1, 15, 7, 30)) == local(ct, 2025, 1, 15, 8, 0)
        assert check_window(number, local(ct, 2025, 1, 15, 18, 59)) is None
        # 19:00 Central is 20:00 Eastern: closed until 08:00 Central (09:00 Eastern).
        assert check_window(number, local(ct, 2025, 1, 15, 19, 0)) == local(ct, 2025, 1, 16, 8, 0)
    # phonenumbers alone would say Eastern only for the overlay: 07:00 Central would pass.
    overlay = phonenumbers.parse(FL_PANHANDLE_OVERLAY)
    assert pn_timezone.time_zones_for_number(overlay) == ("America/New_York",)


def test_navajo_nation_mountain_and_arizona_in_summer() -> None:
    # 928-283 (Tuba City) may be on MDT or on Arizona's MST: in July both must be inside.
    assert rules_for(TUBA_CITY).zones == ("America/Denver", "America/Phoenix")
    # 14:30 UTC = 08:30 MDT but 07:30 MST: wait for 08:00 MST = 15:00 UTC.
    assert check_window(TUBA_CITY, utc(2025, 7, 15, 14, 30)) == utc(2025, 7, 15, 15, 0)
    # 03:00 UTC = 21:00 MDT (closed) though 20:00 MST: next opening 15:00 UTC.
    assert check_window(TUBA_CITY, utc(2025, 7, 16, 2, 59)) is None
    assert check_window(TUBA_CITY, utc(2025, 7, 16, 3, 0)) == utc(2025, 7, 16, 15, 0)
    # In January both read the same clock.
    assert check_window(TUBA_CITY, utc(2025, 1, 15, 15, 0)) is None


def test_russian_mobile_all_sixteen_zones() -> None:
    # Russian mobile: phonenumbers gives the whole country (UTC+2..+12); only 06:00-09:00 UTC fit.
    zones = rules_for(RUSSIA_MOBILE).zones
    assert len(zones) == 16 and {"Europe/Moscow", "Asia/Anadyr"} <= set(zones)
    # 10:00 UTC: 22:00 in Anadyr. Next: 08:00 in the westernmost zone (EET) = 06:00 UTC.
    assert check_window(RUSSIA_MOBILE, utc(2025, 1, 15, 10, 0)) == utc(2025, 1, 16, 6, 0)
    assert check_window(RUSSIA_MOBILE, utc(2025, 1, 16, 8, 59)) is None
    assert check_window(RUSSIA_MOBILE, utc(2025, 1, 16, 9, 0)) == utc(2025, 1, 17, 6, 0)
    # In July that zone is on EEST: it opens an hour earlier in UTC.
    assert check_window(RUSSIA_MOBILE, utc(2025, 7, 15, 4, 30)) == utc(2025, 7, 15, 5, 0)


def test_australian_mobile_cocos_to_lord_howe() -> None:
    # Australian mobile: Cocos (+6:30) to Lord Howe/Sydney (+11 in summer), all inside.
    zones = rules_for(AUSTRALIA_MOBILE).zones
    assert {"Indian/Cocos", "Australia/Perth", "Australia/Sydney", "Australia/Lord_Howe"} <= set(
        zones
    )
    # 00:30 UTC = 07:00 in Cocos: wait for 08:00 there (01:30 UTC).
    assert check_window(AUSTRALIA_MOBILE, utc(2025, 1, 15, 0, 30)) == utc(2025, 1, 15, 1, 30)
    # 10:00 UTC = 21:00 in Sydney (AEDT): closed until Cocos opens tomorrow.
    assert check_window(AUSTRALIA_MOBILE, utc(2025, 1, 15, 10, 0)) == utc(2025, 1, 16, 1, 30)
    # In July Sydney is on +10 and Lord Howe on +10:30: open until 10:30 UTC.
    assert check_window(AUSTRALIA_MOBILE, utc(2025, 7, 15, 10, 29)) is None
    assert check_window(AUSTRALIA_MOBILE, utc(2025, 7, 15, 10, 30)) == utc(2025, 7, 16, 1, 30)


# ------------------------------------------------------------- unknown-zone fallback


def test_unknown_area_code_falls_back_to_contiguous_us() -> None:
    # +1 555 is no area code: phonenumbers says Etc/Unknown, we use the contiguous US zones.
    number = phonenumbers.parse(UNKNOWN_AREA_CODE)
    assert pn_timezone.time_zones_for_number(number) == (pn_timezone.UNKNOWN_TIMEZONE,)
    assert rules_for(UNKNOWN_AREA_CODE).zones == US_CONTIGUOUS_ZONES
    # 10:00 Eastern is 07:00 Pacific: wait for 08:00 Pacific.
    now = local("America/New_York", 2025, 1, 15, 10, 0)
    assert check_window(UNKNOWN_AREA_CODE, now) == local("America/Los_Angeles", 2025, 1, 15, 8, 0)


def test_invalid_non_nanp_number_uses_its_prefix() -> None:
    # A too-short London number: time_zones_for_number gives up, the 4420 prefix still says London.
    number = phonenumbers.parse("+44207946095")
    assert not phonenumbers.is_valid_number(number)
    assert pn_timezone.time_zones_for_number(number) == (pn_timezone.UNKNOWN_TIMEZONE,)
    assert rules_for("+44207946095").zones == ("Europe/London",)


def test_toll_free_uses_the_whole_nanp() -> None:
    # +1 800 is not geographic: all 42 NANP zones (Guam to Newfoundland) still share ~2 h a day.
    zones = rules_for(TOLL_FREE).zones
    assert len(zones) == 42 and {"Pacific/Guam", "Pacific/Pago_Pago", "America/St_Johns"} <= set(
        zones
    )
    now = utc(2025, 1, 15, 3, 0)
    retry = check_window(TOLL_FREE, now)
    assert retry is not None and retry != NEVER
    assert check_window(TOLL_FREE, retry) is None and retry - now <= timedelta(hours=48)


def test_non_geographic_number_is_never_inside() -> None:
    # International freephone (+800) has no zone at all: no local time, never allowed.
    assert rules_for(INTERNATIONAL_FREEPHONE).zones == ()
    for now in (utc(2025, 1, 15, 12, 0), utc(2025, 7, 1, 0, 0)):
        assert check_window(INTERNATIONAL_FREEPHONE, now) == NEVER
    assert check_window_in_zones((), FEDERAL_WINDOW, utc(2025, 1, 1)) == NEVER


def test_zones_that_never_overlap_are_never_inside() -> None:
    # Synthetic: UTC-8, UTC and UTC+8: 13-hour windows 8 h apart have no common instant.
    # (Two zones always share one: 13 h windows overlap at any offset mod 24 h.)
    zones = ("Etc/GMT+8", "Etc/GMT", "Etc/GMT-8")
    assert check_window_in_zones(zones, FEDERAL_WINDOW, utc(2025, 1, 15, 12, 0)) == NEVER
    pair = ("Pacific/Kiritimati", "Pacific/Pago_Pago")  # +14 and -11: 25 h apart
    assert check_window_in_zones(pair, FEDERAL_WINDOW, utc(2025, 1, 15, 12, 0)) == utc(
        2025, 1, 15, 19, 0
    )


def test_unparseable_number_is_invalid_recipient() -> None:
    # Garbage is refused as invalid_recipient, never a crash.
    with pytest.raises(InvalidRecipient):
        rules_for("not a number")
    with pytest.raises(InvalidRecipient):
        check_window("", utc(2025, 1, 15))


def test_naive_now_is_refused() -> None:
    # The injected clock must be aware.
    with pytest.raises(ValueError):
        check_window(NEW_YORK, datetime(2025, 1, 15, 12, 0))


def test_calling_window_validation() -> None:
    # Windows are local, non-wrapping, end exclusive.
    with pytest.raises(ValueError):
        CallingWindow(time(21), time(8))
    with pytest.raises(ValueError):
        CallingWindow(time(8, tzinfo=UTC), time(21))
    assert FEDERAL_WINDOW.contains(time(8)) and not FEDERAL_WINDOW.contains(time(21))


# ------------------------------------------------------------------------------ DST


def test_spring_forward_day() -> None:
    # New York, 9 Mar 2025: 01:00 EST, clocks jump at 02:00; 08:00 EDT is 12:00 UTC, not 13:00.
    now = utc(2025, 3, 9, 6, 0)  # 01:00 EST
    assert check_window(NEW_YORK, now) == utc(2025, 3, 9, 12, 0)
    # 21:00 EDT that evening: next 08:00 EDT.
    assert check_window(NEW_YORK, utc(2025, 3, 10, 1, 0)) == utc(2025, 3, 10, 12, 0)
    # Berlin, 30 Mar 2025: 21:30 CET the night before -> 08:00 CEST = 06:00 UTC.
    assert check_window(BERLIN, utc(2025, 3, 29, 20, 30)) == utc(2025, 3, 30, 6, 0)


def test_fall_back_day() -> None:
    # New York, 2 Nov 2025: 01:30 EDT (first pass) -> 08:00 EST = 13:00 UTC, not 12:00.
    assert check_window(NEW_YORK, utc(2025, 11, 2, 5, 30)) == utc(2025, 11, 2, 13, 0)
    # 01:30 EST (second pass) -> the same.
    assert check_window(NEW_YORK, utc(2025, 11, 2, 6, 30)) == utc(2025, 11, 2, 13, 0)
    # 21:00 EDT on 1 Nov -> 08:00 EST on 2 Nov.
    assert check_window(NEW_YORK, utc(2025, 11, 2, 1, 0)) == utc(2025, 11, 2, 13, 0)
    # 20:59 EST on 2 Nov is still inside; 21:00 EST (02:00 UTC) is not.
    assert check_window(NEW_YORK, utc(2025, 11, 3, 1, 59)) is None
    assert check_window(NEW_YORK, utc(2025, 11, 3, 2, 0)) == utc(2025, 11, 3, 13, 0)


def test_window_start_in_a_gap_opens_at_the_jump() -> None:
    # Synthetic 02:30 start on the spring-forward day: 02:30 never happens, 03:00 EDT does.
    window = CallingWindow(time(2, 30), time(21))
    now = utc(2025, 3, 9, 6, 0)  # 01:00 EST
    assert check_window_in_zones(("America/New_York",), window, now) == utc(2025, 3, 9, 7, 0)


def test_window_start_repeated_on_fall_back_day() -> None:
    # Synthetic 01:30-01:45 window on the fall-back day: it opens twice (EDT, then EST).
    window = CallingWindow(time(1, 30), time(1, 45))
    ny = ("America/New_York",)
    assert check_window_in_zones(ny, window, utc(2025, 11, 2, 5, 0)) == utc(2025, 11, 2, 5, 30)
    assert check_window_in_zones(ny, window, utc(2025, 11, 2, 5, 40)) is None
    assert check_window_in_zones(ny, window, utc(2025, 11, 2, 5, 50)) == utc(2025, 11, 2, 6, 30)


def test_skipped_calendar_day() -> None:
    # Samoa skipped 30 Dec 2011 (UTC-10 -> +14): from 21:00 on the 29th, next is 08:00 on the 31st.
    now = local("Pacific/Apia", 2011, 12, 29, 21, 0)
    retry = check_window_in_zones(("Pacific/Apia",), FEDERAL_WINDOW, now)
    assert retry == local("Pacific/Apia", 2011, 12, 31, 8, 0) == utc(2011, 12, 30, 18, 0)


# ------------------------------------------------------------------------ properties

NOWS = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@given(number=st.sampled_from(PROPERTY_NUMBERS), now=NOWS)
@settings(deadline=None, max_examples=300)
def test_retry_time_is_inside_later_and_soon(number: str, now: datetime) -> None:
    # For any `now`: None means inside every zone; a retry is later, inside, within 48 h, earliest.
    rules = rules_for(number)
    retry = check_window(number, now)
    if retry is None:
        assert inside_everywhere(rules.zones, rules.window, now)
        return
    assert not inside_everywhere(rules.zones, rules.window, now)
    assert retry != NEVER, "these zones share a window every day"
    assert now < retry <= now + timedelta(hours=48)
    assert retry.tzinfo is UTC
    assert check_window(number, retry) is None
    assert inside_everywhere(rules.zones, rules.window, retry)
    assert check_window(number, retry - timedelta(microseconds=1)) is not None


@given(
    number=st.sampled_from(
        [NEW_YORK, MIAMI, NORTH_DAKOTA, TUBA_CITY, AUSTRALIA_MOBILE, "+64211234567"]
    ),
    now=NOWS,
)
@settings(deadline=None, max_examples=25)
def test_retry_time_is_the_earliest(number: str, now: datetime) -> None:
    # Brute force, minute by minute: nothing between `now` and the retry time is inside.
    # (Openings fall on whole minutes: windows and UTC offsets are whole minutes.)
    rules = rules_for(number)
    retry = check_window(number, now)
    if retry is None:
        return
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t < retry:
        assert not inside_everywhere(rules.zones, rules.window, t), t
        t += timedelta(minutes=1)


# -------------------------------------------------------------- data cross-checks


def _example(area_code: str) -> phonenumbers.PhoneNumber:
    for rest in ("5550123", "2345678"):
        number = phonenumbers.parse(f"+1{area_code}{rest}")
        if phonenumbers.is_valid_number(number):
            return number
    raise AssertionError(f"no valid example number for area code {area_code}")


def _state_of(description: str) -> str | None:
    if description == "Florida" or description.endswith(", FL"):
        return "FL"
    if description == "Oklahoma" or description.endswith(", OK"):
        return "OK"
    return None


def test_state_area_codes_agree_with_geocoder() -> None:
    # Every listed FL/OK area code geocodes to that state, and no other area code does.
    # (This caught 689, the Orlando overlay, missing from the first list.)
    listed = {code: "FL" for code in FLORIDA_AREA_CODES} | {
        code: "OK" for code in OKLAHOMA_AREA_CODES
    }
    for code, state in listed.items():
        number = _example(code)
        assert _state_of(geocoder.description_for_number(number, "en")) == state, code
        assert phonenumbers.region_code_for_number(number) == "US"
        assert rules_for(phonenumbers.format_number(number, 0)).state_rule == state
    geocoded: dict[str, str] = {}
    for npa in range(200, 1000):
        for rest in ("5550123", "2345678"):
            number = phonenumbers.parse(f"+1{npa}{rest}")
            if phonenumbers.is_valid_number(number):
                found = _state_of(geocoder.description_for_number(number, "en"))
                if found:
                    geocoded[str(npa)] = found
                break
    assert geocoded == listed


def test_overlays_share_their_parents_territory() -> None:
    # Each overlay in NANP_OVERLAYS geocodes to its parents' state/province and gains their zones.
    for overlay, parents in NANP_OVERLAYS.items():
        # phonenumbers spells 257 "British Colombia": compare the first word only.
        place = geocoder.description_for_number(_example(overlay), "en").split()[0]
        zones = set(rules_for(phonenumbers.format_number(_example(overlay), 0)).zones)
        for parent in parents:
            assert geocoder.description_for_number(_example(parent), "en").split()[0] == place
            assert set(rules_for(phonenumbers.format_number(_example(parent), 0)).zones) <= zones


def test_every_phonenumbers_zone_loads() -> None:
    # Every IANA name phonenumbers can return exists in the zoneinfo database in use.
    names = {z for zones in TIMEZONE_DATA.values() for z in zones} - {pn_timezone.UNKNOWN_TIMEZONE}
    for name in sorted(names):
        ZoneInfo(name)


def test_every_real_zone_list_shares_a_daily_window() -> None:
    # Every multi-zone list phonenumbers holds (and our NANP unions) has a common window,
    # so NEVER is reserved for zone-less numbers. Sampled across a year and DST changes.
    lists = {tuple(sorted(set(v) - {pn_timezone.UNKNOWN_TIMEZONE})) for v in TIMEZONE_DATA.values()}
    # NANP zones depend on the area code only, so any seven digits will do.
    lists |= {
        rules_for(f"+1{key[1:4]}2345678").zones
        for key in TIMEZONE_DATA
        if key.startswith("1") and len(key) >= 4
    }
    days = [utc(2026, month, day, 12) for month in range(1, 13) for day in (1, 16)]
    days += [utc(2026, 3, 9, 5), utc(2026, 3, 29, 23), utc(2026, 4, 5, 9), utc(2026, 10, 4, 9)]
    for zones in (z for z in lists if len(z) > 1):
        for window in (FEDERAL_WINDOW, STATE_WINDOW):
            for now in days:
                retry = check_window_in_zones(zones, window, now)
                assert retry is None or retry - now <= timedelta(hours=48), (zones, now)
