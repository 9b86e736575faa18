"""Unsubscribe tokens: who (tenant, channel, identifier), which list (topic), since when.

A token is the only thing an unsubscribe link (``/u/TOKEN``, ``/preferences/TOKEN``)
and the mailto address (``unsubscribe+TOKEN@domain``) carry, so it must identify the
recipient and the list on its own and be hard to forge (RFC 8058 section 3.1).

Format (version 1), base64url without padding over::

    version   1 byte   0x01
    key id    4 bytes  first bytes of SHA-256 of the derived MAC key (see below)
    issued    4 bytes  issue time, unsigned seconds since the epoch, big-endian
    channel   1 byte   0 = sms, 1 = email
    tenant    1 byte length + UTF-8 (apikeys.TENANT_RE)
    ident     1 byte length + UTF-8 (the normalised identifier, <= 254 octets)
    topic     1 byte length + ASCII ('' = every marketing message; tenants.TOPIC_RE)
    mac       16 bytes HMAC-SHA256(MAC key, every byte above), truncated

The MAC key is ``HMAC-SHA256(secret, "optout-gateway unsubscribe token v1")``, so the
configured secret is never used raw and can safely serve other purposes too. The
alphabet ``A-Z a-z 0-9 - _`` is URL-safe and RFC 5322 ``atext`` (a valid email local
part). For ``ann@example.com`` at tenant ``acme`` a token is 64 characters; the
longest possible (a 254-octet address, a 32-character tenant, a 64-character topic)
is 506. RFC 5321 only guarantees 64-octet local parts, but our own SMTP listener
receives the mailto address and intermediate MTAs relay local parts as they are.

Tokens are not single-use (link scanners fetch every link; RFC 8058 receivers may POST
more than once) and are valid for ``max_age_s`` after issue (CAN-SPAM asks for 30 days;
we promise at least a year). ``verify`` returns ``None`` for any problem at all, so the
edges can answer every bad token the same way (no oracle).

Keys: ``OPTOUT_SECRET_KEY`` signs (unset: one generated once into the data dir, so
every instance behind one ``OPTOUT_PUBLIC_URL`` must share that dir or set the key);
``previous_secret_keys`` (TOML list, or ``OPTOUT_PREVIOUS_SECRET_KEYS='["old"]'``) verify.
Rotation:

1. Put the current secret at the front of ``previous_secret_keys`` and set a new
   ``OPTOUT_SECRET_KEY``; restart every instance. New tokens are signed with the new
   key; tokens signed with any listed previous key still verify (the key id picks it).
2. After ``token_max_age_days`` every token of the old key has expired: remove it
   from ``previous_secret_keys``. To revoke a leaked key at once, remove it straight
   away: its links then answer like any unknown token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .apikeys import TENANT_RE
from .models import Channel
from .tenants import TOPIC_RE

__all__ = ["MAX_TOKEN_CHARS", "TokenClaims", "TokenSigner"]

VERSION = 1
KID_BYTES = 4
MAC_BYTES = 16  # 128 bits: forging needs ~2^127 online guesses
MAC_CONTEXT = b"optout-gateway unsubscribe token v1"
_HEAD = struct.Struct(">B4sIB")  # version, key id, issued_s, channel
_CHANNELS = (Channel.SMS, Channel.EMAIL)  # index = the channel byte; append only
MAX_IDENTIFIER_OCTETS = 254
# Longest well-formed token: head + 3 length bytes + 32 + 254 + 64 + MAC, base64 = 506 chars.
MAX_TOKEN_CHARS = 512
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
# A token a little in the future comes from a host whose clock runs ahead; one far in the
# future cannot have been issued by a sane clock of ours.
MAX_CLOCK_SKEW_S = 3600


@dataclass(frozen=True, slots=True)
class TokenClaims:
    tenant: str
    channel: Channel
    identifier: str  # normalised
    topic: str  # '' = every marketing message of the tenant
    issued_at_s: int


def _mac_key(secret: bytes) -> bytes:
    return hmac.new(secret, MAC_CONTEXT, hashlib.sha256).digest()


def _kid(mac_key: bytes) -> bytes:
    # Derived from the MAC key, not the secret: the id reveals nothing usable about either.
    return hashlib.sha256(b"kid:" + mac_key).digest()[:KID_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(token: str) -> bytes | None:
    """Strict base64url: only the alphabet, no padding, canonical (one spelling per token)."""
    if not _ALPHABET.fullmatch(token) or len(token) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # The last character may carry unused bits; two spellings of one token would make
    # "altered" ambiguous, so only the canonical one is accepted.
    return raw if _b64(raw) == token else None


def _field(raw: bytes, pos: int) -> tuple[bytes, int] | None:
    if pos >= len(raw):
        return None
    end = pos + 1 + raw[pos]
    if end > len(raw):
        return None
    return raw[pos + 1:end], end


def _parse_body(body: bytes) -> tuple[bytes, int, int, str, str, str] | None:
    """(key id, issued_s, channel index, tenant, identifier, topic) or None if malformed."""
    if len(body) < _HEAD.size:
        return None
    version, kid, issued, channel = _HEAD.unpack_from(body)
    if version != VERSION or channel >= len(_CHANNELS):
        return None
    fields: list[str] = []
    pos = _HEAD.size
    for _ in range(3):
        got = _field(body, pos)
        if got is None:
            return None
        try:
            fields.append(got[0].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        pos = got[1]
    if pos != len(body):
        return None
    tenant, identifier, topic = fields
    return kid, issued, channel, tenant, identifier, topic


class TokenSigner:
    """Issues and verifies tokens. ``keys[0]`` signs; every key in ``keys`` verifies."""

    def __init__(self, keys: Sequence[bytes], *, max_age_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        if not keys or any(not k for k in keys):
            raise ValueError("at least one non-empty token key is required")
        if max_age_s <= 0:
            raise ValueError("max_age_s must be positive")
        self.max_age_s = max_age_s
        self.clock = clock
        mac_keys = [_mac_key(k) for k in keys]
        self._signing = (_kid(mac_keys[0]), mac_keys[0])
        # Ids may collide (2^-32 per pair): keep every key under its id and try each.
        self._by_kid: dict[bytes, list[bytes]] = {}
        for mk in mac_keys:
            self._by_kid.setdefault(_kid(mk), []).append(mk)

    def __repr__(self) -> str:  # never the keys
        return f"TokenSigner(keys={sum(map(len, self._by_kid.values()))}, " \
               f"max_age_s={self.max_age_s})"

    def issue(self, tenant: str, channel: Channel, identifier: str, topic: str = "") -> str:
        """A token for a normalised identifier. Raises ValueError for values no token may hold."""
        if not TENANT_RE.fullmatch(tenant):
            raise ValueError(f"tenant id {tenant!r} is not valid")
        if topic and not TOPIC_RE.fullmatch(topic):
            raise ValueError(f"topic {topic!r} is not a valid topic id")
        ident = identifier.encode("utf-8")
        if not ident or len(ident) > MAX_IDENTIFIER_OCTETS:
            raise ValueError(f"identifier must be 1-{MAX_IDENTIFIER_OCTETS} octets")
        issued = int(self.clock())
        if not 0 <= issued < 2 ** 32:
            raise ValueError("the clock is outside the token's time range")
        kid, mac_key = self._signing
        body = _HEAD.pack(VERSION, kid, issued, _CHANNELS.index(channel))
        for part in (tenant.encode("ascii"), ident, topic.encode("ascii")):
            body += bytes([len(part)]) + part
        return _b64(body + hmac.new(mac_key, body, hashlib.sha256).digest()[:MAC_BYTES])

    def verify(self, token: object) -> TokenClaims | None:
        """The claims of a genuine, unexpired token; None for anything else. Never raises."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            return None
        raw = _unb64(token)
        if raw is None or len(raw) <= MAC_BYTES + _HEAD.size:
            return None
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        candidates = self._by_kid.get(body[1:1 + KID_BYTES], [])
        # compare_digest: the time taken must not tell a forger how many bytes were right.
        if not any(hmac.compare_digest(
                hmac.new(k, body, hashlib.sha256).digest()[:MAC_BYTES], mac)
                for k in candidates):
            return None
        parsed = _parse_body(body)
        if parsed is None:
            return None
        _, issued, channel, tenant, identifier, topic = parsed
        if not TENANT_RE.fullmatch(tenant) or not identifier or \
                (topic and not TOPIC_RE.fullmatch(topic)):
            return None
        age = self.clock() - issued
        if age > self.max_age_s or age < -MAX_CLOCK_SKEW_S:
            return None
        return TokenClaims(tenant, _CHANNELS[channel], identifier, topic, issued)
