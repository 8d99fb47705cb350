"""Calls: the gates' view of a call (the calls actually made, the person called), and call tasks created and
cancelled.

The rule whether a call may be made is ``notifications.gates.may_call``: the send-time gate chain for a
contact on the call channel, the call limits included (pure); this module gathers its inputs in bulk for the
places that ask it: scheduling a call task (the daily ladder, a broken promise, a retry after no answer), the
collector's queue and recording an attempt (``call_outcomes``). A call task is created by ``schedule_calls``
and cancelled by ``cancel_call_tasks`` only, each writing its audit event.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet

from core.audit import Event, about, actor_name, append_events
from loans.models import Customer
from notifications.compliance import CallMade, RulesBook, allowed_at, contacts_in_last_7_days
from notifications.gates import Callee, Decision, earliest_call, may_call
from notifications.models import NotificationLog

from .assignment import collectors
from .models import CallAttempt, CallAttemptLoan, CallTask, CollectionCase

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


# What the gate chain answers when no waiting lets the call through: an open task about the loan leaves the queue.
BARRING_REASONS = (NotificationLog.Reason.DO_NOT_CONTACT, NotificationLog.Reason.OPTED_OUT)


def barred_calls(customer_of_loan: dict[int, int], now: dt.datetime, book: RulesBook) -> dict[int, str]:
    """The loans (of ``{loan_id: customer_id}``) whose customer no call may reach now or later, by the gate chain
    (``may_call``: do-not-contact, opted out of calls), with the reason code (one query). Only a customer on
    do-not-contact or opted out of calls can be barred: callers with those flags at hand ask for those only."""
    if not customer_of_loan:
        return {}
    customers = Customer.objects.select_related("tier").in_bulk(set(customer_of_loan.values()))
    barred = {}
    for loan_id, customer_id in customer_of_loan.items():
        customer = customers[customer_id]
        callee = callee_of(customer, contacts_in_7_days=0)
        decision = may_call(now, loan_id, (), callee, book.for_location(callee.location))
        if decision.reason in BARRING_REASONS:
            barred[loan_id] = decision.reason
    return barred


@dataclass(frozen=True)
class QueueGate:
    """Whether a task's customer may be called now (``decision``, from ``may_call``), and, when the contact
    window refuses it, in which of the customer's zones the window is shut (``allowed_at`` zone by zone)."""

    decision: Decision
    closed_zones: tuple[str, ...] = ()


def queue_gates(tasks: Iterable[CallTask], now: dt.datetime) -> dict[int, QueueGate]:
    """For the collector's queue and the outcome form: whether each open task's customer may be called about
    its loan now, and why not (a fixed number of queries for a page of tasks, whose case, loan, customer and
    tier are loaded)."""
    tasks = [t for t in tasks if t.is_open]
    if not tasks:
        return {}
    customer_ids = {t.case.loan.customer_id for t in tasks}
    made = calls_made(customer_ids, now)
    counts = contacts_in_last_7_days(customer_ids, now)
    book = RulesBook.load()
    gates = {}
    for t in tasks:
        customer = t.case.loan.customer
        decision = decide_call(
            customer,
            [t.case.loan_id],
            now,
            made=made.get(customer.pk, []),
            contacts_in_7_days=counts.get(customer.pk, 0),
            book=book,
        )
        closed: tuple[str, ...] = ()
        if decision.reason == NotificationLog.Reason.OUTSIDE_CONTACT_WINDOW:
            window = book.for_location(customer.location).window
            closed = tuple(z for z in customer.location.zones if not allowed_at(now, [z], window))
        gates[t.pk] = QueueGate(decision, closed)
    return gates


def voicemail_for(customer: Customer, user, *, book: RulesBook | None = None) -> str:
    """The limited-content message (12 CFR 1006.2(j)) a collector leaves on this customer's voicemail: the
    configured text of the customer's rules, with the collector's name."""
    book = book or RulesBook.load()
    agent = (user.get_full_name() or user.get_username()) if hasattr(user, "get_username") else str(user)
    return book.for_location(customer.location).voicemail_text.replace("{agent_name}", agent)


# --- call tasks: created and cancelled ------------------------------------------------------------------------


def call_priority(*, broken_promises: int, amount_overdue: Decimal, oldest_due_date: dt.date) -> int:
    """Queue order as one number: broken promises first, then the amount overdue, then the most days past due
    (the oldest due date first: the order days past due give at any moment, so it needs no daily rewrite)."""
    return (
        min(broken_promises, 9) * 10**16
        + min(int(amount_overdue), 10**9 - 1) * 10**6
        + (10**6 - 1 - min(oldest_due_date.toordinal(), 10**6 - 1))
    )


def case_priority(case: CollectionCase) -> int:
    return call_priority(
        broken_promises=case.broken_promises,
        amount_overdue=case.amount_overdue,
        oldest_due_date=case.oldest_due_date,
    )


def collector_loads() -> dict[int, int]:
    """Active members of the Collector group (``assignment.collectors``) and their number of open call tasks."""
    ids = set(collectors().values_list("pk", flat=True))
    loads = dict.fromkeys(ids, 0)
    for user_id, n in (
        CallTask.objects.filter(status=CallTask.Status.OPEN, assigned_to_id__in=ids)
        .values_list("assigned_to_id")
        .annotate(n=Count("id"))
        .values_list("assigned_to_id", "n")
    ):
        loads[user_id] = n
    return loads


def pick_least_loaded(loads: dict[Any, int]) -> Any | None:
    """The key with the fewest open items (lowest id on a tie); its load grows by one."""
    if not loads:
        return None
    key = min(loads, key=lambda k: (loads[k], k))
    loads[key] += 1
    return key


def schedule_time(
    desired: dt.datetime, loan_id: int, callee: Callee, made: list[CallMade], book: RulesBook
) -> dt.datetime | None:
    """When a call task about ``loan_id`` is due: the first moment from ``desired`` the call limits and the
    contact window allow (``notifications.compliance.earliest_call`` over the calls made); None when waiting
    cannot help (do-not-contact, opted out of calls, no phone)."""
    return earliest_call(desired, loan_id, made, callee, book.for_location(callee.location))


@dataclass
class CallRequest:
    """A call a case needs: from ``desired`` on, assigned by ``assignee()`` (asked only when the call can be
    scheduled, so a collector's load grows only for a task made); ``context`` joins the audit event."""

    case: CollectionCase
    customer_id: int
    desired: dt.datetime
    assignee: Callable[[], int | None]
    context: dict = field(default_factory=dict)


def schedule_calls(
    requests: list[CallRequest], *, at: dt.datetime, actor: Any, book: RulesBook | None = None
) -> list[CallTask]:
    """Create a call task per request that the gates allow at some moment from its ``desired`` time (the first
    such moment, ``schedule_time``); a request for a customer who cannot be called (do-not-contact, opted out,
    no phone) makes no task. A fixed number of queries for any number of requests. Writes
    ``collections.call.scheduled`` per task. Returns the tasks created."""
    if not requests:
        return []
    actor = actor_name(actor)
    book = book or RulesBook.load()
    customer_ids = {r.customer_id for r in requests}
    customers = Customer.objects.select_related("tier").in_bulk(list(customer_ids))
    made = calls_made(customer_ids, at)
    scheduled: list[tuple[CallTask, dict]] = []
    for r in requests:
        callee = callee_of(customers[r.customer_id], contacts_in_7_days=0)
        when = schedule_time(r.desired, r.case.loan_id, callee, made.get(r.customer_id, []), book)
        if when is not None:
            task = CallTask(
                case=r.case,
                assigned_to_id=r.assignee(),
                scheduled_for=when,
                created_at=at,
                priority=case_priority(r.case),
                policy_version_id=r.case.policy_version_id,
            )
            scheduled.append((task, r.context))
    tasks = CallTask.objects.bulk_create([t for t, _ in scheduled])
    append_events(
        Event(
            action="collections.call.scheduled",
            actor=actor,
            **about(CallTask, t.pk or ""),
            at=at,
            after={
                "case_id": t.case_id,
                "assigned_to_id": t.assigned_to_id,
                "scheduled_for": t.scheduled_for,
                "priority": t.priority,
                "policy_version_id": t.policy_version_id,
                **context,
            },
        )
        for t, context in scheduled
    )
    return tasks


def cancel_call_tasks(
    tasks: QuerySet[CallTask],
    reason: CallTask.CancelReason,
    *,
    at: dt.datetime,
    actor: Any,
    details: Callable[[int], dict] | None = None,
) -> Counter:
    """Cancel the open tasks among ``tasks`` with ``reason``: they leave the collectors' queue. Writes
    ``collections.call.cancelled`` per task (with ``details(case_id)``). Returns the number cancelled per case
    id."""
    actor = actor_name(actor)
    rows = list(tasks.filter(status=CallTask.Status.OPEN).order_by("pk").values_list("pk", "case_id"))
    if not rows:
        return Counter()
    CallTask.objects.filter(pk__in=[pk for pk, _ in rows], status=CallTask.Status.OPEN).update(
        status=CallTask.Status.CANCELLED, cancel_reason=reason
    )
    append_events(
        Event(
            action="collections.call.cancelled",
            actor=actor,
            **about(CallTask, pk),
            at=at,
            after={"case_id": case_id, "reason": reason, **(details(case_id) if details else {})},
        )
        for pk, case_id in rows
    )
    return Counter(case_id for _, case_id in rows)
