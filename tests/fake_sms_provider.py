"""A recording SMS provider on a real loopback HTTP server, with fault injection.

It speaks both APIs the gateway sends to:

* the generic JSON API: ``POST`` of ``{"id", "tenant", "to", "from", "body",
  "category"}`` to :attr:`FakeSmsProvider.url` (any path but Twilio's);
  answers ``200 {"id": "fake-N", "status": "accepted"}``;
* Twilio's Messages API: ``POST /2010-04-01/Accounts/{SID}/Messages.json``,
  form ``To``/``From``/``Body``, Basic auth checked against the accounts made
  by :meth:`FakeSmsProvider.twilio_url`; answers ``201`` with a message
  resource, or Twilio's error JSON (20003, 21602-21604, 21610).

Usage::

    async with FakeSmsProvider() as fake:
        upstream = sms_upstream_from_url(fake.url)          # or fake.twilio_url(sid, token)
        fake.fail_next(status=500)                           # the next request gets a 500
        fake.fail_next(2, delay_s=5)                         # the two after that hang 5 s
        fake.fail_next(close=True)                           # then one connection is dropped
        fake.opt_out("+14155550123")                         # Twilio 21610 for this number
        ...
        fake.messages                                        # every accepted message
        fake.connections                                     # TCP connections seen

Faults are consumed one per request, in order, whichever API is asked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

TWILIO_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"
GENERIC_PATH = "/messages"


@dataclass(frozen=True)
class ReceivedSms:
    """A message the fake accepted. ``api`` is ``"json"`` or ``"twilio"``."""

    api: str
    upstream_id: str
    to: str
    from_: str
    body: str
    id: str | None = None  # the gateway's id (generic API only)
    tenant: str | None = None
    category: str | None = None
    auth: tuple[str, str] | None = None  # Basic auth (user, password) as received
    raw: dict[str, Any] = field(default_factory=dict)  # the JSON body or form fields


@dataclass(frozen=True)
class Fault:
    status: int | None = None
    delay_s: float = 0.0
    close: bool = False
    twilio_code: int | None = None
    message: str | None = None


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status=status)


def _basic_auth(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class FakeSmsProvider:
    def __init__(self, *, basic_auth: tuple[str, str] | None = None) -> None:
        """``basic_auth``: credentials the generic API insists on (None: any or none)."""
        self.basic_auth = basic_auth
        self.messages: list[ReceivedSms] = []
        self.requests = 0  # every request, failed or not
        self.opted_out: set[str] = set()
        self.twilio_accounts: dict[str, str] = {}
        self._faults: deque[Fault] = deque()
        # id -> transport; holding the transport keeps its id from being reused.
        self._transports: dict[int, object] = {}
        self._ids = itertools.count(1)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(TWILIO_PATH, self._twilio)
        app.router.add_post("/{tail:.*}", self._generic)
        # Handlers delayed by a fault wake up on stop, so a short timeout is enough.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSmsProvider:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # -- addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The generic JSON API's URL."""
        return f"http://127.0.0.1:{self.port}{GENERIC_PATH}"

    def twilio_url(self, account_sid: str, auth_token: str) -> str:
        """A ``twilio://`` URL for this fake; the account is registered here."""
        self.twilio_accounts[account_sid] = auth_token
        return f"twilio://{account_sid}:{auth_token}@127.0.0.1:{self.port}"

    # -- fault injection -----------------------------------------------------------

    def fail_next(self, times: int = 1, *, status: int | None = None, delay_s: float = 0.0,
                  close: bool = False, twilio_code: int | None = None,
                  message: str | None = None) -> None:
        """The next ``times`` requests: wait ``delay_s`` then drop the connection
        (``close``), answer ``status`` (with Twilio's ``twilio_code`` and ``message``
        on the Twilio API; a code alone means 400), or, with only a delay, answer
        normally."""
        if twilio_code is not None and status is None:
            status = 400
        fault = Fault(status=status, delay_s=delay_s, close=close, twilio_code=twilio_code,
                      message=message)
        self._faults.extend([fault] * times)

    def opt_out(self, number: str) -> None:
        """Twilio answers 21610 for ``number`` until :meth:`opt_in` (the carrier's STOP)."""
        self.opted_out.add(number)

    def opt_in(self, number: str) -> None:
        self.opted_out.discard(number)

    def reset(self) -> None:
        self.messages.clear()
        self._faults.clear()
        self.opted_out.clear()

    @property
    def connections(self) -> int:
        """TCP connections that carried at least one request."""
        return len(self._transports)

    # -- handlers ------------------------------------------------------------------

    async def _begin(self, request: web.Request) -> Fault | None:
        """Count the request and its connection; apply the next fault's delay or close.

        Called once the request body was read, as a real provider would have it.
        Returns the fault still to answer (a status), or None to answer normally.
        """
        self.requests += 1
        transport = request.transport
        if transport is not None:
            self._transports.setdefault(id(transport), transport)
        fault = self._faults.popleft() if self._faults else None
        if fault is None:
            return None
        if fault.delay_s:
            try:
                await asyncio.wait_for(self._stopping.wait(), fault.delay_s)
            except TimeoutError:
                pass
            else:  # stopping: give up on this request rather than record it
                return Fault(status=503, message="shutting down")
        if fault.close:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # aiohttp drops a cancelled handler's connection
        return fault if fault.status is not None else None

    async def _generic(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        fault = await self._begin(request)
        if fault is not None and fault.status is not None:
            return web.json_response({"error": fault.message or "injected failure"},
                                     status=fault.status)
        auth = _basic_auth(request)
        if self.basic_auth is not None and auth != self.basic_auth:
            return web.json_response({"error": "bad credentials"}, status=401)
        if request.content_type != "application/json":
            return web.json_response({"error": "need application/json"}, status=415)
        try:
            data = json.loads(raw)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        fields = ("id", "tenant", "to", "from", "body", "category")
        if not isinstance(data, dict) or any(not isinstance(data.get(f), str) for f in fields):
            return web.json_response({"error": f"need string fields {fields}"}, status=422)
        upstream_id = f"fake-{next(self._ids)}"
        self.messages.append(ReceivedSms(
            api="json", upstream_id=upstream_id, to=data["to"], from_=data["from"],
            body=data["body"], id=data["id"], tenant=data["tenant"], category=data["category"],
            auth=auth, raw=data))
        return web.json_response({"id": upstream_id, "status": "accepted"})

    async def _twilio(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        fault = await self._begin(request)
        if fault is not None and fault.status is not None:
            return _twilio_error(fault.status, fault.twilio_code or 20500,
                                 fault.message or "Injected failure")
        sid = request.match_info["sid"]
        auth = _basic_auth(request)
        if auth is None or auth[0] != sid or self.twilio_accounts.get(sid) != auth[1]:
            return _twilio_error(401, 20003, "Authenticate")
        if request.content_type != "application/x-www-form-urlencoded":
            return _twilio_error(400, 21601, "Expected a form-encoded body.")
        to, from_, body = (form.get(name) for name in ("To", "From", "Body"))
        if not isinstance(to, str) or not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not isinstance(from_, str) or not from_:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if not isinstance(body, str) or not body:
            return _twilio_error(400, 21602, "Message body is required.")
        if to in self.opted_out:
            return _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        upstream_id = "SM" + secrets.token_hex(16)
        self.messages.append(ReceivedSms(
            api="twilio", upstream_id=upstream_id, to=to, from_=from_, body=body, auth=auth,
            raw={k: v for k, v in form.items() if isinstance(v, str)}))
        return web.json_response({
            "sid": upstream_id, "account_sid": sid, "to": to, "from": from_, "body": body,
            "status": "queued", "direction": "outbound-api", "num_segments": "1",
            "api_version": "2010-04-01", "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/{upstream_id}.json",
        }, status=201)
