"""Faults: Redis hung, down, killed and emptied; journal fsync failure.

An acknowledged opt-out is never lost and nothing unchecked is answered as
allowed. Time bounds here only catch hangs; speed lives in bench/.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from pathlib import Path

import pytest
import redis
from conftest import Gateway, make_settings, start_gateway, stop_gateway
from redis_proc import RedisServerProcess, tcp_redis

from suppression import keys
from suppression.models import Channel

HANG_GUARD_S = 5.0  # far above the 250 ms budget: only here to turn a hang into a failure


async def _gateway(redis_proc: RedisServerProcess, tmp_path: Path, **kw: object) -> Gateway:
    parts, client = await start_gateway(make_settings(redis_proc.url, tmp_path / "data", **kw))
    return Gateway(parts, client)


async def _warm(gw: Gateway, key: str) -> None:
    """Use the key once while Redis is up, as a live client would have."""
    r = await gw.http.get("/v1/suppressions?channel=sms&limit=1", headers=gw.auth(key))
    assert r.status == 200


async def _suppress(gw: Gateway, key: str, ident: str) -> int:
    r = await gw.http.post("/v1/suppressions", json={"channel": "sms", "identifier": ident},
                           headers=gw.auth(key))
    return r.status


async def test_hung_redis_fails_closed_within_budget(own_redis: RedisServerProcess,
                                                     tmp_path: Path) -> None:
    # Redis is SIGSTOPped: checks answer 503 quickly instead of hanging for a minute.
    gw = await _gateway(own_redis, tmp_path)
    try:
        key = await gw.key()
        await _warm(gw, key)
        own_redis.pause()
        async with asyncio.timeout(HANG_GUARD_S):
            r = await gw.http.post("/v1/suppressions/check", json={
                "channel": "sms", "identifiers": ["+14155550123"]}, headers=gw.auth(key))
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "store_unavailable"
            assert r.headers["Retry-After"] == "1"
            r = await gw.http.get("/readyz")
            assert r.status == 503
            r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
            assert r.status == 503
            # An opt-out is still acknowledged: it is in the fsync'd journal.
            assert await _suppress(gw, key, "+14155550124") == 201
        own_redis.resume()
        async with asyncio.timeout(HANG_GUARD_S):
            while gw.parts.service.pending_count:
                await asyncio.sleep(0.05)
        r = await gw.http.get("/v1/suppressions/sms/+14155550124", headers=gw.auth(key))
        assert r.status == 200
    finally:
        own_redis.resume()
        await stop_gateway(gw.parts, gw.http)


async def test_redis_down_honours_acknowledged_opt_outs(
        own_redis: RedisServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Redis is stopped: a journalled opt-out is still honoured by check; unknown numbers refuse;
    # nothing logged on the way names the person.
    caplog.set_level(logging.DEBUG)
    gw = await _gateway(own_redis, tmp_path)
    try:
        key = await gw.key()
        await _warm(gw, key)
        own_redis.kill()
        assert await _suppress(gw, key, "+14155550125") == 201
        r = await gw.http.post("/v1/suppressions/check", json={
            "channel": "sms", "identifiers": ["+14155550125"]}, headers=gw.auth(key))
        assert r.status == 200  # the key was verified from memory, the answer from the journal
        assert (await r.json())["results"][0]["suppressed"] is True
        r = await gw.http.get("/v1/suppressions/sms/+14155550125", headers=gw.auth(key))
        assert r.status == 200
        r = await gw.http.post("/v1/suppressions/check", json={
            "channel": "sms", "identifiers": ["+14155550125", "+14155550126"]},
            headers=gw.auth(key))
        assert r.status == 503  # one unknown identifier: fail closed
        assert (await gw.http.get("/readyz")).status == 503
        assert "5550125" not in caplog.text and "5550126" not in caplog.text
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_unseen_key_during_outage_is_503_not_401(own_redis: RedisServerProcess,
                                                       tmp_path: Path) -> None:
    # A key never verified before the outage cannot be checked: 503, never a false 401.
    gw = await _gateway(own_redis, tmp_path)
    try:
        key = await gw.key()
        own_redis.kill()
        r = await gw.http.get("/v1/suppressions?channel=sms", headers=gw.auth(key))
        assert r.status == 503
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_redis_restart_that_lost_data_is_replayed(tmp_path: Path) -> None:
    # Redis without persistence is killed after an acknowledged opt-out and comes back empty:
    # the gateway notices the restart and replays its journal.
    volatile = RedisServerProcess(tmp_path / "volatile", extra_config={"appendonly": "no"})
    volatile.start()
    gw = await _gateway(volatile, tmp_path)
    try:
        key = await gw.key()
        assert await _suppress(gw, key, "+14155550127") == 201
        volatile.kill()
        volatile.restart()
        bucket = keys.bucket_of("+14155550127")
        sup = keys.suppressions("acme", Channel.SMS, bucket)
        with redis.Redis.from_url(volatile.url) as raw:
            assert raw.hget(sup, "14155550127") is None  # Redis really lost it
            async with asyncio.timeout(HANG_GUARD_S):
                while raw.hget(sup, "14155550127") is None:
                    await asyncio.sleep(0.05)
        r = await gw.http.post("/v1/suppressions/check", json={
            "channel": "sms", "identifiers": ["+14155550127"]}, headers=gw.auth(key))
        assert r.status == 200 and (await r.json())["results"][0]["suppressed"] is True
    finally:
        await stop_gateway(gw.parts, gw.http)
        volatile.stop()


async def test_failed_fsync_refuses_and_stops(redis_url: str, tmp_path: Path) -> None:
    # The journal's fsync fails: the opt-out is refused with 503 (never 2xx), every later
    # write too without touching the disk again, and the gateway asks to exit.
    calls: list[int] = []
    fail = {"on": False}

    def flaky_fsync(fd: int) -> None:
        calls.append(fd)
        if fail["on"]:
            raise OSError(errno.EIO, "Input/output error")

    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data"),
                                        fsync=flaky_fsync)
    gw = Gateway(parts, client)
    try:
        key = await gw.key()
        fail["on"] = True
        assert await _suppress(gw, key, "+14155550128") == 503
        before = len(calls)
        assert await _suppress(gw, key, "+14155550129") == 503
        assert len(calls) == before  # never retried
        assert parts.fatal  # serve() exits on this (tested in test_serve)
        assert (await gw.http.get("/readyz")).status == 503
        with redis.Redis.from_url(redis_url) as raw:
            sup = keys.suppressions("acme", Channel.SMS, keys.bucket_of("+14155550128"))
            assert raw.hget(sup, "14155550128") is None  # not applied either
    finally:
        await stop_gateway(parts, client)


async def test_key_footprint_of_one_opt_out(gw: Gateway, redis_url: str) -> None:
    # One opt-out writes exactly its bucket entry and its audit entry, nothing else.
    key = await gw.key()
    with redis.Redis.from_url(redis_url) as raw:
        before = set(raw.keys("*"))
        assert await _suppress(gw, key, "+14155550130") == 201
        added = {k.decode() for k in set(raw.keys("*")) - before}
        bucket = keys.bucket_of("+14155550130")
        assert added == {keys.suppressions("acme", Channel.SMS, bucket),
                         keys.audit("acme", Channel.SMS, bucket),
                         keys.used_buckets("acme", Channel.SMS, keys.shard_of(bucket))}
        assert raw.hlen(keys.suppressions("acme", Channel.SMS, bucket)) == 1
        assert raw.llen(keys.audit("acme", Channel.SMS, bucket)) == 1
        assert raw.ttl(keys.suppressions("acme", Channel.SMS, bucket)) == -1  # never expires
        # The same opt-out again changes no state and adds no key.
        assert await _suppress(gw, key, "+14155550130") == 201
        assert raw.hlen(keys.suppressions("acme", Channel.SMS, bucket)) == 1
        assert {k.decode() for k in set(raw.keys("*")) - before} == added


def test_tcp_redis_helper_gives_fixed_url(tmp_path: Path) -> None:
    # The restartable helper keeps its URL across restarts (what the fault tests rely on).
    proc = tcp_redis(tmp_path)
    assert proc.url.startswith("redis://127.0.0.1:")
