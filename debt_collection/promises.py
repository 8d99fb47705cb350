"""Promises to pay: kept when the payments since the promise cover it, reminded the day before, broken the day
after the promised date (the ladder resumes and a collector calls again)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, Sum

from core.audit import Event, about, actor_name, log_event, log_events
from loans.models import Customer, Installment, Payment
from loans.schedule import local_date
from notifications.choices import Kind
from notifications.compliance import RulesBook
from notifications.notices import Notice, default_notice_channel, plan_notices

from .calls import CallRequest, collector_loads, pick_least_loaded, schedule_calls
from .models import CallTask, CollectionCase, PromiseToPay
from .positions import JOB_ACTOR, ZERO

PROMISE_KEY_PREFIX = "promise:"


def is_kept(amount: Decimal, paid_since_promise: Decimal) -> bool:
    """A promise is kept when the payments on its loan since it was made cover the amount promised."""
    return paid_since_promise >= amount


def promise_kept_counts(within: Q | None = None) -> dict[str, Count]:
    """The promise-kept rate's one definition, as aggregates over promises: ``kept`` and ``resolved`` (kept or
    broken) of those in ``within``; a pending promise counts in neither. The dashboard (promises dated in the
    last 30 days) and the outcomes job (by case, version and arm) count with it."""
    within = within or Q()
    return {
        "kept": Count("id", filter=within & Q(status=PromiseToPay.Status.KEPT)),
        "resolved": Count(
            "id", filter=within & Q(status__in=[PromiseToPay.Status.KEPT, PromiseToPay.Status.BROKEN])
        ),
    }


def keep_promises(
    promises: list[PromiseToPay],
    *,
    at: dt.datetime,
    actor: str,
    paid_since: dict[int, Decimal] | None = None,
    counts: Counter | None = None,
) -> None:
    """Mark pending promises kept (their case's overdue amount was paid, or ``is_kept``). Writes
    ``collections.promise.kept`` per promise (with what was paid since, when known)."""
    if not promises:
        return
    PromiseToPay.objects.filter(pk__in=[p.pk for p in promises]).update(
        status=PromiseToPay.Status.KEPT, resolved_at=at
    )
    for p in promises:
        p.status, p.resolved_at = PromiseToPay.Status.KEPT, at
    log_events(
        Event(
            action="collections.promise.kept",
            actor=actor,
            **about(PromiseToPay, p.pk),
            at=at,
            after={
                "case_id": p.case_id,
                "amount": p.amount,
                **({"paid_since_promise": paid_since[p.pk]} if paid_since and p.pk in paid_since else {}),
            },
        )
        for p in promises
    )
    if counts is not None:
        counts["promises_kept"] += len(promises)


def keep_covered_promises(cases: list[CollectionCase], at: dt.datetime, actor: str, counts: Counter) -> None:
    """The pending promises of these open cases that the payments since cover are kept, and their ladder
    resumes."""
    by_case = {c.pk: c for c in cases}
    promises = list(
        PromiseToPay.objects.filter(case_id__in=list(by_case), status=PromiseToPay.Status.PENDING)
    )
    paid_since, kept = {}, []
    for promise in promises:
        case = by_case[promise.case_id]
        paid_since[promise.pk] = (
            Payment.objects.filter(loan_id=case.loan_id, received_at__gte=promise.created_at).aggregate(
                s=Sum("amount")
            )["s"]
            or ZERO
        )
        if is_kept(promise.amount, paid_since[promise.pk]):
            kept.append(promise)
            case.paused_until = None
            case.save(update_fields=["paused_until", "updated_at"])
    keep_promises(kept, at=at, actor=actor, paid_since=paid_since, counts=counts)


def resolve_promises(
    now: dt.datetime,
    *,
    actor: Any = JOB_ACTOR,
    counts: Counter | None = None,
    customer_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """Pending promises as of ``now`` (customer's local day): kept when paid since made; otherwise the day
    before the promised date a ``promise_reminder`` is planned, and the day after it the promise is broken, the
    case's broken-promise count grows, the ladder resumes and a collector calls again (the collector who took
    the promise, within the call limits). Writes ``collections.promise.*``. ``customer_ids`` limits it to the
    promises of those customers."""
    counts = counts if counts is not None else Counter()
    actor = actor_name(actor)
    horizon = now.date() + dt.timedelta(days=3)
    promises = PromiseToPay.objects.filter(
        status=PromiseToPay.Status.PENDING,
        case__status=CollectionCase.Status.OPEN,
        promised_date__lte=horizon,
    ).select_related("case", "case__loan__customer__tier")
    if customer_ids is not None:
        promises = promises.filter(case__loan__customer_id__any_of=list(customer_ids))
    promises = list(promises)
    if not promises:
        return dict(counts)
    keep_covered_promises(list({p.case_id: p.case for p in promises}.values()), now, actor, counts)
    book = RulesBook.load()
    for promise in promises:
        promise.refresh_from_db(fields=["status"])
        if promise.status != PromiseToPay.Status.PENDING:
            continue
        case = promise.case
        customer = case.loan.customer
        today = local_date(now, customer.timezone)
        if today > promise.promised_date:
            with transaction.atomic():
                promise.status, promise.resolved_at = PromiseToPay.Status.BROKEN, now
                promise.save(update_fields=["status", "resolved_at"])
                case.broken_promises += 1
                case.paused_until = None
                case.save(update_fields=["broken_promises", "paused_until", "updated_at"])
                log_event(
                    "collections.promise.broken",
                    actor=actor,
                    **about(PromiseToPay, promise.pk),
                    at=now,
                    after={
                        "case_id": case.pk,
                        "amount": promise.amount,
                        "promised_date": promise.promised_date,
                        "customer_local_date": today,
                        "broken_promises": case.broken_promises,
                    },
                )
                if _follow_up_call(case, customer, promise, now, actor, book):
                    counts["call_tasks_created"] += 1
            counts["promises_broken"] += 1
        elif (
            today == promise.promised_date - dt.timedelta(days=1)
            and promise.reminder_planned_at is None
            and not case.is_frozen
        ):
            with transaction.atomic():
                installments = list(
                    Installment.objects.filter(
                        loan_id=case.loan_id, paid_at__isnull=True, due_date__lt=today
                    ).select_related("loan")
                )
                # Promises of one customer falling due the same day share one reminder naming each loan.
                plan_notices(
                    [
                        Notice(
                            customer_id=customer.pk,
                            tier_id=customer.tier_id,
                            tz_name=customer.timezone,
                            kind=Kind.PROMISE_REMINDER,
                            channel=default_notice_channel(customer.tier),
                            key_prefix=PROMISE_KEY_PREFIX,
                            installment_ids=[i.pk for i in installments],
                            loan_refs=[case.loan.ref],
                            due_date=min((i.due_date for i in installments), default=None),
                        )
                    ],
                    now=now,
                    actor=actor,
                )
                promise.reminder_planned_at = now
                promise.save(update_fields=["reminder_planned_at"])
                log_event(
                    "collections.promise.reminder_planned",
                    actor=actor,
                    **about(PromiseToPay, promise.pk),
                    at=now,
                    after={
                        "case_id": case.pk,
                        "promised_date": promise.promised_date,
                        "customer_local_date": today,
                    },
                )
            counts["promise_reminders_planned"] += 1
    return dict(counts)


def _follow_up_call(
    case: CollectionCase,
    customer: Customer,
    promise: PromiseToPay,
    now: dt.datetime,
    actor: str,
    book: RulesBook,
) -> bool:
    """A call after a broken promise, by the collector who took it when they still collect, unless a call is
    open, the case is frozen or the customer may not be called."""
    if case.is_frozen or CallTask.objects.filter(case=case, status=CallTask.Status.OPEN).exists():
        return False

    def assignee() -> int | None:
        loads = collector_loads()
        return promise.created_by_id if promise.created_by_id in loads else pick_least_loaded(loads)

    context = {"after": "promise_broken", "promise_id": promise.pk}
    request = CallRequest(case, customer.pk, now, assignee, context)
    return bool(schedule_calls([request], at=now, actor=actor, book=book))
