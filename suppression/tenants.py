"""Tenants: the organisations using the gateway, and the rules each one sets.

Validated once at start-up (from the TOML file); the domain reads them, never
the files or the environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .content import DEFAULT_SHORTENERS, ContentRules, clean_terms, validate_patterns
from .identifiers import normalize_phone
from .sharing import SharingPolicy

# CTIA Messaging Principles: a STOP reply confirms the opt-out, names the brand, says no more
# messages will be sent and how to come back; HELP names the brand, where to get help, how to
# opt out and that rates may apply; an opt-in confirmation adds frequency and HELP/STOP.
DEFAULT_OPT_OUT_REPLY = ("{brand}: You are unsubscribed and will receive no more messages. "
                         "Reply START to resubscribe.")
DEFAULT_OPT_IN_REPLY = ("{brand}: You are subscribed to messages. {frequency}. Reply HELP for "
                        "help, STOP to opt out. Msg & data rates may apply.")
DEFAULT_HELP_REPLY = ("{brand}: {help_text} Reply STOP to opt out. Msg & data rates may apply.")
# Double opt-in: the one text sent to a number whose consent was recorded as pending.
DEFAULT_CONFIRM_OPT_IN = ("{brand}: Reply YES to confirm you want to receive messages. "
                          "Msg & data rates may apply. Reply STOP to opt out.")


TOPIC_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class SmsReplies(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    opt_out: str = DEFAULT_OPT_OUT_REPLY
    opt_in: str = DEFAULT_OPT_IN_REPLY
    help: str = DEFAULT_HELP_REPLY
    confirm_opt_in: str = DEFAULT_CONFIRM_OPT_IN

    @field_validator("opt_out", "opt_in", "help", "confirm_opt_in")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(brand="", help_text="", frequency="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template {v!r} may use only {{brand}}, {{help_text}} and "
                             f"{{frequency}}: {exc}") from None
        return v


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = "default"
    brand: str = "Our messages"
    sms_senders: tuple[str, ...] = ()
    twilio_auth_token: SecretStr | None = None
    email_domains: tuple[str, ...] = ()
    help_text: str = "Reply to this message for help."
    postal_address: str = ""
    default_region: str = Field(default="US", min_length=2, max_length=2)
    frequency: str = "Msg frequency varies"
    sms_replies: SmsReplies = SmsReplies()
    # "first": append " Reply STOP to opt out." to a marketing text lacking opt-out
    # language when it is the first to that recipient in 30 days; "always": to every one.
    append_stop: Literal["first", "always"] = "first"
    blocked_terms: tuple[str, ...] = ()
    blocked_patterns: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = DEFAULT_SHORTENERS
    blocked_content_retention_days: int = Field(default=30, ge=1, le=3650)
    message_retention_days: int = Field(default=90, ge=1, le=3650)
    # Audit (opt-outs, consents, their evidence) is kept as long as disputes can arise
    # (TCPA: 4 years; 7 by default); review items only while ops may act on them.
    audit_retention_days: int = Field(default=2557, ge=1, le=36500)
    review_retention_days: int = Field(default=90, ge=1, le=3650)
    # SMS consent recorded through the API is pending until the person replies YES to a
    # confirmation text (sms_replies.confirm_opt_in) sent from the first sms_senders number.
    double_opt_in: bool = False
    # Email topics a person may leave one by one in the preference centre (id -> label).
    # A message names its topic with an X-Optout-Topic header (or List-Id).
    topics: dict[str, str] = Field(default_factory=dict)
    # DKIM signing of relayed mail whose From domain is one of email_domains.
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None  # PEM RSA or Ed25519 private key
    # The SMTP sharing guard (suppression/dlp.py): mail to a recipient outside
    # email_domains carrying at least this many consented SMS numbers is refused.
    dlp_enabled: bool = True
    dlp_min_numbers: int = Field(default=5, ge=1, le=100_000)
    # What data may leave through exports, to whom, for what (suppression.sharing);
    # the fixed rules there win over anything set here.
    sharing: SharingPolicy = SharingPolicy()

    @field_validator("sms_senders")
    @classmethod
    def _senders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # Short codes (5-6 digits) stay as they are; numbers are E.164.
        return tuple(s if s.isdigit() and len(s) <= 6 else normalize_phone(s) for s in v)

    @field_validator("email_domains", "blocked_domains")
    @classmethod
    def _domains(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(d.strip().lower() for d in v)

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: dict[str, str]) -> dict[str, str]:
        for topic in v:
            if not TOPIC_RE.fullmatch(topic):
                raise ValueError(f"topic id '{topic}' must be 1-64 of a-z, 0-9, '.', '_' or '-'")
        return v

    @field_validator("blocked_patterns")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        validate_patterns(v)
        return v

    @field_validator("blocked_terms")
    @classmethod
    def _terms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return clean_terms(v)

    @model_validator(mode="after")
    def _double_opt_in_sender(self) -> Tenant:
        if self.double_opt_in and not self.sms_senders:
            raise ValueError("double_opt_in needs a number in sms_senders to send the "
                             "confirmation text from")
        return self

    @property
    def content_rules(self) -> ContentRules:
        return ContentRules(self.blocked_terms, self.blocked_patterns, self.blocked_domains)

    def reply(self, kind: Literal["opt_out", "opt_in", "help", "confirm_opt_in"]) -> str:
        """The reply text. A ``help_text`` that already starts with "<brand>:" (as in
        CONTRACT.md's example) is not prefixed with the brand a second time by a template
        reading "{brand}: {help_text}" (the default HELP reply)."""
        template: str = getattr(self.sms_replies, kind)
        help_text = self.help_text
        named = f"{self.brand}:"
        if "{brand}: {help_text}" in template and help_text.casefold().startswith(
                named.casefold()):
            help_text = help_text[len(named):].lstrip()
        return template.format(brand=self.brand, help_text=help_text,
                               frequency=self.frequency)
