"""The shape of the SMS hot paths: Redis calls per STOP and per send, records behind answers.

Real redis-server (``MONITOR`` lists what the gateway asked it, without the commands its
scripts ran), real HTTP, Twilio-signed webhooks. Each test states the call budget or the
ordering it protects.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from conftest import Gateway, make_settings, start_gateway, stop_gateway
from fake_sms_provider import FakeSmsProvider
from redis_proc import RedisServerProcess
from twilio.request_validator import RequestValidator

from suppression import keys
from suppression.models import Channel
from suppression.outbound import MessageRecorder
from suppression.store import MessageRecord

SENDER = "+14155550100"  # acme's number (conftest TENANTS)
INBOUND = "/v1/sms/inbound/twilio"
# Commands a quiet gateway sends on its own (health checks, connection set-up).
BACKGROUND = {"info", "ping", "client|setname", "client|setinfo", "hello", "select"}




@contextmanager
def monitor(url: str) -> Iterator[Counter[str]]:
    """Counts the commands clients send to Redis inside the block (scripts' own commands
    and the gateway's background ones left out)."""
    seen: Counter[str] = Counter()
    marker = f"end-{uuid.uuid4().hex}"
    ready = threading.Event()

    def listen() -> None:
        with redis.Redis.from_url(url) as conn, conn.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if marker in cmd["command"]:
                    return
                name = cmd["command"].split(" ", 1)[0].lower()
                if cmd["client_type"] != "lua" and name not in BACKGROUND:
                    seen[name] += 1

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield seen
    finally:
        with redis.Redis.from_url(url) as raw:
            raw.echo(marker)
        thread.join(5)
        seen.pop("echo", None)


async def webhook(gw: Gateway, body: str, from_: str, sid: str | None = None) -> tuple[int, str]:
    params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
              "From": from_, "To": SENDER, "Body": body, "NumMedia": "0"}
    url = gw.parts.settings.public_url + INBOUND
    sig = RequestValidator("acme-token").compute_signature(url, params)
    r = await gw.http.post(INBOUND, data=params, headers={"X-Twilio-Signature": sig})
    return r.status, await r.text()


async def is_suppressed(gw: Gateway, number: str) -> bool:
    return (await gw.parts.service.suppressed("acme", Channel.SMS, [number]))[0]


async def consent(gw: Gateway, key: str, number: str) -> None:
    r = await gw.http.post("/v1/consents", json={"channel": "sms", "identifier": number,
                                                  "source": "web_form", "evidence": "signup"},
                           headers=gw.auth(key))
    assert r.status == 201, await r.text()


async def send(gw: Gateway, key: str, to: str, category: str = "marketing") -> int:
    r = await gw.http.post("/v1/sms/messages", headers=gw.auth(key), json={
        "to": to, "from": SENDER, "body": "Deals at Acme", "category": category})
    return r.status


# -- STOP: one Lua call ---------------------------------------------------------------------------


async def test_stop_is_one_redis_call_and_its_retry_one_more(sgw: Gateway, redis_url: str
                                                             ) -> None:
    # A signed STOP is one EVALSHA (message-id claim, opt-out, confirmation claim together);
    # the provider's retry of it is one more call, changes nothing and gets no confirmation.
    number, sid = "+12125550170", "SM" + uuid.uuid4().hex
    assert (await webhook(sgw, "STOP", "+12125550169"))[0] == 200  # scripts loaded (NOSCRIPT)
    with monitor(redis_url) as seen:
        status, text = await webhook(sgw, "STOP", number, sid)
    assert status == 200 and text.count("<Message>") == 1 and "Acme Co" in text
    assert seen == {"evalsha": 1}
    assert await is_suppressed(sgw, number)
    with monitor(redis_url) as seen:
        status, text = await webhook(sgw, "STOP", number, sid)
    assert status == 200 and "<Message>" not in text
    assert seen == {"evalsha": 1}
    journalled = [e for e in sgw.parts.journal.retained_events() if e.identifier == number]
    assert len(journalled) == 1  # the retry was never journalled


async def test_stop_claims_live_in_the_senders_shard(sgw: Gateway, redis_url: str) -> None:
    # Both claim keys share the suppression entry's hash tag (one cluster slot, one Lua call)
    # and expire; a second STOP from the number within 5 minutes is applied, not confirmed.
    number = "+12125550171"
    with redis.Redis.from_url(redis_url) as raw:
        before = set(raw.keys("*"))
        assert (await webhook(sgw, "STOP", number))[0] == 200
        added = {k.decode() for k in set(raw.keys("*")) - before}
        tag = keys.tag("acme", Channel.SMS, keys.shard_of(keys.bucket_of(number)))
        assert all(tag in k for k in added), added
        claims = [k for k in added if raw.ttl(k) > 0]
        assert len(claims) == 2  # the message id (a week) and the confirmation gap (5 min)
        assert sorted(raw.ttl(k) for k in claims)[0] <= 300
    status, text = await webhook(sgw, "Stop please", number)
    assert status == 200 and "<Message>" not in text and await is_suppressed(sgw, number)


async def test_retried_stop_after_start_is_not_replayed(sgw: Gateway) -> None:
    # STOP, then START, then the provider retries the first STOP: the retry changes nothing,
    # and replaying the journal (as after a Redis restart) keeps the person subscribed.
    number, sid = "+12125550172", "SM" + uuid.uuid4().hex
    assert (await webhook(sgw, "STOP", number, sid))[0] == 200
    status, text = await webhook(sgw, "START", number)
    assert status == 200 and "<Message>" in text
    assert not await is_suppressed(sgw, number)
    status, text = await webhook(sgw, "STOP", number, sid)
    assert status == 200 and "<Message>" not in text
    assert not await is_suppressed(sgw, number)
    assert await sgw.parts.service.replay()
    assert not await is_suppressed(sgw, number)
    actions = [e.action for e in sgw.parts.journal.retained_events() if e.identifier == number]
    assert actions == ["opt_out", "opt_in"]


async def test_stop_is_not_acknowledged_before_the_journal_fsync(redis_url: str,
                                                                 tmp_path: Path) -> None:
    # The journal's fsync fails after Redis applied the STOP: the webhook is refused (503, the
    # provider retries), no confirmation is sent, and the opt-out is honoured all the same.
    fail = {"on": False}

    def flaky_fsync(fd: int) -> None:
        if fail["on"]:
            raise OSError(errno.EIO, "Input/output error")

    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data"),
                                        fsync=flaky_fsync)
    gw = Gateway(parts, client)
    try:
        fail["on"] = True
        status, text = await webhook(gw, "STOP", "+12125550173")
        assert status == 503 and "<Message>" not in text
        assert parts.fatal
        stored = await parts.store.get("acme", Channel.SMS, "+12125550173")
        assert stored is not None
    finally:
        await stop_gateway(parts, client)


async def test_stop_during_outage_is_journalled_confirmed_and_applied_later(
        own_redis: RedisServerProcess, tmp_path: Path) -> None:
    # Redis is down: the one Lua call fails, the STOP is journalled, confirmed and honoured;
    # when Redis is back the applier writes it.
    parts, client = await start_gateway(make_settings(own_redis.url, tmp_path / "data"))
    gw = Gateway(parts, client)
    number = "+12125550174"
    try:
        own_redis.kill()
        status, text = await webhook(gw, "STOP", number)
        assert status == 200 and text.count("<Message>") == 1
        assert parts.service.pending_count == 1 and await is_suppressed(gw, number)
        await asyncio.to_thread(own_redis.restart)
        for _ in range(200):
            if not parts.service.pending_count:
                break
            await asyncio.sleep(0.05)
        assert parts.service.pending_count == 0
        assert await parts.store.get("acme", Channel.SMS, number) is not None
    finally:
        await stop_gateway(parts, client)


# -- sends: one call before the upstream, the record behind the answer ----------------------------


async def test_send_is_one_redis_call_then_one_record(sgw: Gateway, redis_url: str,
                                                      fake: FakeSmsProvider) -> None:
    # A send reads its recipient's state in one EVALSHA (no pipelined HGETs) before the
    # upstream; its message record is one more EVALSHA, written behind the 202.
    key = await sgw.key(transactional=True)
    assert await send(sgw, key, "+12125550175", "transactional") == 202  # key now cached
    await sgw.parts.sms.recorder.flush()
    with monitor(redis_url) as seen:
        assert await send(sgw, key, "+12125550176", "transactional") == 202
        await sgw.parts.sms.recorder.flush()
    assert seen == {"evalsha": 2}
    assert len(fake.messages) == 2


async def test_records_of_concurrent_sends_share_pipelines_and_are_read_back(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # 40 concurrent sends: every attempt has its record when read back right after the
    # answers (readers wait for queued records), written in fewer calls than sends.
    key = await sgw.key(transactional=True)
    numbers = [f"+1212555{n:04d}" for n in range(200, 240)]
    statuses = await asyncio.gather(*(send(sgw, key, n, "transactional") for n in numbers))
    assert set(statuses) == {202}
    for n in numbers[:5]:
        r = await sgw.http.get(f"/v1/messages?to={n}", headers=sgw.auth(key))
        assert [i["outcome"] for i in (await r.json())["items"]] == ["sent"]
    recorder = sgw.parts.sms.recorder
    assert recorder.pending == 0 and recorder.written == 40 and recorder.dropped == 0


async def test_queued_records_are_written_at_shutdown(redis_url: str, tmp_path: Path,
                                                      fake: FakeSmsProvider) -> None:
    # Records still queued when the gateway stops are written before it lets go of Redis.
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data",
                                                      sms_upstream=fake.url))
    gw = Gateway(parts, client)
    key = await gw.key(transactional=True)
    numbers = [f"+1212555{n:04d}" for n in range(300, 320)]
    statuses = await asyncio.gather(*(send(gw, key, n, "transactional") for n in numbers))
    assert set(statuses) == {202}
    await stop_gateway(parts, client)
    with redis.Redis.from_url(redis_url) as raw:
        for n in numbers:
            rows = raw.lrange(keys.messages("acme", Channel.SMS, keys.bucket_of(n)), 0, -1)
            assert any(n.encode() in row for row in rows), n


async def test_capped_recipients_record_is_written_before_the_answer(
        sgw: Gateway, fake: FakeSmsProvider) -> None:
    # Florida's 3-per-24 h cap: each marketing send's time is in Redis when the 202 arrives
    # (no waiting on queued records), so the fourth text is refused.
    key = await sgw.key()
    number = "+13055550177"
    await consent(sgw, key, number)
    for expected in (1, 2, 3):
        assert await send(sgw, key, number) == 202
        _, _, sends = await sgw.parts.store.send_state("acme", Channel.SMS, number)
        assert len(sends) == expected
    assert await send(sgw, key, number) == 429


async def test_recorder_is_bounded_and_drops_with_a_count_when_redis_is_down(
        own_redis: RedisServerProcess, tmp_path: Path) -> None:
    # The queue never holds more than its bound (the sender waits instead); with Redis down
    # a batch is dropped and counted, never raised into the send.
    parts, client = await start_gateway(make_settings(own_redis.url, tmp_path / "data"))
    try:
        recorder = MessageRecorder(parts.store, batch=2, max_queued=3)
        seen = []
        for i in range(10):
            number = f"+1212555{400 + i:04d}"
            await recorder.add(MessageRecord("acme", Channel.SMS, number, {"to": number},
                                             1_780_000_000_000 + i, False, 86_400_000))
            seen.append(recorder.pending)
        assert max(seen) <= 3
        await recorder.flush()
        assert (recorder.written, recorder.dropped, recorder.pending) == (10, 0, 0)
        own_redis.kill()
        await recorder.add(MessageRecord("acme", Channel.SMS, "+12125550499", {}, 1, False, 1))
        await recorder.close()
        assert (recorder.written, recorder.dropped, recorder.pending) == (10, 1, 0)
    finally:
        await stop_gateway(parts, client)
