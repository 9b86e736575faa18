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

from .email_message import raw_text

# 10-15 digits, allowing the usual separators, not inside a longer digit run.
MIN_DIGITS = 7  # the shortest valid numbers (some countries) have 7 digits with the code
# Digits and whatever libphonenumber accepts between them (dashes of every kind, slashes,
# brackets, dots, tildes, blanks).
_DIGIT_RUN = re.compile(r"[+(\[]?\d[\d\s().\[\]/~\u2010-\u2015\u2212\u30fc\uff0d\uff0f-]*")
_BASE64 = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64")
MAX_CANDIDATES = 20_000  # a bound on work per message; far above any threshold
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
        elif kind.startswith("text/") or kind in TEXT_TYPES or name.endswith(TEXT_EXTENSIONS):
            yield _decode(part, payload)


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


def _phone_like_count(text: str) -> int:
    """An upper bound on the phone numbers a text can hold, found in one cheap pass: every
    number lies inside one run of digits and phone punctuation and uses at least
    ``MIN_DIGITS`` of its digits."""
    count = 0
    for m in _DIGIT_RUN.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if digits >= MIN_DIGITS:
            count += digits // MIN_DIGITS
    return count


def phone_numbers(data: bytes, region: str = "US", *, at_least: int = 1) -> set[str]:
    """Distinct valid phone numbers (E.164) in the message's texts and attachments.

    When it cannot hold ``at_least`` of them, may return early with fewer: a message
    without base64 parts carries every digit in its raw bytes (7bit, 8bit and
    quoted-printable never encode digits), so counting phone-like runs there, without
    parsing MIME, is enough to know that ordinary mail is far below the threshold.
    Numbers are found with libphonenumber's own matcher (valid numbers only).
    """
    if _BASE64.search(data) is None and _phone_like_count(raw_text(data)) < at_least:
        return set()
    found: set[str] = set()
    budget = MAX_CANDIDATES
    for text in texts(data):
        matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=Leniency.VALID,
                                                  max_tries=budget)
        for match in matcher:
            found.add(phonenumbers.format_number(match.number, PhoneNumberFormat.E164))
            budget -= 1
        if budget <= 0:
            break
    return found
