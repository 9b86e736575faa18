"""The sharing guard's decision table, cell by cell (dataset x purpose x recipient)."""

from __future__ import annotations

import pytest

from suppression.datasets import COLUMNS
from suppression.errors import InvalidRequest
from suppression.sharing import (
    DATASETS,
    FIXED_RULES,
    Dataset,
    Purpose,
    Recipient,
    RecipientType,
    SharingDecision,
    SharingPolicy,
    SharingRequest,
    decide_sharing,
)
from suppression.tenants import Tenant

# The documented defaults (suppression/sharing.py). Codes: first = first_party,
# proc = suppression_list_to_processor, no = not_allowed_by_default, and the fixed rules:
# SMS = sms_optin_no_third_party_marketing, EVID = consent_evidence_not_to_processors,
# SPAM = can_spam_no_transfer_of_opted_out_addresses (message records name opted-out
# addresses too: their refused sends).
DEFAULTS = """
dataset             purpose      first_party processor affiliate third_party
sms_consents        service      first       EVID      no        no
sms_consents        compliance   first       EVID      no        no
sms_consents        analytics    first       EVID      no        no
sms_consents        marketing    first       EVID      SMS       SMS
sms_consents        promotional  first       EVID      SMS       SMS
sms_suppressions    service      first       proc      no        no
sms_suppressions    compliance   first       proc      no        no
sms_suppressions    analytics    first       no        no        no
sms_suppressions    marketing    first       no        SMS       SMS
sms_suppressions    promotional  first       no        SMS       SMS
message_records     service      first       no        SPAM      SPAM
message_records     compliance   first       no        no        no
message_records     analytics    first       SPAM      SPAM      SPAM
message_records     marketing    first       SPAM      SMS       SMS
message_records     promotional  first       SPAM      SMS       SMS
email_suppressions  service      first       proc      SPAM      SPAM
email_suppressions  compliance   first       proc      no        no
email_suppressions  analytics    first       SPAM      SPAM      SPAM
email_suppressions  marketing    first       SPAM      SPAM      SPAM
email_suppressions  promotional  first       SPAM      SPAM      SPAM
"""
RULES = {
    "first": "first_party", "proc": "suppression_list_to_processor",
    "no": "not_allowed_by_default", "SMS": "sms_optin_no_third_party_marketing",
    "EVID": "consent_evidence_not_to_processors",
    "SPAM": "can_spam_no_transfer_of_opted_out_addresses",
}
ALLOWING = {"first_party", "suppression_list_to_processor", "tenant_policy_allow"}
FIXED = {r.name for r in FIXED_RULES}


def _table() -> dict[tuple[Dataset, Purpose, RecipientType], str]:
    lines = DEFAULTS.strip().splitlines()
    recipients = [RecipientType(r) for r in lines[0].split()[2:]]
    out = {}
    for line in lines[1:]:
        dataset, purpose, *codes = line.split()
        for recipient, code in zip(recipients, codes, strict=True):
            out[(Dataset(dataset), Purpose(purpose), recipient)] = RULES[code]
    return out


TABLE = _table()
CELLS = sorted(TABLE)


def recipient(kind: RecipientType, name: str = "Partner Co") -> Recipient:
    return Recipient(kind, None if kind is RecipientType.FIRST_PARTY else name)


def decide(dataset: Dataset, purpose: Purpose, kind: RecipientType,
           policy: SharingPolicy | None = None, name: str = "Partner Co") -> SharingDecision:
    return decide_sharing(SharingRequest((dataset,), recipient(kind, name), purpose),
                          policy or SharingPolicy())


def allow_everything() -> SharingPolicy:
    return SharingPolicy.model_validate({"allow": [
        {"datasets": [d.value for d in Dataset], "recipient": r.value,
         "purposes": [p.value for p in Purpose]} for r in RecipientType]})


def test_table_covers_every_combination() -> None:
    # The expectations name all 4 x 5 x 4 cells: a new dataset, purpose or recipient
    # type fails here until its row is written down.
    assert len(TABLE) == len(Dataset) * len(Purpose) * len(RecipientType) == 80


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "-".join(v.value for v in c))
def test_default_decision(cell: tuple[Dataset, Purpose, RecipientType]) -> None:
    # Each cell with the default policy decides as documented, with that rule named.
    dataset, purpose, kind = cell
    decision = decide(dataset, purpose, kind)
    assert decision.rule == TABLE[cell]
    assert decision.allowed is (TABLE[cell] in ALLOWING)
    assert decision.rules == ((dataset, TABLE[cell]),)
    assert dataset.value in decision.message and purpose.value in decision.message
    if not decision.allowed:
        assert "not allowed" in decision.message or "prohibited" in decision.message


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "-".join(v.value for v in c))
def test_tenant_allow_cannot_loosen_fixed_rules(cell: tuple[Dataset, Purpose, RecipientType]
                                                ) -> None:
    # A tenant that allows every combination still gets every fixed-rule cell refused;
    # all other cells become allowed.
    dataset, purpose, kind = cell
    decision = decide(dataset, purpose, kind, allow_everything())
    if TABLE[cell] in FIXED:
        assert not decision.allowed and decision.rule == TABLE[cell]
        assert "No tenant setting can allow it" in decision.message
    else:
        assert decision.allowed
        assert decision.rule in ALLOWING


def test_sms_optin_to_third_party_marketing_is_refused_by_name() -> None:
    # The headline rule: SMS consents to a third party for marketing, named in the refusal.
    decision = decide(Dataset.SMS_CONSENTS, Purpose.MARKETING, RecipientType.THIRD_PARTY,
                      allow_everything(), name="Data Broker")
    assert not decision.allowed
    assert decision.rule == "sms_optin_no_third_party_marketing"
    assert "third party 'Data Broker'" in decision.message and "CTIA" in decision.message


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: "-".join(v.value for v in c))
def test_tenant_deny_tightens_anything_but_fixed(cell: tuple[Dataset, Purpose, RecipientType]
                                                ) -> None:
    # A tenant denying every combination refuses every cell; fixed rules keep their name.
    dataset, purpose, kind = cell
    deny_all = SharingPolicy.model_validate({"deny": [
        {"datasets": [d.value for d in Dataset], "recipient": r.value,
         "purposes": [p.value for p in Purpose]} for r in RecipientType]})
    decision = decide(dataset, purpose, kind, deny_all)
    assert not decision.allowed
    assert decision.rule == (TABLE[cell] if TABLE[cell] in FIXED else "tenant_policy_deny")


def test_named_allow_matches_only_that_recipient() -> None:
    # An allow rule naming 'The Campaign Registry' lets consent proof go to it for
    # compliance, case-insensitively, and to no other third party.
    policy = SharingPolicy.model_validate({"allow": [
        {"datasets": ["sms_consents"], "recipient": "third_party",
         "names": ["The Campaign Registry"], "purposes": ["compliance"]}]})
    ok = decide(Dataset.SMS_CONSENTS, Purpose.COMPLIANCE, RecipientType.THIRD_PARTY, policy,
                name="the  campaign registry")
    assert ok.allowed and ok.rule == "tenant_policy_allow"
    other = decide(Dataset.SMS_CONSENTS, Purpose.COMPLIANCE, RecipientType.THIRD_PARTY,
                   policy, name="Data Broker")
    assert not other.allowed and other.rule == "not_allowed_by_default"
    assert not decide(Dataset.SMS_CONSENTS, Purpose.COMPLIANCE, RecipientType.AFFILIATE,
                      policy, name="The Campaign Registry").allowed


def test_several_datasets_refused_if_any_is() -> None:
    # Suppression lists are fine for a processor, consents are not: the whole request is
    # refused with the consent rule, and the audit sees every dataset's rule.
    req = SharingRequest((Dataset.SMS_SUPPRESSIONS, Dataset.SMS_CONSENTS,
                          Dataset.SMS_SUPPRESSIONS),
                         Recipient(RecipientType.PROCESSOR, "Acme ESP"), Purpose.SERVICE)
    assert req.datasets == (Dataset.SMS_SUPPRESSIONS, Dataset.SMS_CONSENTS)  # deduplicated
    decision = decide_sharing(req, SharingPolicy())
    assert not decision.allowed and decision.rule == "consent_evidence_not_to_processors"
    assert decision.rules == ((Dataset.SMS_SUPPRESSIONS, "suppression_list_to_processor"),
                              (Dataset.SMS_CONSENTS, "consent_evidence_not_to_processors"))
    both = decide_sharing(SharingRequest((Dataset.SMS_SUPPRESSIONS, Dataset.MESSAGE_RECORDS),
                                         Recipient(RecipientType.FIRST_PARTY),
                                         Purpose.ANALYTICS), SharingPolicy())
    assert both.allowed and both.rule == "first_party"


@pytest.mark.parametrize(("kind", "name", "problem"), [
    (RecipientType.PROCESSOR, None, "needs a 'name'"),
    (RecipientType.PROCESSOR, "   ", "printable"),
    (RecipientType.THIRD_PARTY, "x" * 201, "printable"),
    (RecipientType.AFFILIATE, "bad\x00name", "printable"),
])
def test_recipient_names_are_checked(kind: RecipientType, name: str | None,
                                     problem: str) -> None:
    # A processor must be named; a name is 1-200 printable characters: else an error naming
    # the field.
    with pytest.raises(InvalidRequest) as err:
        Recipient(kind, name)
    assert err.value.field == "recipient.name" and problem in err.value.message


def test_empty_dataset_list_is_an_error() -> None:
    # A request must name something to export.
    with pytest.raises(InvalidRequest) as err:
        SharingRequest((), Recipient(RecipientType.FIRST_PARTY), Purpose.COMPLIANCE)
    assert err.value.field == "datasets"


def test_every_dataset_is_classified_and_exportable() -> None:
    # A new dataset must be classified for the rules and given export columns.
    assert set(DATASETS) == set(Dataset) == set(COLUMNS)
    sms = {d for d, info in DATASETS.items() if info.sms_numbers}
    assert sms == {Dataset.SMS_CONSENTS, Dataset.SMS_SUPPRESSIONS, Dataset.MESSAGE_RECORDS}


def test_tenant_setting_parses_from_config_shape() -> None:
    # The TOML shape ([[tenants.x.sharing.allow]]) loads into the tenant; bad values are
    # refused naming the problem.
    tenant = Tenant.model_validate({"id": "acme", "sharing": {"allow": [
        {"datasets": ["email_suppressions"], "recipient": "third_party",
         "purposes": ["compliance"]}]}})
    assert decide(Dataset.EMAIL_SUPPRESSIONS, Purpose.COMPLIANCE, RecipientType.THIRD_PARTY,
                  tenant.sharing).allowed
    assert Tenant().sharing == SharingPolicy()
    for bad in ({"datasets": ["phone_book"], "recipient": "third_party",
                 "purposes": ["compliance"]},
                {"datasets": [], "recipient": "third_party", "purposes": ["compliance"]},
                {"datasets": ["sms_consents"], "recipient": "anyone",
                 "purposes": ["compliance"]},
                {"datasets": ["sms_consents"], "recipient": "third_party",
                 "purposes": ["compliance"], "names": [""]}):
        with pytest.raises(ValueError):
            Tenant.model_validate({"sharing": {"allow": [bad]}})

