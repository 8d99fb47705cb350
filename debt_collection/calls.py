"""Calls as the compliance gates see them: the calls actually made, and the facts about the person called.

The rule itself is ``notifications.gates.may_call`` (pure); this module gathers its inputs in bulk for the
three places that ask it: scheduling a call task, the collector's queue and recording an attempt.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Count

from loans.models import Customer
from notifications.compliance import CallMade, RulesBook, contacts_in_last_7_days
from notifications.gates import Callee, Decision, may_call

from .models import CallAttempt, CallAttemptLoan, CallTask

# How far back the calls that can still block a call are read (a pause after a conversation longer than this
# is not a setting anyone needs: the form caps it).
LOOKBACK = dt.timedelta(days=31)


def calls_made(customer_ids: Iterable[int], now: dt.datetime) -> dict[int, list[CallMade]]:
    """The calls made to these customers in the ``LOOKBACK`` before ``now``, each with every loan it was about
    (one query)."""
    rows = (
        CallAttemptLoan.objects.filter(
            attempt__customer_id__any_of=list(customer_ids),
            attempt__made_at__gt=now - LOOKBACK,
            attempt__made_at__lte=now,
        )
        .order_by()
        .values_list(
            "attempt_id", "attempt__customer_id", "attempt__made_at", "attempt__is_conversation", "loan_id"
        )
    )
    attempts: dict[int, tuple[int, dt.datetime, bool, set[int]]] = {}
    for attempt_id, customer_id, made_at, is_conversation, loan_id in rows:
        attempts.setdefault(attempt_id, (customer_id, made_at, is_conversation, set()))[3].add(loan_id)
    made: dict[int, list[CallMade]] = defaultdict(list)
    for customer_id, made_at, is_conversation, loan_ids in attempts.values():
        made[customer_id].append(CallMade(made_at, frozenset(loan_ids), is_conversation))
    return made


def attempts_per_customer(customer_ids: list[int], since: dt.datetime, until: dt.datetime) -> dict[int, int]:
    """Call attempts made per customer in ``(since, until]``: the weekly contact cap counts them (registered with
    ``notifications.compliance.register_contact_counter``)."""
    rows = (
        CallAttempt.objects.filter(customer_id__any_of=customer_ids, made_at__gt=since, made_at__lte=until)
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
    )
    return {row["customer_id"]: row["n"] for row in rows}


def callee_of(customer: Customer, *, contacts_in_7_days: int) -> Callee:
    """The gates' view of ``customer`` (with its tier loaded)."""
    tier = customer.tier
    return Callee(
        location=customer.location,
        calendar_zone=customer.timezone,
        do_not_contact=customer.do_not_contact,
        do_not_contact_reason=customer.do_not_contact_reason,
        opted_out_of_calls=customer.opt_out_call,
        has_phone=bool(customer.phone),
        contacts_in_7_days=contacts_in_7_days,
        max_contacts_per_week=tier.max_contacts_per_week if tier else None,
    )


def decide_call(
    customer: Customer,
    loan_ids: Iterable[int],
    now: dt.datetime,
    *,
    made: list[CallMade],
    contacts_in_7_days: int,
    book: RulesBook,
) -> Decision:
    """``may_call`` for a call about each of ``loan_ids`` (the task's loan and those the call covers): the first
    loan it may not be about refuses the call."""
    callee = callee_of(customer, contacts_in_7_days=contacts_in_7_days)
    rules = book.for_location(callee.location)
    decision = None
    for loan_id in loan_ids:
        decision = may_call(now, loan_id, made, callee, rules)
        if not decision.allowed:
            return decision
    return decision


def queue_gates(tasks: Iterable[CallTask], now: dt.datetime) -> dict[int, Decision]:
    """For the collector's queue: whether each open task's customer may be called about its loan now, and why
    not (a fixed number of queries for a page of tasks, whose case, loan, customer and tier are loaded)."""
    tasks = [t for t in tasks if t.is_open]
    if not tasks:
        return {}
    customer_ids = {t.case.loan.customer_id for t in tasks}
    made = calls_made(customer_ids, now)
    counts = contacts_in_last_7_days(customer_ids, now)
    book = RulesBook.load()
    return {
        t.pk: decide_call(
            t.case.loan.customer,
            [t.case.loan_id],
            now,
            made=made.get(t.case.loan.customer_id, []),
            contacts_in_7_days=counts.get(t.case.loan.customer_id, 0),
            book=book,
        )
        for t in tasks
    }


def voicemail_for(customer: Customer, user, *, book: RulesBook | None = None) -> str:
    """The limited-content message (12 CFR 1006.2(j)) a collector leaves on this customer's voicemail: the
    configured text of the customer's rules, with the collector's name."""
    book = book or RulesBook.load()
    agent = (user.get_full_name() or user.get_username()) if hasattr(user, "get_username") else str(user)
    return book.for_location(customer.location).voicemail_text.replace("{agent_name}", agent)
