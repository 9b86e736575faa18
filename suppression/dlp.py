"""Find SMS opt-in data in outbound email (the sharing guard's SMTP door).

A message to a recipient outside the tenant's ``email_domains`` that carries
at least ``dlp_min_numbers`` phone numbers found in the tenant's SMS consent
records is SMS opt-in data leaving for a third party: refused (COMPLIANCE.md,
the privacy statement's "will not be shared with third parties/affiliates").

What is scanned: every text part and attachment the message carries, decoded
(quoted-printable, base64): text/*, CSV, TXT, JSON and XLSX (its shared
strings and cell values, read from the zip with a size cap). Other binary
attachments (PDF, images) are not read: the guard is about exports of lists,
which travel as these formats.

Cost for ordinary mail: a message is parsed once; phone-like digit runs are
found with one regular expression; only when there are at least
``min_numbers`` of them is anything looked up, and then in one batched store
round trip (one HGET per number, pipelined) for the whole message.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from xml.etree import ElementTree

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat

MIN_DIGITS = 7  # the shortest valid numbers (some countries) have 7 digits with the code
MAX_DIGITS = 15  # E.164
# Digits and whatever libphonenumber accepts between them (dashes of every kind, slashes,
# brackets, dots, tildes, blanks).
_SEP = r"[\s().\[\]/~\u2010-\u2015\u2212\u30fc\uff0d\uff0f-]"
_QP_SOFT_BREAK = re.compile(rb"=\r?\n")
_QP_DIGIT = re.compile(rb"=(3[0-9])")  # a digit written as a quoted-printable escape
# Encodings that may hide digits from a byte-level count. Looked for as plain substrings
# of the lower-cased message (C speed: one case-insensitive alternation regex took ~0.5 ms
# on 10 KB), plus uuencode's "begin 644 " line.
_OPAQUE_WORDS = (b"base64", b"x-uue", b"uuencode", b"binary", b"utf-16", b"utf-32", b"ucs-2",
                 b"ucs-4")
_UU_BEGIN = re.compile(rb"^begin [0-7]{3} ", re.M)


def _opaque(data: bytes) -> bool:
    lowered = data.lower()
    if any(word in lowered for word in _OPAQUE_WORDS):
        return True
    return (b"begin " in lowered) and _UU_BEGIN.search(lowered) is not None
_FANCY = [(chr(0xFF10 + d), str(d).encode()) for d in range(10)] + \
    [(chr(c), b"-") for c in (*range(0x2010, 0x2016), 0x2212, 0x30FC, 0xFF0D, 0xFF0F)]
# Each as UTF-8 bytes and as quoted-printable escapes of them (upper and lower case hex).
_ASCII_FORMS = [(form, plain) for fancy, plain in _FANCY for form in (
    fancy.encode(),
    b"".join(b"=%02X" % byte for byte in fancy.encode()),
    b"".join(b"=%02x" % byte for byte in fancy.encode()))]
_SEPARATOR_BYTES = b" \t\r\n\x0b\x0c().[]/~+-"
_SHAPE = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 if b in _SEPARATOR_BYTES else 0x78
               for b in range(256))
_LONG_ID = MAX_DIGITS + 1
# Runs of at least MIN_DIGITS digits with phone punctuation between them: shorter runs
# (prices, dates, counts) never match, so ordinary text yields almost no matches.
# Tried only where a run starts (not after a digit), and never backtracking (possessive),
# so each stretch of text is scanned once.
_DIGIT_RUN = re.compile(rf"(?<!\d)[+(\[]?\d(?:{_SEP}*+\d){{{MIN_DIGITS - 1},}}+")
MAX_CANDIDATES = 5_000  # a bound on work per message; far above any threshold
MAX_XLSX_BYTES = 50 << 20  # uncompressed bytes read from one XLSX (zip-bomb guard)
TEXT_EXTENSIONS = (".csv", ".txt", ".json", ".tsv")
XLSX_TYPES = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",)
TEXT_TYPES = ("application/json", "application/csv")


def texts(data: bytes) -> Iterator[str]:
    """The decoded text of every part worth scanning."""
    message = message_from_bytes(data, policy=email_policy.compat32)
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        name = (part.get_filename() or "").lower()
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        if kind in XLSX_TYPES or name.endswith(".xlsx"):
            yield xlsx_text(payload)
        elif kind.startswith("text/") or kind in TEXT_TYPES or name.endswith(TEXT_EXTENSIONS) \
                or looks_like_text(payload):
            # By content too: a list sent as application/octet-stream, x-ndjson or a
            # renamed .dat is still a list.
            yield _decode(part, payload)
        elif payload.startswith(_ZIP_MAGIC):
            yield from zip_texts(payload)


_ZIP_MAGIC = b"PK\x03\x04"
_TEXT_BYTES = bytes([*range(0x20, 0x7F), 0x09, 0x0A, 0x0D, *range(0x80, 0x100)])


def looks_like_text(payload: bytes, sample: int = 4096) -> bool:
    """Text by content: no NUL and at least 95 % printable bytes in the first 4 KB
    (bytes >= 0x80 count as printable: UTF-8 and Latin text)."""
    head = payload[:sample]
    if not head or b"\x00" in head:
        return False
    control = len(head.translate(None, _TEXT_BYTES))  # C speed: what is left is control
    return control <= 0.05 * len(head)


def zip_texts(payload: bytes) -> Iterator[str]:
    """The text members of a ZIP archive (an XLSX's cells, other members that look like
    text), reading at most ``MAX_XLSX_BYTES`` uncompressed bytes in all."""
    if b"xl/worksheets/" in payload[:1 << 16] or b"xl/sharedStrings" in payload:
        yield xlsx_text(payload)
        return
    budget = MAX_XLSX_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for info in archive.infolist():
                if info.is_dir() or info.file_size > budget:
                    continue
                budget -= info.file_size
                member = archive.read(info)
                if looks_like_text(member):
                    yield member.decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, RuntimeError):
        return


def _decode(part: Message, payload: bytes) -> str:
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def xlsx_text(payload: bytes) -> str:
    """Shared strings and cell values of a workbook; '' for anything unreadable."""
    out: list[str] = []
    budget = MAX_XLSX_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as book:
            for info in book.infolist():
                name = info.filename
                if not (name == "xl/sharedStrings.xml" or
                        (name.startswith("xl/worksheets/") and name.endswith(".xml"))):
                    continue
                if info.file_size > budget:
                    break
                budget -= info.file_size
                root = ElementTree.fromstring(book.read(info))
                out.extend(el.text for el in root.iter()
                           if el.text and el.tag.rsplit("}", 1)[-1] in ("t", "v"))
    except (zipfile.BadZipFile, ElementTree.ParseError, OSError, ValueError, KeyError):
        return " ".join(out)
    return " ".join(out)


def _runs(text: str) -> Iterator[str]:
    """Runs of digits and phone punctuation that may hold a number (``_DIGIT_RUN`` already
    asks for at least ``MIN_DIGITS`` digits).

    A run of more than 15 digits with no punctuation at all (a MIME boundary, a message
    id, a tracking code) holds no number: E.164 numbers have at most 15 digits, and
    libphonenumber never takes a number out of a longer digit string."""
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        if run.lstrip("+([").isdigit() and sum(c.isdigit() for c in run) > MAX_DIGITS:
            continue
        yield run


def _phone_like_count(data: bytes) -> int:
    """An upper bound on the phone numbers a raw message can hold, from C-speed byte
    operations only (the Python loop runs once per long digit run, not per byte).

    Fullwidth digits and Unicode dashes become ASCII; every byte becomes '0' (a digit),
    ' ' (phone punctuation) or 'x'; separator-free strings of 16+ digits (MIME boundaries,
    ids: never a number) become 'x'; the punctuation is deleted. Every number then lies
    inside one string of '0's and uses at least ``MIN_DIGITS`` of it. (Digits of other
    scripts are not counted: the guard is about exported lists, written in ASCII.)"""
    data = _QP_DIGIT.sub(lambda m: bytes([int(m.group(1), 16)]), _QP_SOFT_BREAK.sub(b"", data))
    if not data.isascii() or b"=E" in data or b"=e" in data:
        for fancy, plain in _ASCII_FORMS:
            data = data.replace(fancy, plain)
    shape = bytearray(data.translate(_SHAPE))
    for start, end in _zero_runs(shape, _LONG_ID):
        shape[start:end] = b"x" * (end - start)
    compact = bytes(shape).translate(None, b" ")
    return sum((end - start) // MIN_DIGITS for start, end in _zero_runs(compact, MIN_DIGITS))


def _zero_runs(shape: bytes | bytearray, at_least: int) -> Iterator[tuple[int, int]]:
    """(start, end) of every run of at least ``at_least`` b'0' bytes."""
    needle = b"0" * at_least
    pos = shape.find(needle)
    while pos >= 0:
        end = pos + at_least
        while end < len(shape) and shape[end] == 0x30:
            end += 1
        yield pos, end
        pos = shape.find(needle, end)


def may_hold(data: bytes, at_least: int) -> bool:
    """False only when the message surely holds fewer than ``at_least`` phone numbers.

    A message whose parts are 7bit, 8bit or quoted-printable text in an ASCII-compatible
    charset carries every digit in its raw bytes (quoted-printable digit escapes are
    undone here), so counting phone-like runs there, without parsing MIME, bounds what a
    full scan could find. Anything else (base64, uuencode, binary, UTF-16/32) may hide
    digits from that count: True, and the caller scans it in full.
    """
    if _opaque(data):
        return True
    return _phone_like_count(data) >= at_least


class TooManyCandidates(Exception):
    """More than ``MAX_CANDIDATES`` number-like runs: the message cannot be fully checked."""


def phone_numbers(data: bytes, region: str = "US", *, at_least: int = 1,
                  strict: bool = False) -> set[str]:
    """Distinct valid phone numbers (E.164) in the message's texts and attachments.

    Returns early with none when ``may_hold`` rules out ``at_least``. Numbers are found by
    libphonenumber's own matcher (valid numbers only), run on each candidate run rather
    than the whole text: the same numbers, at a fraction of the cost; at most
    ``MAX_CANDIDATES`` runs are examined (a bound on the work one message can cause);
    ``strict``: past that bound raise :class:`TooManyCandidates` instead of answering with
    what was found so far (the guard cannot vouch for the rest, so it refuses).
    """
    if not may_hold(data, at_least):
        return set()
    return scan(data, region, strict=strict)


def scan(data: bytes, region: str = "US", *, strict: bool = False) -> set[str]:
    """``phone_numbers`` without its ``may_hold`` pre-check, for a caller that made it."""
    found: set[str] = set()
    budget = MAX_CANDIDATES
    for text in texts(data):
        for run in _runs(text):
            for match in phonenumbers.PhoneNumberMatcher(run, region, leniency=Leniency.VALID):
                found.add(phonenumbers.format_number(match.number, PhoneNumberFormat.E164))
            budget -= 1
            if budget <= 0:
                if strict:
                    raise TooManyCandidates()
                return found
    return found
