"""Email upstream transports: where a message goes once the policy allowed it.

One interface, :class:`EmailUpstream`, chosen by ``OPTOUT_EMAIL_UPSTREAM``
through :func:`email_upstream_from_url`. Each :class:`OutboundEmail` is one
upstream transaction with exactly one recipient.

``file://DIR``: a local outbox
    One ``<id>.eml`` per message in ``DIR``: the message bytes exactly as
    relayed, preceded by ``Return-Path: <mail_from>`` and ``Delivered-To: rcpt``
    the way a local delivery agent (Postfix ``local``, Dovecot LDA) records the
    envelope on final delivery, since the file has no envelope of its own.
    Those two lines use the message's own line ending (CRLF or LF, judged from
    its first line). Everything after ``file://`` is the directory, taken
    literally like the SMS file transport: ``file:///var/outbox`` is absolute,
    ``file://./var/outbox`` and ``file://var/outbox`` are relative to the working
    directory. The directory is created (``0700``); files are ``0600`` (they
    hold addresses and content). Each file is written under a hidden temporary
    name (``.<id>.<random>.tmp``, so a consumer globbing ``*.eml`` never sees
    half a message), fsync'd, renamed into place and the directory fsync'd:
    the message counts as accepted only once it survives a crash. Ids are
    unique per relayed message; a retry of the same id replaces its file.

``smtp://[user:pass@]host[:port]`` (port 25) and ``smtps://…`` (port 465): a relay
    ``smtp://`` upgrades with STARTTLS whenever the relay offers it; the query
    ``?tls=require`` refuses to go on without it and ``?tls=none`` never tries.
    ``smtps://`` is TLS from the first byte. Certificates are verified against
    the system's CAs (``SSL_CERT_FILE`` is honoured) unless ``?verify=false``,
    meant for internal relays with self-signed certificates. User info
    (percent-decoded) is used for AUTH (PLAIN or LOGIN, whichever the relay
    offers); with credentials, STARTTLS becomes required unless ``tls=none``
    says otherwise, so a password never crosses the network in clear by accident.

    Connections are pooled (at most ``pool_size`` at once) and reused: after a
    completed transaction the next ``MAIL FROM`` starts a new one (RFC 5321
    §4.1.4), so no ``RSET`` is needed; aiosmtplib sends none either. A
    connection is dropped after any error. One idle for more than 30 s is
    checked with ``NOOP`` before reuse, and one the relay closed meanwhile is
    replaced before ``MAIL FROM`` was accepted (nothing delivered yet, so that
    retry cannot duplicate a message). Every command, the connect and each
    TLS handshake are bounded by ``timeout_s``.

    Replies map to the failure tree in :mod:`suppression.email_transport`:
    5xx at RCPT or DATA is :class:`EmailRecipientRefused` (permanent, the
    relay's code and text passed back); 4xx anywhere, a refusal at MAIL FROM or
    AUTH, a refused connection, a timeout or a TLS failure is
    :class:`EmailUpstreamFailed` (temporary: the sender retries). MAIL FROM
    refusals count as temporary because they are usually about the gateway
    (authentication, sender policy at the relay), not about the recipient.
    Non-ASCII addresses need the relay's SMTPUTF8; without it the message is
    refused ``553 5.6.7`` (RFC 6531 §3.2).

Secrets never appear in ``repr``, logs or error messages; addresses are masked
in logs, messages and relayed reply texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosmtplib
from yarl import URL

from suppression.email_transport import (
    EmailAccepted,
    EmailRecipientRefused,
    EmailUpstream,
    EmailUpstreamFailed,
    OutboundEmail,
)
from suppression.identifiers import mask
from suppression.models import Channel

__all__ = [
    "EmailAccepted",
    "EmailRecipientRefused",
    "EmailUpstream",
    "EmailUpstreamFailed",
    "FileEmailUpstream",
    "OutboundEmail",
    "SmtpEmailUpstream",
    "email_upstream_from_url",
]

log = logging.getLogger(__name__)

TlsMode = Literal["auto", "require", "none"]

SMTP_PORT = 25
SMTPS_PORT = 465
# Relays drop idle clients after a while (Postfix after 300 s, some after 60 s);
# past this a pooled connection is checked with NOOP before it carries mail.
IDLE_CHECK_S = 30.0
QUIT_TIMEOUT_S = 5.0
MAX_REPLY_TEXT = 300

# File names and header values built from these: no path separators, no
# leading dot (hidden temp files), no line breaks to inject headers with.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}")
_QUERY_KEYS = ("tls", "verify")
_USAGE = "use file://DIR, smtp://[user:pass@]host[:port] or smtps://[user:pass@]host[:port]"


def _masked(address: str) -> str:
    return mask(Channel.EMAIL, address) if address else "<>"


def _shut_down() -> EmailUpstreamFailed:
    return EmailUpstreamFailed("The email upstream is shut down; the message was not relayed. "
                               "Retry later.")


def _check_sendable(msg: OutboundEmail, *, closed: bool) -> None:
    """What every transport refuses before touching a file or a socket."""
    if closed:
        raise _shut_down()
    refused = _bad_address(msg)
    if refused is not None:
        raise refused


def _bad_address(msg: OutboundEmail) -> EmailRecipientRefused | None:
    """Control characters in an address would forge commands or headers: refused
    for good (RFC 3463 5.1.7 bad sender, 5.1.3 bad recipient syntax)."""
    if _CONTROL_RE.search(msg.mail_from):
        return EmailRecipientRefused(
            "The sender address contains control characters; the message was not relayed.",
            recipient=msg.rcpt, smtp_code=553, smtp_text="5.1.7 Bad sender address syntax")
    if not msg.rcpt or _CONTROL_RE.search(msg.rcpt):
        return EmailRecipientRefused(
            "The recipient address is empty or contains control characters; the message "
            "was not relayed.",
            recipient=msg.rcpt, smtp_code=553, smtp_text="5.1.3 Bad recipient address syntax")
    return None


# -- file:// --------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delivery_headers(msg: OutboundEmail) -> bytes:
    first_line, newline, _ = msg.data.partition(b"\n")
    eol = b"\n" if newline and not first_line.endswith(b"\r") else b"\r\n"
    # RFC 6532: non-ASCII addresses are written as UTF-8, as in the message itself.
    return (b"Return-Path: <" + msg.mail_from.encode() + b">" + eol
            + b"Delivered-To: " + msg.rcpt.encode() + eol)


class FileEmailUpstream:
    """One durable ``<id>.eml`` per message in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._closed = False

    def __repr__(self) -> str:
        return f"FileEmailUpstream(dir={str(self.directory)!r})"

    async def send(self, msg: OutboundEmail) -> EmailAccepted:
        _check_sendable(msg, closed=self._closed)
        if not _ID_RE.fullmatch(msg.id):
            raise EmailUpstreamFailed(f"The message id {msg.id[:40]!r} cannot name an outbox "
                                      "file; the message was not relayed.")
        try:
            await asyncio.to_thread(self._write, msg.id, _delivery_headers(msg) + msg.data)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            log.error("could not write email %s to %s into %s: %s", msg.id, _masked(msg.rcpt),
                      self.directory, reason)
            raise EmailUpstreamFailed(f"The email outbox could not be written ({reason}); "
                                      "the message was not relayed.") from None
        log.debug("email %s to %s written to %s", msg.id, _masked(msg.rcpt), self.directory)
        return EmailAccepted(reply=f"250 2.0.0 Ok: written to the outbox as {msg.id}.eml")

    def _make_directory(self) -> None:
        missing = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for created in missing:  # each new directory entry must survive a crash too
            _fsync_dir(created.parent)

    def _write(self, name: str, content: bytes) -> None:
        self._make_directory()
        tmp = self.directory / f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / f"{name}.eml")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.directory)

    async def close(self) -> None:
        self._closed = True


# -- smtp:// and smtps:// -----------------------------------------------------------------


@dataclass
class _Idle:
    smtp: aiosmtplib.SMTP
    since: float  # loop time the connection went idle


class _Stale(Exception):
    """A reused connection was gone before MAIL FROM was accepted: safe to redo."""


def _one_line(text: str, msg: OutboundEmail) -> str:
    """A relay's reply text made safe to log and pass on: our addresses masked,
    one line, bounded."""
    for address in {msg.rcpt, msg.mail_from}:
        if address:
            text = text.replace(address, _masked(address))
    return " ".join(_CONTROL_RE.sub(" ", text).split())[:MAX_REPLY_TEXT]


def _connect_problem(exc: BaseException, timeout_s: float) -> str:
    """Why a connection could not be made, from the exception and its causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (f"failed the TLS certificate check ({seen.verify_message}); "
                    "use ?verify=false only for a relay with a self-signed certificate")
        if isinstance(seen, ssl.SSLError):
            return f"failed the TLS handshake ({seen.reason or type(seen).__name__})"
        if isinstance(seen, socket.gaierror):
            return f"could not be found (host name lookup failed: {seen.strerror})"
        if isinstance(seen, OSError) and seen.errno:
            return f"could not be reached ({os.strerror(seen.errno).lower()})"
        if isinstance(seen, TimeoutError):
            return f"did not answer within {timeout_s:g} s while connecting"
        seen = seen.__cause__
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"refused the session: {exc.code} {' '.join(exc.message.split())[:MAX_REPLY_TEXT]}"
    return f"could not be used ({' '.join(str(exc).split())[:MAX_REPLY_TEXT]})"


class SmtpEmailUpstream:
    """An SMTP relay behind a small connection pool (see the module docstring)."""

    def __init__(self, *, host: str, port: int, implicit_tls: bool = False,
                 tls: TlsMode = "auto", verify: bool = True, username: str | None = None,
                 password: str | None = None, tls_context: ssl.SSLContext | None = None,
                 timeout_s: float = 30.0, pool_size: int = 8,
                 idle_check_s: float = IDLE_CHECK_S, local_hostname: str | None = None) -> None:
        """``tls_context`` replaces the one built from ``verify`` (e.g. a private CA);
        ``idle_check_s``: idle time after which a pooled connection gets a NOOP."""
        if implicit_tls and tls == "none":
            raise ValueError("implicit TLS (smtps) cannot be combined with tls=none")
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.tls: TlsMode = "require" if username is not None and tls == "auto" else tls
        self.verify = verify
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self.idle_check_s = idle_check_s
        self._username = username
        self._password = password
        self._tls_context = tls_context
        if tls_context is None and (implicit_tls or self.tls != "none"):
            self._tls_context = ssl.create_default_context()
            if not verify:
                self._tls_context.check_hostname = False
                self._tls_context.verify_mode = ssl.CERT_NONE
        self._local_hostname = local_hostname
        self._origin = f"{'smtps' if implicit_tls else 'smtp'}://{_host_port(host, port)}"
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Idle] = []
        self._closed = False
        if username is not None and self.tls == "none":
            log.warning("email upstream %s: credentials will be sent without TLS (tls=none)",
                        self._origin)

    def __repr__(self) -> str:
        query = "&".join(part for part in (
            "" if self.implicit_tls or self.tls == "auto" else f"tls={self.tls}",
            "" if self.verify else "verify=false") if part)
        user = "***@" if self._username is not None else ""
        scheme, _, rest = self._origin.partition("://")
        url = f"{scheme}://{user}{rest}" + (f"?{query}" if query else "")
        return (f"SmtpEmailUpstream(url={url!r}, pool_size={self.pool_size}, "
                f"timeout_s={self.timeout_s:g})")

    async def send(self, msg: OutboundEmail) -> EmailAccepted:
        _check_sendable(msg, closed=self._closed)
        async with self._slots:
            smtp, reused = await self._checkout(msg)
            try:
                reply = await self._deliver(smtp, msg, reused=reused)
            except _Stale:
                log.info("email upstream %s: pooled connection was closed; reconnecting",
                         self._origin)
                reply = await self._deliver(await self._connect(msg), msg, reused=False)
        log.debug("email %s to %s accepted by %s: %s", msg.id, _masked(msg.rcpt), self._origin,
                  reply)
        return EmailAccepted(reply=reply)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn.smtp) for conn in idle))

    # -- the pool ------------------------------------------------------------------------

    async def _checkout(self, msg: OutboundEmail) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle connection that still works (most recent first), else a new one."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.smtp.is_connected:
                conn.smtp.close()
                continue
            if now - conn.since > self.idle_check_s:
                try:
                    await conn.smtp.noop()
                except (aiosmtplib.SMTPException, OSError):
                    conn.smtp.close()
                    continue
                except BaseException:  # cancelled mid-NOOP: the state is unknown
                    conn.smtp.close()
                    raise
            return conn.smtp, True
        return await self._connect(msg), False

    def _release(self, smtp: aiosmtplib.SMTP) -> None:
        if self._closed or not smtp.is_connected:
            smtp.close()
            return
        self._idle.append(_Idle(smtp, asyncio.get_running_loop().time()))

    async def _ehlo_name(self) -> str:
        if self._local_hostname is None:
            try:  # getfqdn may wait on DNS: once per upstream, bounded
                name = await asyncio.wait_for(asyncio.to_thread(socket.getfqdn), self.timeout_s)
            except TimeoutError:
                name = socket.gethostname()
            self._local_hostname = name or "localhost"
        return self._local_hostname

    async def _connect(self, msg: OutboundEmail) -> aiosmtplib.SMTP:
        if self._closed:
            raise _shut_down()
        start_tls = {"auto": None, "require": True, "none": False}[self.tls]
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self._username,
            password=self._password, local_hostname=await self._ehlo_name(),
            timeout=self.timeout_s, use_tls=self.implicit_tls,
            start_tls=False if self.implicit_tls else start_tls, tls_context=self._tls_context)
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:  # ssl.SSLError is an OSError
            smtp.close()
            raise self._connect_failed(msg, exc) from None
        return smtp

    def _connect_failed(self, msg: OutboundEmail, exc: Exception) -> EmailUpstreamFailed:
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            text = _one_line(exc.message, msg)
            return self._failed(msg, f"refused our credentials ({exc.code} {text})",
                                code=exc.code, text=text)
        if self.tls == "require" and "STARTTLS" in str(exc) and not self.implicit_tls:
            return self._failed(msg, "does not offer STARTTLS, which tls=require (or credentials "
                                "in the URL) demands; nothing was sent in clear")
        return self._failed(msg, _connect_problem(exc, self.timeout_s))

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit(timeout=min(self.timeout_s, QUIT_TIMEOUT_S))
        except (aiosmtplib.SMTPException, OSError):
            pass  # leaving anyway
        finally:
            smtp.close()

    # -- one transaction ------------------------------------------------------------------

    async def _deliver(self, smtp: aiosmtplib.SMTP, msg: OutboundEmail, *,
                       reused: bool) -> str:
        """MAIL, RCPT, DATA on ``smtp``; the connection goes back to the pool only
        after a success."""
        stage = "MAIL FROM"
        try:
            options, encoding = self._mail_options(smtp, msg)
            try:
                await smtp.mail(msg.mail_from, options=options, encoding=encoding)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                if reused:
                    raise _Stale from exc
                raise
            except aiosmtplib.SMTPResponseException as exc:
                if reused and exc.code == 421:  # the relay's idle timeout, said politely
                    raise _Stale from exc
                raise
            stage = "RCPT TO"
            await smtp.rcpt(msg.rcpt, encoding=encoding)
            stage = "DATA"
            response = await smtp.data(msg.data)
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, _Stale | EmailUpstreamFailed):
                raise
            if isinstance(exc, aiosmtplib.SMTPException | OSError | ValueError):
                raise self._map_error(msg, exc, stage) from None
            raise  # cancellation and bugs propagate; the connection is gone either way
        self._release(smtp)
        return f"{response.code} {_one_line(response.message, msg)}"

    def _mail_options(self, smtp: aiosmtplib.SMTP,
                      msg: OutboundEmail) -> tuple[list[str], str]:
        """ESMTP parameters for MAIL FROM and the address encoding they allow."""
        options: list[str] = []
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(msg.data)}")  # RFC 1870: an estimate is fine
        if not msg.data.isascii() and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152; without it the relay decides
        if msg.mail_from.isascii() and msg.rcpt.isascii():
            return options, "ascii"
        if not smtp.supports_extension("smtputf8"):
            raise self._refused(msg, 553, "5.6.7 Non-ASCII addresses are not supported by the "
                                "upstream relay (no SMTPUTF8)", "MAIL FROM")
        return [*options, "SMTPUTF8"], "utf-8"

    def _map_error(self, msg: OutboundEmail, exc: BaseException,
                   stage: str) -> EmailUpstreamFailed:
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = _one_line(exc.message, msg)
            if 500 <= exc.code < 600 and stage != "MAIL FROM":
                return self._refused(msg, exc.code, text, stage)
            return self._failed(msg, f"answered {exc.code} {text} to {stage}".rstrip(),
                                code=exc.code, text=text)
        if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts subclass it
            return self._failed(msg, f"did not answer {stage} within {self.timeout_s:g} s")
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
            return self._failed(msg, f"closed the connection during {stage}")
        if isinstance(exc, ValueError):  # aiosmtplib's address check; its text quotes it
            return self._refused(msg, 553, "5.1.3 Address cannot be relayed over SMTP", stage)
        return self._failed(msg, f"failed during {stage} ({type(exc).__name__})")

    def _failed(self, msg: OutboundEmail, what: str, *, code: int | None = None,
                text: str = "") -> EmailUpstreamFailed:
        log.warning("email %s to %s not accepted by %s: %s", msg.id, _masked(msg.rcpt),
                    self._origin, what)
        return EmailUpstreamFailed(f"The email upstream {self._origin} {what}; the message "
                                   "was not relayed. Retry later.", smtp_code=code,
                                   smtp_text=text)

    def _refused(self, msg: OutboundEmail, code: int, text: str,
                 stage: str) -> EmailRecipientRefused:
        masked = _masked(msg.rcpt)
        log.info("email %s to %s refused by %s at %s: %d %s", msg.id, masked, self._origin,
                 stage, code, text)
        return EmailRecipientRefused(
            f"The email upstream {self._origin} refused the message for {masked} at {stage}: "
            f"{code} {text}".rstrip(), recipient=msg.rcpt, smtp_code=code, smtp_text=text)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- from a URL -------------------------------------------------------------------------


def _file_upstream(rest: str) -> FileEmailUpstream:
    if not rest:
        raise ValueError("email upstream file:// URL needs a directory path, "
                         "e.g. file:///var/lib/optout/outbox/email")
    return FileEmailUpstream(Path(rest))


def _parse_url(url: str) -> URL:
    if any(c.isspace() for c in url):
        raise ValueError("email upstream URL must not contain spaces")
    try:
        parsed = URL(url)
        port = parsed.explicit_port  # yarl may check the port only when asked
    except ValueError:
        # yarl's message may quote the URL, and with it the credentials.
        raise ValueError("email upstream URL is not a valid URL (check the host and port)") \
            from None
    if not parsed.host:
        raise ValueError("email upstream URL has no host")
    if parsed.path not in ("", "/") or parsed.fragment:
        raise ValueError("email upstream smtp URL must not have a path or fragment: "
                         "smtp://[user:pass@]host[:port][?tls=require|none&verify=false]")
    if port == 0:
        raise ValueError("email upstream URL port must be 1-65535")
    return parsed


def _query_option(parsed: URL, key: str, allowed: tuple[str, ...]) -> str | None:
    values = parsed.query.getall(key, [])
    if len(values) > 1:
        raise ValueError(f"email upstream URL gives {key}= more than once")
    if not values:
        return None
    value = values[0].lower()
    if value not in allowed:
        raise ValueError(f"email upstream URL {key}={values[0][:20]!r} is not supported; "
                         f"use {key}={' or '.join(allowed)}")
    return value


def _smtp_upstream(url: str, scheme: str, timeout_s: float,
                   pool_size: int) -> SmtpEmailUpstream:
    parsed = _parse_url(url)
    unknown = sorted(set(parsed.query) - set(_QUERY_KEYS))
    if unknown:
        raise ValueError(f"email upstream URL query parameter {unknown[0][:20]!r} is unknown; "
                         "use tls=require|none and verify=false")
    tls = _query_option(parsed, "tls", ("require", "none"))
    verify = _query_option(parsed, "verify", ("true", "false"))
    implicit = scheme == "smtps"
    if implicit and tls == "none":
        raise ValueError("email upstream smtps:// is TLS from the start; tls=none contradicts "
                         "it (use smtp://…?tls=none)")
    if (parsed.user is None) != (parsed.password is None) or parsed.user == "" \
            or parsed.password == "":
        raise ValueError("email upstream URL credentials need both a user name and a password: "
                         "smtp://USER:PASSWORD@host (percent-encode @ : / in them)")
    port = parsed.explicit_port or (SMTPS_PORT if implicit else SMTP_PORT)
    mode: TlsMode = "require" if tls == "require" else "none" if tls == "none" else "auto"
    return SmtpEmailUpstream(host=parsed.host or "", port=port, implicit_tls=implicit,
                             tls=mode, verify=verify != "false", username=parsed.user,
                             password=parsed.password, timeout_s=timeout_s,
                             pool_size=pool_size)


def email_upstream_from_url(url: str, *, timeout_s: float = 30.0,
                            pool_size: int = 8) -> EmailUpstream:
    """The transport ``url`` names. Raises ``ValueError`` naming what is wrong
    (never quoting credentials). Nothing is opened until the first send."""
    if not timeout_s > 0:  # also refuses NaN
        raise ValueError("email upstream timeout_s must be a positive number of seconds")
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError("email upstream pool_size must be a whole number of at least 1")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise ValueError(f"email upstream URL must start with a scheme: {_USAGE}")
    scheme = scheme.lower()
    if scheme == "file":
        return _file_upstream(rest)
    if scheme in ("smtp", "smtps"):
        return _smtp_upstream(url, scheme, timeout_s, pool_size)
    raise ValueError(f"email upstream URL scheme {scheme!r} is not supported: {_USAGE}")
