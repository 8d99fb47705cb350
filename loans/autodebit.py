"""Auto-debit on the due date: loans with a card mandate are debited through the payment gateway.

Exactly-once by construction: an ``AutoDebitAttempt`` row is claimed first (unique per instalment and day, so
a re-run or a second worker claims nothing new), the gateway is called with an idempotency key derived from the
attempt, and only then is the outcome recorded. A crash between the gateway call and the recording leaves the
attempt ``pending``; the next run asks the gateway again with the same key and gets the same answer, so the
customer is never debited twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.db.models import Exists, OuterRef

from core.audit import Event, about, append_events
from core.bulk import bulk_update_rows

from . import signals
from .gateways import DebitResult, get_gateway
from .models import AutoDebitAttempt, Installment, Loan, Payment
from .services import reallocate_loans

logger = logging.getLogger(__name__)

ACTOR = "job:autodebit"
CHUNK = 500
# Claimed, gateway not yet answered (or the answer not yet recorded). Not one of the model's final statuses.
PENDING = "pending"


def idempotency_key_for(attempt: AutoDebitAttempt) -> str:
    """The key the gateway sees: one per instalment and day, the same on every re-run."""
    return f"autodebit-{attempt.installment_id}-{attempt.attempted_on:%Y%m%d}"


def payment_ref_for(attempt: AutoDebitAttempt) -> str:
    return f"AD-{attempt.installment_id}-{attempt.attempted_on:%Y%m%d}"


def _local_dates(now: dt.datetime) -> dict[dt.date, list[str]]:
    """Each local date that holds ``now`` for customers with a mandate, with the time zones where it does."""
    zones = (
        Loan.objects.filter(autopay=True, status=Loan.Status.ACTIVE)
        .values_list("customer__timezone", flat=True)
        .distinct()
        .order_by()
    )
    by_date: dict[dt.date, list[str]] = defaultdict(list)
    for name in zones:
        by_date[now.astimezone(zoneinfo.ZoneInfo(name)).date()].append(name)
    return by_date


def _claim(date: dt.date, zones: list[str]) -> int:
    """Insert one pending attempt per unpaid instalment due on ``date`` (local) of an active autopay loan that
    has none for that day yet; returns how many were claimed. The unique constraint settles races."""
    due = list(
        Installment.objects.filter(
            due_date=date,
            paid_at__isnull=True,
            loan__autopay=True,
            loan__status=Loan.Status.ACTIVE,
            loan__customer__timezone__in=zones,
        )
        .filter(~Exists(AutoDebitAttempt.objects.filter(installment=OuterRef("pk"), attempted_on=date)))
        .order_by("pk")
        .values_list("pk", "amount_due", "amount_paid")
    )
    claims = [
        AutoDebitAttempt(
            installment_id=pk, attempted_on=date, amount=amount_due - amount_paid, status=PENDING
        )
        for pk, amount_due, amount_paid in due
        if amount_due - amount_paid > 0
    ]
    AutoDebitAttempt.objects.bulk_create(claims, batch_size=CHUNK, ignore_conflicts=True)
    return len(claims)


def _inputs(attempt: AutoDebitAttempt, result: DebitResult | None = None) -> dict:
    inst = attempt.installment
    data = {
        "loan": inst.loan.ref,
        "customer": inst.loan.customer.ref,
        "installment_id": inst.pk,
        "installment_seq": inst.seq,
        "due_date": inst.due_date,
        "attempted_on": attempt.attempted_on,
        "amount": attempt.amount,
        "currency": inst.loan.currency,
        "idempotency_key": idempotency_key_for(attempt),
    }
    if result is not None:
        data["gateway_reference"] = result.reference
    return data


def _record_successes(done: list[tuple[AutoDebitAttempt, DebitResult]], now: dt.datetime) -> int:
    if not done:
        return 0
    with transaction.atomic():
        claimed = set(
            AutoDebitAttempt.objects.select_for_update()
            .filter(pk__any_of=[a.pk for a, _r in done], status=PENDING)
            .values_list("pk", flat=True)
        )
        done = [(a, r) for a, r in done if a.pk in claimed]  # another worker may have recorded some meanwhile
        if not done:
            return 0
        payments = Payment.objects.bulk_create(
            [
                Payment(
                    ref=payment_ref_for(a),
                    loan_id=a.installment.loan_id,
                    # The money belongs to the loan: the waterfall pays its oldest unpaid instalment first.
                    installment_id=None,
                    amount=a.amount,
                    received_at=now,
                    source=Payment.Source.AUTODEBIT,
                )
                for a, _r in done
            ]
        )
        payment_ids = dict(
            Payment.objects.filter(ref__in=[p.ref for p in payments]).values_list("ref", "pk")
        )  # bulk_create does not return keys on every database
        events = []
        for attempt, result in done:
            attempt.status = AutoDebitAttempt.Status.SUCCEEDED
            attempt.gateway_reference = result.reference[:64]
            attempt.payment_id = payment_ids[payment_ref_for(attempt)]
            inputs = _inputs(attempt, result)
            events.append(
                Event(
                    action="loans.payment.recorded",
                    actor=ACTOR,
                    **about(Payment, attempt.payment_id),
                    after={
                        "ref": payment_ref_for(attempt),
                        "loan": inputs["loan"],
                        "installment_seq": None,
                        "amount": attempt.amount,
                        "received_at": now,
                        "source": Payment.Source.AUTODEBIT,
                    },
                )
            )
            events.append(
                Event(
                    action="loans.autodebit.succeeded",
                    actor=ACTOR,
                    **about(AutoDebitAttempt, attempt.pk),
                    after={**inputs, "payment_ref": payment_ref_for(attempt)},
                )
            )
        bulk_update_rows([a for a, _r in done], ["status", "gateway_reference", "payment"])
        append_events(events)
        # Allocates the money and, in this transaction, sends the signals that cure a loan out of arrears.
        reallocate_loans({a.installment.loan_id for a, _r in done}, now, actor=ACTOR)
    return len(done)


def _record_failures(declined: list[tuple[AutoDebitAttempt, DebitResult]], now: dt.datetime) -> int:
    """Record the declines of a chunk in one transaction: the attempts still pending become ``failed`` with their
    reason (one bulk update), one audit write, and ``autodebit_failed`` sent with them (the reminder engine plans
    the customer's notice in the same transaction). Returns how many were recorded (another worker may have
    recorded some meanwhile)."""
    if not declined:
        return 0
    with transaction.atomic():
        claimed = set(
            AutoDebitAttempt.objects.select_for_update()
            .filter(pk__in=[a.pk for a, _r in declined], status=PENDING)
            .values_list("pk", flat=True)
        )
        declined = [(a, r) for a, r in declined if a.pk in claimed]
        if not declined:
            return 0
        events = []
        for attempt, result in declined:
            attempt.status = AutoDebitAttempt.Status.FAILED
            attempt.failure_reason = (result.failure_reason or "declined")[:64]
            attempt.gateway_reference = result.reference[:64]
            events.append(
                Event(
                    action="loans.autodebit.failed",
                    actor=ACTOR,
                    **about(AutoDebitAttempt, attempt.pk),
                    after={**_inputs(attempt, result), "reason": attempt.failure_reason},
                )
            )
        bulk_update_rows([a for a, _r in declined], ["status", "failure_reason", "gateway_reference"])
        append_events(events)
        signals.autodebit_failed.send(
            sender=AutoDebitAttempt, attempts=[a for a, _r in declined], at=now, actor=ACTOR
        )
    return len(declined)


def run_autodebit(now: dt.datetime) -> dict[str, int]:
    """Debit every active autopay loan's unpaid instalment due today in its customer's local day (pipeline step).

    Effects: claims one ``AutoDebitAttempt`` per instalment and local day (a re-run claims nothing new), calls
    the gateway of ``settings.PAYMENT_GATEWAY_BACKEND`` for each pending attempt, then on success records a
    ``Payment`` (source ``autodebit``) allocated by the waterfall (oldest unpaid instalment first; a loan out
    of arrears is cured at once), on decline records the reason and sends ``autodebit_failed`` (the reminder
    engine plans the customer's notice). Audit events ``loans.autodebit.succeeded`` / ``loans.autodebit.failed``
    carry the inputs. A gateway exception leaves the attempt pending for the next run (counted as
    ``unconfirmed``), and so does a receiver of ``autodebit_failed`` that fails (its error is raised).
    Raises ImproperlyConfigured when the gateway is misconfigured. Returns counts.
    """
    gateway = get_gateway()
    counts = {"claimed": 0, "succeeded": 0, "failed": 0, "unconfirmed": 0}
    for date, zones in sorted(_local_dates(now).items()):
        counts["claimed"] += _claim(date, zones)
        # Ids first: the rows change while they are worked through, so no cursor stays open over them.
        pending_ids = list(
            AutoDebitAttempt.objects.filter(
                attempted_on=date, status=PENDING, installment__loan__customer__timezone__in=zones
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for start in range(0, len(pending_ids), CHUNK):
            attempts = list(
                AutoDebitAttempt.objects.filter(pk__any_of=pending_ids[start : start + CHUNK], status=PENDING)
                .select_related("installment__loan__customer__tier")
                .order_by("pk")
            )
            _process(attempts, gateway, now, counts)
    return counts


def _process(attempts: list[AutoDebitAttempt], gateway, now: dt.datetime, counts: dict[str, int]) -> None:
    succeeded: list[tuple[AutoDebitAttempt, DebitResult]] = []
    declined: list[tuple[AutoDebitAttempt, DebitResult]] = []
    for attempt in attempts:
        try:
            result = gateway.debit(
                loan=attempt.installment.loan,
                installment=attempt.installment,
                amount=Decimal(attempt.amount),
                idempotency_key=idempotency_key_for(attempt),
            )
        except Exception:
            # The outcome is unknown: keep the claim pending and ask again, with the same key, next run.
            logger.exception("Auto-debit of attempt %s: the gateway did not answer", attempt.pk)
            counts["unconfirmed"] += 1
            continue
        (succeeded if result.succeeded else declined).append((attempt, result))
    counts["succeeded"] += _record_successes(succeeded, now)
    counts["failed"] += _record_failures(declined, now)
