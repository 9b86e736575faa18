"""The sharing guard: may this data leave the gateway, to this recipient, for this purpose?

Pure: no I/O. Every way data leaves (``POST /v1/exports``, the CLI export) asks
``decide_sharing`` once per request; the caller audits the answer, allowed or not.

Vocabulary
----------
- *dataset*: what is exported (``Dataset``). Each one is classified in ``DATASETS``
  (holds SMS numbers? consent evidence? e-mail addresses? is it a suppression list?);
  the rules look at the classification, so a new dataset gets the right rules by
  being classified, and a test fails until it is.
- *recipient*: ``first_party`` (the tenant itself), ``processor`` (a named service
  provider acting on the tenant's behalf, e.g. the ESP or SMS aggregator that sends
  its campaigns; the name is required and audited), ``affiliate`` (a company under
  common control), ``third_party`` (anyone else).
- *purpose*: what the recipient will use the data for. A processor scrubbing the
  tenant's own sends against a suppression list is ``service``.

Decision table (defaults; one row per dataset, ``x`` = refused by a fixed rule)
------------------------------------------------------------------------------
::

    dataset             first_party  processor (named)          affiliate / third_party
    ------------------  -----------  -------------------------  -------------------------------
    sms_consents        allowed      x consent_evidence_not_    marketing, promotional:
                                       to_processors (all)        x sms_optin_no_third_party_
                                                                    marketing
                                                                other purposes: refused unless
                                                                  the tenant allows it
    sms_suppressions    allowed      service, compliance:       marketing, promotional: x (as
                                       allowed                    above); other purposes:
                                     others: refused unless       refused unless allowed
                                       the tenant allows it
    message_records     allowed      refused unless allowed     marketing, promotional: x (as
                                                                  above); others: unless allowed
    email_suppressions  allowed      service, compliance:       compliance: refused unless
                                       allowed                    allowed
                                     analytics, marketing,      every other purpose:
                                       promotional:               x can_spam_no_transfer_of_
                                       x can_spam_no_transfer_      opted_out_addresses
                                         of_opted_out_addresses

Order of evaluation, per dataset; a request for several datasets is refused if any
one is:

1. **Fixed rules** (``FIXED_RULES``). No tenant setting can loosen them.
   - ``sms_optin_no_third_party_marketing``: SMS opt-in/consent data or SMS phone
     numbers (``sms_consents``, ``sms_suppressions``, ``message_records``) to an
     affiliate or third party for marketing or promotional purposes. Sources: the
     CTIA Messaging Principles and The Campaign Registry's 10DLC brand requirement
     that "mobile information ... opt-in data and consent will not be shared with
     third parties or affiliates for marketing/promotional purposes"; the operator's
     privacy statement says the same (COMPLIANCE.md, Sharing and Privacy).
   - ``consent_evidence_not_to_processors``: consent evidence (``sms_consents``) to a
     processor, whatever the purpose. A processor that sends on the tenant's behalf
     needs to know whom not to text (the suppression list), never the proof of who
     opted in; the gateway is the one holder of opt-in data (COMPLIANCE.md, Sharing;
     issue #5: suppression lists go to processors "never with consent evidence").
     Proof of consent for a carrier or TCR vetting, an auditor or a court goes to a
     ``third_party`` for ``compliance``, which a tenant may allow explicitly.
   - ``can_spam_no_transfer_of_opted_out_addresses``: opted-out e-mail addresses
     leave the tenant only for compliance (15 U.S.C. 7704(a)(4)(A)(iv): no sale,
     lease, exchange or other transfer "for any purpose other than compliance"),
     which includes the tenant's own processor suppressing them (``service``).
2. **Tenant deny rules** (``SharingPolicy.deny``): a tenant may forbid anything,
   even exports to itself (rule ``tenant_policy_deny``).
3. **Safe defaults that allow**: ``first_party`` gets everything (the data is the
   tenant's own); a named processor gets suppression lists for ``service`` or
   ``compliance`` (``suppression_list_to_processor``: that is how suppression works).
4. **Tenant allow rules** (``SharingPolicy.allow``, rule ``tenant_policy_allow``).
5. Everything else is refused (``not_allowed_by_default``).

Configured per tenant in the TOML file::

    [[tenants.acme.sharing.allow]]      # carrier/TCR asks for proof of opt-in
    datasets = ["sms_consents"]
    recipient = "third_party"
    names = ["The Campaign Registry"]   # optional: only these recipients (case-insensitive)
    purposes = ["compliance"]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidRequest

__all__ = [
    "DATASETS",
    "FIXED_RULES",
    "Dataset",
    "DatasetInfo",
    "FixedRule",
    "Purpose",
    "Recipient",
    "RecipientType",
    "SharingDecision",
    "SharingGrant",
    "SharingPolicy",
    "SharingRequest",
    "decide_sharing",
]

MAX_NAME_CHARS = 200


class Dataset(StrEnum):
    SMS_CONSENTS = "sms_consents"
    SMS_SUPPRESSIONS = "sms_suppressions"
    EMAIL_SUPPRESSIONS = "email_suppressions"
    MESSAGE_RECORDS = "message_records"


class RecipientType(StrEnum):
    FIRST_PARTY = "first_party"
    PROCESSOR = "processor"
    AFFILIATE = "affiliate"
    THIRD_PARTY = "third_party"


class Purpose(StrEnum):
    SERVICE = "service"
    COMPLIANCE = "compliance"
    ANALYTICS = "analytics"
    MARKETING = "marketing"
    PROMOTIONAL = "promotional"


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a dataset holds; the rules read this, never the dataset's name."""

    label: str
    sms_numbers: bool = False  # SMS phone numbers (opt-in data in the CTIA sense)
    consent_evidence: bool = False  # who opted in, when, how, what they were shown
    email_addresses: bool = False
    suppression_list: bool = False  # a list of people who opted out
    # Names people who opted out without being a suppression list (records of refused
    # sends): the CAN-SPAM transfer rule applies, the processor default does not.
    names_opted_out: bool = False


DATASETS: dict[Dataset, DatasetInfo] = {
    Dataset.SMS_CONSENTS: DatasetInfo("SMS opt-in consent records with their evidence",
                                      sms_numbers=True, consent_evidence=True),
    Dataset.SMS_SUPPRESSIONS: DatasetInfo("the SMS suppression list (phone numbers)",
                                          sms_numbers=True, suppression_list=True),
    Dataset.EMAIL_SUPPRESSIONS: DatasetInfo("the e-mail suppression list (opted-out addresses)",
                                            email_addresses=True, suppression_list=True),
    # Records of SMS and email sends: every one names the number or address it went to,
    # refused ones (opted out) included. Both channels' rules apply to the whole.
    Dataset.MESSAGE_RECORDS: DatasetInfo("message records (who was texted or mailed, when, "
                                         "outcome)", sms_numbers=True, email_addresses=True,
                                         names_opted_out=True),
}

OUTSIDE = frozenset({RecipientType.AFFILIATE, RecipientType.THIRD_PARTY})
MARKETING = frozenset({Purpose.MARKETING, Purpose.PROMOTIONAL})
PROCESSOR_DEFAULT_PURPOSES = frozenset({Purpose.SERVICE, Purpose.COMPLIANCE})


def _name_ok(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise InvalidRequest(f"'recipient.name' must be 1-{MAX_NAME_CHARS} printable "
                             "characters", field="recipient.name")
    return name


@dataclass(frozen=True, slots=True)
class Recipient:
    type: RecipientType
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None:
            object.__setattr__(self, "name", _name_ok(self.name))
        if self.type is RecipientType.PROCESSOR and not self.name:
            raise InvalidRequest("a 'processor' recipient needs a 'name' (the company that "
                                 "will receive the data), e.g. {\"type\": \"processor\", "
                                 "\"name\": \"Acme ESP\"}", field="recipient.name")

    def describe(self) -> str:
        if self.type is RecipientType.FIRST_PARTY:
            return "the tenant itself (first party)"
        kind = self.type.value.replace("_", " ")
        if self.name:
            return f"{kind} '{self.name}'"
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"

    def to_json(self) -> dict[str, str | None]:
        return {"type": self.type.value, "name": self.name}


@dataclass(frozen=True, slots=True)
class SharingRequest:
    datasets: tuple[Dataset, ...]
    recipient: Recipient
    purpose: Purpose

    def __post_init__(self) -> None:
        if not self.datasets:
            raise InvalidRequest("'datasets' must name at least one dataset", field="datasets")
        # The same dataset twice would stream it twice: keep the first, in order.
        object.__setattr__(self, "datasets", tuple(dict.fromkeys(self.datasets)))


@dataclass(frozen=True, slots=True)
class SharingDecision:
    """``rule`` names what decided it (for a refusal: the first refusing dataset's rule);
    ``rules`` gives the rule of every dataset, in request order, for the audit trail."""

    allowed: bool
    rule: str
    message: str
    rules: tuple[tuple[Dataset, str], ...] = ()


class SharingGrant(BaseModel):
    """One (datasets x recipient x purposes) combination, optionally for named recipients."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: tuple[Dataset, ...] = Field(min_length=1)
    recipient: RecipientType
    purposes: tuple[Purpose, ...] = Field(min_length=1)
    # None: any recipient of that type. Otherwise only these (case-insensitive).
    names: tuple[str, ...] | None = None

    @field_validator("names")
    @classmethod
    def _names(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        try:
            return tuple(_name_ok(n).casefold() for n in v)
        except InvalidRequest:
            raise ValueError(f"names must be 1-{MAX_NAME_CHARS} printable characters"
                             ) from None

    def matches(self, dataset: Dataset, recipient: Recipient, purpose: Purpose) -> bool:
        if dataset not in self.datasets or recipient.type is not self.recipient \
                or purpose not in self.purposes:
            return False
        if self.names is None:
            return True
        return recipient.name is not None and recipient.name.casefold() in self.names


class SharingPolicy(BaseModel):
    """A tenant's sharing settings: extra combinations it allows, and ones it forbids.

    ``allow`` can never loosen a fixed rule (they are checked first); ``deny`` wins
    over everything else, including the safe defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[SharingGrant, ...] = ()
    deny: tuple[SharingGrant, ...] = ()


@dataclass(frozen=True, slots=True)
class FixedRule:
    name: str
    applies: Callable[[DatasetInfo, Recipient, Purpose], bool]
    why: str  # the sentence after "... is prohibited:"


def _email_transfer(info: DatasetInfo, recipient: Recipient, purpose: Purpose) -> bool:
    if not (info.email_addresses and (info.suppression_list or info.names_opted_out)):
        return False
    if recipient.type is RecipientType.FIRST_PARTY or purpose is Purpose.COMPLIANCE:
        return False
    return not (recipient.type is RecipientType.PROCESSOR and purpose is Purpose.SERVICE)


FIXED_RULES: tuple[FixedRule, ...] = (
    FixedRule(
        "sms_optin_no_third_party_marketing",
        lambda info, r, p: info.sms_numbers and r.type in OUTSIDE and p in MARKETING,
        "SMS opt-in data, consent and phone numbers are never shared with third parties or "
        "affiliates for marketing or promotional purposes (CTIA Messaging Principles, The "
        "Campaign Registry 10DLC terms and the privacy statement)"),
    FixedRule(
        "consent_evidence_not_to_processors",
        lambda info, r, p: info.consent_evidence and r.type is RecipientType.PROCESSOR,
        "consent evidence stays with the brand; a processor that sends on its behalf gets "
        "the suppression list (sms_suppressions), never the opt-in records"),
    FixedRule(
        "can_spam_no_transfer_of_opted_out_addresses",
        _email_transfer,
        "opted-out e-mail addresses may not be sold or transferred for any purpose other "
        "than compliance (CAN-SPAM, 15 U.S.C. 7704(a)(4)(A)(iv)); a processor may get them "
        "for 'service' or 'compliance' only"),
)


def _decide_one(dataset: Dataset, recipient: Recipient, purpose: Purpose,
                policy: SharingPolicy) -> tuple[bool, str, str]:
    info = DATASETS[dataset]
    what = f"Sharing {dataset.value} with {recipient.describe()} for {purpose.value}"
    for rule in FIXED_RULES:
        if rule.applies(info, recipient, purpose):
            return False, rule.name, (f"{what} is prohibited: {rule.why}. No tenant "
                                      "setting can allow it.")
    if any(g.matches(dataset, recipient, purpose) for g in policy.deny):
        return False, "tenant_policy_deny", (
            f"{what} is forbidden by this tenant's sharing policy "
            "(a deny rule in its [sharing] settings).")
    if recipient.type is RecipientType.FIRST_PARTY:
        return True, "first_party", f"{what} is allowed: the data is the tenant's own."
    if recipient.type is RecipientType.PROCESSOR and info.suppression_list \
            and purpose in PROCESSOR_DEFAULT_PURPOSES:
        return True, "suppression_list_to_processor", (
            f"{what} is allowed: a processor sending on the tenant's behalf needs the "
            "suppression list to honour opt-outs.")
    if any(g.matches(dataset, recipient, purpose) for g in policy.allow):
        return True, "tenant_policy_allow", (
            f"{what} is allowed by this tenant's sharing policy.")
    return False, "not_allowed_by_default", (
        f"{what} is not allowed: data leaves for recipients outside the "
        "tenant only where a rule allows it. An operator can add an allow rule for this "
        "dataset, recipient and purpose to the tenant's [sharing] settings.")


def decide_sharing(request: SharingRequest, policy: SharingPolicy) -> SharingDecision:
    """Allowed only if every dataset is; a refusal names the first refusing rule."""
    results = [(d, *_decide_one(d, request.recipient, request.purpose, policy))
               for d in request.datasets]
    rules = tuple((d, rule) for d, _, rule, _ in results)
    for _, allowed, rule, message in results:
        if not allowed:
            return SharingDecision(False, rule, message, rules)
    distinct = list(dict.fromkeys(rule for _, _, rule, _ in results))
    message = " ".join(dict.fromkeys(m for _, _, _, m in results))
    return SharingDecision(True, ",".join(distinct), message, rules)
