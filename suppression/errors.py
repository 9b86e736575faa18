"""The domain's exception tree.

Each error carries a stable machine-readable ``code`` (the contract's error
vocabulary) and a sentence a person can act on. Protocol edges map codes to
HTTP statuses, Twilio error shapes or SMTP replies; nothing here knows them.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every refusal the gateway gives on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidRecipient(GatewayError):
    """An identifier that cannot be normalised (bad phone number, bad address)."""

    code = "invalid_recipient"


class InvalidRequest(GatewayError):
    """Input that is well-formed but not acceptable (unknown channel, bad cursor)."""

    code = "invalid_request"


class NotFound(GatewayError):
    code = "not_found"


class StoreUnavailable(GatewayError):
    """Redis did not answer within budget: the caller must fail closed."""

    code = "store_unavailable"

    def __init__(self, message: str = "The suppression store is unavailable; nothing was sent. "
                 "Retry later.") -> None:
        super().__init__(message)


class JournalFailed(StoreUnavailable):
    """The local journal could not be made durable (write or fsync failed).

    Never retried: after a failed fsync the kernel may have dropped the dirty
    pages and cleared the error (the PostgreSQL "fsyncgate" lesson), so the
    only safe course is to refuse and restart, replaying the journal.
    """

    code = "store_unavailable"

    def __init__(self, message: str = "The opt-out journal could not be written durably; "
                 "the gateway is restarting. Retry shortly.") -> None:
        super().__init__(message)


class Refused(GatewayError):
    """A message the rules do not allow. ``retry_at_ms``: when a retry would pass, if known."""

    def __init__(self, message: str, *, field: str | None = None,
                 retry_at_ms: int | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_at_ms = retry_at_ms


class OptedOut(Refused):
    code = "opted_out"


class NoConsent(Refused):
    code = "no_consent"


class QuietHours(Refused):
    code = "quiet_hours"


class FrequencyCapped(Refused):
    code = "frequency_capped"


class ContentBlocked(Refused):
    code = "content_blocked"


class SenderNotAllowed(Refused):
    code = "sender_not_allowed"


class CategoryNotAllowed(Refused):
    code = "category_not_allowed"


class SharingProhibited(GatewayError):
    """An export the sharing rules forbid (``suppression.sharing``); ``rule`` names the rule."""

    code = "sharing_prohibited"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule
