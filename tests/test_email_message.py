"""Per-recipient rewriting, header safety and DKIM signing on real message bytes.

Pure functions: no Redis, no network. DKIM is checked end to end with dkimpy's own verifier,
fed the TXT record of a key generated here (RSA by the openssl CLI, Ed25519 by PyNaCl).
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import dkim
import nacl.encoding
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression.email_message import (
    DkimKeyError,
    HeaderInjection,
    check_header_value,
    dkim_sign,
    header_fields,
    header_values,
    line_ending,
    mentions_postal_address,
    message_texts,
    message_topic,
    rewrite_headers,
    signed_by,
    split_message,
    unsubscribe_headers,
)
from suppression.errors import InvalidRequest

UNSUB = ("List-Unsubscribe", "List-Unsubscribe-Post")
URL = "https://gw.example/u/tok3n"
MAILTO = "unsubscribe+tok3n@gw.example"

PDF_B64 = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) * 4).replace(b"\n", b"\r\n")
HTML_B64 = base64.encodebytes(
    b"<html><head><style>p{}</style></head><body><p>Big sale!</p>"
    b"<p>Acme Co &amp; friends<br>1 Main St,<br/>Springfield</p></body></html>"
).replace(b"\n", b"\r\n")

# A campaign as a marketing system sends it: folded headers, a sender-set List-Unsubscribe
# pair (one folded, one in odd case), multipart/alternative inside multipart/mixed, a
# quoted-printable text part, a base64 HTML part and a base64 PDF attachment.
CAMPAIGN = (
    b"Return-Path: <bounces@acme.example>\r\n"
    b"From: Acme Co <news@acme.example>\r\n"
    b"To: Ann Example <ann@example.com>\r\n"
    b"Subject: =?utf-8?q?Sp=C3=A4tsommer_sale?=\r\n"
    b"Date: Tue, 04 Jun 2024 10:00:00 +0000\r\n"
    b"Message-ID: <c1.ann@acme.example>\r\n"
    b"List-Unsubscribe: <https://esp.example/unsub/abc>,\r\n"
    b"\t<mailto:unsub-abc@esp.example>\r\n"
    b"X-Campaign: summer\r\n"
    b"list-unsubscribe-post: List-Unsubscribe=One-Click\r\n"
    b"List-Id: Acme Deals <deals.acme.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed;\r\n"
    b' boundary="outer"\r\n'
    b"\r\n"
    b"This is a multi-part message in MIME format.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b"\r\n"
    b"--inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Sp=C3=A4tsommer sale! List-Unsubscribe: <https://not-a-header.example>\r\n"
    b"Acme Co, 1 Main=\r\n"
    b" St=2C Springfield\r\n"
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + HTML_B64 +
    b"--inner--\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf; name=terms.pdf\r\n"
    b"Content-Disposition: attachment; filename=terms.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n" + PDF_B64 +
    b"--outer--\r\n"
)

PLAIN = (
    b"From: Acme Co <news@acme.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: Hello\r\n"
    b"Date: Tue, 04 Jun 2024 10:00:00 +0000\r\n"
    b"Message-ID: <p1@acme.example>\r\n"
    b"\r\n"
    b"Hi Ann,\r\nour summer sale starts today.\r\n"
)


def _count(data: bytes, name: str) -> int:
    return len(header_values(data, name))


def _wire(data: bytes) -> bytes:
    """What an SMTP client (aiosmtplib) sends in DATA: every line ending made CRLF."""
    out = re.sub(rb"\r\n|\n|\r(?!\n)", b"\r\n", data)
    return out if out.endswith(b"\r\n") else out + b"\r\n"


# --- header safety -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a\r\nBcc: x", "\n", "\x00", "a\rb", "ok\x0bno", "x\u2028y"])
def test_injection_values_are_refused(value: str) -> None:
    # A value carrying a line break or NUL would smuggle a second header field: refused.
    with pytest.raises(HeaderInjection, match="List-Unsubscribe header value contains"):
        check_header_value("List-Unsubscribe", value)


@pytest.mark.parametrize("name", ["", "Bad Name", "X:Y", "X-\u00e9", "Bcc\r\n"])
def test_bad_field_names_are_refused(name: str) -> None:
    # A field name outside RFC 5322 ftext is refused, naming the name.
    with pytest.raises(HeaderInjection, match="not a valid field name"):
        check_header_value(name, "v")


def test_safe_value_passes_and_error_names_the_character() -> None:
    # Tabs and non-ASCII text are fine; the refusal says which character was found and where.
    check_header_value("Subject", "caf\u00e9\tbar")
    with pytest.raises(HeaderInjection, match=r"line feed \(LF\) at position 1") as info:
        check_header_value("Subject", "a\nb")
    assert info.value.code == "invalid_request" and info.value.field == "Subject"


def test_rewrite_with_an_injected_value_writes_nothing() -> None:
    # An unsafe added field makes the whole rewrite fail: no partially rewritten message.
    with pytest.raises(HeaderInjection):
        rewrite_headers(PLAIN, remove=UNSUB, add=[("List-Unsubscribe", "<x>\r\nBcc: evil@x")])


@pytest.mark.parametrize("url,mailto", [
    ("https://gw.example/u/a\r\nBcc: x", MAILTO),
    ("https://gw.example/u/a>, <https://evil.example", MAILTO),
    ("javascript:alert(1)", MAILTO),
    (URL, "unsub@x\nBcc: y"),
    (URL, ""),
    ("https://gw.example/u/\u00e9", MAILTO),
])
def test_unsubscribe_headers_refuse_unsafe_uris(url: str, mailto: str) -> None:
    # A URI that could break out of its <...> or the field is refused before any rewrite.
    with pytest.raises(HeaderInjection):
        unsubscribe_headers(url, mailto)


def test_unsubscribe_headers_are_the_rfc8058_pair() -> None:
    # HTTPS URI first, mailto second (scheme added when missing), plus the One-Click field.
    pair = unsubscribe_headers(URL, MAILTO)
    assert pair == [("List-Unsubscribe", f"<{URL}>, <mailto:{MAILTO}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    assert unsubscribe_headers(URL, f"MAILTO:{MAILTO}")[0][1] == f"<{URL}>, <MAILTO:{MAILTO}>"


# --- splitting and reading -----------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", (b"A: 1\r\nB: 2\r\n", b"\r\n", b"body\r\n")),
    (b"A: 1\nB: 2\n\nbody\n\nmore\n", (b"A: 1\nB: 2\n", b"\n", b"body\n\nmore\n")),
    (b"A: 1\r\nB: 2\r\n", (b"A: 1\r\nB: 2\r\n", b"", b"")),
    (b"A: 1\r\nB: 2", (b"A: 1\r\nB: 2", b"", b"")),
    (b"A: 1\r\n\r\n", (b"A: 1\r\n", b"\r\n", b"")),
    (b"\r\nonly body\r\n", (b"", b"\r\n", b"only body\r\n")),
    (b"", (b"", b"", b"")),
])
def test_split_message_cases(data: bytes, expected: tuple[bytes, bytes, bytes]) -> None:
    # CRLF, bare LF, no body, no final newline, empty body, no header: parts rejoin exactly.
    assert split_message(data) == expected
    assert b"".join(split_message(data)) == data


def test_header_fields_keep_folding_and_odd_lines() -> None:
    # Folded fields stay whole, a non-field line is kept unnamed; joining gives the block back.
    header, _, _ = split_message(CAMPAIGN)
    fields = header_fields(header)
    assert b"".join(f.raw for f in fields) == header
    unsub = [f for f in fields if f.name == "List-Unsubscribe"]
    assert unsub[0].raw == (b"List-Unsubscribe: <https://esp.example/unsub/abc>,\r\n"
                            b"\t<mailto:unsub-abc@esp.example>\r\n")
    odd = header_fields(b"From: a\r\nnot a field\r\n continued\r\nTo: b\r\n")
    assert [f.name for f in odd] == ["From", None, "To"]


def test_header_values_unfold_decode_and_ignore_the_body() -> None:
    # Values are unfolded and RFC 2047-decoded; a look-alike line in the body is not a header.
    assert header_values(CAMPAIGN, "subject") == ["Sp\u00e4tsommer sale"]
    assert header_values(CAMPAIGN, "LIST-UNSUBSCRIBE") == [
        "<https://esp.example/unsub/abc>,\t<mailto:unsub-abc@esp.example>"]
    assert header_values(CAMPAIGN, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert header_values(CAMPAIGN, "Content-Type") == ['multipart/mixed; boundary="outer"']
    assert header_values(b"Subject: =?x-nope?q?abc?=\r\n\r\n", "Subject") == [
        "=?x-nope?q?abc?="]
    assert header_values(PLAIN, "X-Missing") == []


def test_line_ending_follows_the_first_line() -> None:
    # The message's own ending is taken from its first line; CRLF when there is none.
    assert line_ending(PLAIN) == b"\r\n"
    assert line_ending(PLAIN.replace(b"\r\n", b"\n")) == b"\n"
    assert line_ending(b"Subject: x") == b"\r\n"


# --- rewriting -----------------------------------------------------------------------------

def _others(data: bytes) -> list[bytes]:
    header, _, _ = split_message(data)
    return [f.raw for f in header_fields(header) if (f.name or "").lower() not in
            {"list-unsubscribe", "list-unsubscribe-post"}]


@pytest.mark.parametrize("existing", [0, 1, 2])
def test_rewrite_leaves_exactly_one_pair(existing: int) -> None:
    # Zero, one or two sender-set pairs (folded, odd case): exactly one of each afterwards.
    extra = (b"LIST-UNSUBSCRIBE: <https://other.example/u>\r\n"
             b"List-Unsubscribe-POST:\r\n  List-Unsubscribe=One-Click\r\n")
    data = {0: PLAIN, 1: CAMPAIGN, 2: CAMPAIGN.replace(b"X-Campaign", extra + b"X-Campaign")}[
        existing]
    assert _count(data, "List-Unsubscribe") == existing
    out = rewrite_headers(data, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    assert header_values(out, "List-Unsubscribe") == [f"<{URL}>, <mailto:{MAILTO}>"]
    assert header_values(out, "List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert out.startswith(f"List-Unsubscribe: <{URL}>, <mailto:{MAILTO}>\r\n".encode())
    # Body bytes identical, slice for slice; other header lines identical and in order.
    assert split_message(out)[1:] == split_message(data)[1:]
    assert out.endswith(data[len(split_message(data)[0]):])
    assert _others(out) == _others(data)


def test_rewrite_keeps_every_other_byte() -> None:
    # Exact expected bytes: only the two sender fields go, nothing else moves.
    out = rewrite_headers(CAMPAIGN, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    start = CAMPAIGN.index(b"List-Unsubscribe: <https://esp")
    end = CAMPAIGN.index(b"X-Campaign")
    post = b"list-unsubscribe-post: List-Unsubscribe=One-Click\r\n"
    expected_rest = (CAMPAIGN[:start] + CAMPAIGN[end:]).replace(post, b"")
    new = (f"List-Unsubscribe: <{URL}>, <mailto:{MAILTO}>\r\n"
           "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n").encode()
    assert out == new + expected_rest
    assert message_texts(out) == message_texts(CAMPAIGN)


def test_rewrite_lf_only_message_uses_lf() -> None:
    # A bare-LF message gets bare-LF fields: no mixed line endings are introduced.
    data = CAMPAIGN.replace(b"\r\n", b"\n")
    out = rewrite_headers(data, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    assert b"\r" not in out
    assert _count(out, "List-Unsubscribe") == 1 and _count(out, "List-Unsubscribe-Post") == 1
    assert split_message(out)[2] == split_message(data)[2]


@pytest.mark.parametrize("data", [b"From: a@acme.example\r\nSubject: x\r\n",
                                  b"From: a@acme.example\r\nSubject: x", b""])
def test_rewrite_no_body_message(data: bytes) -> None:
    # Header-only (even without final newline or anything at all): fields added, rest kept.
    out = rewrite_headers(data, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    assert out.endswith(data)
    assert _count(out, "List-Unsubscribe") == 1 and split_message(out)[2] == b""


def test_rewrite_refuses_leading_continuation_line() -> None:
    # A message starting with a folded line would glue itself onto our added field: refused.
    with pytest.raises(InvalidRequest, match="continuation line"):
        rewrite_headers(b" evil\r\nFrom: a\r\n\r\nx", remove=UNSUB, add=[("X-A", "b")])


def test_rewrite_refuses_overlong_line() -> None:
    # A field longer than RFC 5322's 998-octet line limit is refused with the limit named.
    with pytest.raises(InvalidRequest, match="998"):
        rewrite_headers(PLAIN, remove=(), add=[("X-Long", "a" * 1000)])


_NAMES = st.sampled_from(["From", "To", "Subject", "Received", "X-A", "Content-Type",
                          "List-Unsubscribe-Extra", "X-List-Unsubscribe"])
_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
_UNSUB_NAMES = st.sampled_from(["List-Unsubscribe", "list-unsubscribe", "LIST-UNSUBSCRIBE",
                                "List-Unsubscribe-Post", "list-Unsubscribe-post"])


@st.composite
def _messages(draw: st.DrawFn) -> tuple[bytes, list[bytes], bytes]:
    """(message, the fields that must survive in order, separator + body)."""
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    fields: list[tuple[bool, bytes]] = []
    if draw(st.booleans()):
        fields.append((False, b"From: a@acme.example" + eol))
    for _ in range(draw(st.integers(0, 8))):
        removable = draw(st.booleans())
        name = draw(_UNSUB_NAMES if removable else _NAMES)
        parts = draw(st.lists(_VALUE, min_size=1, max_size=3))
        value = (eol + b" ").join(p.encode() for p in parts)
        fields.append((removable, name.encode() + b":" + value + eol))
    header = b"".join(raw for _, raw in fields)
    kept = [raw for removable, raw in fields if not removable]
    body = draw(st.one_of(st.none(), st.binary(max_size=200), st.just(
        b"List-Unsubscribe: <x>" + eol + eol + b"List-Unsubscribe-Post: y" + eol)))
    if body is None:
        return header, kept, b""
    return header + eol + body, kept, eol + body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_messages())
def test_rewrite_property_preserves_body_and_other_lines(
        sample: tuple[bytes, list[bytes], bytes]) -> None:
    # For any generated message: new pair on top, every other field and the body unchanged.
    data, others, tail = sample
    add = unsubscribe_headers(URL, MAILTO)
    out = rewrite_headers(data, remove=UNSUB, add=add)
    eol = line_ending(data)
    new = b"".join(f"{n}: {v}".encode() + eol for n, v in add)
    assert out == new + b"".join(others) + tail
    assert _count(out, "List-Unsubscribe") == 1
    assert _count(out, "List-Unsubscribe-Post") == 1


# --- DKIM ----------------------------------------------------------------------------------

SELECTOR = "s2024"
DOMAIN = "acme.example"
DnsFunc = Callable[..., bytes | None]


def _openssl(*args: str) -> bytes:
    return subprocess.run(["openssl", *args], check=True, capture_output=True).stdout


def _dns(record: str) -> DnsFunc:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None
    return lookup


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, DnsFunc]:
    path: Path = tmp_path_factory.mktemp("dkim") / "rsa.pem"
    _openssl("genrsa", "-traditional", "-out", str(path), "2048")
    public = base64.b64encode(_openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER"))
    return path.read_bytes(), _dns(f"v=DKIM1; k=rsa; p={public.decode()}")


@pytest.fixture(scope="module")
def ed_key() -> tuple[bytes, DnsFunc]:
    key = nacl.signing.SigningKey.generate()
    public = key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return key.encode(encoder=nacl.encoding.Base64Encoder), _dns(
        f"v=DKIM1; k=ed25519; p={public}")


@pytest.fixture(params=["rsa", "ed25519"])
def key(request: pytest.FixtureRequest, rsa_key: tuple[bytes, DnsFunc],
        ed_key: tuple[bytes, DnsFunc]) -> tuple[bytes, DnsFunc]:
    return rsa_key if request.param == "rsa" else ed_key


def _relay(data: bytes, key: tuple[bytes, DnsFunc]) -> bytes:
    rewritten = rewrite_headers(data, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    return dkim_sign(rewritten, selector=SELECTOR, domain=DOMAIN, private_key=key[0])


def test_dkim_sign_then_verify(key: tuple[bytes, DnsFunc]) -> None:
    # Rewrite then sign: dkimpy verifies, as sent and as it arrives after SMTP transport.
    signed = _relay(CAMPAIGN, key)
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=key[1])
    assert dkim.verify(_wire(signed), dnsfunc=key[1])
    # The rest of the message is the rewritten one, untouched.
    rewritten = rewrite_headers(CAMPAIGN, remove=UNSUB, add=unsubscribe_headers(URL, MAILTO))
    assert signed.endswith(rewritten)


def test_dkim_algorithm_follows_the_key(rsa_key: tuple[bytes, DnsFunc],
                                        ed_key: tuple[bytes, DnsFunc]) -> None:
    # An RSA key signs rsa-sha256, an Ed25519 key ed25519-sha256 (RFC 8463); c= relaxed/relaxed.
    for key, algorithm in ((rsa_key, "rsa-sha256"), (ed_key, "ed25519-sha256")):
        value = header_values(_relay(PLAIN, key), "DKIM-Signature")[0]
        assert f"a={algorithm};" in value and "c=relaxed/relaxed;" in value


def test_dkim_h_covers_and_oversigns_unsubscribe(key: tuple[bytes, DnsFunc]) -> None:
    # h= lists the present headers, and each List-Unsubscribe field one extra time.
    value = header_values(_relay(CAMPAIGN, key), "DKIM-Signature")[0]
    names = re.sub(r"\s", "", re.search(r"\bh=([^;]*)", value).group(1)).split(":")  # type: ignore[union-attr]
    assert names.count("list-unsubscribe") == 2 and names.count("list-unsubscribe-post") == 2
    assert names.count("from") == 2 and "list-id" in names and "x-campaign" not in names
    assert "reply-to" not in names  # absent and not in extra_headers: not signed


@pytest.mark.parametrize("tamper", ["add_top", "add_bottom", "alter", "alter_post"])
def test_dkim_fails_when_unsubscribe_changes_after_signing(
        key: tuple[bytes, DnsFunc], tamper: str) -> None:
    # Anyone adding a second List-Unsubscribe or altering ours breaks the signature.
    signed = _relay(CAMPAIGN, key)
    header, sep, body = split_message(signed)
    evil = b"List-Unsubscribe: <https://evil.example/u>\r\n"
    tampered = {
        "add_top": evil + signed,
        "add_bottom": header + evil + sep + body,
        "alter": signed.replace(URL.encode(), b"https://evil.example/u/tok3n"),
        "alter_post": signed.replace(b"Post: List-Unsubscribe=One-Click",
                                     b"Post: List-Unsubscribe=Two-Click"),
    }[tamper]
    assert tampered != signed
    assert dkim.verify(signed, dnsfunc=key[1])
    assert not dkim.verify(tampered, dnsfunc=key[1])


def test_dkim_locks_absent_unsubscribe(key: tuple[bytes, DnsFunc]) -> None:
    # Signed without the fields (a transactional mail): adding one later still breaks it.
    signed = dkim_sign(PLAIN, selector=SELECTOR, domain=DOMAIN, private_key=key[0])
    assert dkim.verify(signed, dnsfunc=key[1])
    header, sep, body = split_message(signed)
    assert not dkim.verify(header + b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                           + sep + body, dnsfunc=key[1])


def test_dkim_lf_only_message(key: tuple[bytes, DnsFunc]) -> None:
    # A bare-LF message is signed as it is, with an LF signature field, valid before and
    # after the SMTP client turns its line endings into CRLF.
    data = CAMPAIGN.replace(b"\r\n", b"\n")
    signed = _relay(data, key)
    assert b"\r" not in signed
    assert split_message(signed)[2] == split_message(data)[2]
    assert dkim.verify(signed, dnsfunc=key[1])
    assert dkim.verify(_wire(signed), dnsfunc=key[1])


def test_dkim_body_change_fails(key: tuple[bytes, DnsFunc]) -> None:
    # The body is covered too (bh=): one changed byte in the attachment fails verification.
    signed = _relay(CAMPAIGN, key)
    i = signed.rindex(b"AAEC")
    assert not dkim.verify(signed[:i] + b"AAED" + signed[i + 4:], dnsfunc=key[1])


def test_dkim_pkcs8_pem_keys(tmp_path: Path) -> None:
    # OpenSSL 3's default PKCS#8 PEM works for RSA and Ed25519 alike.
    rsa = tmp_path / "rsa8.pem"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(rsa))
    ed = tmp_path / "ed.pem"
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(ed))
    rsa_pub = base64.b64encode(_openssl("pkey", "-in", str(rsa), "-pubout", "-outform", "DER"))
    ed_pub = base64.b64encode(_openssl("pkey", "-in", str(ed), "-pubout", "-outform", "DER")[-32:])
    for path, record in ((rsa, f"v=DKIM1; k=rsa; p={rsa_pub.decode()}"),
                         (ed, f"v=DKIM1; k=ed25519; p={ed_pub.decode()}")):
        pem = path.read_bytes().replace(b"\n", b"\r\n")  # a key file saved on Windows, too
        signed = dkim_sign(PLAIN, selector=SELECTOR, domain=DOMAIN, private_key=pem)
        assert dkim.verify(signed, dnsfunc=_dns(record)), path.name


@pytest.mark.parametrize("private_key,match", [
    (b"not a key", "neither a PEM"),
    (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "cannot be used"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
     "ENCRYPTED PRIVATE KEY"),
    (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n", "well-formed PEM"),
    (base64.b64encode(b"x" * 31), "neither a PEM"),
])
def test_dkim_bad_key_is_a_key_error(private_key: bytes, match: str) -> None:
    # An unusable tenant key is reported as the operator's key problem, never a crash.
    with pytest.raises(DkimKeyError, match=match):
        dkim_sign(PLAIN, selector=SELECTOR, domain=DOMAIN, private_key=private_key)


@pytest.mark.parametrize("selector,domain,match", [
    ("s1; x=y", DOMAIN, "selector"), ("", DOMAIN, "selector"),
    (SELECTOR, "acme.example\r\nBcc: x", "domain"), (SELECTOR, "b\u00fccher.example", "xn--"),
])
def test_dkim_bad_selector_or_domain(ed_key: tuple[bytes, DnsFunc], selector: str,
                                     domain: str, match: str) -> None:
    # Selector and domain go into the signature field: anything but DNS names is refused.
    with pytest.raises(DkimKeyError, match=match):
        dkim_sign(PLAIN, selector=selector, domain=domain, private_key=ed_key[0])


@pytest.mark.parametrize("data,match", [
    (PLAIN.replace(b"From: Acme Co <news@acme.example>\r\n", b""), "no From header"),
    (PLAIN.replace(b"our summer", b"our\rsummer"), "bare carriage return"),
    (b"not a header\r\n" + PLAIN, "first line is not a header field"),
    (PLAIN.replace(b"Subject: Hello", b"Subject : Hello"), "cannot be DKIM-signed"),
])
def test_dkim_refuses_unsignable_messages(ed_key: tuple[bytes, DnsFunc], data: bytes,
                                          match: str) -> None:
    # A message DKIM cannot sign reliably is refused with the reason, not signed wrongly.
    with pytest.raises(InvalidRequest, match=match) as info:
        dkim_sign(data, selector=SELECTOR, domain=DOMAIN, private_key=ed_key[0])
    assert not isinstance(info.value, DkimKeyError)


def test_signed_by_reads_our_signature(key: tuple[bytes, DnsFunc]) -> None:
    # signed_by names the d= domain and the h= fields of a real signature.
    signed = _relay(CAMPAIGN, key)
    [(domain, names)] = signed_by(signed)
    assert domain == DOMAIN
    assert {"from", "list-unsubscribe", "list-unsubscribe-post", "subject"} <= names


def test_signed_by_reads_a_sender_signature_covering_unsubscribe() -> None:
    # A sender's (ESP's) folded signature: the relay learns that replacing the field breaks it.
    data = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
            b"        d=ESP.Example; s=k1; t=1717495200;\r\n"
            b"        h=From : To:Subject:List-Unsubscribe:\r\n"
            b"         List-Unsubscribe-Post;\r\n"
            b"        bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdA==\r\n"
            b"DKIM-Signature: v=1; a=rsa-sha256; s=x; h=from; b=; bh=\r\n"
            + PLAIN)
    assert signed_by(data) == [("esp.example", {"from", "to", "subject", "list-unsubscribe",
                                                "list-unsubscribe-post"})]
    assert signed_by(PLAIN) == []


# --- content -------------------------------------------------------------------------------

def test_postal_address_found_in_qp_and_base64_html() -> None:
    # The address split by a quoted-printable soft break, or by <br> in base64 HTML, is found.
    assert mentions_postal_address(CAMPAIGN, "1 main st, SPRINGFIELD")
    qp_only = CAMPAIGN.replace(HTML_B64, base64.encodebytes(b"<p>nothing here</p>"))
    assert mentions_postal_address(qp_only, "1 Main St,  Springfield")
    html_only = CAMPAIGN.replace(b"Acme Co, 1 Main=\r\n St=2C Springfield", b"bye")
    assert mentions_postal_address(html_only, "1 Main St\nSpringfield")


def test_postal_address_missing_or_only_in_attachment() -> None:
    # An address only in an attached text file, a longer number or nothing: not found.
    att = base64.encodebytes(b"1 Main St, Springfield")
    data = (b"From: a@acme.example\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            b"--b\r\nContent-Type: text/plain\r\n\r\nHello 21 Main St, Springfield\r\n"
            b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + att + b"--b--\r\n")
    assert not mentions_postal_address(data, "1 Main St, Springfield")
    assert mentions_postal_address(data, "21 Main St")
    assert len(message_texts(data, attachments=True)) == 2
    assert not mentions_postal_address(PLAIN, "1 Main St")
    assert not mentions_postal_address(PLAIN, "  ")


def test_postal_address_tolerates_bad_charsets_and_html() -> None:
    # Unknown or binary-only charsets and broken HTML are read leniently, never a crash.
    for charset in (b"x-unknown", b"base64", b"idna", b"us-ascii"):
        data = (b"From: a@acme.example\r\nContent-Type: text/plain; charset=" + charset +
                b"\r\n\r\n\xff\xfe 1 Main St \xe9\r\n")
        assert mentions_postal_address(data, "1 main st"), charset
    html = (b"From: a@acme.example\r\nContent-Type: text/html\r\n\r\n"
            b"<div><script>1 Main St</script><p>1&nbsp;Main <b>St</b><!bogus <![if x]></p>")
    assert mentions_postal_address(html, "1 Main St")
    assert message_texts(html)[0].count("Main") == 1  # script text is not visible text


@pytest.mark.parametrize("headers,expected", [
    (b"X-Optout-Topic: Deals\r\nX-Optout-Topic: news\r\n", "deals"),
    (b"X-Optout-Topic: unknown\r\nList-Id: Acme <news.acme.example>\r\n", "news"),
    (b"List-Id: Acme Deals <deals.acme.example>\r\n", "deals"),
    (b"List-Id: <Weekly.Acme.Example>\r\n", "weekly.acme.example"),
    (b"List-Id: =?utf-8?q?A_<news.x>?= <other.acme.example>\r\n", None),
    (b"List-Id: Acme\r\n <news.acme.example>\r\n", "news"),
    (b"List-Id: deals\r\n", "deals"),
    (b"X-Optout-Topic: \r\n", None),
    (b"", None),
])
def test_message_topic(headers: bytes, expected: str | None) -> None:
    # Topic from X-Optout-Topic (first wins) else List-Id's first label or whole id, if known.
    known = {"Deals", "news", "weekly.acme.example"}
    assert message_topic(headers + PLAIN, known) == expected


def test_message_topic_ignores_the_body() -> None:
    # A topic line in the body is not a header and sets nothing.
    assert message_topic(PLAIN + b"X-Optout-Topic: deals\r\n", {"deals"}) is None


_JUNK = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([
        b"From: a@acme.example", b" folded", b"\tmore", b"", b"\r", b"Content-Type: text/html",
        b"Content-Type: multipart/mixed; boundary=b", b"--b", b"<p>1 Main St</p>", b"=C3=",
        b"Content-Transfer-Encoding: base64", b"List-Id: <a.b>", b"DKIM-Signature: d=x; h=",
        b"X-Optout-Topic: =?bogus?b?@@?=", b"\x00\xff", b"no colon", b"<![if", b"<!--",
    ]), max_size=20).map(lambda lines: b"\n".join(lines)),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=_JUNK)
def test_garbage_never_crashes(ed_key: tuple[bytes, DnsFunc], data: bytes) -> None:
    # Arbitrary bytes give an answer or a clear InvalidRequest, never another exception.
    header_values(data, "Subject")
    signed_by(data)
    message_topic(data, {"a", "x"})
    mentions_postal_address(data, "1 Main St")
    message_texts(data, attachments=True)
    for call in (lambda: rewrite_headers(data, remove=UNSUB, add=[("X-A", "b")]),
                 lambda: dkim_sign(data, selector=SELECTOR, domain=DOMAIN,
                                   private_key=ed_key[0])):
        try:
            out = call()
        except InvalidRequest:
            continue
        assert out.endswith(split_message(data)[2])
