"""``optout-gateway suppressions import|export`` run in-process against a real Redis.

These are sync tests: ``cli.main`` runs its own event loop (``asyncio.run``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from conftest import cli_runner
from phonenumbers import PhoneNumberType

from gateway.cli import main
from gateway.cli_transfer import Progress
from suppression.bulk import MAX_KEPT_ERRORS, ImportReport, fast_e164, iter_rows
from suppression.errors import InvalidRecipient
from suppression.identifiers import normalize_phone

CONFIG = """
[tenants.acme]
brand = "Acme Co"
[tenants.globex]
brand = "Globex"
"""


@pytest.fixture
def cli(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``optout-gateway ARGS`` in-process; returns (exit status, stdout, stderr)."""
    return cli_runner(redis_url, tmp_path, monkeypatch, capsys, CONFIG)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def imported(cli: Any, path: str, *extra: str, tenant: str = "acme",
             channel: str = "sms") -> dict[str, Any]:
    code, out, err = cli("suppressions", "import", path, "--tenant", tenant,
                         "--channel", channel, "--json", *extra)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def suppressed(cli: Any, *identifiers: str, tenant: str = "acme",
               channel: str = "sms") -> list[bool]:
    code, out, err = cli("suppressions", "check", "--tenant", tenant, "--channel", channel,
                         "--json", *identifiers)
    assert code == 0, err
    return [json.loads(line)["suppressed"] for line in out.splitlines()]


def numbers(n: int, start: int = 200) -> list[str]:
    """n distinct valid US numbers in E.164."""
    return [f"+1212{start + i // 10000:03d}{i % 10000:04d}" for i in range(n)]


def test_csv_import_counts_invalid_lines_and_duplicates(cli: Any, tmp_path: Path) -> None:
    # A CSV with a header, a bad number on line 4 and a repeat on line 6: exact counts and lines.
    path = write(tmp_path / "list.csv", "name,Phone,reason\n"
                 "Ann,+14155550101,\n"
                 "Bob,+14155550102,complaint\n"
                 "Cy,+1 415,\n"
                 "Di,+14155550104,\n"
                 "Ann again,+14155550101,\n")
    code, out, err = cli("suppressions", "import", path, "--tenant", "acme", "--channel", "sms")
    assert code == 0, err
    assert "added 3, duplicate 1, invalid 1" in out
    assert "line 4: '+1 415' is too short to be a phone number." in out
    assert "invalid rows were skipped" in out
    assert suppressed(cli, "+14155550101", "+14155550102", "+14155550104",
                      "+14155550105") == [True, True, True, False]


def test_reimport_adds_nothing(cli: Any, tmp_path: Path) -> None:
    # Importing the same file twice: the second run adds 0 and counts every row duplicate.
    path = write(tmp_path / "list.csv", "\n".join(numbers(250)) + "\n")
    assert imported(cli, path, "--batch-size", "100") == {
        "added": 250, "duplicate": 0, "invalid": 0, "errors": []}
    assert imported(cli, path, "--batch-size", "100") == {
        "added": 0, "duplicate": 250, "invalid": 0, "errors": []}


def test_repeats_across_batches_are_duplicates(cli: Any, tmp_path: Path) -> None:
    # A number repeated in a later batch (batch size 2) is a duplicate, not added twice.
    path = write(tmp_path / "list.txt", "+14155550101\n+14155550102\n+14155550103\n"
                 "4155550101\n")
    assert imported(cli, path, "--batch-size", "2")["added"] == 3
    assert imported(cli, path, "--batch-size", "2")["duplicate"] == 4


def test_jsonl_import_reports_malformed_lines(cli: Any, tmp_path: Path) -> None:
    # JSON lines: a broken line, a non-object, a missing identifier and a bad reason are
    # invalid rows with their line numbers; the good lines around them are imported.
    path = write(tmp_path / "list.jsonl",
                 '{"identifier": "+14155550101"}\n'
                 '{"identifier": "+14155550102", "reason": "stop_keyword"}\n'
                 '{"identifier": "+1415555\n'
                 '\n'
                 '["+14155550104"]\n'
                 '{"reason": "manual"}\n'
                 '{"identifier": "+14155550107", "reason": "opt_in_manual"}\n'
                 '{"identifier": 14155550108}\n'
                 '{"identifier": "(415) 555-0109", "reason": null}\n')
    result = imported(cli, path)
    assert (result["added"], result["duplicate"], result["invalid"]) == (3, 0, 5)
    lines = {e["line"]: e["message"] for e in result["errors"]}
    assert sorted(lines) == [3, 5, 6, 7, 8]
    assert lines[3].startswith("The line is not valid JSON")
    assert "JSON object" in lines[5]
    assert lines[6] == 'The object has no "identifier".'
    assert "opt_in_manual" in lines[7] and "not one of" in lines[7]
    assert lines[8] == '"identifier" must be a string, not a number.'
    assert suppressed(cli, "+14155550101", "+14155550109", "+14155550107") == [
        True, True, False]


def test_national_formats_are_normalised(cli: Any, tmp_path: Path) -> None:
    # National spellings become E.164, so the same number written two ways is one entry.
    path = write(tmp_path / "list.csv", "number\n"
                 "(415) 555-0123\n"
                 "415.555.0124\n"
                 "1-415-555-0125\n"
                 "+1 415 555 0126\n"
                 "tel:+1-415-555-0127\n"
                 "+14155550123\n"
                 "\ufeff\u200b4155550128\n")
    result = imported(cli, path)
    assert (result["added"], result["duplicate"], result["invalid"]) == (6, 1, 0)
    assert suppressed(cli, *(f"+1415555012{i}" for i in range(3, 9))) == [True] * 6


def test_headerless_csv_uses_first_column(cli: Any, tmp_path: Path) -> None:
    # Without a recognised header, the first column of every row (the first too) is the number.
    path = write(tmp_path / "list.csv", "+14155550101,whatever\r\n"
                 "+14155550102,more\r\n\r\n\"+1415555010\n3\",x\r\n")
    result = imported(cli, path)
    assert (result["added"], result["invalid"]) == (2, 1)
    assert result["errors"][0]["line"] == 4


def test_email_import_with_header(cli: Any, tmp_path: Path) -> None:
    # Email lists: the 'email' column is found among others; addresses are lower-cased, so
    # "Ann@Example.COM" and "ann@example.com" are one entry.
    path = write(tmp_path / "list.csv", "id,Email\n1,Ann@Example.COM\n2,not-an-address\n"
                 "3,ann@example.com\n4,Bob@example.com\n")
    result = imported(cli, path, channel="email")
    assert (result["added"], result["duplicate"], result["invalid"]) == (2, 1, 1)
    assert result["errors"][0]["line"] == 3 and "'@'" in result["errors"][0]["message"]
    assert suppressed(cli, "Ann@example.com", channel="email") == [True]


def test_import_resuppresses_opted_in_number(cli: Any, tmp_path: Path) -> None:
    # Someone who opted back in (a tombstone, not a suppression) is suppressed again by an import.
    assert cli("suppressions", "add", "+14155550101", "--tenant", "acme",
               "--channel", "sms")[0] == 0
    assert cli("suppressions", "remove", "+14155550101", "--tenant", "acme",
               "--channel", "sms")[0] == 0
    assert suppressed(cli, "+14155550101") == [False]
    path = write(tmp_path / "list.csv", "+14155550101\n")
    assert imported(cli, path)["added"] == 1
    assert suppressed(cli, "+14155550101") == [True]


def test_json_output_shape_and_error_cap(cli: Any, tmp_path: Path) -> None:
    # --json prints one object; the invalid count is exact while only the first 1,000 are listed.
    bad = MAX_KEPT_ERRORS + 5
    path = write(tmp_path / "list.csv", "phone_number\n" + "nope\n" * bad + "+14155550101\n")
    code, out, err = cli("suppressions", "import", path, "--tenant", "acme", "--channel", "sms",
                         "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1
    result = json.loads(out)
    assert set(result) == {"added", "duplicate", "invalid", "errors"}
    assert (result["added"], result["duplicate"], result["invalid"]) == (1, 0, bad)
    assert len(result["errors"]) == MAX_KEPT_ERRORS
    assert set(result["errors"][0]) == {"line", "message"}
    assert result["errors"][0]["line"] == 2 and result["errors"][-1]["line"] == 1001
    code, out, _ = cli("suppressions", "import", path, "--tenant", "acme", "--channel", "sms")
    assert out.count("  line ") == 20 and f"and {bad - 20:,} more" in out


def test_missing_file_exits_2(cli: Any, tmp_path: Path) -> None:
    # A file that does not exist: exit 2, one line naming it, nothing on stdout.
    missing = str(tmp_path / "nope.csv")
    code, out, err = cli("suppressions", "import", missing, "--tenant", "acme",
                         "--channel", "sms")
    assert code == 2 and out == ""
    assert err.strip() == f"error: cannot read '{missing}': no such file"
    code, _, err = cli("suppressions", "import", str(tmp_path), "--tenant", "acme",
                       "--channel", "sms", "--format", "csv")
    assert code == 2 and "directory" in err


def test_unknown_extension_asks_for_format(cli: Any, tmp_path: Path) -> None:
    # A .xlsx is not guessed at: exit 2 asking for --format; --format csv then works.
    path = write(tmp_path / "list.xlsx", "+14155550101\n")
    code, _, err = cli("suppressions", "import", path, "--tenant", "acme", "--channel", "sms")
    assert code == 2 and "--format" in err
    assert imported(cli, path, "--format", "csv")["added"] == 1


def test_unknown_tenant_exits_2(cli: Any, tmp_path: Path) -> None:
    # Importing into a tenant that is not configured is refused before reading anything.
    path = write(tmp_path / "list.csv", "+14155550101\n")
    code, _, err = cli("suppressions", "import", path, "--tenant", "nope", "--channel", "sms")
    assert code == 2 and "unknown tenant 'nope'" in err


def test_stdin_import(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # '-' reads stdin (CSV unless --format says otherwise).
    data = b'{"identifier": "+14155550101"}\n{"identifier": "+14155550102"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert imported(cli, "-", "--format", "jsonl")["added"] == 2


def test_progress_on_stderr(cli: Any, tmp_path: Path) -> None:
    # --progress draws rows, rate and counts on stderr even when it is not a terminal.
    path = write(tmp_path / "list.csv", "\n".join(numbers(30)) + "\n")
    code, out, err = cli("suppressions", "import", path, "--tenant", "acme", "--channel", "sms",
                         "--progress", "--json")
    assert code == 0
    assert json.loads(out)["added"] == 30
    last = err.strip().splitlines()[-1]
    assert "100.0%" in last and "30 rows" in last and "rows/s" in last and "added 30" in last


def test_not_utf8_row_is_invalid(cli: Any, tmp_path: Path) -> None:
    # A row with bytes that are not UTF-8 is refused on its own line; the rest is imported.
    path = tmp_path / "list.csv"
    path.write_bytes(b"+14155550101\n+1415555\xff0102\n+14155550103\n")
    result = imported(cli, str(path))
    assert (result["added"], result["invalid"]) == (2, 1)
    assert result["errors"][0]["line"] == 2


def test_export_csv_roundtrip(cli: Any, tmp_path: Path) -> None:
    # Export to a CSV file, then import it into another tenant: the same entries, same reasons.
    nums = numbers(120)
    write(tmp_path / "in.csv", "phone,reason\n" + "".join(
        f"{n},{'complaint' if i % 3 == 0 else ''}\n" for i, n in enumerate(nums)))
    assert imported(cli, str(tmp_path / "in.csv"))["added"] == 120
    out_path = tmp_path / "out.csv"
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                         "--output", str(out_path))
    assert code == 0 and out == ""
    assert f"exported 120 sms suppression(s) of acme to {out_path}" in err
    with out_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["channel", "identifier", "scope", "reason", "source", "created_at"]
    assert sorted(r["identifier"] for r in rows) == sorted(nums)
    assert {r["channel"] for r in rows} == {"sms"} and {r["scope"] for r in rows} == {"tenant"}
    assert sum(r["reason"] == "complaint" for r in rows) == 40
    assert {r["source"] for r in rows} == {"import"}
    assert oct(out_path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    result = imported(cli, str(out_path), tenant="globex")
    assert (result["added"], result["duplicate"], result["invalid"]) == (120, 0, 0)
    code, out, _ = cli("suppressions", "export", "--tenant", "globex", "--channel", "sms",
                       "--format", "jsonl")
    again = [json.loads(line) for line in out.splitlines()]
    assert sum(r["reason"] == "complaint" for r in again) == 40
    assert sorted(r["identifier"] for r in again) == sorted(nums)


def test_export_jsonl_roundtrip_to_stdout(cli: Any, tmp_path: Path) -> None:
    # JSONL export on stdout has the REST item fields; re-importing it elsewhere adds the same.
    nums = numbers(1500)
    write(tmp_path / "in.csv", "\n".join(nums))
    assert imported(cli, str(tmp_path / "in.csv"))["added"] == 1500
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                         "--format", "jsonl", "--json")
    assert code == 0
    assert json.loads(err)["exported"] == 1500
    items = [json.loads(line) for line in out.splitlines()]
    assert len(items) == 1500
    assert set(items[0]) == {"channel", "identifier", "scope", "reason", "source", "created_at"}
    assert items[0]["created_at"].endswith("Z")
    dump = write(tmp_path / "dump.ndjson", out)
    assert imported(cli, dump, tenant="globex")["added"] == 1500
    code, out, _ = cli("suppressions", "export", "--tenant", "globex", "--channel", "email")
    assert code == 0 and out == "channel,identifier,scope,reason,source,created_at\n"


def test_store_down_exits_1_with_partial_summary(own_redis: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Redis is down: exit 1, the error and what was done so far on stderr, nothing on stdout.
    url = own_redis.url
    own_redis.stop()
    monkeypatch.setenv("OPTOUT_REDIS_URL", url)
    monkeypatch.setenv("OPTOUT_DATA_DIR", str(tmp_path / "data"))
    path = write(tmp_path / "list.csv", "+14155550101\n")
    code = main(["suppressions", "import", path, "--channel", "sms"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "added 0, duplicate 0, invalid 0" in err
    assert "error: The suppression store is unavailable" in err


def test_export_to_unwritable_place_exits_2(cli: Any, tmp_path: Path) -> None:
    # --output in a directory that does not exist: exit 2 naming the file, nothing written.
    target = tmp_path / "missing" / "out.csv"
    code, out, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                         "--output", str(target))
    assert code == 2 and out == "" and f"cannot write '{target}'" in err
    (tmp_path / "adir").mkdir()
    code, _, err = cli("suppressions", "export", "--tenant", "acme", "--channel", "sms",
                       "--output", str(tmp_path / "adir"))
    assert code == 2 and "cannot write" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_progress_redraws_in_place_at_most_five_times_a_second() -> None:
    # On a terminal the bar is redrawn with a carriage return, throttled to 0.2 s.
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    stream = Tty()
    bar = Progress(stream, size=1000, position=lambda: 500, clock=lambda: now[0])
    report = ImportReport(added=10, duplicate=2, invalid=1)
    for step in range(10):  # 10 updates over 0.5 s
        now[0] = step * 0.05
        bar.update(report)
    assert stream.getvalue().count("\r") == 3  # at 0, 0.2 and 0.4 s
    bar.finish(report)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\r") == 4
    assert " 50.0%  13 rows" in text and "added 10  duplicate 2  invalid 1" in text


def test_console_script_import(redis_url: str, tmp_path: Path) -> None:
    # The installed `optout-gateway` script imports a file in a process of its own.
    script = Path(sys.executable).parent / "optout-gateway"
    path = write(tmp_path / "list.csv", "phone\n+14155550101\n(415) 555-0102\nbad\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(OPTOUT_REDIS_URL=redis_url, OPTOUT_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run([str(script), "suppressions", "import", path, "--channel", "sms"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "added 2, duplicate 0, invalid 1" in proc.stdout
    assert "line 4: 'bad' is not a phone number" in proc.stdout
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


# -- the E.164 fast path gives exactly what normalize_phone gives ------------------


def _slow(raw: str) -> str | None:
    try:
        return normalize_phone(raw, "US")
    except InvalidRecipient:
        return None


def test_fast_path_matches_full_normalisation_on_example_numbers() -> None:
    # For every region's example numbers (valid by construction), fast and full paths agree.
    seen = 0
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE,
                     PhoneNumberType.TOLL_FREE, PhoneNumberType.VOIP):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            raw = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            fast = fast_e164(raw)
            assert fast is None or fast == _slow(raw), raw
            seen += fast is not None
    assert seen > 500  # the fast path is taken for most of them


def test_fast_path_never_accepts_what_full_normalisation_refuses() -> None:
    # Random +digits strings under every country code: fast says valid only when full agrees.
    rng = random.Random(7)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for _ in range(20_000):
        cc = rng.choice(codes)
        raw = f"+{cc}" + "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 13)))
        fast = fast_e164(raw)
        if fast is not None:
            assert fast == _slow(raw), raw


def test_iter_rows_from_path(tmp_path: Path) -> None:
    # iter_rows opens a path itself, skipping a UTF-8 BOM, and reports physical line numbers.
    path = tmp_path / "list.csv"
    path.write_bytes("\ufeffIdentifier,Reason\n+14155550101,manual\n\n+14155550102,\n"
                     .encode())
    rows = list(iter_rows(path, "csv"))
    assert [(r.line, r.identifier, r.reason) for r in rows] == [
        (2, "+14155550101", "manual"), (4, "+14155550102", None)]
    spaced = io.StringIO("Name,Mobile Phone,Phone Number\nAnn,x,+14155550101\n")
    assert [r.identifier for r in iter_rows(spaced, "csv")] == ["+14155550101"]


def test_config_before_or_after_the_command(cli: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Operators write `optout-gateway serve --config f.toml` as often as
    # `optout-gateway --config f.toml serve`: both name the file.
    path = write(tmp_path / "other.toml", '[tenants.initech]\nbrand = "Initech"\n')
    monkeypatch.delenv("OPTOUT_CONFIG")
    code, _, err = cli("suppressions", "add", "+12125550100", "--tenant", "initech",
                       "--channel", "sms")
    assert code == 2 and "unknown tenant 'initech'" in err
    code, _, err = cli("suppressions", "add", "+12125550100", "--tenant", "initech",
                       "--channel", "sms", "--config", path)
    assert code == 0, err
    code, out, err = cli("keys", "create", "--tenant", "initech", "--scopes", "read",
                         "--config", path)
    assert code == 0 and out.strip(), err
    code, out, err = cli("--config", path, "suppressions", "check", "--tenant", "initech",
                         "--channel", "sms", "--json", "+12125550100")
    assert code == 0 and json.loads(out)["suppressed"], err


def test_json_list_pages_with_the_cursor_on_stderr(cli: Any) -> None:
    # --json keeps stdout one JSON object per line; the next page's cursor goes to stderr
    # in both modes, so a script can page through the list.
    for number in numbers(3, start=300):
        assert cli("suppressions", "add", number, "--tenant", "acme", "--channel", "sms")[0] == 0
    code, out, err = cli("suppressions", "list", "--tenant", "acme", "--channel", "sms",
                         "--limit", "2", "--json")
    assert code == 0 and len(out.splitlines()) == 2
    cursor = err.split("more: --cursor ", 1)[1].split()[0]
    code, out, err = cli("suppressions", "list", "--tenant", "acme", "--channel", "sms",
                         "--limit", "2", "--json", "--cursor", cursor)
    seen = [json.loads(line)["identifier"] for line in out.splitlines()]
    assert code == 0 and len(seen) == 1 and "more:" not in err
