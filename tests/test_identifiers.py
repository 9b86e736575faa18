"""Identifier normalisation: every spelling of one recipient maps to one key."""

from __future__ import annotations

import re
import string

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from suppression.errors import InvalidRecipient
from suppression.identifiers import (
    clear_caches,
    mask,
    normalize,
    normalize_email,
    normalize_phone,
)
from suppression.models import Channel

KEY = "+14155550123"
FULL_WIDTH = str.maketrans("0123456789+", "０１２３４５６７８９＋")


# --------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    "raw",
    [
        "+14155550123",
        "+1 415 555 0123",
        "+1 (415) 555-0123",
        "(415) 555-0123",
        "415.555.0123",
        "415-555-0123",
        "4155550123",
        "1-415-555-0123",
        "14155550123",
        "  +1 415-555-0123  ",
        "tel:+14155550123",
        "tel:+1-415-555-0123",
        "TEL:+1-415-555-0123",
        "011 1 415 555 0123",
        "１４１５５５５０１２３",
        "＋１ ４１５ ５５５ ０１２３",
        "\u200e+1 415 555 0123\u200f",
        "+1\u2011415\u2011555\u20110123",
    ],
)
def test_phone_formats_share_one_key(raw: str) -> None:
    # Scenario: every common US spelling of one number normalises to the same E.164 key.
    assert normalize_phone(raw) == KEY


@pytest.mark.parametrize(
    ("raw", "region", "key"),
    [
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("00 44 20 7946 0958", "DE", "+442079460958"),
        ("030 901820", "DE", "+4930901820"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("4155550123", "us", KEY),
    ],
)
def test_phone_national_formats_use_default_region(raw: str, region: str, key: str) -> None:
    # Scenario: national spellings resolve through default_region; IDD prefixes are understood.
    assert normalize_phone(raw, region) == key
    assert normalize(Channel.SMS, raw, default_region=region) == key


@pytest.mark.parametrize("raw", ["+14155550100", "+12025550123", "+18005550100", "2025550199"])
def test_fictional_555_01xx_numbers_are_accepted(raw: str) -> None:
    # Scenario: the 555-01xx numbers used in docs and tests are valid recipients.
    assert normalize_phone(raw).startswith("+1")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", "'abc' is not a phone number"),
        ("ACME", "'ACME' is not a phone number"),
        ("+1 415 555", "'+1 415 555' is too short to be a phone number"),
        ("911", "too short"),
        ("+1 415 555 0123 4567 89", "too long"),
        ("1-800-FLOWERS", "contains letters"),
        ("Acme1", "contains letters"),
        ("+1 415 555 0123 ext. 5", "contains letters"),
        ("415 555 0123 #5", "'#' cannot appear"),
        ("415 555 0123;ext=5", "';' cannot appear"),
        ("+999 123 4567", "unknown country calling code"),
        ("+10000000000", "not a valid number in the +1 (US) numbering plan"),
        ("+11235550123", "not a valid number"),
        ("+15555550100", "not a valid number"),
        ("4155550123\r\n", "control character"),
        ("415\x00555\x000123", "control character"),
        ("", "empty"),
        ("   ", "empty"),
        ("a@example.com", "not a phone number"),
        ("4" * 65, "too long (65 characters; at most 64)"),
    ],
)
def test_bad_phones_are_refused_with_a_reason(raw: str, message: str) -> None:
    # Scenario: garbage, sender IDs, vanity spellings and impossible numbers are refused by name.
    with pytest.raises(InvalidRecipient, match=re.escape(message)) as info:
        normalize_phone(raw)
    assert info.value.code == "invalid_recipient"


def test_national_number_with_unknown_default_region_is_refused() -> None:
    # Scenario: a national number with an unusable default region asks for international form.
    with pytest.raises(InvalidRecipient, match="international form"):
        normalize_phone("4155550123", "ZZ")


@pytest.mark.parametrize("raw", [4155550123, None, b"+14155550123", ["+14155550123"]])
def test_non_string_input_is_refused(raw: object) -> None:
    # Scenario: non-str identifiers (JSON numbers, bytes, null) are refused, not crashed on.
    with pytest.raises(InvalidRecipient, match="must be a string"):
        normalize_phone(raw)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecipient, match="must be a string"):
        normalize_email(raw)  # type: ignore[arg-type]


_REGIONS = ("US", "GB", "DE", "FR")
_TYPES = (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE)


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    """A valid number of a real region: its example number with the last digits redrawn."""
    region = draw(st.sampled_from(_REGIONS))
    kind = draw(st.sampled_from(_TYPES))
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    assert example is not None
    national = phonenumbers.national_significant_number(example)
    tail = draw(st.text(alphabet=string.digits, min_size=4, max_size=4))
    candidate = f"+{example.country_code}{national[:-4]}{tail}"
    number = phonenumbers.parse(candidate, None)
    assume(phonenumbers.is_valid_number(number))
    return region, number


@given(valid_numbers())
def test_every_format_of_a_valid_number_maps_to_one_key(
    sample: tuple[str, phonenumbers.PhoneNumber],
) -> None:
    # Scenario: E164, INTERNATIONAL, NATIONAL and RFC3966 spellings (and full-width) agree.
    region, number = sample
    key = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    spellings = [
        phonenumbers.format_number(number, PhoneNumberFormat.E164),
        phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
    ]
    for spelling in spellings:
        assert normalize_phone(spelling, "US") == key
        assert normalize_phone(spelling.translate(FULL_WIDTH), "US") == key
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    assert normalize_phone(national, region) == key
    assert normalize_phone(national.translate(FULL_WIDTH), region) == key


@given(valid_numbers())
def test_phone_normalisation_is_idempotent(sample: tuple[str, phonenumbers.PhoneNumber]) -> None:
    # Scenario: normalising a key again returns the same key.
    _, number = sample
    once = normalize_phone(phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL))
    assert normalize_phone(once) == once
    assert normalize_phone(once, "GB") == once


_PHONEISH = st.text(alphabet="0123456789+-(). tel:x#１＋\u200e", max_size=30)


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.EMAIL])
@given(raw=st.one_of(st.text(), _PHONEISH))
def test_arbitrary_text_only_ever_raises_invalid_recipient(channel: Channel, raw: str) -> None:
    # Scenario: any text either normalises (idempotently) or is refused with InvalidRecipient.
    try:
        key = normalize(channel, raw)
    except InvalidRecipient as exc:
        assert exc.message
        return
    assert normalize(channel, key) == key


# --------------------------------------------------------------------------- emails


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("user@example.com", "user@example.com"),
        ("user@EXAMPLE.Com", "user@example.com"),
        ("  user@example.com\u00a0", "user@example.com"),
        ("<user@example.com>", "user@example.com"),
        (" <user@example.com> ", "user@example.com"),
        ("user@example.com.", "user@example.com"),
        ("John.Smith@Example.COM", "john.smith@example.com"),
        ("ÄNN@Example.com", "Änn@example.com"),
        ("j.o.h.n+promo@gmail.com", "j.o.h.n+promo@gmail.com"),
        ("user@Bücher.Example", "user@xn--bcher-kva.example"),
        ("user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example"),
        ("user@ｅｘａｍｐｌｅ。ｃｏｍ", "user@example.com"),
        ("user@faß.de", "user@xn--fa-hia.de"),
        ("用户@例え.テスト", "用户@xn--r8jz45g.xn--zckzah"),
    ],
)
def test_email_normalisation(raw: str, key: str) -> None:
    # Scenario: domain case-folded and IDNA-encoded; the local part's ASCII letters lower-
    # cased (a capital letter must not miss a suppression), dots and +tag kept as sent.
    assert normalize_email(raw) == key
    assert normalize(Channel.EMAIL, raw) == key


def test_local_part_case_is_one_key_plus_tag_and_dots_are_not() -> None:
    # Scenario: "Jo@" and "jo@" are one person everywhere that matters (an opt-out of one
    # must stop mail to the other); +tags and dots are provider rules we never guess.
    keys = {normalize_email(a) for a in ("Jo@x.example", "jo@x.example", "JO@X.EXAMPLE")}
    assert keys == {"jo@x.example"}
    others = {normalize_email(a) for a in ("jo@x.example", "jo+a@x.example", "j.o@x.example")}
    assert len(others) == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("user.example.com", "has no '@'"),
        ("a@b@example.com", "more than one '@'"),
        ("@example.com", "nothing before the '@'"),
        ("user@", "no domain after the '@'"),
        ("user@localhost", "no dot in its domain"),
        ("us er@example.com", "contains whitespace"),
        ("user@exam ple.com", "contains whitespace"),
        ("user@example.com\r\nBcc: x@y.z", "control character"),
        ("user@example.com\n", "control character"),
        ("user\x00@example.com", "control character"),
        ("user\u200b@example.com", "invisible formatting character"),
        ("John <user@example.com>", "send the bare address"),
        ("<user@example.com", "unbalanced angle brackets"),
        ("user,other@example.com", "contains ','"),
        ('"quoted"@example.com', "contains '\"'"),
        ("x" * 65 + "@example.com", "local part longer than 64 octets"),
        ("ü" * 33 + "@example.com", "local part longer than 64 octets"),
        ("x" * 64 + "@" + ".".join(["a" * 50] * 4) + ".com", "longer than 254 octets"),
        ("u@" + ".".join(["a" * 50] * 5) + ".com", "domain longer than 253 octets"),
        ("u@" + "a" * 64 + ".com", "invalid domain label"),
        ("user@-example.com", "invalid domain label '-example'"),
        ("user@example-.com", "invalid domain label"),
        ("user@exa_mple.com", "invalid domain label"),
        ("user@example..com", "empty domain label"),
        ("user@.example.com", "empty domain label"),
        ("user@xn--zz.com", "bad punycode"),
        ("user@[192.0.2.1]", "address literals"),
        ("user@192.0.2.1", "all-numeric label"),
        ("", "empty"),
        ("<>", "empty"),
        ("x" * 2000, "too long"),
    ],
)
def test_bad_emails_are_refused_with_a_reason(raw: str, message: str) -> None:
    # Scenario: malformed addresses are refused with a message naming the problem.
    with pytest.raises(InvalidRecipient, match=re.escape(message)) as info:
        normalize_email(raw)
    assert info.value.code == "invalid_recipient"


_LOCAL = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.", min_size=1,
                 max_size=30)
_ASCII_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_IDN_LABEL = st.text(alphabet="abcdeäöüßéñçøåЖжλ", min_size=1, max_size=12)
_DOMAIN = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(st.one_of(_ASCII_LABEL, _IDN_LABEL), min_size=1, max_size=3),
    st.sampled_from(["com", "Example", "DE", "рф", "xn--p1ai"]),
)


@given(local=_LOCAL, domain=_DOMAIN)
def test_email_normalisation_is_idempotent(local: str, domain: str) -> None:
    # Scenario: a generated address normalises once; normalising the key again changes nothing.
    key = normalize_email(f"{local}@{domain}")
    key_local, _, key_domain = key.partition("@")
    assert key_local == local.translate(str.maketrans(string.ascii_uppercase,
                                                      string.ascii_lowercase))
    assert key_domain.isascii() and key_domain == key_domain.lower()
    assert normalize_email(key) == key
    shouted = "".join(c.upper() if c.isascii() else c for c in domain)
    assert normalize_email(f"<{local}@{shouted}>") == key


# --------------------------------------------------------------------------- mask & cache


@pytest.mark.parametrize(
    ("channel", "identifier", "masked"),
    [
        (Channel.SMS, "+14155550123", "+1415***0123"),
        (Channel.SMS, "+442079460958", "+44207***0958"),
        (Channel.SMS, "+33123456789", "+33***89"),
        (Channel.SMS, "+4930901820", "+49***20"),
        (Channel.SMS, "12345", "***45"),
        (Channel.SMS, "7", "***"),
        (Channel.SMS, "+999", "+***99"),
        (Channel.EMAIL, "john@example.com", "j***@example.com"),
        (Channel.EMAIL, "J@xn--bcher-kva.example", "J***@xn--bcher-kva.example"),
        (Channel.EMAIL, "not-an-address", "***"),
    ],
)
def test_mask(channel: Channel, identifier: str, masked: str) -> None:
    # Scenario: log-safe forms keep country code, 3 leading and 4 trailing digits, or 1st char.
    assert mask(channel, identifier) == masked


def test_repeated_inputs_hit_the_cache() -> None:
    # Scenario: the second normalisation of the same spelling is a cache hit; clear_caches forgets.
    from suppression import identifiers

    clear_caches()
    normalize_phone("(415) 555-0123")
    normalize_phone("(415) 555-0123")
    normalize_email("A@Example.com")
    normalize_email("A@Example.com")
    assert identifiers._normalize_phone.cache_info().hits == 1
    assert identifiers._normalize_email.cache_info().hits == 1
    clear_caches()
    assert identifiers._normalize_phone.cache_info().currsize == 0
