"""The send-time gate chain as a table: each gate's status and reason code, and the order (a contact that fails
several gates gets the first one's reason). Pure: plain values in, a decision out, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from loans.locations import locate
from notifications.compliance import CallMade, Rules, Window
from notifications.gates import GATES, Contact, Facts, Item, decide
from notifications.models import NotificationLog

from .factories_reminders import SHANGHAI, local

Status = NotificationLog.Status
Reason = NotificationLog.Reason

NOW = local(SHANGHAI, 2026, 12, 3, 10)  # Thursday, 10:00 in Shanghai
TODAY = dt.date(2026, 12, 3)
RULES = Rules(Window(dt.time(8), dt.time(21)), 7, 7, 3)
NEVER_OPEN = Rules(Window(dt.time(21), dt.time(8)))
LOAN, OTHER_LOAN = 10, 11
FIRST, SECOND = Item(1, LOAN), Item(2, OTHER_LOAN)

CONTACT = Contact(
    customer_id=7,
    channel="sms",
    kind="pre_due",
    scheduled_for=NOW - dt.timedelta(hours=1),
    due_date=TODAY + dt.timedelta(days=3),
    items=(FIRST, SECOND),
)
FACTS = Facts(
    now=NOW,
    location=locate(stored_zone=SHANGHAI, phone="+8613800138000", default_zone=SHANGHAI),
    rules=RULES,
    local_date=TODAY,
    calendar_zone=SHANGHAI,
    destinations={"sms": "+8613800138000", "email": "wang@example.com", "call": "+8613800138000"},
    channel_order=("sms", "email"),
    channel_order_label="sms,email",
    channels_used=frozenset({"sms"}),
    expire_after_hours=48,
    grace_end=TODAY + dt.timedelta(days=6),
    max_contacts_per_week=3,
    templates={("pre_due", "sms", "en"): "sms template", ("pre_due", "email", "zh-hans"): "email template"},
    language="en",
    default_language="zh-hans",
)
CALL = Contact(customer_id=7, channel="call", loan_ids=(LOAN,))
CALLS_TODAY = tuple(CallMade(NOW - dt.timedelta(hours=h), frozenset({OTHER_LOAN})) for h in (1, 2, 3))

# Each row changes the contact and the facts that pass every gate so that what it names stands in the way.
PAID = {"items": (dataclasses.replace(FIRST, is_paid=True), dataclasses.replace(SECOND, is_paid=True))}
DNC = {"do_not_contact": True, "do_not_contact_reason": "dispute"}
HELD = {"legal_hold_loan_ids": frozenset({LOAN, OTHER_LOAN})}
OPTED_OUT = {"opted_out_of": frozenset({"sms", "email"})}
NO_PHONE = {"destinations": {"email": "wang@example.com"}}
LATE = {"scheduled_for": NOW - dt.timedelta(hours=49)}
AFTER_DUE = {"local_date": TODAY + dt.timedelta(days=4)}
AT_NIGHT = {"now": local(SHANGHAI, 2026, 12, 3, 22)}
CAPPED = {"contacts_in_7_days": 2, "contacts_in_flight": 1}
NO_TEMPLATE = {"language": "zh-hans", "templates": {}}

ROWS = [
    # (why, contact changes, facts changes, status, reason)
    ("nothing stands in the way", {}, {}, "", ""),
    ("every instalment paid", PAID, {}, Status.CANCELLED, Reason.PAID),
    ("do not contact", {}, DNC, Status.SUPPRESSED, Reason.DO_NOT_CONTACT),
    ("every loan under legal hold", {}, HELD, Status.SUPPRESSED, Reason.DO_NOT_CONTACT),
    ("opted out of every channel of the order", {}, OPTED_OUT, Status.SUPPRESSED, Reason.OPTED_OUT),
    (
        "opted out, the next channel already used",
        {},
        {"opted_out_of": frozenset({"sms"}), "channels_used": frozenset({"sms", "email"})},
        Status.SUPPRESSED,
        Reason.OPTED_OUT,
    ),
    ("no phone number", {}, NO_PHONE, Status.SUPPRESSED, Reason.NO_DESTINATION),
    ("49 hours late", LATE, {}, Status.CANCELLED, Reason.EXPIRED),
    ("a pre-due message after the due date", {}, AFTER_DUE, Status.CANCELLED, Reason.EXPIRED),
    (
        "a grace reminder after the grace period",
        {"kind": "grace", "due_date": TODAY - dt.timedelta(days=7)},
        {"grace_end": TODAY - dt.timedelta(days=4)},
        Status.CANCELLED,
        Reason.EXPIRED,
    ),
    ("22:00 local", {}, AT_NIGHT, Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW),
    ("windows that never open", {}, {"rules": NEVER_OPEN}, Status.SUPPRESSED, Reason.OUTSIDE_CONTACT_WINDOW),
    ("two sent, one sending elsewhere first", {}, CAPPED, Status.SUPPRESSED, Reason.FREQUENCY_CAP),
    ("no template in either language", {}, NO_TEMPLATE, Status.SUPPRESSED, Reason.NO_TEMPLATE),
    # The order: the first gate that says no gives its reason.
    ("paid and do not contact", PAID, DNC, Status.CANCELLED, Reason.PAID),
    ("do not contact and opted out", {}, {**DNC, **OPTED_OUT}, Status.SUPPRESSED, Reason.DO_NOT_CONTACT),
    ("held and opted out", {}, {**HELD, **OPTED_OUT}, Status.SUPPRESSED, Reason.DO_NOT_CONTACT),
    ("opted out and no phone", {}, {**OPTED_OUT, **NO_PHONE}, Status.SUPPRESSED, Reason.OPTED_OUT),
    ("no phone and late", LATE, NO_PHONE, Status.SUPPRESSED, Reason.NO_DESTINATION),
    ("late and at night", LATE, AT_NIGHT, Status.CANCELLED, Reason.EXPIRED),
    ("after the due date and at night", {}, {**AFTER_DUE, **AT_NIGHT}, Status.CANCELLED, Reason.EXPIRED),
    ("at night and capped", {}, {**AT_NIGHT, **CAPPED}, Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW),
    ("capped and no template", {}, {**CAPPED, **NO_TEMPLATE}, Status.SUPPRESSED, Reason.FREQUENCY_CAP),
]


@pytest.mark.parametrize("why, contact, facts, status, reason", ROWS, ids=[row[0] for row in ROWS])
def test_it_gives_the_first_gates_status_and_reason(why, contact, facts, status, reason):
    decision = decide(dataclasses.replace(CONTACT, **contact), dataclasses.replace(FACTS, **facts))

    assert (decision.status, decision.reason) == (status, reason), why
    assert decision.allowed is (not status)


CALL_ROWS = [
    ("a call inside the window", {}, "", ""),
    (
        "a call customer who opted out of calls",
        {"opted_out_of": frozenset({"call"})},
        Status.SUPPRESSED,
        "opted_out",
    ),
    ("a call without a phone", NO_PHONE, Status.SUPPRESSED, Reason.NO_DESTINATION),
    ("a call at night", AT_NIGHT, Status.DEFERRED, Reason.OUTSIDE_CONTACT_WINDOW),
    ("a fourth call attempt today", {"calls_made": CALLS_TODAY}, Status.DEFERRED, Reason.CALL_LIMIT),
    (
        "a call at night after three",
        {**AT_NIGHT, "calls_made": CALLS_TODAY},
        Status.DEFERRED,
        "outside_contact_window",
    ),
    (
        "a call to a capped customer after three",
        {**CAPPED, "calls_made": CALLS_TODAY},
        Status.SUPPRESSED,
        "frequency_cap",
    ),
]


@pytest.mark.parametrize("why, facts, status, reason", CALL_ROWS, ids=[row[0] for row in CALL_ROWS])
def test_a_call_goes_through_the_same_chain(why, facts, status, reason):
    decision = decide(CALL, dataclasses.replace(FACTS, **facts))

    assert (decision.status, decision.reason) == (status, reason), why


def test_the_gates_run_in_this_order():
    assert [gate.__name__ for gate in GATES] == [
        "paid",
        "do_not_contact",
        "legal_hold",
        "opted_out",
        "no_destination",
        "expired",
        "stale",
        "contact_window",
        "weekly_cap",
        "call_limit",
        "no_template",
    ]


def test_a_message_that_passes_names_its_unpaid_loans_not_under_hold():
    contact = dataclasses.replace(
        CONTACT, items=(FIRST, dataclasses.replace(SECOND, is_paid=True), Item(3, 12))
    )

    decision = decide(contact, dataclasses.replace(FACTS, legal_hold_loan_ids=frozenset({12})))

    assert decision.allowed
    assert decision.items == (FIRST,)
    assert decision.inputs == {"paid_installment_ids": [2], "legal_hold_loan_ids": [12]}
    assert (decision.channel, decision.destination, decision.template) == (
        "sms",
        "+8613800138000",
        "sms template",
    )


def test_an_opted_out_channel_falls_back_to_the_next_of_the_order():
    decision = decide(CONTACT, dataclasses.replace(FACTS, opted_out_of=frozenset({"sms"})))

    assert decision.allowed
    assert (decision.channel, decision.destination) == ("email", "wang@example.com")
    assert decision.template == "email template"  # the default language's: none in English for email
    assert decision.inputs == {"opted_out_of": "sms", "channel": "email"}


def test_a_held_back_contact_carries_what_the_gates_before_noted():
    decision = decide(CONTACT, dataclasses.replace(FACTS, opted_out_of=frozenset({"sms"}), **AT_NIGHT))

    assert (decision.status, decision.channel) == (Status.DEFERRED, "email")
    assert decision.inputs["opted_out_of"] == "sms"
    assert decision.not_before == local(SHANGHAI, 2026, 12, 4, 8)


def test_the_cap_counts_the_contacts_sent_and_those_sending_elsewhere_first():
    decision = decide(CONTACT, dataclasses.replace(FACTS, **CAPPED))

    assert decision.inputs == {"sent_in_last_7_days": 2, "sending_elsewhere": 1, "max_contacts_per_week": 3}
    assert decide(CONTACT, dataclasses.replace(FACTS, contacts_in_7_days=2)).allowed
