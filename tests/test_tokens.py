"""Unsubscribe tokens: round trip, rotation, tamper resistance, expiry, charset."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
from email.headerregistry import Address
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression import tokens
from suppression.models import Channel
from suppression.tokens import MAX_TOKEN_CHARS, TokenClaims, TokenSigner

YEAR_S = 365 * 86400
T0 = 1_790_000_000  # a fixed "now" for the injected clock
ANN = "ann@example.com"
ALPHABET = string.ascii_letters + string.digits + "-_"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(*keys: bytes, max_age_s: int = 2 * YEAR_S, clock: Clock | None = None
           ) -> TokenSigner:
    return TokenSigner(list(keys) or [b"key-one"], max_age_s=max_age_s, clock=clock or Clock())


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def enc(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip_keeps_every_claim() -> None:
    # What is issued comes back: tenant, channel, identifier, topic, issue time.
    s = signer()
    for channel, ident, topic in ((Channel.EMAIL, ANN, ""), (Channel.EMAIL, ANN, "news"),
                                  (Channel.SMS, "+14155550123", ""),
                                  (Channel.EMAIL, "jösé@bücher.example", "deals.weekly")):
        token = s.issue("acme", channel, ident, topic)
        assert s.verify(token) == TokenClaims("acme", channel, ident, topic, T0)


def test_tokens_are_reusable_and_verify_on_another_instance() -> None:
    # Not single-use (link scanners), and a restart (new instance, same key) still verifies.
    token = signer().issue("acme", Channel.EMAIL, ANN)
    again = signer()
    assert again.verify(token) is not None and again.verify(token) is not None


def test_rotation_old_key_verifies_unknown_key_does_not() -> None:
    # After rotation new tokens use the new key; old tokens verify while the old key is listed.
    old, new = b"old-secret", b"new-secret"
    old_token = signer(old).issue("acme", Channel.EMAIL, ANN)
    rotated = signer(new, old)
    assert rotated.verify(old_token) is not None
    new_token = rotated.issue("acme", Channel.EMAIL, ANN)
    assert raw(new_token)[1:5] != raw(old_token)[1:5]  # a different key id
    assert signer(new).verify(new_token) is not None
    assert signer(old).verify(new_token) is None
    assert signer(new).verify(old_token) is None  # old key retired
    assert signer(b"someone-else").verify(old_token) is None


def test_known_key_id_with_wrong_key_is_refused() -> None:
    # A token re-signed with another key but carrying our key id does not verify.
    ours = signer(b"ours").issue("acme", Channel.EMAIL, ANN)
    theirs = raw(signer(b"theirs").issue("acme", Channel.EMAIL, ANN))
    forged = enc(theirs[:1] + raw(ours)[1:5] + theirs[5:])
    assert signer(b"ours").verify(forged) is None


def test_every_single_bit_flip_is_refused() -> None:
    # Any one bit of the decoded token changed (payload, key id or MAC): refused.
    s = signer()
    data = raw(s.issue("acme", Channel.EMAIL, ANN, "news"))
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        assert s.verify(enc(bytes(flipped))) is None, i


def test_every_character_substitution_is_refused() -> None:
    # Any one character of the text replaced by any other alphabet character: refused.
    s = signer()
    token = s.issue("acme", Channel.EMAIL, ANN)
    for i, c in enumerate(token):
        for other in ALPHABET:
            if other != c:
                assert s.verify(token[:i] + other + token[i + 1:]) is None, (i, other)


def test_truncation_and_extension_are_refused() -> None:
    # Every prefix and every one-character (or one-byte) extension is refused.
    s = signer()
    token = s.issue("acme", Channel.EMAIL, ANN)
    for n in range(len(token)):
        assert s.verify(token[:n]) is None, n
    for extra in [*ALPHABET, "=", "==", ".", " ", "\n", "%3D"]:
        assert s.verify(token + extra) is None, extra
    data = raw(token)
    for b in (0, 1, 0xFF):
        assert s.verify(enc(data + bytes([b]))) is None
    assert s.verify(token[1:]) is None


def test_padding_and_lookalike_spellings_are_refused() -> None:
    # Only the canonical unpadded base64url spelling is a token; standard base64 is not.
    s = signer()
    token = next(t for t in (s.issue("acme", Channel.EMAIL, f"u{i}@example.com")
                             for i in range(50)) if "-" in t or "_" in t)
    assert s.verify(token) is not None
    assert s.verify(token + "=" * (-len(token) % 4 or 4)) is None
    assert s.verify(token.replace("-", "+").replace("_", "/")) is None
    assert s.verify(" " + token) is None and s.verify(token.lower()) is None


def test_non_canonical_trailing_bits_are_refused() -> None:
    # Two spellings decoding to the same bytes: only the canonical one verifies.
    s = signer()
    token = next(t for t in (s.issue("acme", Channel.EMAIL, f"u{i}@example.com")
                             for i in range(20)) if len(t) % 4)
    b64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    twin = token[:-1] + b64[b64.index(token[-1]) ^ 1]  # flips an unused low bit
    assert raw(twin) == raw(token)
    assert s.verify(twin) is None


def test_valid_for_a_year_and_expires_at_the_configured_age() -> None:
    # Valid at one year with the default; refused one second past the configured maximum.
    clock = Clock()
    s = signer(clock=clock, max_age_s=2 * YEAR_S)
    token = s.issue("acme", Channel.EMAIL, ANN)
    clock.now = T0 + YEAR_S
    assert s.verify(token) is not None
    clock.now = T0 + 2 * YEAR_S
    assert s.verify(token) is not None
    clock.now = T0 + 2 * YEAR_S + 1
    assert s.verify(token) is None
    short = signer(clock=Clock(T0 + 101), max_age_s=100)
    assert short.verify(token) is None
    assert signer(clock=Clock(T0 + 100), max_age_s=100).verify(token) is not None


def test_token_from_the_far_future_is_refused() -> None:
    # A little clock skew is tolerated; a token issued days "from now" is not.
    future = signer(clock=Clock(T0 + 86400)).issue("acme", Channel.EMAIL, ANN)
    assert signer(clock=Clock(T0)).verify(future) is None
    near = signer(clock=Clock(T0 + 60)).issue("acme", Channel.EMAIL, ANN)
    assert signer(clock=Clock(T0)).verify(near) is not None


def test_charset_is_url_and_local_part_safe() -> None:
    # Tokens need no URL escaping and form a valid dot-atom local part (unsubscribe+TOKEN@...).
    s = signer()
    for i in range(200):
        token = s.issue("acme", Channel.EMAIL, f"user.{i}+tag@example.com", "news" * (i % 2))
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
        assert quote(token, safe="") == token
        addr = Address(addr_spec=f"unsubscribe+{token}@example.com")
        assert addr.username == f"unsubscribe+{token}"


def test_longest_token_fits_the_limit() -> None:
    # The largest claims (32-char tenant, 254-octet address, 64-char topic) still verify.
    s = signer()
    ident = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    assert len(ident) == 254
    token = s.issue("t" * 32, Channel.EMAIL, ident, "n" * 64)
    assert len(token) <= MAX_TOKEN_CHARS
    assert s.verify(token) is not None
    assert s.verify("A" * (MAX_TOKEN_CHARS + 4)) is None


def test_issue_refuses_values_no_token_may_hold() -> None:
    # Bad tenant, topic or identifier: ValueError naming it, no token.
    s = signer()
    with pytest.raises(ValueError, match="tenant"):
        s.issue("Acme Co", Channel.EMAIL, ANN)
    with pytest.raises(ValueError, match="tenant"):
        s.issue("acme\n", Channel.EMAIL, ANN)
    with pytest.raises(ValueError, match="topic"):
        s.issue("acme", Channel.EMAIL, ANN, "News Letter")
    with pytest.raises(ValueError, match="identifier"):
        s.issue("acme", Channel.EMAIL, "")
    with pytest.raises(ValueError, match="identifier"):
        s.issue("acme", Channel.EMAIL, "x" * 255)
    with pytest.raises(ValueError):
        TokenSigner([], max_age_s=1)


def test_repr_hides_the_keys() -> None:
    # The signer can be logged without leaking its secrets.
    assert "key-one" not in repr(signer(b"key-one"))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=600))
def test_verify_never_raises_on_arbitrary_text(text: str) -> None:
    # Any string at all: None (or, astronomically unlikely, claims), never an exception.
    assert signer().verify(text) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_verify_never_raises_on_arbitrary_encoded_bytes(data: bytes) -> None:
    # Well-formed base64url of any bytes (wrong version, lengths, bad UTF-8...): None.
    assert signer().verify(enc(data)) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_verify_never_raises_on_mutated_tokens(data: st.DataObject) -> None:
    # A real token with random bytes changed, cut or appended: None, never an exception.
    s = signer()
    token = bytearray(raw(s.issue("acme", Channel.EMAIL, ANN, "news")))
    i = data.draw(st.integers(0, len(token) - 1))
    token[i] ^= data.draw(st.integers(1, 255))
    tail = data.draw(st.binary(max_size=8))
    cut = data.draw(st.integers(0, len(token)))
    assert s.verify(enc(bytes(token[:cut]) + tail)) is None
    assert s.verify(enc(bytes(token))) is None


def test_wellformed_payload_with_bad_utf8_is_refused() -> None:
    # Correctly signed but holding invalid UTF-8 (only a bug could produce it): None.
    s = signer()
    head = raw(s.issue("acme", Channel.EMAIL, ANN))[:tokens._HEAD.size]
    mac_key = tokens._mac_key(b"key-one")

    def signed(ident: bytes) -> str:
        body = head + bytes([4]) + b"acme" + bytes([len(ident)]) + ident + bytes([0])
        return enc(body + hmac.new(mac_key, body, hashlib.sha256).digest()[:tokens.MAC_BYTES])

    assert s.verify(signed(b"\xff\xfe@example.com")) is None
    # The same construction with valid UTF-8 verifies: the refusal above is the bad bytes.
    assert s.verify(signed(b"zz@example.com")) == TokenClaims(
        "acme", Channel.EMAIL, "zz@example.com", "", T0)
