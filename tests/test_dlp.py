"""The SMTP sharing guard's scanner: phone numbers in bodies and attachments."""

from __future__ import annotations

import json
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression import dlp

NUMBERS = ["+14155550120", "+12125550199", "+13105550142"]


def _mail(content: bytes, filename: str, maintype: str, subtype: str, *,
          cte: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "a@acme.example"
    msg["To"] = "b@broker.example"
    msg.set_content("see attached")
    msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename,
                       cte=cte)
    return msg.as_bytes()


def test_numbers_in_csv_json_and_text_attachments_are_found() -> None:
    # Numbers in any usual national or international spelling are found and normalised.
    csv = b"phone\n(415) 555-0120\n212.555.0199\n+1 310 555 0142\n"
    assert dlp.phone_numbers(_mail(csv, "l.csv", "text", "csv")) == set(NUMBERS)
    js = json.dumps([{"tel": n} for n in NUMBERS]).encode()
    assert dlp.phone_numbers(_mail(js, "l.json", "application", "json")) == set(NUMBERS)
    b64 = _mail("\n".join(NUMBERS).encode(), "l.txt", "application", "octet-stream",
                cte="base64")
    assert dlp.phone_numbers(b64) == set(NUMBERS)


def test_unreadable_xlsx_and_binary_attachments_yield_nothing() -> None:
    # A broken workbook and a binary file (a PDF's compressed streams) are skipped, never
    # an error; a part is read by content, so text under a binary name still counts.
    bad = _mail(b"PK\x03\x04not a zip", "x.xlsx", "application", "octet-stream")
    assert dlp.phone_numbers(bad) == set()
    binary = b"%PDF-1.4\n%\xe2\xe3\n" + bytes(range(256)) * 4 + b" 4155550120 2125550199"
    pdf = _mail(binary, "x.pdf", "application", "pdf")
    assert dlp.phone_numbers(pdf) == set()
    text = _mail(b"4155550120\n2125550199\n", "x.pdf", "application", "pdf")
    assert dlp.phone_numbers(text) == {"+14155550120", "+12125550199"}


def test_boundaries_and_ids_are_not_numbers() -> None:
    # MIME boundaries and long ids are long digit strings, never phone numbers.
    msg = EmailMessage()
    msg.set_content("hello")
    msg.add_alternative("<p>hello</p>", subtype="html")
    msg["Message-ID"] = "<1764300000123456789.4242@acme.example>"
    assert dlp._phone_like_count(msg.as_bytes()) == 0


def test_quoted_printable_fullwidth_digits_are_counted() -> None:
    # Fullwidth digits and en dashes in a quoted-printable part count like ASCII ones.
    msg = EmailMessage()
    msg.set_content("\n".join(["４１５５５５０１２０", "415\u2013555\u20130199"] * 3),
                    cte="quoted-printable")
    data = msg.as_bytes()
    assert b"=EF=BC" in data and dlp._phone_like_count(data) >= 2
    assert dlp.phone_numbers(data, at_least=2) == {"+14155550120", "+14155550199"}


def test_fast_path_skips_parsing_for_ordinary_mail() -> None:
    # A newsletter with one number and many prices cannot reach 5 numbers: nothing parsed.
    body = "Deals: " + ", ".join(f"item {i} ${i}.99" for i in range(200)) + \
        "\ncall +1 415 555 0120\n"
    msg = EmailMessage()
    msg.set_content(body)
    data = msg.as_bytes()
    assert dlp.phone_numbers(data, at_least=5) == set()
    assert dlp.phone_numbers(data, at_least=1) == {"+14155550120"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(NUMBERS + [
    "(415) 555-0120", "12.99", "2026-11-28", "x", "415 555 0120 ext 7", "\n", ", ",
    "４１５５５５０１２０", "415\u2013555\u20130120", "1234567890123456789", "+44 20 7946 0958",
    "=", "0", "é"]), max_size=40))
def test_fast_count_never_undercounts(parts: list[str]) -> None:
    # The cheap count is an upper bound of what the full scan finds (so the fast path can
    # only skip mail that is below the threshold anyway).
    text = " ".join(parts)
    msg = EmailMessage()
    msg.set_content(text)
    data = msg.as_bytes()
    found = dlp.phone_numbers(data)
    if not dlp._opaque(data):  # base64 and the like always take the full scan
        assert dlp._phone_like_count(data) >= len(found)


@pytest.mark.parametrize(("data", "opaque"), [
    (b"Content-Transfer-Encoding: BASE64\r\n\r\nQUJD\r\n", True),
    (b"Content-Type: text/plain; charset=UTF-16\r\n\r\nx", True),
    (b"Subject: x\r\n\r\nbegin 644 list.csv\r\nM,3(S\r\n", True),
    (b"Subject: x\r\n\r\nWe begin 644 days of deals\r\n", False),
    (b"Subject: Deals\r\n\r\nPlain text, 415 555 0100.\r\n", False),
])
def test_encodings_that_may_hide_digits_are_spotted_in_any_case(data: bytes,
                                                                 opaque: bool) -> None:
    # base64, uuencode ("begin 644" at a line start), UTF-16/32 take the full scan; plain
    # mail does not (the check is substring search on the lower-cased bytes, C speed).
    assert dlp._opaque(data) is opaque
