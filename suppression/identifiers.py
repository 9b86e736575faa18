"""Identifier normalisation: one person, one key.

Every suppression, consent and audit entry is keyed by the *normalised* form of
a recipient, so every spelling of the same phone number or address must map to
exactly one string, and garbage must be refused with a sentence a person can act
on (:class:`~suppression.errors.InvalidRecipient`).

Phone numbers (``Channel.SMS``) -> E.164, e.g. ``"+14155550123"``.

* Parsed with ``phonenumbers``; national formats use ``default_region``.
  Accepted spellings include ``(415) 555-0123``, ``415.555.0123``,
  ``1-415-555-0123``, ``+1 415 555 0123``, ``tel:+1-415-555-0123``,
  ``011 44 20 7946 0958`` and full-width or other Unicode decimal digits.
* Only digits, ``+``, spaces and the usual phone punctuation (``-.()/[]~`` and
  their full-width forms) may appear, after an optional ``tel:`` prefix.
  Letters are refused, so alphanumeric sender IDs (``ACME``) and vanity
  spellings (``1-800-FLOWERS``) are not numbers here; so are extensions.
  Invisible format characters (LRM, ZWSP, BOM...) that copy-paste brings along
  are dropped; control characters (CR, LF, NUL, TAB...) anywhere are refused.
* Validity decision: a number must pass ``phonenumbers.is_valid_number``.
  We checked that it accepts the fictional NANP 555-01xx range used in tests
  and docs (``+14155550100``, ``+12025550123``: valid, type FIXED_LINE_OR_MOBILE)
  while it refuses unassigned ranges (``+10000000000``, ``+11235550123``,
  ``+15555550100``) that ``is_possible_number`` alone would let through. So no
  looser fallback is needed. The cost: a number in a range newer than the
  installed ``phonenumbers`` metadata is refused, so keep that package current.
  Short codes (``12345``) are not recipients and are refused as too short.

Email addresses (``Channel.EMAIL``) -> ``local@domain``.

* Surrounding whitespace and one pair of enclosing angle brackets are removed.
* The local part is kept exactly as sent: case kept, no ``+tag`` stripping, no
  dot removal (those rules are mailbox-provider specific; guessing them would
  merge different people). Non-ASCII local parts (SMTPUTF8) are allowed and
  are not Unicode-normalised either.
* The domain is lower-cased and IDNA-encoded with the ``idna`` package (UTS #46
  mapping, non-transitional, IDNA 2008). The stdlib ``"idna"`` codec is IDNA
  2003 and gets valid names wrong: ``faß.de`` becomes ``fass.de`` (a different
  domain), final sigma and ZWNJ are folded away. ASCII labels must be LDH
  (letters, digits, inner hyphens, 1-63 octets); ``xn--`` labels must be valid
  A-labels; the last label may not be all digits (no bare IP addresses);
  address literals (``[192.0.2.1]``) are refused; one trailing dot is dropped.
* Refused: no ``@`` or more than one, empty local part or domain, whitespace or
  control/format characters anywhere, RFC 5322 specials in the local part
  (``()<>[]:;,\\"``), a domain without a dot, a local part over 64 octets or
  an address over 254 octets (UTF-8).

Results are memoised (``functools.lru_cache``) so the hot path of a bulk check
pays for each distinct spelling once; refusals are not cached. The caches hold
plaintext identifiers: :func:`clear_caches` empties them (e.g. after an erasure).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import idna
import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from suppression.errors import InvalidRecipient
from suppression.models import Channel

__all__ = [
    "MAX_PHONE_INPUT_CHARS",
    "clear_caches",
    "mask",
    "normalize",
    "normalize_email",
    "normalize_phone",
]

MAX_PHONE_INPUT_CHARS = 64
MAX_EMAIL_INPUT_CHARS = 1024  # cheap guard before any parsing; the real limit is 254 octets
MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254
MAX_DOMAIN_OCTETS = 253
MAX_LABEL_OCTETS = 63
_CACHE_SIZE = 100_000

_TEL_PREFIX = "tel:"
_PLUS_SIGNS = frozenset("+\uff0b")
# Phone punctuation phonenumbers understands, with full-width and dash variants.
_PHONE_PUNCTUATION = frozenset(
    "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff0d"  # dashes
    ".\uff0e"
    "()\uff08\uff09[]\uff3b\uff3d"
    "/\uff0f"
    "~\u2053\u223c\uff5e"
)
_EMAIL_SPECIALS = frozenset('()<>[]:;,\\"')
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Dots UTS #46 treats as label separators.
_DOTS = re.compile("[.\u3002\uff0e\uff61]")


def _show(raw: str, limit: int = 48) -> str:
    """Quote user input for an error message, bounded in length."""
    if len(raw) > limit:
        return repr(raw[:limit]) + "..."
    return repr(raw)


def _has_control(raw: str) -> bool:
    # Cc: C0/C1 controls (CR, LF, NUL, TAB...). Cs: lone surrogates (cannot be encoded).
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in raw)


def _require_str(raw: object, what: str) -> str:
    if not isinstance(raw, str):
        raise InvalidRecipient(f"The {what} must be a string, not {type(raw).__name__}.")
    return raw


# --------------------------------------------------------------------------- phones


def normalize_phone(raw: str, default_region: str = "US") -> str:
    """Return the E.164 form of a phone number, or raise :class:`InvalidRecipient`.

    ``default_region`` (ISO 3166 alpha-2) is used for numbers written without a
    country code.
    """
    text = _require_str(raw, "phone number")
    region = _require_str(default_region, "default region").strip().upper()
    if len(text) > MAX_PHONE_INPUT_CHARS:
        raise InvalidRecipient(
            f"The phone number is too long ({len(text)} characters; at most "
            f"{MAX_PHONE_INPUT_CHARS})."
        )
    return _normalize_phone(text, region)


def _phone_text(raw: str) -> str:
    """Checks that need no parsing; returns the text to hand to phonenumbers."""
    if _has_control(raw):
        raise InvalidRecipient(f"{_show(raw)} contains a control character.")
    text = "".join(c for c in raw if unicodedata.category(c) != "Cf").strip()
    if not text:
        raise InvalidRecipient("The phone number is empty.")
    body = text[len(_TEL_PREFIX):] if text[:len(_TEL_PREFIX)].lower() == _TEL_PREFIX else text
    if not any(unicodedata.category(c) == "Nd" for c in body):
        raise InvalidRecipient(f"{_show(raw)} is not a phone number.")
    for c in body:
        if unicodedata.category(c) == "Nd" or c.isspace() or c in _PLUS_SIGNS:
            continue
        if c in _PHONE_PUNCTUATION:
            continue
        if c.isalpha():
            raise InvalidRecipient(
                f"{_show(raw)} is not a phone number: it contains letters "
                "(alphanumeric sender IDs, vanity spellings and extensions are not accepted)."
            )
        raise InvalidRecipient(
            f"{_show(raw)} is not a phone number: {c!r} cannot appear in one."
        )
    return body


_LENGTH_PROBLEMS = {
    ValidationResult.TOO_SHORT: "is too short to be a phone number",
    ValidationResult.TOO_LONG: "is too long to be a phone number",
    ValidationResult.INVALID_LENGTH: "has the wrong number of digits for its country",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "is a local number; include the area code",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country calling code",
}


def _parse_error(raw: str, body: str, region: str, exc: NumberParseException) -> InvalidRecipient:
    kind = exc.error_type
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        if body.lstrip()[:1] in _PLUS_SIGNS:
            return InvalidRecipient(f"{_show(raw)} has an unknown country calling code.")
        return InvalidRecipient(
            f"{_show(raw)} has no country code and the default region {region!r} is unknown; "
            "write the number in international form (+...)."
        )
    if kind in (NumberParseException.TOO_SHORT_AFTER_IDD, NumberParseException.TOO_SHORT_NSN):
        return InvalidRecipient(f"{_show(raw)} is too short to be a phone number.")
    if kind == NumberParseException.TOO_LONG:
        return InvalidRecipient(f"{_show(raw)} is too long to be a phone number.")
    return InvalidRecipient(f"{_show(raw)} is not a phone number.")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_phone(raw: str, region: str) -> str:
    body = _phone_text(raw)
    try:
        number = phonenumbers.parse(body, region)
    except NumberParseException as exc:
        raise _parse_error(raw, body, region, exc) from None
    if number.extension:
        raise InvalidRecipient(f"{_show(raw)} has an extension; a text cannot reach one.")
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        problem = _LENGTH_PROBLEMS.get(reason, "is not a phone number")
        raise InvalidRecipient(f"{_show(raw)} {problem}.")
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_country_code(number.country_code or 0)
        plan = f"the +{number.country_code} ({where}) numbering plan"
        raise InvalidRecipient(f"{_show(raw)} is not a valid number in {plan}.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --------------------------------------------------------------------------- emails


def normalize_email(raw: str) -> str:
    """Return the normalised address (ASCII letters lower-cased, IDNA domain), or raise."""
    text = _require_str(raw, "email address")
    if len(text) > MAX_EMAIL_INPUT_CHARS:
        raise InvalidRecipient(
            f"The email address is too long ({len(text)} characters; at most "
            f"{MAX_ADDRESS_OCTETS} octets)."
        )
    return _normalize_email(text)


def _email_text(raw: str) -> str:
    """Strip, unwrap <...> and refuse characters no address may hold."""
    if _has_control(raw):
        raise InvalidRecipient(f"{_show(raw)} contains a control character.")
    if any(unicodedata.category(c) == "Cf" for c in raw):
        raise InvalidRecipient(f"{_show(raw)} contains an invisible formatting character.")
    text = raw.strip()
    if not text:
        raise InvalidRecipient("The email address is empty.")
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    elif text.endswith(">") and "<" in text:
        raise InvalidRecipient(
            f"{_show(raw)} looks like 'Name <address>'; send the bare address."
        )
    elif text.startswith("<") or text.endswith(">"):
        raise InvalidRecipient(f"{_show(raw)} has unbalanced angle brackets.")
    if any(c.isspace() for c in text):
        raise InvalidRecipient(
            f"{_show(raw)} contains whitespace; send the bare address, without a display name."
        )
    if not text:
        raise InvalidRecipient("The email address is empty.")
    return text


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _normalize_email(raw: str) -> str:
    text = _email_text(raw)
    ats = text.count("@")
    if ats == 0:
        raise InvalidRecipient(f"{_show(raw)} is not an email address: it has no '@'.")
    if ats > 1:
        raise InvalidRecipient(f"{_show(raw)} has more than one '@'.")
    local, _, domain = text.partition("@")
    if not local:
        raise InvalidRecipient(f"{_show(raw)} has nothing before the '@'.")
    if not domain:
        raise InvalidRecipient(f"{_show(raw)} has no domain after the '@'.")
    bad = next((c for c in local if c in _EMAIL_SPECIALS), None)
    if bad is not None:
        raise InvalidRecipient(f"{_show(raw)} contains {bad!r}, which an address cannot hold.")
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise InvalidRecipient(
            f"{_show(raw)} has a local part longer than {MAX_LOCAL_OCTETS} octets."
        )
    # The local part's ASCII letters in lower case too: RFC 5321 lets a host treat "Ann"
    # and "ann" as two mailboxes, but no mainstream provider does, and a suppression must
    # never be missed for a capital letter (lists from different systems differ in exactly
    # that). Non-ASCII letters are kept: their case rules vary and can change the length.
    address = f"{local.translate(_ASCII_LOWER)}@{_normalize_domain(raw, domain)}"
    if len(address.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise InvalidRecipient(f"{_show(raw)} is longer than {MAX_ADDRESS_OCTETS} octets.")
    return address


def _normalize_domain(raw: str, domain: str) -> str:
    if domain.startswith("["):
        raise InvalidRecipient(
            f"{_show(raw)}: address literals like '[192.0.2.1]' are not accepted."
        )
    if domain.isascii():
        domain = domain.lower()
    else:
        try:
            domain = idna.uts46_remap(domain, std3_rules=True, transitional=False)
        except idna.IDNAError as exc:
            raise InvalidRecipient(f"{_show(raw)} has an invalid domain ({exc}).") from None
    labels = _DOTS.split(domain)
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # a fully qualified "example.com."
    if len(labels) < 2:
        raise InvalidRecipient(f"{_show(raw)} has no dot in its domain.")
    ascii_labels = [_domain_label(raw, label) for label in labels]
    if ascii_labels[-1].isdigit():
        raise InvalidRecipient(
            f"{_show(raw)}: the domain ends in an all-numeric label; IP addresses are not accepted."
        )
    result = ".".join(ascii_labels)
    if len(result) > MAX_DOMAIN_OCTETS:
        raise InvalidRecipient(f"{_show(raw)} has a domain longer than {MAX_DOMAIN_OCTETS} octets.")
    return result


def _domain_label(raw: str, label: str) -> str:
    """One label as lower-case ASCII (A-label for IDNs), or raise."""
    if not label:
        raise InvalidRecipient(f"{_show(raw)} has an empty domain label ('..').")
    if not label.isascii():
        try:
            label = idna.alabel(label).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidRecipient(
                f"{_show(raw)} has an invalid domain label {label!r} ({exc})."
            ) from None
    elif label.startswith("xn--"):
        try:
            # Round-trip so one domain cannot hide behind two spellings of its A-label.
            canonical = idna.alabel(idna.ulabel(label)).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            canonical = ""
        if canonical != label:
            raise InvalidRecipient(
                f"{_show(raw)} has an invalid domain label {label!r} (bad punycode)."
            )
    if len(label) > MAX_LABEL_OCTETS or not _LDH_LABEL.fullmatch(label):
        raise InvalidRecipient(
            f"{_show(raw)} has an invalid domain label {_show(label, 24)}: labels are "
            f"1-{MAX_LABEL_OCTETS} letters, digits and inner hyphens."
        )
    return label


# --------------------------------------------------------------------------- dispatch


def normalize(channel: Channel, raw: str, *, default_region: str = "US") -> str:
    """Normalise ``raw`` for ``channel``; raise :class:`InvalidRecipient` if it is not one."""
    if channel == Channel.SMS:
        return normalize_phone(raw, default_region)
    if channel == Channel.EMAIL:
        return normalize_email(raw)
    raise InvalidRecipient(f"Unknown channel {channel!r}.", field="channel")


def clear_caches() -> None:
    """Forget every memoised identifier (they are plaintext personal data)."""
    _normalize_phone.cache_clear()
    _normalize_email.cache_clear()


# --------------------------------------------------------------------------- masking


def mask(channel: Channel, identifier: str) -> str:
    """A log-safe form: ``+1415***0123``, ``j***@example.com``. Never raises."""
    if channel == Channel.EMAIL:
        return _mask_email(identifier)
    return _mask_phone(identifier)


def _mask_email(identifier: str) -> str:
    local, at, domain = identifier.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _mask_tail(digits: str) -> str:
    return "***" + (digits[-2:] if len(digits) > 2 else "")


def _mask_phone(identifier: str) -> str:
    if not identifier.startswith("+"):
        return _mask_tail("".join(c for c in identifier if c.isdigit()))
    try:
        number = phonenumbers.parse(identifier, None)
    except NumberParseException:
        return "+" + _mask_tail("".join(c for c in identifier if c.isdigit()))
    national = phonenumbers.national_significant_number(number)
    prefix = f"+{number.country_code}"
    # Keep 3 leading and 4 trailing digits only when at least 3 stay hidden.
    if len(national) >= 10:
        return f"{prefix}{national[:3]}***{national[-4:]}"
    return prefix + _mask_tail(national)
