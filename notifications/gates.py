"""The send-time gates: ONE ordered chain that decides whether a contact may be made now, and if not, why.

Every gate is a small pure function over plain values (no query, no clock): ``gate(contact, facts)`` returns
``None`` to let the contact through, a ``Pass`` that lets it through changed (a paid or held loan dropped from
the message, an opted-out channel replaced by the next channel of the tier), or a ``Decision`` that holds it
back with its status and reason code (``NotificationLog.Status`` / ``NotificationLog.Reason``, SPEC.md).
``decide(contact, facts)`` runs ``GATES`` in order; the first "no" wins.

The chain, in order (status / reason):

1. ``paid``: every instalment the contact lists is paid -> cancelled / paid (some paid: the message names the
   unpaid ones);
2. ``do_not_contact``: the customer must not be contacted -> suppressed / do_not_contact;
3. ``legal_hold``: a loan under legal hold is dropped from the message; all of them -> suppressed /
   do_not_contact;
4. ``opted_out``: the customer opted out of the channel -> a message goes on the next channel of the tier's
   ``channel_order`` the contact has no row on yet, not opted out, with a destination (``next_channel``);
   none, or a call -> suppressed / opted_out;
5. ``no_destination``: no phone, email or device for the channel -> suppressed / no_destination;
6. ``expired``: later than the policy's ``expire_after_hours`` after its time -> cancelled / expired;
7. ``stale``: a "due soon" or "due today" message after the due date, a grace reminder after the grace period
   -> cancelled / expired (it would say something false);
8. ``contact_window``: outside the local contact window (or on a public holiday) in any zone the customer may
   be in -> deferred / outside_contact_window to the next opening (``compliance.next_opening``); suppressed
   when the windows never overlap;
9. ``weekly_cap``: the tier's ``max_contacts_per_week`` reached by the contacts of the rolling 7 days
   (messages and call attempts, all loans) and those another worker is sending first -> suppressed /
   frequency_cap;
10. ``call_limit``: a call only: the call limits over the calls actually made (``compliance.call_limit_gate``)
    -> deferred / call_limit until the limit frees a call;
11. ``no_template``: a message only: no template in the customer's or the default language -> suppressed /
    no_template.

A gate whose facts are absent lets the contact through (a call lists no instalments and has no template; a
contact without a time cannot expire), so one chain serves every kind of contact:

- the dispatcher (``notifications.dispatch``) gathers the facts of a batch in bulk, calls ``decide`` per
  contact, and applies the decisions in bulk;
- a call (scheduling a call task, showing the collector's queue, recording an attempt) asks ``may_call`` /
  ``earliest_call`` below, which build a ``Contact`` on the ``call`` channel with ``loan_ids`` and ``Facts``
  with ``calls_made`` from a ``Callee``; or builds them itself and calls ``decide``;
- the policy preview builds ``Contact`` and ``Facts`` from its simulated day and calls ``decide``.

Usage::

    decision = decide(
        Contact(customer_id=7, channel="sms", kind="pre_due", scheduled_for=t, due_date=d,
                items=(Item(installment_id=1, loan_id=3),)),
        Facts(now=now, location=customer.location, rules=book.for_location(customer.location),
              destinations={"sms": "+86..."}, templates=template_index(), language="en", ...),
    )
    if decision.allowed:  # send decision.channel to decision.destination with decision.template,
        ...               # naming decision.items
    else:                 # decision.status, decision.reason, decision.inputs, decision.not_before
        ...
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import compliance
from .choices import MESSAGING_CHANNELS, Channel, Kind
from .compliance import CallMade, Rules
from .models import NotificationLog

Status = NotificationLog.Status
Reason = NotificationLog.Reason


# --- the shapes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One instalment a contact is about."""

    installment_id: int
    loan_id: int
    is_paid: bool = False


@dataclass(frozen=True)
class Contact:
    """What is about to happen: a message (its channel, kind, planned time, due date and the instalments it
    lists) or a call (channel ``call`` and the loans it is about)."""

    customer_id: int | None
    channel: str
    kind: str = ""
    scheduled_for: dt.datetime | None = None
    due_date: dt.date | None = None
    items: tuple[Item, ...] = ()
    loan_ids: tuple[int, ...] = ()

    @property
    def is_message(self) -> bool:
        return self.channel in MESSAGING_CHANNELS


@dataclass(frozen=True)
class Facts:
    """What is known about the customer and the rules at the moment of the contact, as plain values. The
    defaults are "nothing stands in the way" (an absent fact lets its gate pass)."""

    now: dt.datetime
    location: Any  # loans.locations.Location: every zone and country the customer may be in
    rules: Rules  # the contact rules for the location (compliance.RulesBook.for_location)
    # The customer's date on their calendar zone's clock at ``now`` (the day a "due today" message speaks of).
    local_date: dt.date | None = None
    calendar_zone: str = ""
    do_not_contact: bool = False
    do_not_contact_reason: str = ""
    legal_hold_loan_ids: frozenset[int] = frozenset()
    opted_out_of: frozenset[str] = frozenset()
    destinations: Mapping[str, str] = field(default_factory=dict)  # channel -> address ("" or absent: none)
    channel_order: tuple[str, ...] = ()  # the tier's channels, in order (empty without a tier)
    channel_order_label: str = ""  # the tier's channel_order as stored (for the audit trail)
    channels_used: frozenset[str] = frozenset()  # channels this contact already has a row on
    expire_after_hours: int | None = None
    grace_end: dt.date | None = None  # the last day of the grace period of the contact's due date
    contacts_in_7_days: int = 0  # messages sent and call attempts made in the rolling 7 days (this batch too)
    contacts_in_flight: int = 0  # contacts another worker is sending that come before this one
    max_contacts_per_week: int | None = None  # the tier's weekly cap (None: no cap)
    calls_made: tuple[CallMade, ...] = ()  # for a call: the calls made, for the call limits
    templates: Mapping[tuple[str, str, str], Any] | None = None  # (kind, channel, language) -> template
    language: str = ""
    default_language: str = ""


@dataclass(frozen=True)
class Decision:
    """What the chain says. Held back: ``status`` and ``reason`` (TextChoices codes), the ``inputs`` that decided
    it and the first moment the answer may change (``not_before``; None: not by waiting). Let through:
    ``status`` and ``reason`` empty, and the contact as it goes: its ``channel``, ``destination``, ``template``
    and the ``items`` it names; ``inputs`` then holds what the passing gates noted (instalments dropped, the
    channel opted out of)."""

    status: str = ""
    reason: str = ""
    inputs: dict = field(default_factory=dict)
    not_before: dt.datetime | None = None
    channel: str = ""
    destination: str = ""
    template: Any = None
    items: tuple[Item, ...] = ()
    gate: str = ""  # the gate that held the contact back

    @property
    def allowed(self) -> bool:
        return not self.status


@dataclass(frozen=True)
class Pass:
    """A gate lets the contact through changed (``changes`` to the ``Contact``) and notes why (``notes``)."""

    changes: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


Gate = Callable[[Contact, Facts], "Decision | Pass | None"]


# --- the gates -----------------------------------------------------------------------------------------------
def paid(contact: Contact, facts: Facts):
    if not contact.items:
        return None
    unpaid = tuple(i for i in contact.items if not i.is_paid)
    if not unpaid:
        return Decision(
            Status.CANCELLED, Reason.PAID, {"installment_ids": [i.installment_id for i in contact.items]}
        )
    if len(unpaid) < len(contact.items):
        return Pass(
            {"items": unpaid},
            {"paid_installment_ids": [i.installment_id for i in contact.items if i.is_paid]},
        )
    return None


def do_not_contact(contact: Contact, facts: Facts):
    if facts.do_not_contact:
        return Decision(
            Status.SUPPRESSED, Reason.DO_NOT_CONTACT, {"do_not_contact_reason": facts.do_not_contact_reason}
        )
    return None


def legal_hold(contact: Contact, facts: Facts):
    """A legal hold freezes all automatic contact about that loan; other loans may still be reminded."""
    held = [i for i in contact.items if i.loan_id in facts.legal_hold_loan_ids]
    if not held:
        return None
    notes = {"legal_hold_loan_ids": sorted({i.loan_id for i in held})}
    rest = tuple(i for i in contact.items if i.loan_id not in facts.legal_hold_loan_ids)
    if not rest:
        return Decision(Status.SUPPRESSED, Reason.DO_NOT_CONTACT, notes)
    return Pass({"items": rest}, notes)


def next_channel(
    channel_order: Iterable[str],
    used: Iterable[str],
    opted_out_of: Iterable[str],
    destinations: Mapping[str, str],
) -> str | None:
    """The channel a message goes on instead: the first messaging channel of the tier's order that the contact
    has no row on yet, that the customer did not opt out of and that has a destination (None: no such channel).
    The dispatcher uses it for an opted-out channel, ``notices.plan_fallbacks`` after a failure."""
    used, opted_out_of = set(used), set(opted_out_of)
    for channel in channel_order:
        if (
            channel in MESSAGING_CHANNELS
            and channel not in used
            and channel not in opted_out_of
            and destinations.get(channel)
        ):
            return channel
    return None


def opted_out(contact: Contact, facts: Facts):
    if contact.channel not in facts.opted_out_of:
        return None
    if not contact.is_message:
        return Decision(Status.SUPPRESSED, Reason.OPTED_OUT, {"channel": contact.channel})
    fallback = next_channel(facts.channel_order, facts.channels_used, facts.opted_out_of, facts.destinations)
    if fallback is None:
        return Decision(
            Status.SUPPRESSED,
            Reason.OPTED_OUT,
            {"channel": contact.channel, "channel_order": facts.channel_order_label},
        )
    return Pass({"channel": fallback}, {"opted_out_of": contact.channel, "channel": fallback})


def no_destination(contact: Contact, facts: Facts):
    if not facts.destinations.get(contact.channel):
        return Decision(Status.SUPPRESSED, Reason.NO_DESTINATION, {"channel": contact.channel})
    return None


def expired(contact: Contact, facts: Facts):
    """Nothing was wrong with the customer: the system was late."""
    if contact.scheduled_for is None or facts.expire_after_hours is None:
        return None
    if facts.now - contact.scheduled_for > dt.timedelta(hours=facts.expire_after_hours):
        return Decision(
            Status.CANCELLED,
            Reason.EXPIRED,
            {"scheduled_for": contact.scheduled_for, "expire_after_hours": facts.expire_after_hours},
        )
    return None


def last_day_for_kind(kind: str, due_date: dt.date | None, grace_end: dt.date | None) -> dt.date | None:
    """The customer's last local day on which a reminder of this kind still tells the truth (None: any day)."""
    if due_date is None:
        return None
    if kind in (Kind.PRE_DUE, Kind.DUE_TODAY):
        return due_date
    if kind == Kind.GRACE:
        return grace_end
    return None


def stale(contact: Contact, facts: Facts):
    """A "due in 3 days" or "due today" message after the due date, or a grace reminder after the grace period,
    would say something false (a deferral or a late run carried it past its day)."""
    last_day = last_day_for_kind(contact.kind, contact.due_date, facts.grace_end)
    if last_day is None or facts.local_date is None or facts.local_date <= last_day:
        return None
    return Decision(
        Status.CANCELLED,
        Reason.EXPIRED,
        {"due_date": contact.due_date, "local_date": facts.local_date, "last_day_for_kind": last_day},
    )


def contact_window(contact: Contact, facts: Facts):
    window = compliance.window_gate(facts.now, facts.location, facts.rules)
    if window.allowed:
        return None
    # No opening: the windows of the places the customer may be in never overlap, no time is convenient.
    status = Status.SUPPRESSED if window.not_before is None else Status.DEFERRED
    return Decision(status, window.reason, window.inputs, window.not_before)


def weekly_cap(contact: Contact, facts: Facts):
    counted = facts.contacts_in_7_days + facts.contacts_in_flight
    if not compliance.is_over_weekly_cap(counted, facts.max_contacts_per_week):
        return None
    inputs = {"max_contacts_per_week": facts.max_contacts_per_week}
    if contact.is_message:
        inputs.update(
            {"sent_in_last_7_days": facts.contacts_in_7_days, "sending_elsewhere": facts.contacts_in_flight}
        )
    else:
        inputs["contacts_in_last_7_days"] = counted
    return Decision(Status.SUPPRESSED, Reason.FREQUENCY_CAP, inputs)


def call_limit(contact: Contact, facts: Facts):
    """The first loan of the call it may not be about refuses the call."""
    if contact.channel != Channel.CALL:
        return None
    zones = facts.location.zones or (facts.calendar_zone,)
    for loan_id in contact.loan_ids:
        limit = compliance.call_limit_gate(facts.now, loan_id, facts.calls_made, zones, facts.rules)
        if not limit.allowed:
            return Decision(Status.DEFERRED, limit.reason, limit.inputs, limit.not_before)
    return None


def pick_template(
    templates: Mapping[tuple[str, str, str], Any],
    kind: str,
    channel: str,
    language: str,
    default_language: str,
):
    """The template in the customer's language, else in the policy's default language, else None."""
    return templates.get((kind, channel, language)) or templates.get((kind, channel, default_language))


def no_template(contact: Contact, facts: Facts):
    if facts.templates is None or not contact.is_message:
        return None
    template = pick_template(
        facts.templates, contact.kind, contact.channel, facts.language, facts.default_language
    )
    if template is None:
        return Decision(
            Status.SUPPRESSED,
            Reason.NO_TEMPLATE,
            {"language": facts.language, "default_language": facts.default_language},
        )
    return None


GATES: tuple[Gate, ...] = (
    paid,
    do_not_contact,
    legal_hold,
    opted_out,
    no_destination,
    expired,
    stale,
    contact_window,
    weekly_cap,
    call_limit,
    no_template,
)


def decide(contact: Contact, facts: Facts, gates: tuple[Gate, ...] = GATES) -> Decision:
    """Run ``gates`` over the contact in order; the first "no" wins. A "no" carries the notes of the gates it
    passed (instalments dropped, the channel replaced) with its own inputs."""
    notes: dict = {}
    for gate in gates:
        verdict = gate(contact, facts)
        if verdict is None:
            continue
        if isinstance(verdict, Pass):
            contact = dataclasses.replace(contact, **verdict.changes)
            notes.update(verdict.notes)
            continue
        return dataclasses.replace(
            verdict,
            inputs={**notes, **verdict.inputs},
            channel=contact.channel,
            items=contact.items,
            gate=gate.__name__,
        )
    template = None
    if facts.templates is not None and contact.is_message:
        template = pick_template(
            facts.templates, contact.kind, contact.channel, facts.language, facts.default_language
        )
    return Decision(
        inputs=notes,
        channel=contact.channel,
        destination=facts.destinations.get(contact.channel, ""),
        template=template,
        items=contact.items,
    )


# --- calls -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Callee:
    """What the gates need to know about the person called."""

    location: Any  # loans.locations.Location
    calendar_zone: str
    do_not_contact: bool = False
    do_not_contact_reason: str = ""
    opted_out_of_calls: bool = False
    has_phone: bool = True
    contacts_in_7_days: int = 0
    max_contacts_per_week: int | None = None


def call_facts(now: dt.datetime, calls_made: Iterable[CallMade], callee: Callee, rules: Rules) -> Facts:
    """The ``Facts`` of a call to ``callee`` at ``now``."""
    return Facts(
        now=now,
        location=callee.location,
        rules=rules,
        calendar_zone=callee.calendar_zone,
        do_not_contact=callee.do_not_contact,
        do_not_contact_reason=callee.do_not_contact_reason,
        opted_out_of=frozenset({Channel.CALL.value}) if callee.opted_out_of_calls else frozenset(),
        destinations={Channel.CALL.value: "phone"} if callee.has_phone else {},
        contacts_in_7_days=callee.contacts_in_7_days,
        max_contacts_per_week=callee.max_contacts_per_week,
        calls_made=tuple(calls_made),
    )


def may_call(
    now: dt.datetime, loan_id: int, calls_made: Iterable[CallMade], callee: Callee, rules: Rules
) -> Decision:
    """Whether the person may be called about ``loan_id`` at ``now``: the chain (``decide``) for a contact on
    the ``call`` channel: do-not-contact, opted out of calls, no phone, the contact window in every zone, the
    weekly contact cap, then the call limits (Regulation F 1006.14(b)(2)). Used when a call task is created,
    when the collector's queue is shown and when an attempt is recorded."""
    decision = decide(
        Contact(customer_id=None, channel=Channel.CALL.value, loan_ids=(loan_id,)),
        call_facts(now, calls_made, callee, rules),
    )
    if not decision.allowed:
        return decision
    return dataclasses.replace(
        decision, inputs={**callee.location.audit(), **rules.audit(), "loan_id": loan_id}
    )


def earliest_call(
    desired: dt.datetime,
    loan_id: int,
    calls_made: Iterable[CallMade],
    callee: Callee,
    rules: Rules,
    *,
    max_steps: int = 50,
) -> dt.datetime | None:
    """The first moment from ``desired`` at which ``may_call`` allows the call, following each refusal's
    ``not_before``; None when waiting cannot help (do-not-contact, opted out, no phone, windows that never
    overlap). The weekly cap is left to the moment of the call (who else contacts the customer meanwhile is not
    known when scheduling)."""
    calls_made = list(calls_made)
    at_schedule = dataclasses.replace(callee, contacts_in_7_days=0)
    t = desired
    for _ in range(max_steps):
        decision = may_call(t, loan_id, calls_made, at_schedule, rules)
        if decision.allowed:
            return t
        if decision.not_before is None or decision.not_before <= t:
            return None
        t = decision.not_before
    return None
