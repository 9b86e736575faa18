"""Complaint reports (ARF) and bounces (DSN) read into opt-out candidates. Pure: no I/O.

Mail sent to the gateway's feedback address is one of two machine-readable reports, both a
``multipart/report`` (RFC 6522) whose second part says what happened and whose third part
(when present) quotes the message we sent. ``parse_feedback`` never raises: anything it
cannot read is ``kind="unknown"`` with no recipients, so the caller suppresses nothing.

Complaints, ARF (RFC 5965, applicability RFC 6650)
  * The report part is ``message/feedback-report`` (RFC 5965 section 2). ``Feedback-Type``
    (section 3.1) decides the kind: ``abuse`` and ``fraud`` (section 7.3) -> ``complaint``;
    ``not-spam`` (RFC 6430) -> ``not_complaint``; ``virus``, ``other``, ``auth-failure``
    (RFC 6591) and anything else -> ``unknown``: none of them says the recipient asked us
    to stop, and auth-failure reports are usually about mail forged in our name.
  * Recipients (``complaint``/``not_complaint`` only): every ``Original-Rcpt-To``
    (section 3.2, may repeat; ``Removal-Recipient`` from the pre-RFC draft is read the
    same way), else the ``To`` of the quoted original, but only when it names exactly one
    address: a complaint is one person's, and suppressing every co-recipient of a message
    would silence people who never complained.
  * Providers redact the complainant (RFC 6590): a local part such as
    ``redacted``, ``xxxxxx`` or a long hex hash is dropped, never suppressed. The signed
    token in the quoted message is what identifies the recipient then.

Bounces, DSN (RFC 3464, status codes RFC 3463)
  * The report part is ``message/delivery-status`` or ``message/global-delivery-status``
    (RFC 6533 section 6). Per-recipient blocks (RFC 3464 section 2.3) are read one by one.
  * Address (sections 2.3.1 and 2.3.2): ``Original-Recipient`` when its type is
    ``rfc822`` (what we sent to, before forwarding or aliasing), else ``Final-Recipient``
    of type ``rfc822`` or ``utf-8`` (RFC 6533 section 3; ``\\x{HEX}`` escapes decoded).
    Other address types (x400, unknown) give no recipient.
  * ``Action`` (section 2.3.3): ``delivered``, ``relayed``, ``expanded`` -> not listed;
    a block without a known action -> not listed (the field is required; without it we
    know nothing). ``delayed`` -> ``soft_bounce``.
  * ``failed`` is ``hard_bounce`` only for a permanent (5.x.x, RFC 3463 section 2)
    status naming the recipient as gone for good:
    5.1.1 bad mailbox, 5.1.2 bad domain, 5.1.3 bad address syntax, 5.1.6 mailbox moved,
    5.1.10 null MX (RFC 7505), 5.2.1 mailbox disabled (RFC 3463 sections 3.2, 3.3).
    Everything else is ``soft_bounce``, deliberately including:
    5.1.0 (generic, often used for *sender* rejections), 5.1.4 ambiguous, 5.1.7/5.1.8
    (the *sender's* address is bad: our problem, not theirs), 5.2.2 mailbox full,
    5.3.x/5.4.x mail system and routing (Exchange Online's 5.4.1 "access denied" is
    ambiguous), 5.5.x protocol (5.5.0 "other protocol status" is sent by some servers for
    any 550, spam blocks included), 5.6.x content, 5.7.x policy/spam blocks, and any 4.x.x.
    A wrong hard bounce suppresses a customer's subscriber; a missed one costs a retry.
  * The status is the ``Status`` field, except that a generic ``X.0.0`` (Exim writes
    5.0.0) is refined by an enhanced code of the same class in ``Diagnostic-Code``
    ("smtp; 550 5.1.1 user unknown"), and a missing ``Status`` is taken from there.
    ``Recipient.status`` is the code the kind was decided on.
  * ``FeedbackReport.kind``: ``hard_bounce`` if any recipient is one, else ``soft_bounce``
    if any is, else ``unknown``. Callers must act on each ``Recipient.kind``.

Tokens
  ``tokens`` are candidates from the quoted original only (its ``List-Unsubscribe`` header,
  then ``/u/TOKEN`` links and ``unsubscribe+TOKEN@`` addresses in its text parts). They are
  unverified strings: the caller checks the signature before trusting one.

Not reports
  A message that is not a ``multipart/report`` (a human reply, or a classic free-text
  bounce such as qmail's "550 5.1.1 <x@y>: user unknown") is ``unknown`` with nothing in
  it: guessing addresses and codes out of prose is how wrong hard bounces happen.
  A report quoted inside a ``message/rfc822`` (a forwarded bounce) is not read either;
  a report wrapped in a ``multipart/*`` (a list footer) is.

Limits
  Only the first ``MAX_REPORT_BYTES`` are read, at most ``MAX_RECIPIENTS`` recipients are
  returned (a forged report must not become a bulk-suppression tool) and at most 20 tokens.
  Parsing a multi-megabyte report takes CPU time: an async caller should run it in a thread.
"""

from __future__ import annotations

import base64
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Literal, TypeVar

from .tokens import MAX_TOKEN_CHARS

__all__ = [
    "FeedbackKind",
    "FeedbackReport",
    "Recipient",
    "parse_feedback",
    "token_from_address",
    "tokens_in_text",
]

FeedbackKind = Literal["complaint", "hard_bounce", "soft_bounce", "not_complaint", "unknown"]

# Larger reports are read from their first 4 MiB: the verdict is in the first two parts, and
# the quoted original (headers first) is what gets cut. Bounds CPU on hostile input.
MAX_REPORT_BYTES = 4 * 1024 * 1024
MAX_DIAGNOSTIC_CHARS = 200
_MAX_ADDRESS_CHARS = 320  # RFC 5321 4.5.3.1: 64-octet local part, @, 255-octet domain
_MAX_PARTS = 64  # MIME parts visited per message: bounds work on hostile nesting
_MAX_SCAN_CHARS = 1_000_000  # text scanned per body part for links
# One report names one message's recipients (RFC 5321 4.5.3.1.8: 100 is the minimum an MTA
# takes); a forged "report" listing thousands would be a bulk-suppression tool.
MAX_RECIPIENTS = 1000
_MAX_TOKENS = 20

_TOKEN = rf"([A-Za-z0-9_-]{{1,{MAX_TOKEN_CHARS}}}+)"
# Our link is PUBLIC_URL/u/TOKEN; PUBLIC_URL may carry a path. Quantifiers are bounded and
# possessive (a segment cannot end anywhere but at "/"), so hostile text costs linear time.
_SEG = r"[^\s/<>\"'?#]{1,255}+"
_URL_RE = re.compile(rf"(?i:https?)://{_SEG}(?:/{_SEG}){{0,8}}?/u/{_TOKEN}(?![A-Za-z0-9_/-])")
# The local part must be exactly unsubscribe+TOKEN: no atext character may precede it.
_MAILTO_RE = re.compile(
    rf"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-])(?i:unsubscribe)\+{_TOKEN}@(?=[^\s@<>.])"
)
# The domain: a name, or an address literal such as [127.0.0.1] (RFC 5321 4.1.3).
_ADDRESS_TOKEN_RE = re.compile(
    rf"(?i:unsubscribe)\+{_TOKEN}@([^\s@<>()\[\],;:\"\\]{{1,255}}|\[[0-9A-Za-z:.]{{1,64}}\])")

_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_FIELD_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)")
_LINE_SPLIT_RE = re.compile(r"\r\n|\r|\n")
_UTF8_ESCAPE_RE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_REDACTED_RE = re.compile(
    r"[x*#_.-]{3,}|anonymi[sz]ed|undisclosed|removed|hidden|unknown|[0-9a-f]{32,}"
)

_ARF_KINDS: dict[str, FeedbackKind] = {
    "abuse": "complaint",
    "fraud": "complaint",
    "not-spam": "not_complaint",
}
_HARD_STATUSES = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_ARF_TYPE = "message/feedback-report"
_ORIGINAL_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_ORIGINAL_HEADERS_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})
# A repeat of one of these inside a block means the sender forgot the blank line
# between two recipients (RFC 3464 section 2.1 requires it); start a new block.
_BLOCK_OPENERS = frozenset({"original-recipient", "final-recipient", "action", "status"})
_MACHINE_TYPES = _DSN_TYPES | {_ARF_TYPE}
_NOT_IN_ADDRESS = frozenset('<>()[],;:"\\')  # quoted local parts and literals: not ours
_TYPE_PREFIX_RE = re.compile(r"\s*[A-Za-z0-9-]+\s*")

T = TypeVar("T")
Fields = list[tuple[str, str]]  # (lower-case name, unfolded value), in order


@dataclass(frozen=True)
class Recipient:
    address: str  # as found, without <> and the "rfc822;" type
    kind: FeedbackKind
    status: str  # enhanced status code the kind was decided on ("5.1.1"); "" for ARF
    diagnostic: str  # single line, <= 200 chars


@dataclass(frozen=True)
class FeedbackReport:
    kind: FeedbackKind
    recipients: tuple[Recipient, ...] = ()
    tokens: tuple[str, ...] = ()
    # feedback_type, user_agent, reporting_mta, source_ip, arrival_date, message_id (of the
    # original), report_type; parse_error (exception class) if the parser itself failed.
    detail: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- tokens


def token_from_address(address: str) -> str | None:
    """TOKEN of ``unsubscribe+TOKEN@domain`` (any case of "unsubscribe"), else None."""
    addr = address.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    m = _ADDRESS_TOKEN_RE.fullmatch(addr)
    if m is None:
        return None
    domain = m.group(2)
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return None
    return m.group(1)


def tokens_in_text(text: str) -> tuple[str, ...]:
    """Tokens of ``…/u/TOKEN`` URLs and ``unsubscribe+TOKEN@`` addresses, in text order."""
    found = [(m.start(), m.group(1)) for m in _URL_RE.finditer(text)]
    found += [(m.start(), m.group(1)) for m in _MAILTO_RE.finditer(text)]
    return _unique(token for _, token in sorted(found))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _first_unique(items: Iterable[T], limit: int) -> tuple[T, ...]:
    seen: dict[T, None] = {}
    for item in items:
        seen.setdefault(item)
        if len(seen) >= limit:
            break
    return tuple(seen)


# --------------------------------------------------------------------------- entry point


def parse_feedback(data: bytes) -> FeedbackReport:
    """Read a complaint or bounce report. Never raises; junk is ``unknown``."""
    try:
        return _parse(bytes(data[:MAX_REPORT_BYTES]))
    except Exception as exc:
        # The email package has had crashes on hostile input; a parser failure must end in
        # "suppress nothing" at the SMTP edge, not a dropped session. The class name is kept
        # for the caller's log (and lets the property tests see it happen).
        return FeedbackReport("unknown", detail={"parse_error": type(exc).__name__})


def _parse(data: bytes) -> FeedbackReport:
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    report = _find_report(msg)
    if report is None:
        return FeedbackReport("unknown")
    detail: dict[str, str] = {}
    report_type = report.get_param("report-type")
    if isinstance(report_type, str):
        detail["report_type"] = _one_line(report_type.lower())
    children = _children(report)
    machine = next((p for p in children if p.get_content_type() in _MACHINE_TYPES), None)
    if machine is None:
        return FeedbackReport("unknown", detail=detail)
    original = _original(p for p in children if p is not machine)
    tokens: tuple[str, ...] = ()
    if original is not None:
        tokens = _original_tokens(original)
        message_id = _first_header(original, "message-id")
        if message_id:
            detail["message_id"] = message_id
    if machine.get_content_type() == _ARF_TYPE:
        kind, recipients = _arf(_report_fields(machine), original, detail)
    else:
        kind, recipients = _dsn(_report_fields(machine), detail)
    return FeedbackReport(kind, recipients, tokens, detail)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _find_report(msg: Message) -> Message | None:
    """The top-level report, or one wrapped in multipart containers (never in message/*)."""
    queue: list[tuple[Message, int]] = [(msg, 0)]
    visited = 0
    while queue and visited < _MAX_PARTS:
        part, depth = queue.pop(0)
        visited += 1
        if part.get_content_type() == "multipart/report":
            return part
        if part.get_content_maintype() == "multipart" and depth < 2:
            queue.extend((child, depth + 1) for child in _children(part))
    return None


# --------------------------------------------------------------------------- ARF


def _arf(fields: Fields, original: Message | None,
         detail: dict[str, str]) -> tuple[FeedbackKind, tuple[Recipient, ...]]:
    first = _first_values(fields)
    feedback_type = first.get("feedback-type", "").strip().lower()
    # Received-Date is the pre-RFC draft's name for Arrival-Date, still sent by some loops.
    for key, name in (("feedback_type", "feedback-type"), ("user_agent", "user-agent"),
                      ("source_ip", "source-ip"), ("arrival_date", "received-date"),
                      ("arrival_date", "arrival-date")):
        if first.get(name):
            detail[key] = _one_line(first[name])
    if first.get("reporting-mta"):
        detail["reporting_mta"] = _one_line(_strip_type(first["reporting-mta"]))
    kind = _ARF_KINDS.get(feedback_type, "unknown")
    if kind == "unknown":
        return kind, ()
    named = [v for n, v in fields if n in ("original-rcpt-to", "removal-recipient")]
    addresses = [a for a in map(_clean_address, named) if a and not _looks_redacted(a)]
    if not addresses and original is not None:
        addresses = [a for a in _single_to(original) if not _looks_redacted(a)]
    diagnostic = _one_line(f"feedback-type {feedback_type}")
    return kind, tuple(Recipient(a, kind, "", diagnostic)
                       for a in _first_unique(addresses, MAX_RECIPIENTS))


def _single_to(original: Message) -> list[str]:
    pairs = getaddresses(_headers(original, "to"))
    found = [a for a in (_clean_address(addr) for _, addr in pairs) if a]
    return found if len(found) == 1 else []


def _looks_redacted(address: str) -> bool:
    local = address.rpartition("@")[0].lower()
    return "redacted" in local or _REDACTED_RE.fullmatch(local) is not None


# --------------------------------------------------------------------------- DSN


def _dsn(fields: Fields, detail: dict[str, str]) -> tuple[FeedbackKind, tuple[Recipient, ...]]:
    first = _first_values(fields)
    if first.get("reporting-mta"):
        detail["reporting_mta"] = _one_line(_strip_type(first["reporting-mta"]))
    if first.get("arrival-date"):
        detail["arrival_date"] = _one_line(first["arrival-date"])
    recipients = _first_unique(
        (r for block in _blocks(fields) if (r := _dsn_recipient(_first_values(block)))),
        MAX_RECIPIENTS,
    )
    kinds = {r.kind for r in recipients}
    kind: FeedbackKind = "unknown"
    if "hard_bounce" in kinds:
        kind = "hard_bounce"
    elif "soft_bounce" in kinds:
        kind = "soft_bounce"
    return kind, recipients


def _dsn_recipient(block: dict[str, str]) -> Recipient | None:
    action = block.get("action", "").strip().lower().split(" ", 1)[0]
    if action not in ("failed", "delayed"):
        return None
    address = _dsn_address(block)
    if address is None:
        return None
    diagnostic = _one_line(_strip_type(block.get("diagnostic-code", "")))
    status = _effective_status(block.get("status", ""), diagnostic)
    return Recipient(address, _bounce_kind(action, status), status, diagnostic)


def _dsn_address(block: dict[str, str]) -> str | None:
    addr_type, _, value = block.get("original-recipient", "").partition(";")
    if addr_type.strip().lower() == "rfc822" and (address := _clean_address(value)):
        return address
    final = block.get("final-recipient")
    if final is None:
        return None
    addr_type, sep, value = final.partition(";")
    if not sep:  # type left out by a sloppy MTA: accept only if it reads as an address
        return _clean_address(final)
    addr_type = addr_type.strip().lower()
    if addr_type == "rfc822":
        return _clean_address(value)
    if addr_type == "utf-8":
        return _clean_address(_UTF8_ESCAPE_RE.sub(_unescape, value))
    return None


def _unescape(m: re.Match[str]) -> str:
    code = int(m.group(1), 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return m.group(0)
    return chr(code)


def _status_code(text: str) -> str:
    m = _STATUS_RE.search(text)
    return ".".join(str(int(g)) for g in m.groups()) if m else ""


def _effective_status(status_field: str, diagnostic: str) -> str:
    status = _status_code(status_field)
    from_diagnostic = _status_code(diagnostic)
    if not status:
        return from_diagnostic
    if from_diagnostic and status.endswith(".0.0") and from_diagnostic[0] == status[0]:
        return from_diagnostic
    return status


def _bounce_kind(action: str, status: str) -> FeedbackKind:
    if action == "failed" and status in _HARD_STATUSES:
        return "hard_bounce"
    return "soft_bounce"


# --------------------------------------------------------------------------- fields


def _report_fields(part: Message) -> Fields:
    """Fields of a report part as (name, value) lines, with "" marking blank lines."""
    text = _body_bytes(part).decode("utf-8", "replace")
    fields: Fields = []
    for line in _LINE_SPLIT_RE.split(text):
        if not line.strip():
            fields.append(("", ""))
        elif line[0] in " \t":
            if fields and fields[-1][0]:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip()}")
        elif m := _FIELD_RE.fullmatch(line):
            fields.append((m.group(1).lower(), m.group(2).strip()))
    return fields


def _blocks(fields: Fields) -> Iterator[Fields]:
    """Per-recipient blocks: split on blank lines, and on a repeated recipient field."""
    block: Fields = []
    seen: set[str] = set()
    for name, value in fields:
        repeat = name in _BLOCK_OPENERS and name in seen
        late_original = name == "original-recipient" and "final-recipient" in seen
        if not name or repeat or late_original:
            if block:
                yield block
            block, seen = [], set()
        if name:
            block.append((name, value))
            seen.add(name)
    if block:
        yield block


def _first_values(fields: Fields) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in fields:
        if name:
            first.setdefault(name, value)
    return first


def _strip_type(value: str) -> str:
    """ "dns; mx.example" -> "mx.example", "smtp; 550 …" -> "550 …" (RFC 3464 2.2.2, 2.3.6)."""
    head, sep, rest = value.partition(";")
    return rest.strip() if sep and _TYPE_PREFIX_RE.fullmatch(head) else value.strip()


def _clean_address(value: str) -> str | None:
    """An address as found, without <> and whitespace; None unless it looks like one."""
    addr = value.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    local, _, domain = addr.partition("@")
    if addr.count("@") != 1 or not local or not domain or len(addr) > _MAX_ADDRESS_CHARS:
        return None
    if any(c in _NOT_IN_ADDRESS or c.isspace() or not c.isprintable() for c in addr):
        return None
    return addr


def _one_line(value: str) -> str:
    return " ".join(_CONTROL_RE.sub(" ", value).split())[:MAX_DIAGNOSTIC_CHARS]


# --------------------------------------------------------------------------- MIME helpers


def _body_bytes(part: Message) -> bytes:
    """The decoded body of a part, also when the parser made it a nested message."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""
    # message/* bodies are parsed into messages (delivery-status: one per block); put the
    # raw lines back together to read the fields ourselves, 8-bit bytes intact.
    chunks: list[bytes] = []
    for sub in payload:
        if isinstance(sub, Message):
            chunks.extend(_to_bytes(f"{name}: {value}\n") for name, value in sub.raw_items())
            chunks.append(b"\n")
            body = sub.get_payload(decode=True)  # raw bytes; without decode, 8-bit is lost
            if isinstance(body, bytes):
                chunks.append(body)
                chunks.append(b"\n")
    raw = b"".join(chunks)
    # message/* may not be transfer-encoded (RFC 2046 5.2.1), but broken MTAs do it.
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        return _lenient_b64(raw)
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    return raw


def _to_bytes(text: str) -> bytes:
    # The compat32 parser keeps 8-bit bytes as surrogate escapes; give them back.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _lenient_b64(raw: bytes) -> bytes:
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
    if len(clean) % 4 == 1:  # a lone trailing character carries no whole byte
        clean = clean[:-1]
    return base64.b64decode(clean + b"=" * (-len(clean) % 4))


def _original(parts: Iterable[Message]) -> Message | None:
    """The quoted original message (RFC 5965 2(c), RFC 3464 2.1): full or headers only."""
    for part in parts:
        ctype = part.get_content_type()
        if ctype in _ORIGINAL_HEADERS_TYPES:
            return _reparse(_body_bytes(part), headers_only=True)
        if ctype not in _ORIGINAL_MESSAGE_TYPES:
            continue
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        nested = _children(part)
        if cte in ("base64", "quoted-printable") or not nested:
            return _reparse(_body_bytes(part), headers_only=False)
        return nested[0]
    return None


def _reparse(raw: bytes, *, headers_only: bool) -> Message:
    return BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=headers_only)


def _original_tokens(original: Message) -> tuple[str, ...]:
    found: list[str] = []
    for value in _headers(original, "list-unsubscribe"):
        found.extend(tokens_in_text(value))
    for text in _text_bodies(original):
        found.extend(tokens_in_text(text))
    return _first_unique(found, _MAX_TOKENS)


def _text_bodies(msg: Message) -> Iterator[str]:
    """Decoded text/plain and text/html parts, not descending into attached messages."""
    stack = [msg]
    visited = 0
    while stack and visited < _MAX_PARTS:
        part = stack.pop()
        visited += 1
        if part.get_content_maintype() == "multipart":
            stack.extend(reversed(_children(part)))
        elif part.get_content_type() in ("text/plain", "text/html"):
            yield _decode_text(_body_bytes(part)[: _MAX_SCAN_CHARS * 4],
                               part.get_content_charset() or "utf-8")[:_MAX_SCAN_CHARS]


def _decode_text(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset, "replace")
    except (LookupError, ValueError):  # unknown charset, or a codec refusing "replace"
        return raw.decode("utf-8", "replace")


def _headers(msg: Message, name: str) -> list[str]:
    """Raw header values as text; 8-bit bytes read as UTF-8 (RFC 6532)."""
    return [_unescape_8bit(str(v)) for k, v in msg.raw_items() if k.lower() == name]


def _first_header(msg: Message, name: str) -> str:
    values = _headers(msg, name)
    return _one_line(values[0]) if values else ""


def _unescape_8bit(value: str) -> str:
    return _to_bytes(value).decode("utf-8", "replace")
