"""Policy preview: what a tier's policy, or a proposed change of it, would do over some local days, by running the
real engine (``strategy.engine``) over a sample of the tier's customers inside a transaction that is rolled back.

How a run goes (``run_policy``): in one transaction, the proposed grace period, cap, channel order, reminder
rules and ladder are written over the tier's; then, for each local day asked, at the midnight of each time zone
of the sample, the engine plans the day's contacts, advances collections and dispatches, exactly as the scheduled
pipeline does at that moment; between those moments it dispatches as of each moment a contact of the sample
comes due (the earliest pending ``scheduled_for``), as the every-minute sweep does, so deferrals to the window's
opening and cap suppressions happen as in the real run. Deliveries go to an in-memory backend that accepts
everything and sends nothing. Then what the engine recorded is counted (``count_outcome``) and the transaction is
rolled back: nothing is kept, nobody is contacted. Nobody pays during the preview. The shadow replay
(``strategy.replay``) drives the last days the same way, with the payments and calls that really came applied at
their moments, and counts what really happened with the same ``count_outcome``.

Locks: every decision the engine takes writes audit events, and appending to the audit chain locks its head row
until the transaction ends; on SQLite a write transaction locks the whole database. While a preview runs, every
other audited write (the real pipeline, an operator's save) waits for it. The preview is kept short for that
reason: the sample is bounded (``MAX_SAMPLE`` customers, ``DEFAULT_SAMPLE`` by default) and so is the range
(``MAX_RANGE_DAYS``); the engine's queries are set-based, so a run costs a few queries per moment of the range,
whatever the sample's size.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Min, Q
from django.utils.translation import gettext as _

from debt_collection.models import CallAttemptLoan, CallTask, CaseStepRun, CollectionCase
from loans.models import CreditTier, Customer, Loan, PolicyVersion
from loans.policy_changes import policy_change
from notifications.models import NotificationItem, NotificationLog
from notifications.sending import SendResult

from .engine import Scope, dispatch, run_engine
from .policy import Policy, RuleSpec, StepSpec, write_policy

MAX_RANGE_DAYS = 62
MAX_SAMPLE = 500
DEFAULT_SAMPLE = 50
Status = NotificationLog.Status
SENT_STATUSES = (Status.SENT, Status.DELIVERED)
HELD_BACK_STATUSES = (Status.SUPPRESSED, Status.CANCELLED, Status.FAILED)


# --- the sample ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """The customers a preview runs over: ids, refs and calendar zones."""

    customers: dict[int, tuple[str, str]]  # id -> (ref, time zone)
    loans: int = 0  # their active loans

    @classmethod
    def of_tier(cls, tier: CreditTier, size: int) -> Sample:
        """The first ``size`` customers (by id) of ``tier`` with an active loan (2 queries)."""
        rows = (
            Customer.objects.filter(tier=tier, loans__status=Loan.Status.ACTIVE)
            .distinct()
            .order_by("id")
            .values_list("id", "ref", "timezone")[:size]
        )
        customers = {id_: (ref, tz) for id_, ref, tz in rows}
        loans = Loan.objects.filter(customer_id__any_of=list(customers), status=Loan.Status.ACTIVE).count()
        return cls(customers, loans)

    @property
    def scope(self) -> Scope:
        return Scope.of(self.customers)

    def zones(self) -> set[str]:
        return {tz for _ref, tz in self.customers.values()}

    def day_starts(self, start: dt.date, end: dt.date) -> list[dt.datetime]:
        """The moments a local day of the range begins somewhere in the sample, in order (UTC)."""
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        return sorted({_midnight(day, tz) for tz in self.zones() for day in days})

    def range_end(self, end: dt.date) -> dt.datetime:
        """The moment the last local day of the range ends everywhere in the sample."""
        return max(_midnight(end + dt.timedelta(days=1), tz) for tz in self.zones())


def _midnight(day: dt.date, tz_name: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=zoneinfo.ZoneInfo(tz_name)).astimezone(dt.UTC)


# --- running the engine ----------------------------------------------------------------------------------
class AcceptAllBackend:
    """The preview's delivery backend for every channel: takes every message, keeps it in memory, sends nothing
    (the preview assumes providers accept everything)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def send(self, message) -> SendResult:
        self.messages.append(message)
        return SendResult(provider_message_id=f"preview-{len(self.messages)}")

    def send_many(self, messages) -> list[SendResult]:
        return [self.send(m) for m in messages]


def drive(
    sample: Sample,
    start: dt.date,
    end: dt.date,
    backend: AcceptAllBackend,
    happenings: list[tuple[dt.datetime, Callable[[], Any]]] = (),
) -> int:
    """Run the engine over the sample through the range, as the schedules would: the day's steps at each local
    midnight, a dispatch at each moment a contact of the sample comes due in between. ``happenings`` are
    ``(moment, apply)`` pairs in time order, things the world did (a replay's payments and calls): each is
    applied at its moment, before the engine's step of the same moment. Returns how many moments it ran.
    Writes what the real run writes: call it inside a transaction that is rolled back."""
    scope = sample.scope
    pending = list(happenings)

    def backend_for(_channel: str) -> AcceptAllBackend:
        return backend

    moments = 0
    last: dt.datetime | None = None  # contacts due by it had their dispatch
    clock: dt.datetime | None = None  # the latest moment anything ran at
    finish = sample.range_end(end)
    for boundary in [*sample.day_starts(start, end), finish]:
        while True:
            due = None if last is None else _next_due(scope, after=last, before=boundary)
            if pending and pending[0][0] < boundary and (due is None or pending[0][0] <= due):
                at, apply = pending.pop(0)
                apply()
                clock, moments = max(clock or at, at), moments + 1
                continue
            if due is None:
                break
            at = max(due, clock or due)  # a contact a happening scheduled in the past goes at once
            dispatch(at, scope, backend_for=backend_for)
            last, clock, moments = due, at, moments + 1
        if boundary == finish:
            break
        run_engine(boundary, scope, backend_for=backend_for)
        last, clock, moments = boundary, boundary, moments + 1
    return moments


def _next_due(scope: Scope, *, after: dt.datetime, before: dt.datetime) -> dt.datetime | None:
    """The earliest moment a pending contact of ``scope`` is scheduled for, after ``after`` and before
    ``before`` (strictly: what was due by ``after`` had its dispatch)."""
    return (
        NotificationLog.objects.pending()
        .filter(
            customer_id__any_of=list(scope.customer_ids), scheduled_for__gt=after, scheduled_for__lt=before
        )
        .aggregate(at=Min("scheduled_for"))["at"]
    )


@dataclass
class Outcome:
    """What a policy did on the sample over the range, counted from what the engine recorded."""

    contacts: Counter = field(default_factory=Counter)  # (status, reason) -> contacts; sent is ("sent", "")
    sent_by_channel: Counter = field(default_factory=Counter)
    escalations: Counter = field(default_factory=Counter)  # action -> ladder steps performed
    calls: Counter = field(default_factory=Counter)  # outcome -> calls made (the preview makes none)
    call_tasks: int = 0  # call tasks opened for collectors (by the ladder or as a retry)
    per_day: dict[dt.date, Counter] = field(
        default_factory=dict
    )  # "sent", "held_back", "escalated", "called"
    per_loan: dict[int, Counter] = field(default_factory=lambda: defaultdict(Counter))
    loan_refs: dict[int, tuple[str, str]] = field(default_factory=dict)  # loan id -> (loan ref, customer ref)
    messages_delivered: int = 0  # what the in-memory backend took (nothing left the process)

    @property
    def sent(self) -> int:
        return self.contacts[(Status.SENT, "")]

    @property
    def held_back(self) -> Counter:
        return Counter({k: n for k, n in self.contacts.items() if k[0] != Status.SENT})

    def as_spec(self) -> dict[str, Any]:
        """The figures in SPEC.md's shape (``manage.py preview_policy --format json``)."""
        by_status: dict[str, dict[str, int]] = defaultdict(dict)
        for (status, reason), n in sorted(self.contacts.items()):
            if status not in (Status.SENT, Status.DEFERRED):
                by_status[status][reason] = n
        return {
            "contacts": {
                "sent": self.sent,
                "deferred": sum(n for (status, _r), n in self.contacts.items() if status == Status.DEFERRED),
                "suppressed": by_status.get(Status.SUPPRESSED, {}),
                "cancelled": by_status.get(Status.CANCELLED, {}),
                **({"failed": by_status[Status.FAILED]} if Status.FAILED in by_status else {}),
            },
            "escalations": dict(sorted(self.escalations.items())),
        }

    def as_replay_spec(self) -> dict[str, Any]:
        """SPEC.md's figures with the calls made by outcome and the call tasks opened (the replay's JSON)."""
        return {**self.as_spec(), "calls": dict(sorted(self.calls.items())), "call_tasks": self.call_tasks}


def count_outcome(
    sample: Sample, start: dt.date, end: dt.date, deferred_before: dict[int, dt.datetime]
) -> Outcome:
    """Count what the engine recorded for the sample on the range's local days (4 queries): each contact once
    (a consolidated message once), by its fate: sent on the day it was sent; suppressed or cancelled on the day
    it was scheduled for; deferred when it is still waiting at the end of the range after a deferral on those
    days (``deferred_before``: the contacts of the sample that were already waiting before the run, with the
    moment they were waiting for). Escalations are the ladder steps performed on those days."""
    ids = list(sample.customers)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    outcome = Outcome(per_day={day: Counter() for day in days})
    low, high = min(_midnight(start, tz) for tz in sample.zones()), sample.range_end(end)
    zone_of = {id_: zoneinfo.ZoneInfo(tz) for id_, (_ref, tz) in sample.customers.items()}

    def local_day(moment: dt.datetime, customer_id: int) -> dt.date | None:
        day = moment.astimezone(zone_of[customer_id]).date()
        return day if start <= day <= end else None

    counted: dict[int, tuple[str, str]] = {}
    rows = NotificationLog.objects.filter(customer_id__any_of=ids).filter(
        Q(status__in=SENT_STATUSES, sent_at__gte=low, sent_at__lt=high)
        | Q(status__in=HELD_BACK_STATUSES, scheduled_for__gte=low, scheduled_for__lt=high)
        | Q(status=Status.DEFERRED)
    )
    for id_, customer_id, status, reason, channel, sent_at, scheduled_for in rows.values_list(
        "id", "customer_id", "status", "reason", "channel", "sent_at", "scheduled_for"
    ):
        if status in SENT_STATUSES:
            day, key = local_day(sent_at, customer_id), (Status.SENT, "")
        elif status == Status.DEFERRED:
            waiting_since = deferred_before.get(id_)
            if waiting_since is not None and waiting_since >= high:
                continue  # waiting for a moment after the range before the run began: not deferred on these days
            day, key = (
                (end if scheduled_for >= high else local_day(scheduled_for, customer_id)),
                (status, reason),
            )
        else:
            day, key = local_day(scheduled_for, customer_id), (status, reason)
        if day is None:
            continue
        counted[id_] = key
        outcome.contacts[key] += 1
        if key[0] == Status.SENT:
            outcome.sent_by_channel[channel] += 1
        outcome.per_day[day]["sent" if key[0] == Status.SENT else "held_back"] += 1
    for contact_id, loan_id, loan_ref, customer_ref in (
        NotificationItem.objects.filter(notification_id__any_of=list(counted))
        .values_list(
            "notification_id",
            "installment__loan_id",
            "installment__loan__ref",
            "installment__loan__customer__ref",
        )
        .distinct()
    ):
        status, reason = counted[contact_id]
        outcome.per_loan[loan_id][f"{status}:{reason}" if reason else str(status)] += 1
        outcome.loan_refs[loan_id] = (loan_ref, customer_ref)
    for action, run_at, loan_id, loan_ref, customer_id, customer_ref in CaseStepRun.objects.filter(
        result=CaseStepRun.Result.PERFORMED,
        run_at__gte=low,
        run_at__lt=high,
        case__loan__customer_id__any_of=ids,
    ).values_list(
        "action",
        "run_at",
        "case__loan_id",
        "case__loan__ref",
        "case__loan__customer_id",
        "case__loan__customer__ref",
    ):
        day = local_day(run_at, customer_id)
        if day is None:
            continue
        outcome.escalations[action] += 1
        outcome.per_day[day]["escalated"] += 1
        outcome.per_loan[loan_id][f"escalation:{action}"] += 1
        outcome.loan_refs[loan_id] = (loan_ref, customer_ref)
    _count_calls(outcome, ids, low, high, local_day)
    return outcome


def _count_calls(outcome: Outcome, ids: list[int], low: dt.datetime, high: dt.datetime, local_day) -> None:
    """The calls made to the sample on the range's days, by outcome (each call once, and once for each loan it
    was about), and the call tasks opened on those days (2 queries)."""
    counted: set[int] = set()
    for attempt_id, made_at, customer_id, call_outcome, loan_id, loan_ref, customer_ref in (
        CallAttemptLoan.objects.filter(
            attempt__customer_id__any_of=ids, attempt__made_at__gte=low, attempt__made_at__lt=high
        )
        .order_by("attempt_id", "loan_id")
        .values_list(
            "attempt_id",
            "attempt__made_at",
            "attempt__customer_id",
            "attempt__outcome",
            "loan_id",
            "loan__ref",
            "loan__customer__ref",
        )
    ):
        day = local_day(made_at, customer_id)
        if day is None:
            continue
        if attempt_id not in counted:
            counted.add(attempt_id)
            outcome.calls[call_outcome] += 1
            outcome.per_day[day]["called"] += 1
        outcome.per_loan[loan_id][f"call:{call_outcome}"] += 1
        outcome.loan_refs[loan_id] = (loan_ref, customer_ref)
    for created_at, customer_id in CallTask.objects.filter(
        case__loan__customer_id__any_of=ids, created_at__gte=low, created_at__lt=high
    ).values_list("created_at", "case__loan__customer_id"):
        if local_day(created_at, customer_id) is not None:
            outcome.call_tasks += 1


def propose(tier: CreditTier, policy: Policy | None, sample: Sample) -> None:
    """Write ``policy`` (None: nothing) over the tier's saved one and move the sample's open cases onto it (as if
    migrated), inside the caller's rolled-back transaction."""
    if policy is None:
        return
    with policy_change("preview", "proposed in the policy preview"):
        write_policy(tier, policy)
    CollectionCase.objects.open().filter(loan__customer_id__any_of=list(sample.customers)).update(
        policy_version_id=PolicyVersion.objects.latest_ids([tier.pk]).get(tier.pk)
    )


def run_policy(
    tier: CreditTier, policy: Policy | None, sample: Sample, start: dt.date, end: dt.date
) -> Outcome:
    """Run the engine for ``policy`` (None: the saved one) on the sample over the range, count its outcome, and
    roll everything back (one transaction). Nothing is kept and nothing leaves the process."""
    backend = AcceptAllBackend()
    with transaction.atomic():
        propose(tier, policy, sample)
        deferred_before = dict(
            NotificationLog.objects.filter(
                customer_id__any_of=list(sample.customers), status=Status.DEFERRED
            ).values_list("id", "scheduled_for")
        )
        if sample.customers:
            drive(sample, start, end, backend)
            outcome = count_outcome(sample, start, end, deferred_before)
        else:
            outcome = Outcome(
                per_day={start + dt.timedelta(days=i): Counter() for i in range((end - start).days + 1)}
            )
        outcome.messages_delivered = len(backend.messages)
        transaction.set_rollback(True)
    return outcome


def changed_loans(current: Outcome, proposed: Outcome) -> list[dict[str, Any]]:
    """The loans whose contacts or escalations differ between the two outcomes, by loan ref."""
    refs = {**current.loan_refs, **proposed.loan_refs}
    changed = []
    for loan_id in set(current.per_loan) | set(proposed.per_loan):
        before, after = current.per_loan.get(loan_id, Counter()), proposed.per_loan.get(loan_id, Counter())
        if +before != +after:
            loan_ref, customer_ref = refs[loan_id]
            changed.append(
                {
                    "loan_ref": loan_ref,
                    "customer_ref": customer_ref,
                    "current": dict(sorted(before.items())),
                    "proposed": dict(sorted(after.items())),
                }
            )
    return sorted(changed, key=lambda row: row["loan_ref"])


def preview_policy(
    tier: CreditTier,
    start: dt.date,
    end: dt.date,
    *,
    sample_size: int = DEFAULT_SAMPLE,
    grace_period_days: int | None = None,
    max_contacts_per_week: int | None = None,
    channel_order: tuple[str, ...] | None = None,
    rules: tuple[RuleSpec, ...] | None = None,
    ladder: tuple[StepSpec, ...] | None = None,
) -> dict[str, Any]:
    """What the tier's saved policy and the proposed one (the given fields changed) do on the same sample over
    the local days ``start`` to ``end``, each by running the engine in its own rolled-back transaction.

    Writes nothing and sends nothing. Raises ValidationError for a range longer than ``MAX_RANGE_DAYS`` or ending
    before it starts, or a sample outside 1..``MAX_SAMPLE``. Returns ``{"current": Outcome, "proposed": Outcome,
    "current_policy", "proposed_policy", "is_changed", "changed_loans", "sample": {...}, "start", "end"}``; without
    a change the proposal is not run again (it is the current policy).
    """
    if end < start:
        raise ValidationError(_("The range ends before it starts."))
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ValidationError(_("Preview at most %(n)s days at a time.") % {"n": MAX_RANGE_DAYS})
    if not 1 <= sample_size <= MAX_SAMPLE:
        raise ValidationError(_("The sample holds 1 to %(n)s customers.") % {"n": MAX_SAMPLE})
    current_policy = Policy.of(tier)
    proposed_policy = current_policy.changed(
        grace_period_days=grace_period_days,
        max_contacts_per_week=max_contacts_per_week,
        channel_order=channel_order,
        rules=rules,
        ladder=ladder,
    )
    sample = Sample.of_tier(tier, sample_size)
    current = run_policy(tier, None, sample, start, end)
    is_changed = proposed_policy != current_policy
    proposed = run_policy(tier, proposed_policy, sample, start, end) if is_changed else current
    return {
        "current_policy": current_policy,
        "proposed_policy": proposed_policy,
        "is_changed": is_changed,
        "current": current,
        "proposed": proposed,
        "changed_loans": changed_loans(current, proposed),
        "sample": {"customers": len(sample.customers), "loans": sample.loans},
        "start": start,
        "end": end,
    }
