"""What the domain needs from an SMS upstream, and what an upstream may answer.

The transports themselves (file, generic JSON, Twilio) live in
``gateway/sms_upstream.py``; the domain only sees this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .errors import GatewayError
from .identifiers import mask
from .models import Channel

TWILIO_OPTED_OUT = 21610


@dataclass(frozen=True)
class OutboundSms:
    """An SMS the policy allowed. ``to``/``from_`` are E.164 (or a short code)."""

    id: str
    tenant: str
    to: str
    from_: str
    body: str
    category: str

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: numbers masked, body left out.
        return (f"OutboundSms(id={self.id!r}, tenant={self.tenant!r}, "
                f"to={mask(Channel.SMS, self.to)!r}, from_={mask(Channel.SMS, self.from_)!r}, "
                f"category={self.category!r}, body=<{len(self.body)} chars>)")


@dataclass(frozen=True)
class UpstreamAccepted:
    upstream_id: str
    status: str = "accepted"


class UpstreamFailed(GatewayError):
    """The upstream did not accept the message (refused, timed out, unreachable).

    ``upstream_status`` is the HTTP status when there was one; ``upstream_code``
    the provider's own error code (Twilio's) when it sent one. ``maybe_delivered``: the
    request may have reached the provider and no answer said it was refused (a timeout, a
    connection dropped after sending): the text may still go out, so a cap slot taken for
    it stays taken.
    """

    code = "upstream_failed"

    def __init__(self, message: str, *, upstream_status: int | None = None,
                 upstream_code: int | None = None, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.upstream_code = upstream_code
        self.maybe_delivered = maybe_delivered


class UpstreamRecipientOptedOut(UpstreamFailed):
    """Twilio error 21610: the recipient opted out with the carrier (replied STOP).

    The gateway records a suppression for ``recipient`` (reason ``stop_keyword``,
    source ``upstream``) so later sends are refused before reaching Twilio.
    """

    def __init__(self, message: str, *, recipient: str, upstream_status: int | None = None,
                 upstream_code: int | None = TWILIO_OPTED_OUT) -> None:
        super().__init__(message, upstream_status=upstream_status, upstream_code=upstream_code)
        self.recipient = recipient


class SmsUpstream(Protocol):
    async def send(self, msg: OutboundSms) -> UpstreamAccepted:
        """Hand ``msg`` over; return only once the upstream accepted it, else raise
        :class:`UpstreamFailed`."""
        ...

    async def close(self) -> None:
        """Release connections; later sends raise :class:`UpstreamFailed`. Idempotent."""
        ...


