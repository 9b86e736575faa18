"""The SMTP sharing guard's rules, end to end: which mail it refuses and which it lets go.

Mail to a recipient outside the tenant's ``email_domains`` that carries at least the
tenant's ``dlp_min_numbers`` (default 5) phone numbers with SMS consent recorded for that
tenant is refused 550 5.7.1 and nothing reaches the upstream; transactional keys are no
exception; the tenant's own domains are never guarded; ``dlp_enabled = false`` turns the
guard off and it is on by default.

Real clients (smtplib in a thread), the gateway's own SMTP listener, a private
redis-server and the recording upstream MTA of ``tests/fake_mta.py``, as in test_smtp.py.
"""

from __future__ import annotations

import contextlib
import smtplib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import TENANTS
from fake_mta import RecordingMta
from test_smtp import Relay, _relay, _with_attachment

from gateway.settings import load_settings
from suppression import dlp
from suppression.models import Channel
from suppression.tenants import Tenant

BROKER = "partner@broker.example"  # outside acme's email_domains
COLLEAGUE = "ops@acme.example"  # inside acme's email_domains
# Valid US numbers (libphonenumber); consent is recorded per test for some of them.
NUMBERS = [f"+1415555{n:04d}" for n in range(120, 128)]  # 8 numbers
UNCONSENTED = [f"+1415555{n:04d}" for n in range(130, 134)]  # never consented


@pytest.fixture
async def relay(redis_url: str, tmp_path: Path) -> AsyncIterator[Relay]:
    async with RecordingMta() as mta:
        async for r in _relay(redis_url, tmp_path, mta):
            yield r


@contextlib.asynccontextmanager
async def acme_relay(redis_url: str, tmp_path: Path, **acme: Any) -> AsyncIterator[Relay]:
    """A relay whose tenant acme has the given settings on top of conftest's; stopped on
    leaving the block even when an assertion failed."""
    tenants = {**TENANTS, "acme": {**TENANTS["acme"], **acme}}
    async with RecordingMta() as mta:
        relays = _relay(redis_url, tmp_path, mta, tenants=tenants)
        r = await anext(relays)
        try:
            yield r
        finally:
            with contextlib.suppress(StopAsyncIteration):
                await anext(relays)


async def consent(relay: Relay, numbers: Sequence[str], tenant: str = "acme") -> None:
    for number in numbers:
        await relay.gw.parts.service.record_consent(tenant, Channel.SMS, number, method="api")


def csv_mail(numbers: Sequence[str]) -> bytes:
    """A message with a CSV attachment listing ``numbers`` (and nothing else phone-like);
    checks that the scanner sees every one of them, so a relayed message was let go by
    the guard's rules, never because its numbers went unnoticed."""
    rows = "".join(f"{n},Jane Doe\n" for n in numbers)
    data = _with_attachment(f"phone,name\n{rows}".encode(), "list.csv", "text", "csv")
    assert dlp.phone_numbers(data) == set(numbers)
    return data


async def refused(relay: Relay, rcpts: list[str], data: bytes, *, key: str | None = None
                  ) -> bool:
    """True when DATA was refused by the sharing guard (550 5.7.1 naming SMS opt-in data),
    False when every recipient was relayed; anything else fails the test."""
    try:
        assert await relay.send(rcpts, data, key=key) == {}
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 550, exc
        assert b"5.7.1" in exc.smtp_error and b"SMS opt-in data" in exc.smtp_error, exc
        return True
    return False


async def test_transactional_mail_is_guarded_too(relay: Relay) -> None:
    # Proves the guard does not exempt --transactional keys: a CSV of 6 consented numbers
    # to an outside recipient is refused 550 5.7.1, nothing reaches the upstream, and the
    # refusal is audited; the same key and message to a colleague are relayed unchanged
    # (the key works; the refusal is the guard's).
    # Mutant checked: the guard skipped when the submission is transactional.
    key = await relay.gw.key(scopes="send", transactional=True)
    await consent(relay, NUMBERS[:6])
    data = csv_mail(NUMBERS[:6])
    assert await refused(relay, [BROKER], data, key=key)
    assert relay.mta.messages == []
    audit = await relay.gw.parts.store.audit("acme", Channel.EMAIL, BROKER)
    assert [a.type for a in audit] == ["sharing_refused"]
    assert not await refused(relay, [COLLEAGUE], data, key=key)
    (m,) = relay.mta.messages
    assert m.rcpt_tos == (COLLEAGUE,) and m.data == data


async def test_default_threshold_four_consented_numbers_pass_five_are_refused(
        relay: Relay) -> None:
    # Proves the default dlp_min_numbers is 5, inclusive: 4 consented numbers to an outside
    # recipient are relayed, 5 are refused and do not reach the upstream.
    # Mutants checked: the threshold replaced by 1 (4 refused).
    await consent(relay, NUMBERS[:5])
    assert not await refused(relay, [BROKER], csv_mail(NUMBERS[:4]))
    assert await refused(relay, [BROKER], csv_mail(NUMBERS[:5]))
    assert [m.rcpt_tos for m in relay.mta.messages] == [(BROKER,)]  # the 4-number one only


@pytest.mark.parametrize("threshold", [2, 7])
async def test_the_tenants_dlp_min_numbers_sets_the_threshold(redis_url: str, tmp_path: Path,
                                                              threshold: int) -> None:
    # Proves the tenant's dlp_min_numbers is the threshold, lowered (2) or raised (7):
    # threshold - 1 consented numbers are relayed, threshold consented numbers refused.
    # Mutants checked: the threshold replaced by 1 (1 refused at 2), and by a constant 5
    # ignoring the setting (2 relayed at 2; 6 refused at 7).
    async with acme_relay(redis_url, tmp_path, dlp_min_numbers=threshold) as relay:
        await consent(relay, NUMBERS[:threshold])
        assert not await refused(relay, [BROKER], csv_mail(NUMBERS[:threshold - 1]))
        assert await refused(relay, [BROKER], csv_mail(NUMBERS[:threshold]))
        assert len(relay.mta.messages) == 1


async def test_numbers_without_consent_do_not_count(relay: Relay) -> None:
    # Proves only numbers with SMS consent for the tenant count towards the threshold: a
    # list of 6 valid numbers, 4 of them consented, is relayed with the default of 5; the
    # same message is refused once a fifth of its numbers has consent.
    # Mutant checked: the threshold replaced by 1 (4 consented would be refused).
    listed = NUMBERS[:4] + UNCONSENTED[:2]
    data = csv_mail(listed)  # the scanner sees all 6
    await consent(relay, NUMBERS[:4])
    await consent(relay, UNCONSENTED[2:], tenant="globex")  # another tenant's: irrelevant
    assert not await refused(relay, [BROKER], data)
    await consent(relay, UNCONSENTED[:1])
    assert await refused(relay, [BROKER], data)
    assert len(relay.mta.messages) == 1


async def test_recipients_at_the_tenants_own_domains_are_not_guarded(relay: Relay) -> None:
    # Proves the guard applies to outside recipients only: the 6-number CSV to an address
    # at acme.example (one of acme's email_domains) is relayed; sent to a colleague and a
    # broker at once, only the colleague's copy goes out and the sender gets 550.
    # Mutant checked: every recipient guarded, inside ones included.
    await consent(relay, NUMBERS[:6])
    data = csv_mail(NUMBERS[:6])
    assert not await refused(relay, [COLLEAGUE], data)
    with pytest.raises(smtplib.SMTPDataError) as info:
        await relay.send(["boss@acme.example", BROKER], data)
    assert info.value.smtp_code == 550 and b"relayed to 1 of 2" in info.value.smtp_error
    assert [m.rcpt_tos for m in relay.mta.messages] == [(COLLEAGUE,), ("boss@acme.example",)]
    assert await relay.gw.parts.store.audit("acme", Channel.EMAIL, "boss@acme.example") == []


async def test_dlp_enabled_false_turns_the_guard_off(redis_url: str, tmp_path: Path) -> None:
    # Proves a tenant with dlp_enabled = false is not guarded: 6 consented numbers to an
    # outside recipient are relayed, and no sharing refusal is audited.
    # Mutant checked: the dlp_enabled setting ignored.
    async with acme_relay(redis_url, tmp_path, dlp_enabled=False) as relay:
        await consent(relay, NUMBERS[:6])
        assert not await refused(relay, [BROKER], csv_mail(NUMBERS[:6]))
        assert [m.rcpt_tos for m in relay.mta.messages] == [(BROKER,)]
        assert await relay.gw.parts.store.audit("acme", Channel.EMAIL, BROKER) == []


async def test_the_guard_is_on_by_default(relay: Relay, tmp_path: Path) -> None:
    # Proves dlp_enabled defaults to true: a tenant that never mentions it (conftest's acme,
    # a TOML tenant) is guarded, and the TOML spelling dlp_enabled = false is read as off.
    # Mutant checked: the default flipped to false.
    assert "dlp_enabled" not in TENANTS["acme"] and Tenant().dlp_enabled is True
    config = tmp_path / "optout.toml"
    config.write_text('[tenants.a]\nbrand = "A"\n\n[tenants.b]\nbrand = "B"\n'
                      "dlp_enabled = false\n")
    tenants = load_settings(config, secret_key="test-secret-key",
                            data_dir=tmp_path / "toml-data").tenants
    assert tenants["a"].dlp_enabled is True and tenants["b"].dlp_enabled is False
    await consent(relay, NUMBERS[:6])
    assert await refused(relay, [BROKER], csv_mail(NUMBERS[:6]))
    assert relay.mta.messages == []
