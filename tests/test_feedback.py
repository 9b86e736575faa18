"""Complaint (ARF) and bounce (DSN) parsing: what suppresses, what must not, never a crash."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression.feedback import (
    MAX_DIAGNOSTIC_CHARS,
    MAX_RECIPIENTS,
    MAX_REPORT_BYTES,
    FeedbackReport,
    Recipient,
    parse_feedback,
    token_from_address,
    tokens_in_text,
)

DATA = Path(__file__).parent / "data" / "feedback"
SAMPLES = sorted(DATA.glob("*.eml"))
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,512}")
KINDS = {"complaint", "hard_bounce", "soft_bounce", "not_complaint", "unknown"}

T_YAHOO = "YwQ2bUlIy0yVHKEECZtL-c7qKtjCKrdfmHs365WT-1w8aDz1xs3iJhqz_IQK96-p"
T_REDACTED = "Fd1OgJRG-hCs7SlIPrZ7gdps7w1oxOSxMy2dFtM00O1HhhDYL1R8K8agqHhSb2bB"
T_NOT_SPAM = "nBefKD9uYcqRFlPesad52cwOtRZvhmZLiPDH4isJ3vazEUPTQ3I382Q8HtB7FsyI"
T_HEADERS = "NdQAWARsZP2WCJd-VFkmqf0tdH792xQ3OGxlTWbV4sdxDHancwY3tysnQ05uHoq8"
T_POSTFIX = "sHgbejlF6AJYp6OL5MQO8eUT1kaJPvDhYdkJ80U4q_qckNL1v2_0RKX87YbEN8IJ"
T_EXIM = "8dZeUim23S311vscW7uOs5UQS2OgmnEClXRfNz70zV00JLwnYINruWOgMpDU0GrS"
T_GMAIL = "80QMm7HzN_w7ASL70BXdG5a4QEInq4dcRsFAafUN0F6phCzNMdtQr87d3ZRl1XZP"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse(name: str) -> FeedbackReport:
    return parse_feedback(sample(name))


def addresses(report: FeedbackReport, kind: str | None = None) -> list[str]:
    return [r.address for r in report.recipients if kind is None or r.kind == kind]


def dsn(blocks: str, *, ctype: str = "message/delivery-status", cte: str = "",
        wrapper: str = "") -> bytes:
    """A minimal multipart/report DSN around the given delivery-status text."""
    body = blocks.replace("\n", "\r\n").encode()
    cte_header = b""
    if cte == "base64":
        body = base64.encodebytes(body).replace(b"\n", b"\r\n")
        cte_header = b"Content-Transfer-Encoding: base64\r\n"
    report = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=RB\r\n\r\n"
              b"--RB\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
              b"--RB\r\nContent-Type: " + ctype.encode() + b"\r\n" + cte_header + b"\r\n"
              + body + b"\r\n--RB--\r\n")
    head = b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@gw.example\r\n"
    head += b"Subject: failure\r\nMIME-Version: 1.0\r\n"
    if wrapper:
        return (head + b"Content-Type: " + wrapper.encode() + b"; boundary=WB\r\n\r\n"
                + b"--WB\r\n" + report + b"\r\n--WB--\r\n")
    return head + report


def one_failed(status: str, diagnostic: str = "smtp; 550 rejected", action: str = "failed",
               final: str = "rfc822; ann@example.net") -> bytes:
    lines = ["Reporting-MTA: dns; mx.example.net", "", f"Final-Recipient: {final}"]
    if action:
        lines.append(f"Action: {action}")
    if status:
        lines.append(f"Status: {status}")
    if diagnostic:
        lines.append(f"Diagnostic-Code: {diagnostic}")
    return dsn("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the samples


def test_samples_use_crlf_like_on_the_wire() -> None:
    # Scenario: every text sample has CRLF line ends only, as SMTP delivers them.
    texts = [p for p in SAMPLES if p.name != "garbage.eml"]
    assert len(texts) >= 12
    for path in texts:
        data = path.read_bytes()
        assert b"\r\n" in data, path.name
        assert b"\n" not in data.replace(b"\r\n", b""), path.name


def test_arf_full_original_gives_complaint_recipient_and_token() -> None:
    # Scenario: a Yahoo-like abuse report with Original-Rcpt-To and our List-Unsubscribe.
    report = parse("arf_yahoo_abuse.eml")
    assert report.kind == "complaint"
    assert report.recipients == (
        Recipient("pat.doe@mail.example", "complaint", "", "feedback-type abuse"),
    )
    assert report.tokens == (T_YAHOO,)
    assert report.detail["feedback_type"] == "abuse"
    assert report.detail["user_agent"] == "Yahoo!-Mail-Feedback/2.0"
    assert report.detail["source_ip"] == "192.0.2.25"
    assert report.detail["reporting_mta"] == "mta1.fbl.mail.example"
    assert report.detail["arrival_date"] == "Tue, 04 Mar 2025 09:15:02 +0000"
    assert report.detail["message_id"] == "<20250304091500.1a2b3c@acme.example>"


def test_arf_token_found_in_body_link_split_by_quoted_printable() -> None:
    # Scenario: no List-Unsubscribe in the original; the QP-wrapped /u/ link still gives the token.
    data = sample("arf_yahoo_abuse.eml")
    data = re.sub(rb"List-Unsubscribe: [^\r]*\r\n\t[^\r]*\r\n", b"", data)
    assert b"List-Unsubscribe:" not in data
    assert f"/u/{T_YAHOO[:30]}=\r\n{T_YAHOO[30:]}\"".encode() in data
    assert parse_feedback(data).tokens == (T_YAHOO,)


def test_arf_redacted_recipient_gives_token_only() -> None:
    # Scenario: AOL-like report without Original-Rcpt-To and To: redacted@…: no address, the token.
    report = parse("arf_redacted_recipient.eml")
    assert report.kind == "complaint"
    assert report.recipients == ()
    assert report.tokens == (T_REDACTED,)
    assert report.detail["arrival_date"] == "Wed, 05 Mar 2025 07:59:12 -0500"


def test_arf_not_spam_is_not_a_complaint() -> None:
    # Scenario: a not-spam report (RFC 6430) names the recipient but is no opt-out.
    report = parse("arf_not_spam.eml")
    assert report.kind == "not_complaint"
    assert [(r.address, r.kind) for r in report.recipients] == [
        ("sam.lee@mail.example", "not_complaint")
    ]
    assert report.tokens == (T_NOT_SPAM,)


def test_arf_headers_only_takes_recipient_from_single_to() -> None:
    # Scenario: text/rfc822-headers original, no Original-Rcpt-To: the one To address and token.
    report = parse("arf_headers_only.eml")
    assert report.kind == "complaint"
    assert addresses(report, "complaint") == ["lee.chan@cable.example"]
    assert report.tokens == (T_HEADERS,)
    assert report.detail["message_id"] == "<20250307163000.c0ff33@acme.example>"


def test_dsn_postfix_user_unknown_is_hard_bounce() -> None:
    # Scenario: Postfix 5.1.1 bounce with the original message attached.
    report = parse("dsn_postfix_511.eml")
    assert report.kind == "hard_bounce"
    (rcpt,) = report.recipients
    assert (rcpt.address, rcpt.kind, rcpt.status) == ("nobody@example.org", "hard_bounce", "5.1.1")
    assert rcpt.diagnostic == ("550 5.1.1 <nobody@example.org>: Recipient address rejected: "
                               "User unknown in virtual mailbox table")
    assert report.tokens == (T_POSTFIX,)
    assert report.detail["reporting_mta"] == "mail.gw.example"


def test_dsn_exim_two_recipients_one_hard_one_delayed() -> None:
    # Scenario: Exim writes Status 5.0.0/4.0.0; the diagnostic's 5.1.1/4.2.2 decide per recipient.
    report = parse("dsn_exim_two_recipients.eml")
    assert report.kind == "hard_bounce"
    assert [(r.address, r.kind, r.status) for r in report.recipients] == [
        ("gone@example.net", "hard_bounce", "5.1.1"),
        ("full@example.net", "soft_bounce", "4.2.2"),
    ]
    assert report.tokens == (T_EXIM,)


def test_dsn_gmail_mailbox_full_is_soft() -> None:
    # Scenario: 5.2.2 over quota is permanent in form but not a reason to suppress.
    report = parse("dsn_gmail_mailbox_full.eml")
    assert report.kind == "soft_bounce"
    assert [(r.address, r.kind, r.status) for r in report.recipients] == [
        ("maria.ortiz@gmail.example", "soft_bounce", "5.2.2")
    ]
    assert report.tokens == (T_GMAIL,)


def test_dsn_microsoft_policy_block_is_soft_and_diagnostic_bounded() -> None:
    # Scenario: Exchange-like 5.7.1 spam-listing block; folded diagnostic becomes one line <= 200.
    report = parse("dsn_microsoft_policy.eml")
    assert report.kind == "soft_bounce"
    (rcpt,) = report.recipients
    assert (rcpt.address, rcpt.kind, rcpt.status) == ("jordan@contoso.example", "soft_bounce",
                                                      "5.7.1")
    assert rcpt.diagnostic.startswith("550 5.7.1 Service unavailable, Client host [192.0.2.25] "
                                      "blocked using Spamhaus.")
    assert len(rcpt.diagnostic) == MAX_DIAGNOSTIC_CHARS and "\n" not in rcpt.diagnostic
    assert report.tokens == ()  # the original's headers carry no List-Unsubscribe
    assert report.detail["message_id"] == "<20250313150419.ab12@acme.example>"


def test_dsn_delayed_447_is_soft() -> None:
    # Scenario: a sendmail "could not send for past 4 hours" warning, Action delayed 4.4.7.
    report = parse("dsn_delayed_447.eml")
    assert report.kind == "soft_bounce"
    assert [(r.address, r.kind, r.status) for r in report.recipients] == [
        ("kai@slow.example", "soft_bounce", "4.4.7")
    ]


def test_dsn_utf8_final_recipient_prefers_rfc822_original() -> None:
    # Scenario: RFC 6533 global DSN: rfc822 Original-Recipient wins; a lone utf-8 one is used as is.
    report = parse("dsn_utf8_recipient.eml")
    assert report.kind == "hard_bounce"
    assert addresses(report, "hard_bounce") == ["jose@example.com", "rené@bücher.example"]
    assert report.detail["report_type"] == "global-delivery-status"
    assert report.detail["message_id"] == "<20250315005958.eai1@acme.example>"


def test_human_reply_is_unknown_even_with_a_link() -> None:
    # Scenario: a person's reply quoting our link and "550 5.1.1" is no report: nothing taken.
    report = parse("human_reply.eml")
    assert report == FeedbackReport("unknown")


def test_truncated_dsn_is_unknown_without_recipients() -> None:
    # Scenario: a DSN cut off before the Action field: nothing may be suppressed.
    report = parse("dsn_truncated.eml")
    assert report.kind == "unknown"
    assert report.recipients == ()
    assert "parse_error" not in report.detail


def test_garbage_is_unknown() -> None:
    # Scenario: a report header over random bytes reads as unknown, without a parser error.
    report = parse("garbage.eml")
    assert report.kind == "unknown" and report.recipients == () and report.tokens == ()
    assert "parse_error" not in report.detail


# --------------------------------------------------------------------------- ARF rules


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [("fraud", "complaint"), ("ABUSE", "complaint"), ("virus", "unknown"), ("other", "unknown"),
     ("auth-failure", "unknown"), ("", "unknown")],
)
def test_arf_feedback_types(feedback_type: str, kind: str) -> None:
    # Scenario: only abuse/fraud complain; virus, other, auth-failure list nobody.
    data = sample("arf_yahoo_abuse.eml").replace(b"Feedback-Type: abuse",
                                                 f"Feedback-Type: {feedback_type}".encode())
    report = parse_feedback(data)
    assert report.kind == kind
    assert addresses(report) == (["pat.doe@mail.example"] if kind == "complaint" else [])


@pytest.mark.parametrize(
    "redacted",
    ["redacted@mail.example", "<xxxxxxxx@mail.example>", "[redacted]@mail.example",
     "0123456789abcdef0123456789abcdef@mail.example"],
)
def test_arf_redacted_original_rcpt_to_falls_back_to_to(redacted: str) -> None:
    # Scenario: a redacted Original-Rcpt-To is never suppressed; the single To is used instead.
    data = sample("arf_yahoo_abuse.eml").replace(b"Original-Rcpt-To: <pat.doe@mail.example>",
                                                 f"Original-Rcpt-To: {redacted}".encode())
    assert addresses(parse_feedback(data)) == ["pat.doe@mail.example"]


def test_arf_to_with_several_addresses_names_nobody() -> None:
    # Scenario: without Original-Rcpt-To, a To listing two people cannot say who complained.
    data = sample("arf_headers_only.eml").replace(
        b'To: "Lee Chan" <lee.chan@cable.example>',
        b'To: "Lee Chan" <lee.chan@cable.example>, kim@cable.example')
    report = parse_feedback(data)
    assert report.kind == "complaint" and report.recipients == ()
    assert report.tokens == (T_HEADERS,)


def test_arf_repeated_original_rcpt_to_lists_each_once() -> None:
    # Scenario: Original-Rcpt-To may repeat (RFC 5965 3.2); duplicates collapse.
    data = sample("arf_yahoo_abuse.eml").replace(
        b"Original-Rcpt-To: <pat.doe@mail.example>\r\n",
        b"Original-Rcpt-To: <pat.doe@mail.example>\r\nOriginal-Rcpt-To: al@mail.example\r\n"
        b"Original-Rcpt-To: pat.doe@mail.example\r\n")
    assert addresses(parse_feedback(data)) == ["pat.doe@mail.example", "al@mail.example"]


def test_report_forwarded_as_attachment_is_not_read() -> None:
    # Scenario: someone forwards a complaint inside message/rfc822: not a report to act on.
    inner = sample("arf_yahoo_abuse.eml")
    data = (b"From: ops@acme.example\r\nTo: fbl@gw.example\r\nSubject: Fwd: complaint\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=FW\r\n\r\n"
            b"--FW\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
            b"--FW\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--FW--\r\n")
    assert parse_feedback(data) == FeedbackReport("unknown")


# --------------------------------------------------------------------------- DSN rules


@pytest.mark.parametrize(
    ("status", "kind"),
    [("5.1.1", "hard_bounce"), ("5.1.2", "hard_bounce"), ("5.1.3", "hard_bounce"),
     ("5.1.6", "hard_bounce"), ("5.1.10", "hard_bounce"), ("5.2.1", "hard_bounce"),
     ("5.01.001 (bad mailbox)", "hard_bounce"),
     ("5.1.0", "soft_bounce"), ("5.1.4", "soft_bounce"), ("5.1.7", "soft_bounce"),
     ("5.1.8", "soft_bounce"), ("5.2.2", "soft_bounce"), ("5.3.0", "soft_bounce"),
     ("5.4.1", "soft_bounce"), ("5.5.0", "soft_bounce"), ("5.6.0", "soft_bounce"),
     ("5.7.1", "soft_bounce"), ("5.0.0", "soft_bounce"), ("4.1.1", "soft_bounce"),
     ("garbage", "soft_bounce"), ("", "soft_bounce")],
)
def test_dsn_failed_status_decides_hard_or_soft(status: str, kind: str) -> None:
    # Scenario: only addressing 5.1.x (not sender-side) and 5.2.1 suppress; everything else is soft.
    report = parse_feedback(one_failed(status))
    assert [(r.address, r.kind) for r in report.recipients] == [("ann@example.net", kind)]
    assert report.kind == kind


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind", "code"),
    [("5.0.0", "smtp; 550 5.1.1 user unknown", "hard_bounce", "5.1.1"),
     ("5.0.0", "smtp; 550 user unknown", "soft_bounce", "5.0.0"),
     ("5.0.0", "smtp; 450 4.1.1 try later", "soft_bounce", "5.0.0"),
     ("5.7.1", "smtp; 550 5.1.1 user unknown", "soft_bounce", "5.7.1"),
     ("", "smtp; 550-5.1.1 The email account does not exist", "hard_bounce", "5.1.1"),
     ("5.0.0", "smtp; 550 rejected for [10.5.1.1]", "soft_bounce", "5.0.0")],
)
def test_dsn_generic_status_refined_by_diagnostic(status: str, diagnostic: str, kind: str,
                                                  code: str) -> None:
    # Scenario: X.0.0 or no Status takes a same-class code from Diagnostic-Code, nothing else.
    (rcpt,) = parse_feedback(one_failed(status, diagnostic)).recipients
    assert (rcpt.kind, rcpt.status) == (kind, code)


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded", "", "bogus"])
def test_dsn_non_failure_actions_are_not_listed(action: str) -> None:
    # Scenario: success notices and blocks without a known Action name nobody.
    report = parse_feedback(one_failed("5.1.1", action=action))
    assert report.kind == "unknown" and report.recipients == ()


def test_dsn_failed_with_4xx_is_soft() -> None:
    # Scenario: an MTA that gave up after 4.4.7 (expired) reports failed: still not a hard bounce.
    (rcpt,) = parse_feedback(one_failed("4.4.7", action="failed")).recipients
    assert (rcpt.kind, rcpt.status) == ("soft_bounce", "4.4.7")


@pytest.mark.parametrize(
    ("final", "expected"),
    [("rfc822; <Ann@Example.NET>", ["Ann@Example.NET"]),
     ("RFC822;ann@example.net", ["ann@example.net"]),
     ("<ann@example.net>", ["ann@example.net"]),
     ("utf-8; ren\\x{E9}@example.net", ["rené@example.net"]),
     ("x400; /G=Ann/S=Lee/O=Example/", []),
     ("rfc822; not an address", []),
     ("rfc822; a@b@c", []),
     ("rfc822; ann\x01@example.net", []),
     ("rfc822; ", [])],
)
def test_dsn_recipient_address_forms(final: str, expected: list[str]) -> None:
    # Scenario: addresses are taken as found, only from rfc822/utf-8 types and only if well formed.
    report = parse_feedback(one_failed("5.1.1", final=final))
    assert addresses(report) == expected


def test_dsn_non_rfc822_original_recipient_falls_back_to_final() -> None:
    # Scenario: an x400 Original-Recipient is skipped in favour of Final-Recipient.
    data = dsn("Reporting-MTA: dns; mx\n\nOriginal-Recipient: x400; /S=Ann/\n"
               "Final-Recipient: rfc822; ann@example.net\nAction: failed\nStatus: 5.1.1\n")
    assert addresses(parse_feedback(data)) == ["ann@example.net"]


def test_dsn_blocks_without_blank_lines_are_split() -> None:
    # Scenario: a sloppy MTA forgets the blank lines between recipients; each keeps its own status.
    data = dsn("Reporting-MTA: dns; mx.example.net\n"
               "Final-Recipient: rfc822; a@example.net\nAction: failed\nStatus: 5.1.1\n"
               "Original-Recipient: rfc822; b@example.net\n"
               "Final-Recipient: rfc822; b2@example.net\nAction: failed\nStatus: 5.7.1\n"
               "Final-Recipient: rfc822; c@example.net\nAction: delayed\nStatus: 4.4.1\n")
    report = parse_feedback(data)
    assert [(r.address, r.kind) for r in report.recipients] == [
        ("a@example.net", "hard_bounce"), ("b@example.net", "soft_bounce"),
        ("c@example.net", "soft_bounce")]
    assert report.detail["reporting_mta"] == "mx.example.net"


def test_dsn_base64_encoded_status_part_is_read() -> None:
    # Scenario: a broken MTA base64-encodes message/delivery-status; the fields are still read.
    data = dsn("Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; ann@example.net\n"
               "Action: failed\nStatus: 5.1.1\n", cte="base64")
    assert [(r.address, r.kind) for r in parse_feedback(data).recipients] == [
        ("ann@example.net", "hard_bounce")]


def test_dsn_wrapped_in_multipart_mixed_is_read() -> None:
    # Scenario: a list footer wraps the report in multipart/mixed; the report is still found.
    data = dsn("Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; ann@example.net\n"
               "Action: failed\nStatus: 5.1.2\n", wrapper="multipart/mixed")
    assert parse_feedback(data).kind == "hard_bounce"


def test_dsn_diagnostic_is_one_bounded_line() -> None:
    # Scenario: control characters and a huge diagnostic never reach the audit log raw.
    data = one_failed("5.1.1", "smtp; 550 5.1.1 \x1b[31mred\x00 " + "x" * 5000)
    (rcpt,) = parse_feedback(data).recipients
    assert rcpt.diagnostic.startswith("550 5.1.1 [31mred x")
    assert len(rcpt.diagnostic) == MAX_DIAGNOSTIC_CHARS
    assert rcpt.diagnostic.isprintable()


def test_classic_text_bounce_is_unknown() -> None:
    # Scenario: a qmail-style free-text bounce is not guessed at; a wrong hard bounce is costly.
    data = (b"From: MAILER-DAEMON@qmail.example\r\nTo: bounces@gw.example\r\n"
            b"Subject: failure notice\r\n\r\nHi. This is the qmail-send program.\r\n"
            b"<ann@example.net>:\r\n203.0.113.5 does not like recipient.\r\n"
            b"Remote host said: 550 5.1.1 <ann@example.net>: user unknown\r\n")
    assert parse_feedback(data) == FeedbackReport("unknown")


def test_dsn_recipients_are_capped() -> None:
    # Scenario: a forged DSN listing thousands of addresses cannot suppress more than the cap.
    blocks = "".join(f"Final-Recipient: rfc822; u{i}@example.net\nAction: failed\n"
                     f"Status: 5.1.1\n\n" for i in range(MAX_RECIPIENTS + 50))
    report = parse_feedback(dsn("Reporting-MTA: dns; mx\n\n" + blocks))
    assert len(report.recipients) == MAX_RECIPIENTS
    assert report.recipients[-1].address == f"u{MAX_RECIPIENTS - 1}@example.net"


def test_oversized_report_is_read_from_its_start() -> None:
    # Scenario: a bounce quoting a huge original is cut at the limit; the verdict and token survive.
    data = sample("dsn_postfix_511.eml").replace(
        b"Welcome aboard.\r\n",
        b"Welcome aboard.\r\n" + (b"y" * 78 + b"\r\n") * (MAX_REPORT_BYTES // 80 + 10))
    assert len(data) > MAX_REPORT_BYTES
    report = parse_feedback(data)
    assert (report.kind, report.tokens) == ("hard_bounce", (T_POSTFIX,))


def test_deeply_nested_multipart_is_unknown() -> None:
    # Scenario: thousands of nested multiparts (parser recursion) still end as unknown, no crash.
    data = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for i in range(1, 3000):
        data += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i - 1, i)
    report = parse_feedback(data)
    assert report.kind == "unknown" and report.recipients == () and report.tokens == ()


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    ("address", "token"),
    [("unsubscribe+abc_DEF-123@gw.example", "abc_DEF-123"),
     ("UNSUBSCRIBE+Tok@gw.example", "Tok"),
     ("Unsubscribe+Tok@sub.gw.example", "Tok"),
     ("<unsubscribe+Tok@gw.example>", "Tok"),
     ("  unsubscribe+Tok@localhost ", "Tok"),
     ("unsubscribe+" + "a" * 512 + "@gw.example", "a" * 512),
     ("unsubscribe+" + "a" * 513 + "@gw.example", None),
     ("unsubscribe+@gw.example", None),
     ("unsubscribe+Tok+tag@gw.example", None),
     ("unsubscribe+Tok.en@gw.example", None),
     ("unsubscribe+Tok=@gw.example", None),
     ("unsubscribe+Tök@gw.example", None),
     ("unsubscribe-Tok@gw.example", None),
     ("unsub+Tok@gw.example", None),
     ("xunsubscribe+Tok@gw.example", None),
     ("bounce+Tok@gw.example", None),
     ("unsubscribe+Tok", None),
     ("unsubscribe+Tok@", None),
     ("unsubscribe+Tok@.gw.example", None),
     ("unsubscribe+Tok@gw..example", None),
     ("unsubscribe+Tok@gw example", None),
     ("mailto:unsubscribe+Tok@gw.example", None)],
)
def test_token_from_address(address: str, token: str | None) -> None:
    # Scenario: only unsubscribe+TOKEN@domain, any case of the prefix, token chars and 1..512 long.
    assert token_from_address(address) == token


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("<https://gw.example/u/AbC-_1>, <mailto:unsubscribe+AbC-_1@gw.example>", ("AbC-_1",)),
     ("HTTP://gw.example:8443/opt/out/u/T1?x=1 and http://h/u/T2.", ("T1", "T2")),
     ('<a href="https://h/u/T3">x</a> Unsubscribe+T4@h.example', ("T3", "T4")),
     ("https://h/u/T5/preferences https://h/u/u/T6", ("T6",)),
     ("https://h/x/u/" + "b" * 513, ()),
     ("https://h/u/" + "b" * 512, ("b" * 512,)),
     ("/u/T7 without a scheme, ftp://h/u/T8, https://h/U/T9", ()),
     ("nounsubscribe+T10@h.example unsubscribe+T11@ x.unsubscribe+T12@h", ()),
     ("mailto:unsubscribe+T13@h.example?subject=unsubscribe", ("T13",))],
)
def test_tokens_in_text(text: str, tokens: tuple[str, ...]) -> None:
    # Scenario: /u/TOKEN at the end of an http(s) path and unsubscribe+TOKEN@ addresses, in order.
    assert tokens_in_text(text) == tokens


# --------------------------------------------------------------------------- properties


def check_invariants(report: FeedbackReport) -> None:
    assert "parse_error" not in report.detail, report.detail
    assert report.kind in KINDS
    for rcpt in report.recipients:
        assert rcpt.kind in KINDS and "@" in rcpt.address
        assert len(rcpt.diagnostic) <= MAX_DIAGNOSTIC_CHARS and "\n" not in rcpt.diagnostic
    for token in report.tokens:
        assert TOKEN_RE.fullmatch(token)
    if report.kind == "unknown":
        assert all(r.kind not in ("hard_bounce", "complaint") for r in report.recipients)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_parse_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    # Scenario: any bytes at all give a well-formed report and no internal parser failure.
    check_invariants(parse_feedback(data))


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["cut", "insert", "flip", "truncate", "dup"]))
        if op == "cut":
            del data[at:at + draw(st.integers(1, 80))]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(
                [b"\r\n", b"\r\n\r\n", b"--", b":", b";", b"<", b"\x00", b"\xff\xfe",
                 b"=?utf-8?b?", b"\r\n ", b"Content-Type: multipart/report; boundary=\"\"\r\n",
                 b"Content-Transfer-Encoding: base64\r\n", b"\\x{110000}", b"5.1.1",
                 draw(st.binary(max_size=20))]))
        elif op == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 300))]
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_samples())
def test_parse_never_raises_on_mutated_samples(data: bytes) -> None:
    # Scenario: cut, spliced and corrupted real reports never crash the parser.
    check_invariants(parse_feedback(data))


@given(st.text(alphabet=st.sampled_from("unsubcrib+@/:.htpsUN-_aZ09 <>\"\n"), max_size=300))
def test_tokens_in_text_only_returns_tokens_present(text: str) -> None:
    # Scenario: every token found is well formed and literally present in the text.
    for token in tokens_in_text(text):
        assert TOKEN_RE.fullmatch(token) and token in text
