"""Per-recipient rewriting of relayed mail, header safety and DKIM signing.

Pure functions on the raw bytes of one message; no I/O. The SMTP edge calls them for
each allowed recipient; the DLP scan reuses :func:`message_texts`.

Why bytes and not ``email.generator``: the relayed message must stay byte-for-byte what the
sender wrote (body, other fields, their order and folding), and Python 3.11.7 predates the
stdlib fix for header injection through the generator (CVE-2024-6923). So fields are cut and
spliced as byte slices, and every value the gateway writes passes
:func:`check_header_value` first. ``email.parser`` is only used to *read* MIME parts.

Line endings: a message keeps the ending of its first line (CRLF, or bare LF as some local
submitters send it); fields we add use the same one. The header block ends at the first
empty line, exactly where dkimpy's parser ends it, so both always agree on what is a field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from html.parser import HTMLParser

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information

from suppression.errors import InvalidRequest

# RFC 5322 3.6.8: field-name = 1*ftext, ftext = %d33-57 / %d59-126 (printable ASCII but ":").
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# obs-optional (RFC 5322 4.5.3) allows blanks before the colon when reading.
_RAW_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# CR, LF and NUL are the injection characters; the other C0/C1 controls, DEL and the Unicode
# line separators are refused too, since some parsers (str.splitlines) break lines on them.
_FORBIDDEN_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_CHAR_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "a NUL"}
_MAX_LINE = 998  # RFC 5322 2.1.1, octets excluding the line ending
_FOLD = re.compile(rb"\r?\n(?=[ \t])")

UNSUBSCRIBE = "List-Unsubscribe"
UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK = "List-Unsubscribe=One-Click"
TOPIC_HEADER = "X-Optout-Topic"


class HeaderInjection(InvalidRequest):
    """A header name or value the gateway was about to write would break the header block."""


class DkimKeyError(InvalidRequest):
    """The tenant's DKIM key or selector is unusable: an operator's fault, not the sender's.

    A subclass so generic handling still refuses the message (fail closed); the SMTP edge
    should answer it with a temporary 4xx, since the sender can do nothing about it.
    """


# --- header safety -------------------------------------------------------------------------

def check_header_value(name: str, value: str) -> None:
    """Raise :class:`HeaderInjection` unless ``name: value`` is one safe, unfolded field."""
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderInjection(
            f"the header name {name!r} is not a valid field name (RFC 5322: printable ASCII "
            "other than ':' and space)", field=name)
    if m := _FORBIDDEN_IN_VALUE.search(value):
        char = _CHAR_NAMES.get(m.group(), f"the control character U+{ord(m.group()):04X}")
        raise HeaderInjection(
            f"the {name} header value contains {char} at position {m.start()}; it could "
            "inject other header fields, so nothing was written", field=name)


# --- splitting -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RawField:
    """One header field exactly as received, continuation lines and line endings included.

    ``name`` is None for a line that is not a field (no colon): it is kept and never matched.
    """

    name: str | None
    raw: bytes

    def value_bytes(self) -> bytes:
        """The value after the colon, unfolded, without the line ending or outer blanks."""
        colon = self.raw.index(b":") if self.name is not None else -1
        return _FOLD.sub(b"", self.raw[colon + 1:]).strip(b" \t\r\n")

    def is_named(self, names: Collection[str]) -> bool:
        return self.name is not None and self.name.lower() in names


def _lines(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each line, end past its LF. Bare CR is not a line break here."""
    pos, size = 0, len(data)
    while pos < size:
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        yield pos, end
        pos = end


def split_message(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body): ``header + separator + body == data``.

    The separator is the first empty line (``b"\\r\\n"`` or ``b"\\n"``); a message with no
    empty line is all header, with an empty separator and body.
    """
    for start, end in _lines(data):
        if data[start:end] in (b"\r\n", b"\n"):
            return data[:start], data[start:end], data[end:]
    return data, b"", b""


def header_fields(header: bytes) -> list[RawField]:
    """The header block as raw fields; joining their ``raw`` gives the block back."""
    spans: list[tuple[str | None, int, int]] = []
    for start, end in _lines(header):
        if header[start:start + 1] in (b" ", b"\t") and spans:
            name, first, _ = spans[-1]
            spans[-1] = (name, first, end)  # folded continuation of the field above
            continue
        m = _RAW_FIELD_NAME.match(header, start)
        spans.append((m.group(1).decode("ascii") if m else None, start, end))
    return [RawField(name, header[start:end]) for name, start, end in spans]


def line_ending(data: bytes) -> bytes:
    """The message's own line ending, from its first line; CRLF when it has none."""
    newline = data.find(b"\n")
    if newline < 0:
        return b"\r\n"
    return b"\r\n" if data[newline - 1:newline] == b"\r" else b"\n"


def _raw_values(data: bytes, name: str) -> list[str]:
    wanted = {name.lower()}
    header, _, _ = split_message(data)
    return [f.value_bytes().decode("utf-8", "replace")
            for f in header_fields(header) if f.is_named(wanted)]


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return value  # an undecodable encoded-word is shown as sent, not dropped


def header_values(data: bytes, name: str) -> list[str]:
    """Every value of the field ``name`` (any case), unfolded, RFC 2047 words decoded."""
    return [_decode_words(v) for v in _raw_values(data, name)]


# --- rewriting -----------------------------------------------------------------------------

def rewrite_headers(data: bytes, *, remove: Iterable[str],
                    add: Sequence[tuple[str, str]]) -> bytes:
    """Drop every field named in ``remove``, put ``add`` at the top; all else byte-identical.

    Raises :class:`HeaderInjection` for an unsafe added field (nothing is returned then), and
    :class:`InvalidRequest` when the message starts with a continuation line, which would
    silently become part of the last added field.
    """
    eol = line_ending(data)
    new = b""
    for name, value in add:
        check_header_value(name, value)
        line = f"{name}: {value}".encode()
        if len(line) > _MAX_LINE:
            raise InvalidRequest(f"the {name} header would be {len(line)} octets long; "
                                 f"lines are limited to {_MAX_LINE} (RFC 5322 2.1.1)", field=name)
        new += line + eol
    if new and data[:1] in (b" ", b"\t"):
        raise InvalidRequest("the message starts with a folded continuation line instead of "
                             "a header field; it cannot be relayed safely")
    drop = {n.lower() for n in remove}
    header, separator, body = split_message(data)
    kept = b"".join(f.raw for f in header_fields(header) if not f.is_named(drop))
    return new + kept + separator + body


def _check_uri(label: str, uri: str) -> None:
    if not uri or not uri.isascii() or re.search(r"[\x00-\x20\x7f<>,]", uri):
        raise HeaderInjection(
            f"the {label} {uri!r} must be non-empty ASCII without spaces, control characters, "
            "'<', '>' or ',' (percent-encode them; RFC 2369)", field=UNSUBSCRIBE)


def unsubscribe_headers(http_url: str, mailto: str) -> list[tuple[str, str]]:
    """The RFC 8058 pair: ``List-Unsubscribe`` (HTTP URI first, then mailto) and its Post.

    ``mailto`` may be given with or without its ``mailto:`` scheme.
    """
    if not http_url.lower().startswith(("https://", "http://")):
        raise HeaderInjection(f"the unsubscribe URL {http_url!r} must be an http(s) URL "
                              "(RFC 8058 one-click needs an HTTPS URI)", field=UNSUBSCRIBE)
    mailto_uri = mailto if mailto[:7].lower() == "mailto:" else f"mailto:{mailto}"
    if "@" not in mailto_uri:
        raise HeaderInjection(f"the unsubscribe mailto {mailto!r} has no address",
                              field=UNSUBSCRIBE)
    _check_uri("unsubscribe URL", http_url)
    _check_uri("unsubscribe mailto", mailto_uri)
    return [(UNSUBSCRIBE, f"<{http_url}>, <{mailto_uri}>"), (UNSUBSCRIBE_POST, ONE_CLICK)]


# --- DKIM ----------------------------------------------------------------------------------

# Signed when present (RFC 6376 5.4.1's list, trimmed to what a relayed campaign carries).
DKIM_SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "Reply-To", "List-Id",
)
# PKCS#8 wrapping of an Ed25519 seed (RFC 8410): this fixed prefix, then the 32-byte seed.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\n(.*?)\n-----END \1-----", re.DOTALL)
_SELECTOR = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*")
_DOMAIN = re.compile(r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                     r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _signing_key(private_key: bytes) -> tuple[bytes, bytes]:
    """(dkimpy algorithm, key in the form dkimpy takes) from a PEM or base64 key."""
    text = private_key.strip().replace(b"\r\n", b"\n")
    if text.startswith(b"-----BEGIN"):
        m = _PEM.match(text)
        if m is None:
            raise DkimKeyError("the DKIM private key is not a well-formed PEM block")
        der = base64.b64decode(m.group(2))  # non-alphabet bytes (newlines) are skipped
        if (m.group(1) == b"PRIVATE KEY" and len(der) == 48
                and der.startswith(_ED25519_PKCS8_PREFIX)):
            return b"ed25519-sha256", base64.b64encode(der[len(_ED25519_PKCS8_PREFIX):])
        if m.group(1) in (b"RSA PRIVATE KEY", b"PRIVATE KEY"):
            return b"rsa-sha256", text + b"\n"
        raise DkimKeyError(f"the DKIM private key is a {m.group(1).decode()}; use an "
                           "unencrypted RSA or Ed25519 private key")
    try:
        seed = base64.b64decode(text, validate=True)
    except binascii.Error:
        seed = b""
    if len(seed) == 32:  # dkimpy's and dknewkey's own Ed25519 format: the base64 seed
        return b"ed25519-sha256", base64.b64encode(seed)
    raise DkimKeyError("the DKIM private key is neither a PEM RSA/Ed25519 key nor a base64 "
                       "32-byte Ed25519 seed")


def _signed_header_list(fields: list[RawField], extra_headers: Sequence[str]) -> list[bytes]:
    """h= in dkimpy's form: each name once per instance present, plus one more.

    The extra "null" entry over-signs the field (RFC 6376 8.15): a verifier then also hashes
    an instance added later, so nobody downstream can add a second List-Unsubscribe or From
    without breaking the signature. ``extra_headers`` are signed even when absent, which
    locks their absence in the same way.
    """
    counts = Counter(f.name.lower() for f in fields if f.name is not None)
    always = {name.lower() for name in extra_headers}
    names: list[bytes] = []
    for name in dict.fromkeys(n.lower() for n in (*DKIM_SIGNED_HEADERS, *extra_headers)):
        if counts[name] or name in always:
            names += [name.encode("ascii")] * (counts[name] + 1)
    return names


def _check_dkim_inputs(data: bytes, fields: list[RawField], selector: str, domain: str,
                       extra_headers: Sequence[str]) -> None:
    if not _SELECTOR.fullmatch(selector):
        raise DkimKeyError(f"the DKIM selector {selector!r} is not a valid DNS label sequence")
    if not _DOMAIN.fullmatch(domain):
        raise DkimKeyError(f"the DKIM domain {domain!r} is not an ASCII domain name "
                           "(write an IDN in its xn-- form)")
    for name in extra_headers:
        check_header_value(name, "")
    if re.search(rb"\r(?!\n)", data):
        # SMTP clients (aiosmtplib, smtplib) turn a lone CR into CRLF on the wire, but dkimpy
        # hashes it as a character: the signature would never verify after transport.
        raise InvalidRequest("the message contains a bare carriage return (CR without LF), "
                             "which RFC 5322 forbids; it cannot be DKIM-signed")
    if fields and fields[0].name is None:
        raise InvalidRequest("the message's first line is not a header field")
    if not any(f.is_named({"from"}) for f in fields):
        raise InvalidRequest("the message has no From header; DKIM must sign From "
                             "(RFC 6376 5.4)", field="From")


def dkim_sign(data: bytes, *, selector: str, domain: str, private_key: bytes,
              extra_headers: Sequence[str] = (UNSUBSCRIBE, UNSUBSCRIBE_POST)) -> bytes:
    """The message with a ``DKIM-Signature`` field prepended, the rest unchanged.

    relaxed/relaxed; rsa-sha256 for an RSA key (PKCS#1 or PKCS#8 PEM), ed25519-sha256
    (RFC 8463) for an Ed25519 key (PKCS#8 PEM or dkimpy's base64 seed). ``h=`` covers the
    :data:`DKIM_SIGNED_HEADERS` present and always ``extra_headers``, all over-signed (see
    :func:`_signed_header_list`): Gmail and Yahoo show one-click unsubscribe only when DKIM
    covers both List-Unsubscribe fields (RFC 8058 4), so sign *after* :func:`rewrite_headers`.

    Bare-LF messages are signed as they are: dkimpy reads LF and CRLF alike and hashes the
    CRLF form the SMTP client puts on the wire; the new field uses the message's own ending.
    """
    header, _, _ = split_message(data)
    fields = header_fields(header)
    _check_dkim_inputs(data, fields, selector, domain, extra_headers)
    algorithm, key = _signing_key(private_key)
    try:
        signature = dkim.sign(
            data, selector.encode("ascii"), domain.encode("ascii"), key,
            canonicalize=(b"relaxed", b"relaxed"), signature_algorithm=algorithm,
            include_headers=_signed_header_list(fields, extra_headers),
            linesep=line_ending(data))
    except (dkim.KeyFormatError, dkim.NaClNotFoundError) as exc:
        raise DkimKeyError(f"the DKIM private key cannot be used: {exc}") from exc
    except dkim.DKIMException as exc:
        raise InvalidRequest(f"the message cannot be DKIM-signed: {exc}") from exc
    return bytes(signature) + data


def _tags(value: str) -> dict[str, str]:
    """RFC 6376 3.2 tag=value list; blanks (FWS) around tags and values are dropped."""
    tags: dict[str, str] = {}
    for item in value.split(";"):
        tag, eq, tag_value = item.partition("=")
        if eq:
            tags.setdefault(tag.strip().lower(), tag_value.strip())
    return tags


def signed_by(data: bytes) -> list[tuple[str, set[str]]]:
    """(d= domain, lower-cased names in h=) of each DKIM-Signature, top first.

    Signatures without a d= are skipped: there is nobody to name in a log line.
    """
    result: list[tuple[str, set[str]]] = []
    for value in _raw_values(data, "DKIM-Signature"):
        tags = _tags(value)
        if domain := tags.get("d", "").lower():
            names = {n.strip().lower() for n in tags.get("h", "").split(":") if n.strip()}
            result.append((domain, names))
    return result


# --- content -------------------------------------------------------------------------------

class _HtmlText(HTMLParser):
    """Visible text of an HTML part; block-level tags become a space, inline ones nothing."""

    _BLOCK = frozenset({
        "address", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tbody",
        "td", "tfoot", "th", "thead", "tr", "ul",
    })
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in self._HIDDEN
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1
        if tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)  # undoes quoted-printable and base64, leniently
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text mislabelled as ASCII is common; UTF-8 is the guess
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, UnicodeError):  # unknown, binary-only (base64) or strict-only codecs
        text = payload.decode("utf-8", "replace")
    return html_text(text) if part.get_content_type() == "text/html" else text


def message_texts(data: bytes, *, attachments: bool = False) -> list[str]:
    """Decoded text of every text/plain and text/html part (HTML reduced to its text).

    Parts marked ``Content-Disposition: attachment`` are left out unless ``attachments``.
    """
    message = message_from_bytes(data, policy=email_policy.compat32)
    texts: list[str] = []
    for part in message.walk():
        if part.get_content_type() not in ("text/plain", "text/html"):
            continue
        if part.get_content_disposition() == "attachment" and not attachments:
            continue
        texts.append(_part_text(part))
    return texts


def _normalised(text: str) -> str:
    # Commas and line breaks both separate address lines: "1 Main St\nSpringfield" and
    # "1 Main St, Springfield" are the same address.
    return re.sub(r"[\s,]+", " ", text).strip().casefold()


def mentions_postal_address(data: bytes, postal_address: str) -> bool:
    """Whether a text part shows the tenant's postal address (CAN-SPAM, 15 U.S.C. 7704(a)(5)).

    Compared case-folded with runs of blanks and commas collapsed, on word boundaries so
    "1 Main St" is not found inside "21 Main St". Attachments do not count.
    """
    wanted = _normalised(postal_address)
    if not wanted:
        return False
    pattern = re.compile(rf"(?<!\w){re.escape(wanted)}(?!\w)")
    # Fast path: most marketing mail shows the address in plain or quoted-printable text,
    # where it can be found in the raw bytes without parsing the MIME tree. (It is only a
    # warning, so an address that appears in a plain-text attachment counts too.)
    if _raw_mentions(raw_text(data).casefold(), postal_address):
        return True
    return any(pattern.search(_normalised(text)) for text in message_texts(data))


def _raw_mentions(folded: str, postal_address: str) -> bool:
    """Whether the case-folded text holds the address, with any blanks and commas between
    its words. Its longest word is found with str.find (C speed); the whole address is
    matched only in a window around each hit."""
    anchor, pattern, reach = _postal_parts(postal_address)
    pos = folded.find(anchor)
    while pos >= 0:
        if pattern.search(folded, max(0, pos - reach), pos + len(anchor) + reach):
            return True
        pos = folded.find(anchor, pos + len(anchor))
    return False


@functools.lru_cache(maxsize=256)
def _postal_parts(postal_address: str) -> tuple[str, re.Pattern[str], int]:
    words = [w for w in re.split(r"[\s,]+", postal_address.strip().casefold()) if w]
    pattern = re.compile(r"(?<!\w)" + r"[\s,]+".join(re.escape(w) for w in words) + r"(?!\w)")
    # The window must hold the whole address however much blank space sits between words.
    return max(words, key=len), pattern, 4 * len(postal_address) + 64


_QP_SOFT_BREAK = re.compile(rb"=\r?\n")


def raw_text(data: bytes) -> str:
    """The message as text without parsing it: quoted-printable soft line breaks joined,
    bytes decoded as UTF-8 (errors replaced). Base64 parts stay encoded."""
    return _QP_SOFT_BREAK.sub(b"", data).decode("utf-8", "replace")


def message_topic(data: bytes, known: Collection[str]) -> str | None:
    """The message's topic (lower-case, one of ``known``), or None.

    The first ``X-Optout-Topic`` wins if known; otherwise ``List-Id`` (RFC 2919,
    ``Name <topic.example.com>``): its first label, else the whole id, if known.
    """
    topics = {k.lower() for k in known}
    explicit = header_values(data, TOPIC_HEADER)
    if explicit and (topic := explicit[0].strip().lower()) in topics:
        return topic
    for value in _raw_values(data, "List-Id")[:1]:
        # The id is the last <...>: the phrase before it is free text and may hold brackets.
        list_id = value[value.rfind("<") + 1:value.rfind(">")] if ">" in value else value
        list_id = list_id.strip().lower()
        for candidate in (list_id.split(".", 1)[0], list_id):
            if candidate and candidate in topics:
                return candidate
    return None
