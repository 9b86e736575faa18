"""Retention: what is older than a tenant's retention is trimmed inside Redis, nothing else.

A real gateway, real Redis and the recording SMS provider. Data is written through the
API at chosen times (``parts.sms.clock``) or at the real time, then the wired sweeper
(``parts.retention``) runs one full pass with its clock moved forward.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import TENANTS, Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess

from gateway.redis_client import make_client
from suppression import codec, keys
from suppression.models import Channel, now_ms
from suppression.retention import TENANT_LISTS, RetentionSweeper, Unit
from suppression.store import RedisStore, audit_record
from suppression.tenants import Tenant

DAY_MS = 86_400_000
ACME_SENDER = "+14155550100"
GLOBEX_SENDER = "+14155550199"
# globex keeps message records a year, its audit 30 days and review items a week;
# acme has the defaults (90 days, 7 years, 90 days).
RETENTION_TENANTS: dict[str, Any] = {
    **TENANTS,
    "globex": {**TENANTS["globex"], "message_retention_days": 365,
               "audit_retention_days": 30, "review_retention_days": 7},
}
# Noon in New York (inside quiet hours) on the day before and two days after today:
# with the sweeper's clock at TODAY + 91 days, acme's 90-day cutoff falls between them.
TODAY = datetime.now(UTC).replace(hour=16, minute=0, second=0, microsecond=0)
OLD = TODAY - timedelta(days=1)
NEW = TODAY + timedelta(days=2)
SWEEP_AT = TODAY + timedelta(days=91)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)



@pytest.fixture
async def rgw(redis_url: str, tmp_path: Path, fake: FakeSmsProvider) -> AsyncIterator[Gateway]:
    parts, client = await start_gateway(make_settings(
        redis_url, tmp_path / "data", tenants=RETENTION_TENANTS, sms_upstream=fake.url,
        retention_cycle_s=3600, retention_start_delay_s=3600))  # wired; driven by the tests
    yield Gateway(parts, client)
    await stop_gateway(parts, client)


def _sweeper(gw: Gateway) -> RetentionSweeper:
    sweeper = gw.parts.retention
    assert sweeper is not None and sweeper.running  # wired and started with the gateway
    return sweeper


async def _send_at(gw: Gateway, key: str, when: datetime, to: str, sender: str) -> None:
    gw.parts.sms.clock = lambda: when
    r = await gw.http.post("/v1/sms/messages", json={"to": to, "from": sender,
                                                      "body": f"Sale on {when:%d %b}"},
                           headers=gw.auth(key))
    assert r.status == 202, await r.text()


async def _get(gw: Gateway, key: str, path: str) -> Any:
    r = await gw.http.get(path, headers=gw.auth(key))
    assert r.status == 200, await r.text()
    return await r.json()


async def _post(gw: Gateway, key: str, path: str, body: dict[str, Any]) -> None:
    r = await gw.http.post(path, json=body, headers=gw.auth(key))
    assert r.status in (200, 201), await r.text()


async def _send_time(gw: Gateway, tenant: str, number: str) -> bool:
    sends = keys.sends(tenant, Channel.SMS, keys.bucket_of(number))
    return bool(await gw.parts.client.hexists(sends, codec.encode_field(Channel.SMS, number)))


async def test_old_records_go_new_ones_stay_suppressions_stay(rgw: Gateway) -> None:
    # One pass at TODAY+91d removes acme's records from before the 90-day cutoff and keeps
    # the later ones, its audit (7 years), every suppression and consent; globex keeps its
    # records (365 days) but loses its 30-day audit; review items go by their own setting.
    acme, globex = await rgw.key("acme"), await rgw.key("globex")
    number = "+12125550170"
    for key in (acme, globex):
        await _post(rgw, key, "/v1/consents", {"channel": "sms", "identifier": number,
                                                "source": "web_form"})
    await _send_at(rgw, acme, OLD, number, ACME_SENDER)
    await _send_at(rgw, acme, NEW, number, ACME_SENDER)
    await _send_at(rgw, globex, OLD, number, GLOBEX_SENDER)
    once = "+12125550174"  # sent to by acme only before the cutoff: nothing of it stays
    await _post(rgw, acme, "/v1/consents", {"channel": "sms", "identifier": once,
                                             "source": "web_form"})
    await _send_at(rgw, acme, OLD, once, ACME_SENDER)
    other = "+12125550171"  # opted out: its refused attempt is recorded, then the opt-out stays
    for key in (acme, globex):
        await _post(rgw, key, "/v1/suppressions", {"channel": "sms", "identifier": other,
                                                    "reason": "stop_keyword"})
    store, client = rgw.parts.store, rgw.parts.client
    await _post(rgw, acme, "/v1/sms/inbound", {"from": other, "to": ACME_SENDER,
                                                "body": "I'll stop by the store"})
    await store.push_review("acme", {"at_ms": _ms(NEW), "from": number, "body": "can I end?"})
    await store.push_review("globex", {"at_ms": _ms(SWEEP_AT - timedelta(days=8)),
                                       "from": number, "body": "when does it end?"})
    await store.push_review("globex", {"at_ms": _ms(SWEEP_AT - timedelta(days=6)),
                                       "from": number, "body": "cancel my order?"})

    sweeper = _sweeper(rgw)
    sweeper.clock = lambda: _ms(SWEEP_AT)
    done = await sweeper.sweep_once()

    assert done.messages >= 1 and done.audit >= 1 and done.review >= 1
    acme_msgs = (await _get(rgw, acme, f"/v1/messages?to={number}"))["items"]
    assert [m["at"][:10] for m in acme_msgs] == [f"{NEW:%Y-%m-%d}"]
    globex_msgs = (await _get(rgw, globex, f"/v1/messages?to={number}"))["items"]
    assert [m["at"][:10] for m in globex_msgs] == [f"{OLD:%Y-%m-%d}"]
    assert (await _get(rgw, acme, f"/v1/messages?to={once}"))["items"] == []
    assert not await client.exists(keys.messages("acme", Channel.SMS, keys.bucket_of(once)))
    # Send times (caps, STOP footer) go with the records: a number last sent to before the
    # cutoff loses its field; one sent to since keeps it, as does globex's (365 days).
    assert not await _send_time(rgw, "acme", once)
    assert await _send_time(rgw, "acme", number)
    assert await _send_time(rgw, "globex", number)
    # Audit: acme keeps everything; globex's (30 days) is gone, key and all.
    acme_audit = (await _get(rgw, acme, f"/v1/audit?identifier={other}"))["items"]
    assert {i["type"] for i in acme_audit} >= {"opt_out", "possible_opt_out"}
    assert (await _get(rgw, globex, f"/v1/audit?identifier={other}"))["items"] == []
    assert (await _get(rgw, globex, f"/v1/audit?identifier={number}"))["items"] == []
    assert not await client.exists(keys.audit("globex", Channel.SMS, keys.bucket_of(other)))
    # Suppressions and consents never expire.
    for key in (acme, globex):
        entry = await _get(rgw, key, f"/v1/suppressions/sms/{other}")
        assert entry["identifier"] == other and entry["reason"] == "stop_keyword"
    for tenant in ("acme", "globex"):
        assert (await store.consent_state(tenant, Channel.SMS, number)) is not None
    # Review: acme's real-time item is older than 90 days at SWEEP_AT, the NEW one is not;
    # globex keeps the 6-day-old item and loses the 8-day-old one.
    assert [i["body"] for i in (await _get(rgw, acme, "/v1/review"))["items"]] == ["can I end?"]
    assert [i["body"] for i in (await _get(rgw, globex, "/v1/review"))["items"]] == \
        ["cancel my order?"]
    # A suppressed recipient is still refused after the sweep.
    rgw.parts.sms.clock = lambda: NEW
    r = await rgw.http.post("/v1/sms/messages", json={"to": other, "from": ACME_SENDER,
                                                       "body": "Sale"}, headers=rgw.auth(acme))
    assert r.status == 403 and (await r.json())["error"]["code"] == "opted_out"


async def test_tenant_audit_is_trimmed_and_a_second_pass_finds_nothing(rgw: Gateway) -> None:
    # The tenant-level audit list is trimmed by audit retention from its old end; a second
    # pass at the same time removes nothing more (the trim is idempotent).
    client = rgw.parts.client
    ta = keys.tenant_audit("globex")
    old = audit_record(_ms(TODAY), "export", "", "", "api", {})
    new = audit_record(_ms(SWEEP_AT - timedelta(days=1)), "export", "", "", "api", {})
    await client.rpush(ta, old, json.dumps({"at_ms": _ms(TODAY)}), new)
    sweeper = _sweeper(rgw)
    sweeper.clock = lambda: _ms(SWEEP_AT)
    unit = next(u for u in sweeper.units
                if u.tenant.id == "globex" and u.shard == TENANT_LISTS)
    first = await sweeper.sweep_unit(unit)
    assert first.tenant_audit == 2
    assert await client.lrange(ta, 0, -1) == [new.encode()]
    second = await sweeper.sweep_unit(unit)
    assert second.total == 0


async def test_undatable_head_is_kept_and_order_is_respected(rgw: Gateway) -> None:
    # Lists are trimmed from the old end only while records can be dated and are old: an
    # unreadable record stops the trim (kept, never guessed), and so does a newer one.
    client = rgw.parts.client
    bucket = keys.bucket_of("+12125550172")
    msgs = keys.messages("acme", Channel.SMS, bucket)
    old, now = _ms(TODAY) - 100 * DAY_MS, _ms(TODAY)
    await client.rpush(msgs, f"{old}|{{}}", "garbage", f"{old}|{{}}", f"{now}|{{}}",
                       f"{old}|{{}}")
    sweeper = _sweeper(rgw)
    sweeper.clock = lambda: _ms(TODAY)
    await sweeper.sweep_unit(Unit(sweeper.units[0].tenant, Channel.SMS, keys.shard_of(bucket)))
    assert await client.lrange(msgs, 0, -1) == \
        [b"garbage", f"{old}|{{}}".encode(), f"{now}|{{}}".encode(), f"{old}|{{}}".encode()]


async def test_a_backlog_is_trimmed_in_bounded_calls(rgw: Gateway) -> None:
    # 2,500 old records in one bucket with a 1,000-item budget per script call: one unit
    # sweep makes several calls and leaves only the new record.
    client = rgw.parts.client
    bucket = keys.bucket_of("+12125550173")
    msgs = keys.messages("acme", Channel.SMS, bucket)
    old = _ms(TODAY) - 100 * DAY_MS
    await client.rpush(msgs, *[f"{old + i}|{{}}" for i in range(2500)], f"{_ms(TODAY)}|{{}}")
    sweeper = _sweeper(rgw)
    sweeper.clock = lambda: _ms(TODAY)
    before = (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    done = await sweeper.sweep_unit(Unit(sweeper.units[0].tenant, Channel.SMS,
                                         keys.shard_of(bucket)))
    calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"] - before
    assert done.messages == 2500
    assert await client.lrange(msgs, 0, -1) == [f"{_ms(TODAY)}|{{}}".encode()]
    # 8 slices of 128 buckets, the one holding the backlog called 3 times.
    assert calls >= keys.BUCKETS_PER_SHARD // sweeper.slice_buckets + 2


def test_units_cover_every_shard_then_the_tenant_lists() -> None:
    # One unit per tick: each tenant's 64 SMS and 64 email shards, then its own lists.
    tenants = [Tenant(id="a"), Tenant(id="b")]
    units = RetentionSweeper(RedisStore(aioredis.Redis()), tenants).units
    per_tenant = 2 * keys.SHARDS + 1
    assert len(units) == 2 * per_tenant
    assert units[per_tenant - 1] == Unit(tenants[0], Channel.SMS, TENANT_LISTS)
    assert {(u.channel, u.shard) for u in units[:per_tenant - 1]} == \
        {(c, s) for c in Channel for s in range(keys.SHARDS)}


@pytest.mark.parametrize("field", ["audit_retention_days", "review_retention_days",
                                   "message_retention_days"])
def test_retention_settings_are_validated(field: str) -> None:
    # Zero or negative retention would trim everything at once: refused with the field named.
    with pytest.raises(ValueError, match=field):
        Tenant.model_validate({field: 0})


async def test_store_down_the_sweeper_logs_and_retries(
        own_redis: RedisServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    # Redis killed under a running sweeper: it logs once, keeps its task alive, and trims
    # once Redis is back.
    client = make_client(own_redis.url, timeout_ms=200, pool_size=4)
    store = RedisStore(client, op_timeout_s=0.3)
    tenant = Tenant(id="acme")
    sweeper = RetentionSweeper(store, [tenant], cycle_s=0.5, min_interval_s=0.001,
                               start_delay_s=0, outage_retry_s=0.05)
    try:
        own_redis.kill()
        with caplog.at_level(logging.WARNING, logger="suppression.retention"):
            sweeper.start()
            await asyncio.sleep(1.0)  # ~20 failed ticks
        assert sweeper.running
        paused = [r for r in caplog.records if "retention sweep paused" in r.getMessage()]
        assert len(paused) == 1  # once per outage, not once per tick
        own_redis.restart()
        msgs = keys.messages("acme", Channel.SMS, 5)
        async with aioredis.Redis.from_url(own_redis.url) as writer:
            await writer.rpush(msgs, f"{now_ms() - 91 * DAY_MS}|{{}}", f"{now_ms()}|{{}}")
            for _ in range(100):
                if sweeper.trimmed.messages:
                    break
                await asyncio.sleep(0.05)
            assert await writer.llen(msgs) == 1
        assert sweeper.running and sweeper.trimmed.messages == 1
    finally:
        await sweeper.close()
        await client.aclose()
        await client.connection_pool.disconnect()
    assert not sweeper.running


async def test_a_unit_that_keeps_failing_holds_back_no_other(
        rgw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    # A key the script cannot read (a string where a list belongs) fails its unit; after a
    # few tries the sweeper moves on and the next shard's old records are still trimmed.
    client, tenant = rgw.parts.client, Tenant(id="acme")
    await client.set(keys.messages("acme", Channel.SMS, 0), "not a list")
    msgs = keys.messages("acme", Channel.SMS, keys.BUCKETS_PER_SHARD)  # shard 1
    await client.rpush(msgs, f"{now_ms() - 91 * DAY_MS}|{{}}", f"{now_ms()}|{{}}")
    sweeper = RetentionSweeper(rgw.parts.store, [tenant], cycle_s=0.1, min_interval_s=0.001,
                               start_delay_s=0, outage_retry_s=0.01,
                               slice_buckets=keys.BUCKETS_PER_SHARD)
    with caplog.at_level(logging.WARNING):
        sweeper.start()
        try:
            for _ in range(100):
                if await client.llen(msgs) == 1:
                    break
                await asyncio.sleep(0.02)
            assert await client.llen(msgs) == 1
            assert sweeper.running
        finally:
            await sweeper.close()
    assert any("WRONGTYPE" in r.getMessage() for r in caplog.records)  # the cause is logged
    assert await client.get(keys.messages("acme", Channel.SMS, 0)) == b"not a list"
