"""Scoped suppressions: an email topic (or a hard bounce) beside the address's own entry."""

from __future__ import annotations

import redis.asyncio as aioredis
from conftest import Gateway

from suppression import codec, keys
from suppression.models import HARD_BOUNCE_SCOPE, Channel, OptEvent, Reason, Source, scoped

ANN = "ann@example.com"


async def test_topic_opt_out_leaves_the_address_and_other_topics_alone(gw: Gateway) -> None:
    # Leaving "news" suppresses only "news"; the address and "deals" stay mailable.
    svc = gw.parts.service
    await svc.opt_out("acme", Channel.EMAIL, ANN, reason=Reason.UNSUBSCRIBE_CLICK,
                      source=Source.WEB, scope="news")
    got = await svc.suppressed("acme", Channel.EMAIL,
                               [ANN, scoped(ANN, "news"), scoped(ANN, "deals")])
    assert got == [False, True, False]
    assert await svc.get("acme", Channel.EMAIL, ANN) is None


async def test_scoped_entry_shares_the_bucket_and_is_listed_with_its_scope(gw: Gateway) -> None:
    # One round trip reads every scope of an address: they live in one hash; listings name them.
    svc = gw.parts.service
    await svc.opt_out("acme", Channel.EMAIL, ANN, reason=Reason.BOUNCE, source=Source.EMAIL,
                      scope=HARD_BOUNCE_SCOPE)
    await svc.opt_out("acme", Channel.EMAIL, ANN, reason=Reason.ONE_CLICK, source=Source.WEB,
                      scope="news")
    client: aioredis.Redis = gw.parts.client
    bucket_key = keys.suppressions("acme", Channel.EMAIL, keys.bucket_of(ANN))
    fields = sorted(f.decode() for f in await client.hkeys(bucket_key))  # type: ignore[misc]
    assert fields == [f"{ANN} !bounce", f"{ANN} news"]
    key = await gw.key()
    r = await gw.http.get("/v1/suppressions?channel=email", headers=gw.auth(key))
    items = (await r.json())["items"]
    assert sorted((i["identifier"], i["scope"]) for i in items) == [
        (ANN, "hard_bounce"), (ANN, "topic:news")]


async def test_topic_opt_in_lifts_only_the_topic_and_records_no_consent(gw: Gateway) -> None:
    # Re-subscribing to a topic is not consent to marketing in general.
    svc = gw.parts.service
    await svc.opt_out("acme", Channel.EMAIL, ANN, reason=Reason.ONE_CLICK, source=Source.WEB,
                      scope="news")
    await svc.opt_in("acme", Channel.EMAIL, ANN, reason=Reason.OPT_IN_PREFERENCES,
                     source=Source.WEB, scope="news")
    assert await svc.suppressed("acme", Channel.EMAIL, [scoped(ANN, "news")]) == [False]
    assert await gw.parts.store.consent_state("acme", Channel.EMAIL, ANN) is None
    audit = await gw.parts.store.audit("acme", Channel.EMAIL, ANN)
    assert [(a.type, a.detail.get("scope")) for a in audit] == [
        ("opt_out", "topic:news"), ("opt_in", "topic:news")]


def test_scope_survives_the_journal_encoding() -> None:
    # A journalled topic opt-out replays as a topic opt-out, not as a full one.
    ev = OptEvent("opt_out", "acme", Channel.EMAIL, ANN, Reason.ONE_CLICK, Source.WEB,
                  scope="news")
    back = OptEvent.from_json(ev.to_json())
    assert back == ev and back.key == ("acme", Channel.EMAIL, f"{ANN} news")
    plain = OptEvent("opt_out", "acme", Channel.SMS, "+14155550123", Reason.STOP_KEYWORD,
                     Source.SMS)
    assert "scope" not in plain.to_json()
    assert codec.encode_field(Channel.SMS, scoped("+14155550123", "x")) == "14155550123 x"
    assert keys.bucket_of(scoped(ANN, "news")) == keys.bucket_of(ANN)


async def test_ops_lifting_a_suppression_records_no_consent(gw: Gateway) -> None:
    # DELETE /v1/suppressions lifts the opt-out, but only the person's START is consent.
    svc = gw.parts.service
    number = "+14155550177"
    await svc.opt_out("acme", Channel.SMS, number, reason=Reason.STOP_KEYWORD,
                      source=Source.SMS)
    await svc.opt_in("acme", Channel.SMS, number, reason=Reason.OPT_IN_MANUAL, source=Source.API)
    assert await gw.parts.store.consent_state("acme", Channel.SMS, number) is None
    await svc.opt_in("acme", Channel.SMS, number, reason=Reason.OPT_IN_KEYWORD,
                     source=Source.SMS)
    state = await gw.parts.store.consent_state("acme", Channel.SMS, number)
    assert state is not None and state[0] == 1


async def test_an_opt_out_revokes_consent_and_ops_cannot_restore_it(gw: Gateway) -> None:
    # START grants, STOP revokes; an ops opt-in lifts the suppression but consent stays
    # revoked; a replayed older START cannot grant over the newer revocation.
    svc, store = gw.parts.service, gw.parts.store
    number = "+14155550178"
    start = await svc.opt_in("acme", Channel.SMS, number, reason=Reason.OPT_IN_KEYWORD,
                             source=Source.SMS)
    assert (await store.consent_state("acme", Channel.SMS, number) or (None,))[0] == 1
    await svc.opt_out("acme", Channel.SMS, number, reason=Reason.STOP_KEYWORD,
                      source=Source.SMS)
    assert (await store.consent_state("acme", Channel.SMS, number) or (None,))[0] == 0
    await svc.opt_in("acme", Channel.SMS, number, reason=Reason.OPT_IN_MANUAL, source=Source.API)
    assert (await store.consent_state("acme", Channel.SMS, number) or (None,))[0] == 0
    replayed = OptEvent("opt_in", "acme", Channel.SMS, number, Reason.OPT_IN_KEYWORD,
                        Source.SMS, at_ms=start.at_ms, id="replayed-start")
    await store.apply([replayed])
    assert (await store.consent_state("acme", Channel.SMS, number) or (None,))[0] == 0


async def test_an_opt_out_without_consent_creates_no_consent_record(gw: Gateway) -> None:
    # A suppression import must not add a consent field per number (memory, and meaning).
    await gw.parts.service.opt_out("acme", Channel.SMS, "+14155550179",
                                   reason=Reason.IMPORT, source=Source.IMPORT)
    assert await gw.parts.store.consent_state("acme", Channel.SMS, "+14155550179") is None
