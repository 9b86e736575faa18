"""Data exports end to end: the sharing guard on a real gateway, Redis and CLI.

``POST /v1/exports`` streams what the rules allow and refuses the rest with the rule
named; every decision is in ``GET /v1/audit/exports`` with the key that asked.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from conftest import (
    NOON_NY,
    TENANTS,
    Gateway,
    cli_runner,
    make_settings,
    start_gateway,
    stop_gateway,
)
from redis_proc import RedisServerProcess

from suppression import datasets as datasets_module
from suppression import keys
from suppression.apikeys import parse_scopes
from suppression.models import Channel, OptEvent, Reason, Source

SENDER = "+14155550100"  # acme's number
GLOBEX_SENDER = "+14155550199"
SMS = ["+12125550101", "+12125550102", "+12125550103"]
EMAILS = ["ann@example.com", "bob@example.com"]
FIRST_PARTY = {"type": "first_party"}


async def export(gw: Gateway, key: str, datasets: list[str], recipient: dict[str, Any],
                 purpose: str, fmt: str | None = None) -> aiohttp.ClientResponse:
    body: dict[str, Any] = {"datasets": datasets, "recipient": recipient, "purpose": purpose}
    if fmt is not None:
        body["format"] = fmt
    r: aiohttp.ClientResponse = await gw.http.post("/v1/exports", json=body,
                                                   headers=gw.auth(key))
    return r


async def jsonl(r: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    text = await r.text()
    assert r.status == 200, text
    assert r.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
    rows = [json.loads(line) for line in text.splitlines()]
    assert int(r.headers["X-Export-Records"]) == len(rows)
    return rows


async def post(gw: Gateway, key: str, path: str, body: dict[str, Any],
               status: int = 201) -> None:
    r = await gw.http.post(path, json=body, headers=gw.auth(key))
    assert r.status == status, await r.text()


async def consent(gw: Gateway, key: str, number: str, evidence: str = "checkbox on /signup"
                  ) -> None:
    await post(gw, key, "/v1/consents", {"channel": "sms", "identifier": number,
                                         "source": "web_form", "evidence": evidence})


async def suppress(gw: Gateway, key: str, channel: str, ident: str) -> None:
    await post(gw, key, "/v1/suppressions", {"channel": channel, "identifier": ident,
                                             "reason": "manual"})


async def audit_items(gw: Gateway, key: str) -> list[dict[str, Any]]:
    r = await gw.http.get("/v1/audit/exports", headers=gw.auth(key))
    assert r.status == 200, await r.text()
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


# -- allowed exports ------------------------------------------------------------------


async def test_jsonl_export_streams_every_dataset_with_its_count(gw: Gateway) -> None:
    # First-party JSON lines of suppressions and consents: every record once, with the
    # consent evidence, the count header matching the body, a lifted suppression absent.
    key = await gw.key()
    for number in SMS:
        await suppress(gw, key, "sms", number)
    for address in EMAILS:
        await suppress(gw, key, "email", address)
    r = await gw.http.delete(f"/v1/suppressions/sms/{SMS[2]}", headers=gw.auth(key))
    assert r.status == 204  # leaves an inactive tombstone that must not be exported
    await consent(gw, key, "+12125550111")
    await consent(gw, key, SMS[0], evidence="keyword JOIN at the till")
    rows = await jsonl(await export(gw, key, ["sms_suppressions", "sms_consents",
                                              "email_suppressions"], FIRST_PARTY,
                                    "compliance"))
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_dataset.setdefault(row["dataset"], []).append(row)
    assert [r["dataset"] for r in rows] == sorted(
        (r["dataset"] for r in rows), key=["sms_suppressions", "sms_consents",
                                           "email_suppressions"].index)
    assert sorted(r["identifier"] for r in by_dataset["sms_suppressions"]) == SMS[:2]
    assert sorted(r["identifier"] for r in by_dataset["email_suppressions"]) == EMAILS
    assert {r["reason"] for r in by_dataset["sms_suppressions"]} == {"manual"}
    consents = {r["identifier"]: r for r in by_dataset["sms_consents"]}
    # Lifting a suppression through the API is not consent: SMS[2] has no consent record.
    assert set(consents) == {"+12125550111", SMS[0]}
    fresh = consents["+12125550111"]
    assert (fresh["status"], fresh["method"], fresh["evidence"], fresh["recorded_by"]) == \
        ("granted", "web_form", "checkbox on /signup", "test")
    assert fresh["opted_out_at"] is None and fresh["consented_at"].endswith("Z")
    # Consent recorded for a number that had opted out: STOP still wins, and says when.
    assert consents[SMS[0]]["evidence"] == "keyword JOIN at the till"
    assert consents[SMS[0]]["opted_out_at"] is not None
    assert "evidence" not in by_dataset["sms_suppressions"][0]


async def test_csv_suppression_list_to_a_processor(gw: Gateway) -> None:
    # A named processor gets the SMS suppression list for service as CSV, with a header,
    # the count header and an attachment name; CSV holds one dataset only.
    key = await gw.key()
    for number in SMS:
        await suppress(gw, key, "sms", number)
    r = await export(gw, key, ["sms_suppressions"], {"type": "processor", "name": "Acme ESP"},
                     "service", "csv")
    text = await r.text()
    assert r.status == 200, text
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["X-Export-Records"] == "3"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="acme-sms_supp')
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["channel", "identifier", "scope", "reason", "source", "created_at"]
    assert sorted(row[1] for row in table[1:]) == SMS
    assert all(row[0] == "sms" and row[2] == "tenant" for row in table[1:])
    r = await export(gw, key, ["sms_suppressions", "email_suppressions"],
                     {"type": "processor", "name": "Acme ESP"}, "service", "csv")
    body = await r.json()
    assert r.status == 422 and body["error"]["field"] == "format"


async def test_csv_cells_cannot_become_spreadsheet_formulas(gw: Gateway) -> None:
    # Consent evidence typed by a client is free text: a leading '=' is neutralised in
    # CSV; E.164 numbers keep their '+'.
    key = await gw.key()
    await consent(gw, key, "+12125550121", evidence='=HYPERLINK("http://evil.example")')
    r = await export(gw, key, ["sms_consents"], FIRST_PARTY, "compliance", "csv")
    table = list(csv.reader(io.StringIO(await r.text())))
    row = dict(zip(table[0], table[1], strict=True))
    assert row["identifier"] == "+12125550121"
    assert row["evidence"] == "'=HYPERLINK(\"http://evil.example\")"


async def test_message_records_export(gw: Gateway) -> None:
    # Every send attempt (sent and refused) is a message record; first party gets them all.
    gw.parts.sms.clock = lambda: NOON_NY
    key = await gw.key()
    await consent(gw, key, "+12125550131")
    for to, status in (("+12125550131", 202), ("+12125550132", 403)):
        await post(gw, key, "/v1/sms/messages", {"to": to, "from": SENDER, "body": "Sale"},
                   status=status)
    rows = await jsonl(await export(gw, key, ["message_records"], FIRST_PARTY, "analytics"))
    outcomes = {r["to"]: (r["outcome"], r["code"]) for r in rows}
    assert outcomes == {"+12125550131": ("sent", None), "+12125550132": ("refused",
                                                                         "no_consent")}
    assert {r["channel"] for r in rows} == {"sms"}
    assert all(r["dataset"] == "message_records" for r in rows)


# -- refusals and the audit trail ---------------------------------------------------------


async def test_consents_to_third_party_marketing_refused_and_audited(gw: Gateway) -> None:
    # SMS consents to a third party for marketing: 403 naming the rule, no data; the
    # decision is audited beside an allowed one, each with the key that asked.
    key = await gw.key()
    await consent(gw, key, "+12125550141")
    r = await export(gw, key, ["sms_consents"], {"type": "third_party", "name": "Data Broker"},
                     "marketing")
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "sharing_prohibited"
    assert "sms_optin_no_third_party_marketing" in body["error"]["message"]
    assert "+12125550141" not in json.dumps(body)
    await jsonl(await export(gw, key, ["sms_consents"], FIRST_PARTY, "compliance"))
    reader, _ = await gw.parts.apikeys.create("acme", parse_scopes("read"), name="auditor")
    items = await audit_items(gw, reader)
    assert [i["allowed"] for i in items] == [True, False]  # newest first
    allowed, refused = items
    assert refused["rule"] == "sms_optin_no_third_party_marketing"
    assert refused["recipient"] == {"type": "third_party", "name": "Data Broker"}
    assert (refused["datasets"], refused["purpose"], refused["via"]) == \
        (["sms_consents"], "marketing", "api")
    key_id = key.split("_")[1]
    assert refused["actor"]["key_id"] == key_id and refused["actor"]["key_name"] == "test"
    assert refused["records"] is None
    assert allowed["rule"] == "first_party" and allowed["records"] == {"sms_consents": 1}
    assert allowed["id"] and allowed["type"] == "export" and allowed["at"].endswith("Z")


async def test_tenant_policy_cannot_loosen_the_fixed_rules(redis_url: str,
                                                            tmp_path: Path) -> None:
    # acme allows third parties everything: SMS data for marketing and opted-out e-mail
    # addresses for marketing are still refused; what the policy may allow, it does.
    allow_all = {"allow": [{"datasets": ["sms_consents", "sms_suppressions",
                                         "email_suppressions", "message_records"],
                            "recipient": "third_party",
                            "purposes": ["service", "compliance", "analytics", "marketing",
                                         "promotional"]}]}
    tenants = {**TENANTS, "acme": {**TENANTS["acme"], "sharing": allow_all}}
    parts, client = await start_gateway(make_settings(redis_url, tmp_path / "data",
                                                      tenants=tenants))
    gw = Gateway(parts, client)
    try:
        key = await gw.key()
        await suppress(gw, key, "email", EMAILS[0])
        broker = {"type": "third_party", "name": "Data Broker"}
        for datasets, purpose, rule in (
                (["sms_suppressions"], "promotional", "sms_optin_no_third_party_marketing"),
                (["email_suppressions", "sms_consents"], "marketing",
                 "can_spam_no_transfer_of_opted_out_addresses")):
            r = await export(gw, key, datasets, broker, purpose)
            assert r.status == 403 and rule in (await r.json())["error"]["message"]
        rows = await jsonl(await export(gw, key, ["email_suppressions"], broker, "compliance"))
        assert [r["identifier"] for r in rows] == [EMAILS[0]]
        assert (await audit_items(gw, key))[0]["rule"] == "tenant_policy_allow"
    finally:
        await stop_gateway(parts, client)


async def test_tenant_b_cannot_see_export_or_use_tenant_a_consent(gw: Gateway) -> None:
    # acme's consent never reaches globex: not in globex's export or audit, and a
    # globex marketing text to that number is refused no_consent while acme's goes out.
    gw.parts.sms.clock = lambda: NOON_NY
    acme, globex = await gw.key("acme"), await gw.key("globex")
    await consent(gw, acme, "+12125550151")
    await jsonl(await export(gw, acme, ["sms_consents"], FIRST_PARTY, "compliance"))
    r = await export(gw, globex, ["sms_consents", "sms_suppressions"], FIRST_PARTY,
                     "compliance")
    assert await jsonl(r) == [] and r.headers["X-Export-Records"] == "0"
    assert len(await audit_items(gw, globex)) == 1  # its own, not acme's
    r = await gw.http.post("/v1/sms/messages", json={
        "to": "+12125550151", "from": GLOBEX_SENDER, "body": "Globex deals"},
        headers=gw.auth(globex))
    assert r.status == 403 and (await r.json())["error"]["code"] == "no_consent"
    await post(gw, acme, "/v1/sms/messages", {"to": "+12125550151", "from": SENDER,
                                              "body": "Acme deals"}, status=202)


# -- auth and input ----------------------------------------------------------------------


async def test_scopes(gw: Gateway) -> None:
    # No key: 401. A key without 'export': 403. The audit list needs 'read'.
    read_only = await gw.key(scopes="read")
    export_only = await gw.key(scopes="export")
    body = {"datasets": ["sms_suppressions"], "recipient": FIRST_PARTY,
            "purpose": "compliance"}
    r = await gw.http.post("/v1/exports", json=body)
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"
    r = await gw.http.post("/v1/exports", json=body, headers=gw.auth(read_only))
    assert r.status == 403 and "'export' scope" in (await r.json())["error"]["message"]
    r = await gw.http.get("/v1/audit/exports", headers=gw.auth(export_only))
    assert r.status == 403
    r = await gw.http.get("/v1/audit/exports")
    assert r.status == 401
    assert (await export(gw, export_only, ["sms_suppressions"], FIRST_PARTY,
                         "compliance")).status == 200
    assert len(await audit_items(gw, read_only)) == 1


GOOD: dict[str, Any] = {"datasets": ["sms_suppressions"], "recipient": FIRST_PARTY,
                        "purpose": "compliance"}


@pytest.mark.parametrize(("body", "status", "field"), [
    ({k: v for k, v in GOOD.items() if k != "datasets"}, 422, "datasets"),
    ({**GOOD, "datasets": []}, 422, "datasets"),
    ({**GOOD, "datasets": ["phone_book"]}, 422, "datasets.0"),
    ({**GOOD, "datasets": "sms_suppressions"}, 422, "datasets"),
    ({**GOOD, "recipient": {"type": "processor"}}, 422, "recipient.name"),
    ({**GOOD, "recipient": {"type": "processor", "name": " \t "}}, 422, "recipient.name"),
    ({**GOOD, "recipient": {"type": "broker"}}, 422, "recipient.type"),
    ({**GOOD, "recipient": "third_party"}, 422, "recipient"),
    ({**GOOD, "purpose": "resale"}, 422, "purpose"),
    ({**GOOD, "purpose": 3}, 422, "purpose"),
    ({**GOOD, "format": "xlsx"}, 422, "format"),
    ({**GOOD, "datasets": ["sms_suppressions", "sms_consents"], "format": "csv"}, 422,
     "format"),
    ({**GOOD, "everything": True}, 422, "everything"),
])
async def test_bad_input_names_the_field(gw: Gateway, body: dict[str, Any], status: int,
                                         field: str) -> None:
    # Each malformed request is refused naming its field; nothing is decided or audited.
    key = await gw.key()
    r = await gw.http.post("/v1/exports", json=body, headers=gw.auth(key))
    error = (await r.json())["error"]
    assert r.status == status and error["field"] == field, error
    assert await audit_items(gw, key) == []


async def test_malformed_json_and_bad_audit_paging(gw: Gateway) -> None:
    # Bytes that are not JSON: 400. A bad limit or cursor on the audit list: 422 naming it.
    key = await gw.key()
    r = await gw.http.post("/v1/exports", data=b"{datasets:", headers={
        **gw.auth(key), "Content-Type": "application/json"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "malformed_json"
    for query, field in (("limit=0", "limit"), ("limit=abc", "limit"), ("cursor=-1", "cursor"),
                         ("cursor=zz", "cursor")):
        r = await gw.http.get(f"/v1/audit/exports?{query}", headers=gw.auth(key))
        assert r.status == 422 and (await r.json())["error"]["field"] == field


async def test_a_cursor_past_the_end_answers_at_once(gw: Gateway) -> None:
    # A made-up cursor far past the list used to walk down to it 100 positions per Redis
    # call (10^10 calls for this one): now it starts at the newest record.
    key = await gw.key()
    assert (await export(gw, key, ["email_suppressions"], FIRST_PARTY, "service")).status == 200
    calls = 0
    real_lrange = gw.parts.client.lrange

    async def counting(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real_lrange(*args, **kw)

    gw.parts.client.lrange = counting  # type: ignore[method-assign]
    try:
        r = await asyncio.wait_for(gw.http.get("/v1/audit/exports?cursor=999999999999",
                                               headers=gw.auth(key)), 5)
    finally:
        gw.parts.client.lrange = real_lrange  # type: ignore[method-assign]
    assert r.status == 200 and len((await r.json())["items"]) == 1
    assert calls == 1


async def test_audit_list_pages_newest_first(gw: Gateway) -> None:
    # 5 decisions paged 2 at a time: 3 pages, newest first, each once.
    key = await gw.key()
    purposes = ["service", "compliance", "analytics", "marketing", "promotional"]
    for purpose in purposes:
        assert (await export(gw, key, ["email_suppressions"], FIRST_PARTY, purpose)
                ).status == 200
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = "/v1/audit/exports?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await (await gw.http.get(url, headers=gw.auth(key))).json()
        seen += [i["purpose"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == purposes[::-1] and pages == 3


# -- store failures ------------------------------------------------------------------------


async def _own_gateway(own: RedisServerProcess, tmp_path: Path) -> Gateway:
    parts, client = await start_gateway(make_settings(own.url, tmp_path / "data"))
    return Gateway(parts, client)


async def test_redis_down_is_503_and_nothing_streamed(own_redis: RedisServerProcess,
                                                      tmp_path: Path) -> None:
    # Redis stopped: the export is refused 503 store_unavailable before any data.
    gw = await _own_gateway(own_redis, tmp_path)
    try:
        key = await gw.key()
        await suppress(gw, key, "sms", SMS[0])
        own_redis.kill()
        r = await export(gw, key, ["sms_suppressions"], FIRST_PARTY, "compliance")
        body = await r.json()
        assert r.status == 503 and body["error"]["code"] == "store_unavailable"
        assert "X-Export-Records" not in r.headers and SMS[0] not in json.dumps(body)
    finally:
        await stop_gateway(gw.parts, gw.http)


async def test_store_failure_mid_stream_cuts_the_body(own_redis: RedisServerProcess,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Redis hangs while an export streams: the client gets an incomplete chunked body
    # (an error), never a short export that looks complete.
    monkeypatch.setattr(datasets_module, "SUPPRESSION_PAGE", 1)  # one round trip per row
    gw = await _own_gateway(own_redis, tmp_path)
    try:
        key = await gw.key()
        events = [OptEvent("opt_out", "acme", Channel.SMS, f"+1212555{i:04d}", Reason.MANUAL,
                           Source.API) for i in range(3000)]
        await gw.parts.store.apply(events, timeout_s=30)
        r = await export(gw, key, ["sms_suppressions"], FIRST_PARTY, "compliance")
        assert r.status == 200 and r.headers["X-Export-Records"] == "3000"
        first = await r.content.readline()
        assert json.loads(first)["dataset"] == "sms_suppressions"
        own_redis.pause()
        with pytest.raises(aiohttp.ClientPayloadError):
            async with asyncio.timeout(20):
                await r.read()
    finally:
        own_redis.resume()
        await stop_gateway(gw.parts, gw.http)


# -- the CLI export ------------------------------------------------------------------------

CONFIG = """
[tenants.acme]
brand = "Acme Co"
[[tenants.acme.sharing.allow]]
datasets = ["email_suppressions"]
recipient = "third_party"
names = ["Auditors LLP"]
purposes = ["compliance"]
[tenants.globex]
brand = "Globex"
"""


@pytest.fixture
def cli(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``optout-gateway ARGS`` in-process; returns (exit status, stdout, stderr)."""
    return cli_runner(redis_url, tmp_path, monkeypatch, capsys, CONFIG)


def cli_audit(redis_url: str, tenant: str = "acme") -> list[dict[str, Any]]:
    with redis.Redis.from_url(redis_url) as client:
        return [json.loads(r) for r in client.lrange(keys.tenant_audit(tenant), 0, -1)]


def test_cli_export_refused_with_exit_3_and_audited(cli: Any, redis_url: str) -> None:
    # The CLI asks the same guard: SMS numbers to a third party for marketing exits 3,
    # names the rule, writes no data, and the refusal is audited as from the CLI.
    assert cli("suppressions", "add", "--tenant", "acme", "--channel", "sms", SMS[0])[0] == 0
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                         "--recipient", "third_party:Data Broker", "--purpose", "marketing")
    assert code == 3 and out == ""
    assert "sms_optin_no_third_party_marketing" in err and SMS[0] not in err
    [record] = cli_audit(redis_url)
    assert (record["allowed"], record["via"], record["rule"]) == \
        (False, "cli", "sms_optin_no_third_party_marketing")
    assert record["recipient"] == {"type": "third_party", "name": "Data Broker"}
    assert record["actor"]["actor"] == "cli"


def test_cli_export_defaults_and_tenant_allow(cli: Any, redis_url: str) -> None:
    # Default first_party/compliance exports as before (and is audited); a third party is
    # refused unless the tenant's policy names it, as acme's does for its auditors.
    assert cli("suppressions", "add", "--tenant", "acme", "--channel", "email",
               EMAILS[0])[0] == 0
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "email")
    assert code == 0 and EMAILS[0] in out, err
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "email",
                         "--recipient", "third_party:Someone Else", "--purpose", "compliance")
    assert code == 3 and "not_allowed_by_default" in err and out == ""
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "email",
                         "--recipient", "third_party:auditors llp", "--purpose", "compliance",
                         "--format", "jsonl")
    assert code == 0 and json.loads(out)["identifier"] == EMAILS[0], err
    assert [(r["allowed"], r["rule"], r["purpose"]) for r in cli_audit(redis_url)] == [
        (True, "first_party", "compliance"), (False, "not_allowed_by_default", "compliance"),
        (True, "tenant_policy_allow", "compliance")]
    assert cli_audit(redis_url, "globex") == []


@pytest.mark.parametrize(("args", "problem"), [
    (("--recipient", "processor"), "needs a 'name'"),
    (("--recipient", "broker:X"), "first_party, processor, affiliate, third_party"),
    (("--purpose", "resale"), "invalid choice"),
])
def test_cli_export_bad_recipient_or_purpose(cli: Any, redis_url: str, args: tuple[str, ...],
                                             problem: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # A malformed --recipient or --purpose is a usage error (exit 2) naming the problem;
    # nothing is decided, so nothing is audited.
    try:
        code, _, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                           *args)
    except SystemExit as exc:  # argparse rejects an unknown --purpose itself
        code, err = int(str(exc.code)), capsys.readouterr().err
    assert code == 2 and problem in err
    assert cli_audit(redis_url) == []
