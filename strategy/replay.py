"""Shadow replay: what a policy would have done over the last days of the book, beside what actually happened,
by the real engine (``strategy.preview.drive``) over a sample of the tier's customers, in a transaction that is
rolled back.

How a replay goes (``run_replay``), in one transaction:

1. The sample's book is put back as it stood at the start of the first replayed local day (``set_aside``): its
   contacts scheduled or sent from that moment on, its cases opened from then, the step runs, call tasks, calls,
   promises, agency placements and legal referrals recorded from then are set aside (deleted, inside the
   transaction); cases closed, call tasks worked and promises resolved since are open or pending again; the
   payments received since are set aside and the loans re-allocated without them by the loan book's own
   allocation (instalments' ``amount_paid``/``paid_at`` and loans' status as they stood). Customers' tier,
   contact details, opt-outs and do-not-contact flags stay as they are now.
2. The policy replayed (a proposal, a saved version, or none: the saved policy) is written over the tier's, as
   the forward preview does, and the sample's open cases follow it.
3. The engine drives the days exactly as the forward preview does, and what really happened in those days is
   applied at its real moment (``drive``'s happenings): each payment through the real payment service (which
   cancels pending contacts, open call tasks and closes the case at once), each call a collector really made
   through the real call-outcome service, with its real outcome, on the replay's open call task of the same
   loan. A call whose loan has no open call task in the replay at that moment, or that the call limits or the
   weekly cap refuse in the replay, is not made (counted in ``calls_not_replayed``): what someone would have
   answered to a call that never happened cannot be known, so the replay assumes no call beyond the real ones.
4. What the engine recorded is counted by ``count_outcome``, the forward preview's counter; then rolled back.

"What happened" is the same ``count_outcome`` over the real rows of the same sample and days (``count_history``).

Not replayed: auto-debit (its payments are replayed as payments; its failure notices are not re-sent), credit
scores (tiers are as now), inbound opt-outs (as now). Locks: as the forward preview (see ``strategy.preview``),
a replay holds the audit chain's head while it runs; the sample (``MAX_SAMPLE``) and the range
(``MAX_REPLAY_DAYS``) are bounded for that reason.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils.translation import gettext as _

from core.audit import about
from core.models import AuditEvent
from debt_collection.call_outcomes import CallRefused, record_call_outcome
from debt_collection.models import (
    AgencyPlacement,
    CallAttempt,
    CallAttemptLoan,
    CallTask,
    CaseStepRun,
    CollectionCase,
    LegalReferral,
    PromiseToPay,
)
from loans.models import CreditTier, Customer, Loan, Payment, PolicyVersion
from loans.services import reallocate_loans, record_payment
from notifications.models import NotificationLog

from .policy import Policy
from .preview import (
    DEFAULT_SAMPLE,
    MAX_RANGE_DAYS,
    MAX_SAMPLE,
    AcceptAllBackend,
    Outcome,
    Sample,
    _midnight,
    changed_loans,
    count_outcome,
    drive,
    propose,
)
from .versions import policy_of_version

MAX_REPLAY_DAYS = MAX_RANGE_DAYS
DEFAULT_REPLAY_DAYS = 14
REPLAY_ACTOR = "preview:replay"
Status = NotificationLog.Status


@dataclass(frozen=True)
class RealPayment:
    ref: str
    loan_id: int
    installment_id: int | None
    amount: Decimal
    received_at: dt.datetime
    source: str


@dataclass(frozen=True)
class RealCall:
    made_at: dt.datetime
    loan_id: int  # the loan of the task it was made on
    outcome: str
    covers: tuple[str, ...]  # refs of the other loans it was about
    made_by: str
    note: str = ""
    promise_amount: Decimal | None = None
    promise_date: dt.date | None = None


@dataclass
class Happenings:
    """What really happened to the sample from the replay's start: set aside, then applied again in time."""

    payments: list[RealPayment]
    calls: list[RealCall]


def replay_range(today: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The ``days`` local days ending the day before ``today`` (the last complete day)."""
    end = today - dt.timedelta(days=1)
    return end - dt.timedelta(days=days - 1), end


def replay_sample(tier: CreditTier, size: int, since: dt.datetime) -> Sample:
    """The first ``size`` customers (by id) of ``tier`` with a loan active now, or paid off since ``since``
    (2 queries): the loans the replayed days were about."""
    loans = Loan.objects.filter(
        Q(status=Loan.Status.ACTIVE) | Q(status=Loan.Status.PAID_OFF, installments__paid_at__gte=since)
    )
    rows = (
        Customer.objects.filter(tier=tier, loans__in=loans)
        .distinct()
        .order_by("id")
        .values_list("id", "ref", "timezone")[:size]
    )
    customers = {id_: (ref, tz) for id_, ref, tz in rows}
    count = loans.filter(customer_id__any_of=list(customers)).distinct().count()
    return Sample(customers, count)


def replay_start(sample: Sample, start: dt.date) -> dt.datetime:
    """The moment the book is put back to: the first replayed local day's start, the earliest of the sample's
    zones."""
    return min(_midnight(start, tz) for tz in sample.zones())


def set_aside(sample: Sample, since: dt.datetime) -> Happenings:
    """Put the sample's book back as it stood at ``since`` (see the module's docstring), inside the caller's
    transaction, and return the payments and calls that happened from then on, in time order."""
    ids = list(sample.customers)
    loan_ids = list(Loan.objects.filter(customer_id__any_of=ids).values_list("id", flat=True))
    cases = CollectionCase.objects.filter(loan_id__any_of=loan_ids)

    # Payments received since: kept aside to be applied again, the loans re-allocated without them.
    later_payments = Payment.objects.filter(loan_id__any_of=loan_ids, received_at__gte=since)
    payments = [
        RealPayment(*row)
        for row in later_payments.order_by("received_at", "id").values_list(
            "ref", "loan_id", "installment_id", "amount", "received_at", "source"
        )
    ]
    if payments:
        later_payments.delete()
        reallocate_loans(loan_ids, since, payments_recorded=False, actor=REPLAY_ACTOR)

    # Calls made since, with the loan of their task, the loans they covered and the promise they brought.
    attempts = list(
        CallAttempt.objects.filter(customer_id__any_of=ids, made_at__gte=since)
        .order_by("made_at", "id")
        .values_list("id", "made_at", "outcome", "made_by", "task_id", "task__case__loan_id", "task__note")
    )
    covered: dict[int, list[tuple[int, str]]] = {}
    for attempt_id, loan_id, ref in CallAttemptLoan.objects.filter(
        attempt_id__any_of=[a[0] for a in attempts]
    ).values_list("attempt_id", "loan_id", "loan__ref"):
        covered.setdefault(attempt_id, []).append((loan_id, ref))
    promises = {
        (task_id, created_at): (amount, promised_date)
        for task_id, created_at, amount, promised_date in PromiseToPay.objects.filter(
            call_task_id__any_of=[a[4] for a in attempts if a[4]]
        ).values_list("call_task_id", "created_at", "amount", "promised_date")
    }
    calls = []
    for attempt_id, made_at, outcome, made_by, task_id, task_loan_id, note in attempts:
        loans_of = covered.get(attempt_id, [])
        loan_id = task_loan_id or (loans_of[0][0] if loans_of else None)
        if loan_id is None:
            continue
        amount, promised = promises.get((task_id, made_at), (None, None))
        covers = tuple(sorted(ref for other, ref in loans_of if other != loan_id))
        calls.append(RealCall(made_at, loan_id, outcome, covers, made_by, note or "", amount, promised))
    CallAttempt.objects.filter(pk__any_of=[a[0] for a in attempts]).delete()

    # Collections as they stood: what was recorded since is set aside, what was closed since is open again.
    referred = LegalReferral.objects.filter(case__in=cases, referred_at__gte=since)
    unfrozen = list(referred.values_list("case_id", flat=True))
    referred.delete()
    CollectionCase.objects.filter(pk__any_of=unfrozen).update(is_frozen=False)
    AgencyPlacement.cases.through.objects.filter(
        collectioncase__loan_id__any_of=loan_ids, agencyplacement__placed_at__gte=since
    ).delete()
    cases.filter(opened_at__gte=since).delete()  # with their step runs, call tasks and promises
    broken_since = Counter(
        PromiseToPay.objects.filter(
            case__in=cases, status=PromiseToPay.Status.BROKEN, resolved_at__gte=since
        ).values_list("case_id", flat=True)
    )
    PromiseToPay.objects.filter(case__in=cases, created_at__gte=since).delete()
    PromiseToPay.objects.filter(case__in=cases, resolved_at__gte=since).update(
        status=PromiseToPay.Status.PENDING, resolved_at=None
    )
    stepped = set(
        CaseStepRun.objects.filter(case__in=cases, run_at__gte=since).values_list("case_id", flat=True)
    )
    CaseStepRun.objects.filter(case__in=cases, run_at__gte=since).delete()
    CallTask.objects.filter(case__in=cases, created_at__gte=since).delete()
    CallTask.objects.filter(
        Q(completed_at__gte=since) | Q(pk__any_of=_cancelled_since(cases, since)), case__in=cases
    ).update(
        status=CallTask.Status.OPEN,
        outcome=CallTask.Outcome.NONE,
        cancel_reason=CallTask.CancelReason.NONE,
        completed_at=None,
        completed_by=None,
    )
    cases.filter(closed_at__gte=since).update(
        status=CollectionCase.Status.OPEN, closed_at=None, close_reason=CollectionCase.CloseReason.NONE
    )
    _restore_cases(list(cases.filter(status=CollectionCase.Status.OPEN)), since, stepped, broken_since)

    # Contacts: those scheduled or sent since are the replayed days' own.
    NotificationLog.objects.filter(customer_id__any_of=ids).filter(
        Q(scheduled_for__gte=since) | Q(sent_at__gte=since)
    ).delete()
    return Happenings(payments, calls)


def _cancelled_since(cases, since: dt.datetime) -> list[int]:
    """The call tasks of ``cases`` cancelled at or after ``since``: a cancellation stamps no time on the task, the
    audit trail has it (``collections.call.cancelled``, 2 queries)."""
    cancelled = [
        str(pk)
        for pk in CallTask.objects.filter(case__in=cases, status=CallTask.Status.CANCELLED).values_list(
            "pk", flat=True
        )
    ]
    if not cancelled:
        return []
    return [
        int(pk)
        for pk in AuditEvent.objects.filter(
            object_type=about(CallTask)["object_type"],
            object_id__in=cancelled,
            action="collections.call.cancelled",
            at__gte=since,
        ).values_list("object_id", flat=True)
    ]


def _restore_cases(
    cases: list[CollectionCase], since: dt.datetime, stepped: set[int], broken: Counter
) -> None:
    """The fields of open cases that the days since moved: the stage of the last step performed before, the
    pause of a promise pending then, the broken promises and the last conversation as they were. The amount
    and the date days past due count from are the daily advance's to set again, from the restored book."""
    if not cases:
        return
    ids = [c.pk for c in cases]
    stages: dict[int, str] = {}
    for case_id, stage in (
        CaseStepRun.objects.filter(case_id__any_of=ids, result=CaseStepRun.Result.PERFORMED)
        .order_by("case_id", "run_at", "id")
        .values_list("case_id", "stage")
    ):
        stages[case_id] = stage
    pauses = dict(
        PromiseToPay.objects.filter(case_id__any_of=ids, status=PromiseToPay.Status.PENDING).values_list(
            "case_id", "promised_date"
        )
    )
    conversations = dict(
        CallAttemptLoan.objects.filter(
            loan_id__any_of=[c.loan_id for c in cases],
            attempt__is_conversation=True,
            attempt__made_at__lt=since,
        )
        .values("loan_id")
        .annotate(at=Max("attempt__made_at"))
        .values_list("loan_id", "at")
    )
    for case in cases:
        if case.pk in stepped:
            case.stage = stages.get(case.pk, "")
        case.paused_until = pauses.get(case.pk)
        case.broken_promises = max(0, case.broken_promises - broken[case.pk])
        case.last_conversation_at = conversations.get(case.loan_id)
    CollectionCase.objects.bulk_update(
        cases, ["stage", "paused_until", "broken_promises", "last_conversation_at"], batch_size=500
    )


@dataclass
class Replayed:
    outcome: Outcome
    calls_not_replayed: Counter  # reason -> real calls the replay did not make
    payments_replayed: int


def run_replay(
    tier: CreditTier, policy: Policy | None, sample: Sample, start: dt.date, end: dt.date
) -> Replayed:
    """Replay the local days ``start`` to ``end`` for the sample under ``policy`` (None: the saved one) with
    what really happened applied at its moment, count the outcome, and roll everything back (one transaction).
    Nothing is kept and nothing leaves the process."""
    backend = AcceptAllBackend()
    not_replayed: Counter = Counter()
    since, finish = replay_start(sample, start), sample.range_end(end)
    with transaction.atomic():
        happened = set_aside(sample, since)
        propose(tier, policy, sample)
        loans = Loan.objects.in_bulk({p.loan_id for p in happened.payments})
        payments = [p for p in happened.payments if p.received_at < finish]
        happenings = [(p.received_at, _paying(p, loans[p.loan_id])) for p in payments]
        happenings += [(c.made_at, _calling(c, not_replayed)) for c in happened.calls if c.made_at < finish]
        drive(sample, start, end, backend, sorted(happenings, key=lambda h: h[0]))
        outcome = count_outcome(sample, start, end, {})
        outcome.messages_delivered = len(backend.messages)
        transaction.set_rollback(True)
    return Replayed(outcome, not_replayed, len(payments))


def _paying(payment: RealPayment, loan: Loan):
    def apply() -> None:
        record_payment(
            loan=loan,
            amount=payment.amount,
            received_at=payment.received_at,
            ref=payment.ref,
            source=payment.source,
            installment=(
                loan.installments.get(pk=payment.installment_id) if payment.installment_id else None
            ),
            actor=REPLAY_ACTOR,
        )

    return apply


def _calling(call: RealCall, not_replayed: Counter):
    def apply() -> None:
        task = (
            CallTask.objects.open().filter(case__loan_id=call.loan_id).order_by("scheduled_for", "id").first()
        )
        if task is None:
            not_replayed["no_call_task"] += 1
            return
        try:
            with transaction.atomic():
                record_call_outcome(
                    task,
                    outcome=call.outcome,
                    actor=call.made_by,
                    at=call.made_at,
                    note=call.note,
                    promise_amount=call.promise_amount,
                    promise_date=call.promise_date,
                    covers=call.covers,
                )
        except CallRefused as refused:
            not_replayed[refused.reason] += 1
        except ValidationError:
            not_replayed["invalid"] += 1

    return apply


def count_history(sample: Sample, start: dt.date, end: dt.date) -> Outcome:
    """What actually happened to the sample on those local days, counted by ``count_outcome`` from the real
    rows. A contact still deferred to a moment after the range was deferred after it: not counted."""
    high = sample.range_end(end)
    later = dict(
        NotificationLog.objects.filter(
            customer_id__any_of=list(sample.customers), status=Status.DEFERRED, scheduled_for__gte=high
        ).values_list("id", "scheduled_for")
    )
    return count_outcome(sample, start, end, later)


def replay_policy(
    tier: CreditTier,
    *,
    today: dt.date,
    days: int = DEFAULT_REPLAY_DAYS,
    sample_size: int = DEFAULT_SAMPLE,
    version: PolicyVersion | None = None,
    **proposal: Any,
) -> dict[str, Any]:
    """Replay the ``days`` local days before ``today`` for a sample of the tier under the saved policy changed by
    ``proposal`` (``Policy.changed``'s fields) or under a saved ``version`` of the tier, beside what actually
    happened to the same sample.

    Writes nothing and sends nothing. Raises ValidationError for days outside 1..``MAX_REPLAY_DAYS``, a sample
    outside 1..``MAX_SAMPLE`` or a version of another tier. Returns the forward preview's keys, with ``current``
    what happened and ``proposed`` the replay, and ``"replay": {"policy", "version", "calls_not_replayed",
    "payments_replayed", "since"}``.
    """
    if not 1 <= days <= MAX_REPLAY_DAYS:
        raise ValidationError(_("Replay 1 to %(n)s days.") % {"n": MAX_REPLAY_DAYS})
    if not 1 <= sample_size <= MAX_SAMPLE:
        raise ValidationError(_("The sample holds 1 to %(n)s customers.") % {"n": MAX_SAMPLE})
    if version is not None and version.tier_id != tier.pk:
        raise ValidationError(_("That policy version is another tier's."))
    start, end = replay_range(today, days)
    current_policy = Policy.of(tier)
    if version is not None:
        replayed_policy = policy_of_version(version)
    else:
        replayed_policy = current_policy.changed(**proposal)
    # Loans paid off before the first day began anywhere are not the replay's (a day before it in UTC is).
    first = replay_sample(tier, sample_size, _midnight(start - dt.timedelta(days=1), "UTC"))
    if not first.customers:
        empty = Outcome(
            per_day={start + dt.timedelta(days=i): Counter() for i in range((end - start).days + 1)}
        )
        history, replayed = empty, Replayed(empty, Counter(), 0)
    else:
        history = count_history(first, start, end)
        policy = None if replayed_policy == current_policy else replayed_policy
        replayed = run_replay(tier, policy, first, start, end)
    return {
        "current_policy": current_policy,
        "proposed_policy": replayed_policy,
        "is_changed": replayed_policy != current_policy,
        "current": history,
        "proposed": replayed.outcome,
        "changed_loans": changed_loans(history, replayed.outcome),
        "sample": {"customers": len(first.customers), "loans": first.loans},
        "start": start,
        "end": end,
        "replay": {
            "version": version,
            "calls_not_replayed": replayed.calls_not_replayed,
            "payments_replayed": replayed.payments_replayed,
        },
    }
