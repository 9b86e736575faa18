"""What the domain needs from an email upstream, and what an upstream may answer.

The transports themselves (file, SMTP relay) live in ``gateway/email_upstream.py``;
the domain and the SMTP edge only see this protocol. One :class:`OutboundEmail`
is one upstream transaction: one envelope sender, exactly one recipient.

The failure tree tells the SMTP edge what to answer the sender:

* :class:`EmailUpstreamFailed` is temporary (upstream 4xx, refused connection,
  timeout, TLS failure, shut down): the edge answers ``451`` so the sender
  keeps the message and retries. Never a ``250`` for mail that did not leave.
* :class:`EmailRecipientRefused` is permanent for that recipient (upstream 5xx
  at RCPT or DATA): the edge passes :attr:`~EmailRecipientRefused.smtp_reply`
  back for that recipient, so the sender bounces it instead of retrying forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .identifiers import mask
from .models import Channel
from .transport import UpstreamFailed

__all__ = [
    "EmailAccepted",
    "EmailRecipientRefused",
    "EmailUpstream",
    "EmailUpstreamFailed",
    "OutboundEmail",
]


def _masked(address: str) -> str:
    return mask(Channel.EMAIL, address) if address else "<>"


@dataclass(frozen=True)
class OutboundEmail:
    """A message the policy allowed for one recipient.

    ``mail_from`` is the envelope sender (``""`` for the null reverse-path of
    bounces); ``data`` the whole message (headers and body) exactly as it is to
    be relayed, with the gateway's headers already applied.
    """

    id: str
    tenant: str
    mail_from: str
    rcpt: str
    data: bytes

    def __repr__(self) -> str:
        # Reprs end up in logs and tracebacks: addresses masked, content left out.
        return (f"OutboundEmail(id={self.id!r}, tenant={self.tenant!r}, "
                f"mail_from={_masked(self.mail_from)!r}, rcpt={_masked(self.rcpt)!r}, "
                f"data=<{len(self.data)} bytes>)")


@dataclass(frozen=True)
class EmailAccepted:
    """``reply``: the upstream's final reply, e.g. ``"250 2.0.0 Ok: queued as 4Xk2"``
    (a transport without one, like ``file://``, says what it did)."""

    reply: str


class EmailUpstreamFailed(UpstreamFailed):
    """Temporary: the upstream did not take the message; the sender should retry.

    ``smtp_code``/``smtp_text`` are the upstream's reply when there was one
    (``None``/``""`` for a refused connection, a timeout or a TLS failure).
    ``smtp_text`` is one line, without the code, normally starting with the
    enhanced status code (``"4.3.0 Try later"``).
    """

    def __init__(self, message: str, *, smtp_code: int | None = None,
                 smtp_text: str = "") -> None:
        super().__init__(message)
        self.smtp_code = smtp_code
        self.smtp_text = smtp_text


class EmailRecipientRefused(EmailUpstreamFailed):
    """Permanent: the upstream refused this recipient (5xx at RCPT) or this
    message for it (5xx at DATA). Retrying the same message will not help."""

    smtp_code: int

    def __init__(self, message: str, *, recipient: str, smtp_code: int,
                 smtp_text: str) -> None:
        super().__init__(message, smtp_code=smtp_code, smtp_text=smtp_text)
        self.recipient = recipient

    @property
    def smtp_reply(self) -> str:
        """The reply line to pass back to the sender, e.g. ``"550 5.1.1 No such user"``."""
        return f"{self.smtp_code} {self.smtp_text}".rstrip()


class EmailUpstream(Protocol):
    async def send(self, msg: OutboundEmail) -> EmailAccepted:
        """Hand ``msg`` over; return only once the upstream accepted it (durably, for
        a file), else raise :class:`EmailUpstreamFailed` or
        :class:`EmailRecipientRefused`. Never retried silently after the message
        may have been delivered."""
        ...

    async def close(self) -> None:
        """Release connections; later sends raise :class:`EmailUpstreamFailed`.
        Idempotent."""
        ...
