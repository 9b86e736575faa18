"""SMS upstream transports: where an SMS goes once the policy allowed it.

One interface, :class:`SmsUpstream`, three transports chosen by
``OPTOUT_SMS_UPSTREAM`` through :func:`sms_upstream_from_url`:

``file://PATH``
    One JSON line per message (``id``, ``tenant``, ``to``, ``from``, ``body``,
    ``category``, ``at``) appended to ``PATH``. Everything after ``file://`` is
    the path, taken literally (no percent-decoding): ``file:///var/sms.jsonl``
    is absolute, ``file://./var/sms.jsonl`` and ``file://var/sms.jsonl`` are
    relative to the working directory. Parent directories are created; the
    file is created ``0600`` (it holds numbers and bodies). Each line is
    written with ``O_APPEND`` and fsync'd before the message counts as
    accepted, since the gateway answers 202 only after that. One gateway
    process per file: writers are serialised in-process, not across processes.
    The file is reopened per message, so rotating it (rename) is safe.

``http://…`` / ``https://…``: a generic JSON provider
    ``POST`` of ``{"id", "tenant", "to", "from", "body", "category"}``; any 2xx
    is acceptance, the provider's id is read from the response's ``id`` or
    ``sid`` when it sends one. User info in the URL becomes HTTP Basic auth.
    Redirects are not followed (a 3xx is a failure: a POST must not be replayed
    elsewhere with our credentials). ``id`` is stable per message, so a
    provider can de-duplicate the rare retry after an ambiguous timeout.

``twilio://ACCOUNT_SID:AUTH_TOKEN@HOST[:PORT]``: Twilio's Messages API
    ``POST /2010-04-01/Accounts/{SID}/Messages.json`` with form fields ``To``,
    ``From``, ``Body`` and Basic auth (SID, token). The host is normally
    ``api.twilio.com``. The request goes over https, except to a loopback
    host (``127.0.0.1``, ``localhost``, ``::1``), which is spoken to over
    plain http so tests and local fakes work without certificates. Twilio
    error 21610 (the recipient replied STOP to the carrier) raises
    :class:`UpstreamRecipientOptedOut`; the caller then records a suppression.

HTTP transports share one ``aiohttp.ClientSession`` per upstream, created on
first use inside the running loop, with keep-alive connection reuse. Nothing
is retried here: a POST that timed out may have been delivered, so the
decision belongs to the caller (who answers 502 ``upstream_failed``).

Secrets (tokens, URL user info) never appear in ``repr``, logs or error
messages; phone numbers are masked in logs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from suppression.identifiers import mask
from suppression.models import Channel
from suppression.transport import (
    TWILIO_OPTED_OUT,
    OutboundSms,
    SmsUpstream,
    UpstreamAccepted,
    UpstreamFailed,
    UpstreamRecipientOptedOut,
)

__all__ = [
    "TWILIO_OPTED_OUT", "OutboundSms", "SmsUpstream", "UpstreamAccepted", "UpstreamFailed",
    "UpstreamRecipientOptedOut", "sms_upstream_from_url",
]

__all__ = [
    "FileSmsUpstream",
    "HttpJsonSmsUpstream",
    "OutboundSms",
    "SmsUpstream",
    "TwilioSmsUpstream",
    "UpstreamAccepted",
    "UpstreamFailed",
    "UpstreamRecipientOptedOut",
    "basic_authorization",
    "sms_upstream_from_url",
]

log = logging.getLogger(__name__)

TWILIO_API_VERSION = "2010-04-01"
# Hosts reached over plain http by twilio:// (local fakes); everything else is https.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CONNECTION_LIMIT = 100
# Below common server/load-balancer idle timeouts (nginx 75 s, ALB 60 s), so a
# pooled connection is not reused just as the server drops it.
KEEPALIVE_S = 15.0
MAX_UPSTREAM_TEXT = 200
USER_AGENT = "optout-gateway"

_SID_RE = re.compile(r"[A-Za-z0-9]{1,64}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_USAGE = ("use file://PATH, http(s)://HOST/PATH or "
          "twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com")


def _shut_down() -> UpstreamFailed:
    return UpstreamFailed("The SMS upstream is shut down; the message was not sent. Retry later.")


# -- file:// ------------------------------------------------------------------


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_line(record: dict[str, str]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped JSON is still the same text
        return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class FileSmsUpstream:
    """Appends one JSON line per message to ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        # The thread keeps writing if the awaiting task is cancelled (and the
        # asyncio lock released): this lock keeps lines whole even then.
        self._thread_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"FileSmsUpstream(path={str(self.path)!r})"

    async def send(self, msg: OutboundSms) -> UpstreamAccepted:
        if self._closed:
            raise _shut_down()
        data = _json_line({"id": msg.id, "tenant": msg.tenant, "to": msg.to,
                           "from": msg.from_, "body": msg.body, "category": msg.category,
                           "at": _utc_now()})
        async with self._lock:
            try:
                await asyncio.to_thread(self._append, data)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                log.error("could not append SMS %s to %s to %s: %s", msg.id,
                          mask(Channel.SMS, msg.to), self.path, reason)
                raise UpstreamFailed(f"The SMS outbox file could not be written ({reason}); "
                                     "the message was not sent.") from None
        if log.isEnabledFor(logging.DEBUG):  # mask() costs more than the line is worth
            log.debug("SMS %s to %s written to %s", msg.id, mask(Channel.SMS, msg.to), self.path)
        return UpstreamAccepted(upstream_id=msg.id)

    def _append(self, data: bytes) -> None:
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
            try:
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
                created = False
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:  # the new directory entry must survive a crash too
                dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    async def close(self) -> None:
        self._closed = True


# -- HTTP transports ------------------------------------------------------------


def basic_authorization(login: str, password: str) -> str:
    """An ``Authorization`` header value (RFC 7617, UTF-8). aiohttp 3.14 deprecates
    ``BasicAuth``; this needs no particular aiohttp version."""
    if ":" in login:
        raise ValueError("a Basic auth user name must not contain ':'")
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    err = exc.os_error
    if isinstance(err, socket.gaierror):
        return f"host name lookup failed: {err.strerror}"
    if err.errno and err.errno > 0:
        return os.strerror(err.errno).lower()
    return type(err).__name__


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _str_field(data: dict[str, Any] | None, *names: str) -> str | None:
    for name in names:
        value = data.get(name) if data is not None else None
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


class _HttpUpstream:
    """The shared session, the POST and its failure vocabulary."""

    def __init__(self, *, origin: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._origin = origin  # scheme://host[:port], no user info: safe in messages
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise _shut_down()
        if self._session is None:  # lazily: a session belongs to the running loop
            connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT,
                                             keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers={"User-Agent": USER_AGENT})
        return self._session

    def _failed(self, msg: OutboundSms, what: str, *, status: int | None = None,
                code: int | None = None, maybe_delivered: bool = False) -> UpstreamFailed:
        log.warning("SMS %s to %s not accepted by %s: %s", msg.id, mask(Channel.SMS, msg.to),
                    self._origin, what)
        return UpstreamFailed(f"The SMS upstream {self._origin} {what}; the message was not "
                              "sent.", upstream_status=status, upstream_code=code,
                              maybe_delivered=maybe_delivered)

    async def _post(self, msg: OutboundSms, url: URL, authorization: str | None,
                    **body: Any) -> tuple[int, str, bytes]:
        """POST and read the whole answer (so the connection can be reused)."""
        session = self._client()
        headers = {"Authorization": authorization} if authorization is not None else None
        try:
            async with session.post(url, headers=headers, allow_redirects=False,
                                    **body) as resp:
                return resp.status, resp.reason or "", await resp.read()
        # Before the request could be sent (TLS, connect) the text surely did not go out;
        # after it, without an answer, it may have (maybe_delivered).
        except TimeoutError:  # aiohttp's timeouts subclass it
            raise self._failed(msg, f"did not answer within {self.timeout_s:g} s",
                               maybe_delivered=True) from None
        except aiohttp.ClientSSLError as exc:
            raise self._failed(msg, f"failed the TLS handshake ({type(exc).__name__})") from None
        except aiohttp.ClientConnectorError as exc:
            raise self._failed(msg, f"could not be reached ({_connect_reason(exc)})") from None
        except aiohttp.ServerDisconnectedError:
            raise self._failed(msg, "closed the connection without answering",
                               maybe_delivered=True) from None
        except aiohttp.ClientError as exc:
            raise self._failed(msg, f"failed ({type(exc).__name__})",
                               maybe_delivered=True) from None

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class HttpJsonSmsUpstream(_HttpUpstream):
    """A generic JSON provider (see the module docstring)."""

    def __init__(self, url: URL, *, authorization: str | None = None,
                 timeout_s: float = 10.0) -> None:
        """``authorization``: an ``Authorization`` header value, e.g. from
        :func:`basic_authorization`."""
        super().__init__(origin=str(url.origin()), timeout_s=timeout_s)
        self._url = url
        self._authorization = authorization

    def __repr__(self) -> str:
        shown = self._url.with_user("***") if self._authorization is not None else self._url
        return f"HttpJsonSmsUpstream(url={str(shown)!r}, timeout_s={self.timeout_s:g})"

    async def send(self, msg: OutboundSms) -> UpstreamAccepted:
        payload = {"id": msg.id, "tenant": msg.tenant, "to": msg.to, "from": msg.from_,
                   "body": msg.body, "category": msg.category}
        status, reason, body = await self._post(msg, self._url, self._authorization,
                                                json=payload)
        if not 200 <= status < 300:
            raise self._failed(msg, f"answered HTTP {status} {reason}".rstrip(), status=status)
        upstream_id = _str_field(_json_object(body), "id", "sid") or msg.id
        if log.isEnabledFor(logging.DEBUG):
            log.debug("SMS %s to %s accepted by %s as %s", msg.id, mask(Channel.SMS, msg.to),
                      self._origin, upstream_id)
        return UpstreamAccepted(upstream_id=upstream_id)


class TwilioSmsUpstream(_HttpUpstream):
    """Twilio's Messages API (see the module docstring)."""

    def __init__(self, *, account_sid: str, auth_token: str, base_url: URL,
                 timeout_s: float = 10.0) -> None:
        super().__init__(origin=str(base_url.origin()), timeout_s=timeout_s)
        self.account_sid = account_sid
        self._authorization = basic_authorization(account_sid, auth_token)
        self._url = base_url / TWILIO_API_VERSION / "Accounts" / account_sid / "Messages.json"

    def __repr__(self) -> str:
        return (f"TwilioSmsUpstream(account_sid={self.account_sid[:6] + '***'!r}, "
                f"base_url={self._origin!r}, timeout_s={self.timeout_s:g})")

    async def send(self, msg: OutboundSms) -> UpstreamAccepted:
        form = {"To": msg.to, "From": msg.from_, "Body": msg.body}
        status, reason, body = await self._post(msg, self._url, self._authorization,
                                                data=form)
        data = _json_object(body)
        if 200 <= status < 300:
            sid = _str_field(data, "sid")
            if sid is None:
                log.warning("Twilio accepted SMS %s (HTTP %d) without a sid", msg.id, status)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("SMS %s to %s accepted by Twilio as %s", msg.id,
                          mask(Channel.SMS, msg.to), sid)
            return UpstreamAccepted(upstream_id=sid or msg.id)
        code_text = _str_field(data, "code")
        code = int(code_text) if code_text is not None and code_text.isdigit() else None
        if code == TWILIO_OPTED_OUT:
            masked = mask(Channel.SMS, msg.to)
            log.info("Twilio refused SMS %s: %s opted out with the carrier (21610)", msg.id,
                     masked)
            raise UpstreamRecipientOptedOut(
                f"The recipient {masked} has opted out with the carrier (Twilio error 21610); "
                "the message was not sent.", recipient=msg.to, upstream_status=status)
        if code is None:
            raise self._failed(msg, f"answered HTTP {status} {reason}".rstrip(), status=status)
        text = self._provider_text(msg, _str_field(data, "message"))
        raise self._failed(msg, f"refused it with Twilio error {code}{text} (HTTP {status})",
                           status=status, code=code)

    @staticmethod
    def _provider_text(msg: OutboundSms, text: str | None) -> str:
        """Twilio's own sentence, bounded, one line, with our numbers masked."""
        if not text:
            return ""
        for number in {msg.to, msg.from_}:
            if number:
                text = text.replace(number, mask(Channel.SMS, number))
        text = _CONTROL_RE.sub(" ", text).strip()[:MAX_UPSTREAM_TEXT]
        return f": {text}"


# -- from a URL -------------------------------------------------------------------


def _parse_url(url: str, kind: str) -> URL:
    if any(c.isspace() for c in url):
        raise ValueError(f"{kind} URL must not contain spaces")
    try:
        parsed = URL(url)
    except ValueError:
        # yarl's message may quote the URL, and with it the credentials.
        raise ValueError(f"{kind} URL is not a valid URL (check the host and port)") from None
    if not parsed.host:
        raise ValueError(f"{kind} URL has no host")
    return parsed


def _file_upstream(rest: str) -> FileSmsUpstream:
    if not rest or rest.endswith("/"):
        raise ValueError("SMS upstream file:// URL needs a file path, e.g. "
                         "file:///var/lib/optout/sms.jsonl")
    return FileSmsUpstream(Path(rest))


def _http_upstream(url: str, timeout_s: float) -> HttpJsonSmsUpstream:
    parsed = _parse_url(url, "SMS upstream")
    authorization = None
    if parsed.user is not None or parsed.password is not None:
        try:
            authorization = basic_authorization(parsed.user or "", parsed.password or "")
        except ValueError:
            raise ValueError("SMS upstream URL user name must not contain ':'") from None
    return HttpJsonSmsUpstream(parsed.with_user(None).with_fragment(None),
                               authorization=authorization, timeout_s=timeout_s)


def _twilio_upstream(url: str, timeout_s: float) -> TwilioSmsUpstream:
    parsed = _parse_url(url, "SMS upstream twilio://")
    if not parsed.user or not parsed.password:
        raise ValueError("SMS upstream twilio:// URL needs the account SID and auth token: "
                         "twilio://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com")
    if not _SID_RE.fullmatch(parsed.user):
        raise ValueError("SMS upstream twilio:// URL account SID must be letters and digits "
                         "(e.g. AC followed by 32 hex digits)")
    if parsed.path not in ("", "/") or parsed.query_string or parsed.fragment:
        raise ValueError("SMS upstream twilio:// URL must be only credentials and host "
                         "(no path, query or fragment)")
    host = parsed.host or ""
    scheme = "http" if host in LOOPBACK_HOSTS else "https"
    base = URL.build(scheme=scheme, host=host, port=parsed.explicit_port)
    return TwilioSmsUpstream(account_sid=parsed.user, auth_token=parsed.password, base_url=base,
                             timeout_s=timeout_s)


def sms_upstream_from_url(url: str, *, timeout_s: float = 10.0) -> SmsUpstream:
    """The transport ``url`` names. Raises ``ValueError`` naming what is wrong
    (never quoting credentials). Nothing is opened until the first send."""
    if not timeout_s > 0:  # also refuses NaN
        raise ValueError("SMS upstream timeout_s must be a positive number of seconds")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise ValueError(f"SMS upstream URL must start with a scheme: {_USAGE}")
    scheme = scheme.lower()
    if scheme == "file":
        return _file_upstream(rest)
    if scheme in ("http", "https"):
        return _http_upstream(url, timeout_s)
    if scheme == "twilio":
        return _twilio_upstream(url, timeout_s)
    raise ValueError(f"SMS upstream URL scheme {scheme!r} is not supported: {_USAGE}")
