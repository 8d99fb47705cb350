"""The outcomes job: what each policy version and arm of each tier achieved, by cohort month, as counts
(``OutcomeFigure``). Scheduled (``strategy-outcomes``); the page and the export read the figures it stored.

Units and cohorts (one aggregate query per family, over the whole book, whatever its size):
- instalments, by the month they fell due: paid by the due date, within 7 and within 30 days of it (each out
  of the instalments whose horizon has passed), and the share of their customers who opted out of a channel;
  an instalment's version is that of the first contact planned about it (its customer's arm's version when
  none was: a holdout customer may get no contact before it falls due);
- cases, by the month they opened: cured (closed paid), rolled from one DPD bucket to the next (out of those
  that reached the bucket), promises kept (out of promises kept or broken); a case's version is its own;
- effort: contacts sent (by the version they were decided under, the month they were sent) and calls made (by
  their task's version, the month they were made) per cured case of the same version and month.
A customer's arm is their assignment in the tier's test (champion when never assigned).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import transaction
from django.db.models import Count, DateField, ExpressionWrapper, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone

from debt_collection.models import CallAttempt, CollectionCase, PromiseToPay
from loans.models import Arm, Installment, PolicyAssignment
from notifications.models import NotificationItem, NotificationLog

from .models import OutcomeFigure

Metric = OutcomeFigure.Metric
BUCKETS = ((Metric.ROLL_1_30, 1, 30), (Metric.ROLL_31_60, 31, 60), (Metric.ROLL_61_90, 61, 90))
JOB_ACTOR = "job:strategy_outcomes"


def _arm_of(customer_ref: str, tier_ref: str):
    rows = PolicyAssignment.objects.filter(customer_id=OuterRef(customer_ref), tier_id=OuterRef(tier_ref))
    return Coalesce(Subquery(rows.order_by("-id").values("arm")[:1]), Value(Arm.CHAMPION.value))


def _month(value) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    return value.replace(day=1)


def instalment_figures(today: dt.date) -> dict[tuple, list[int]]:
    """Counts per (tier, version, arm, due month, metric): [numerator, denominator]."""
    first_contact = NotificationItem.objects.filter(installment_id=OuterRef("pk")).order_by("notification_id")
    assigned = PolicyAssignment.objects.filter(
        customer_id=OuterRef("loan__customer_id"), tier_id=OuterRef("loan__customer__tier_id")
    ).order_by("-id")
    paid_day = TruncDate("paid_at")

    def within(days: int):
        return ExpressionWrapper(F("due_date") + dt.timedelta(days=days), output_field=DateField())

    rows = (
        Installment.objects.filter(due_date__lt=today, loan__customer__tier_id__isnull=False)
        .annotate(
            version=Coalesce(
                Subquery(first_contact.values("notification__policy_version_id")[:1]),
                Subquery(assigned.values("policy_version_id")[:1]),
            ),
            arm=_arm_of("loan__customer_id", "loan__customer__tier_id"),
            cohort=TruncMonth("due_date"),
            paid_day=paid_day,
            horizon_7=within(7),
            horizon_30=within(30),
        )
        .values("loan__customer__tier_id", "version", "arm", "cohort")
        .annotate(
            due=Count("id"),
            paid_by_due=Count("id", filter=Q(paid_day__lte=F("due_date"))),
            due_7=Count("id", filter=Q(due_date__lt=today - dt.timedelta(days=7))),
            paid_7=Count(
                "id", filter=Q(due_date__lt=today - dt.timedelta(days=7), paid_day__lte=F("horizon_7"))
            ),
            due_30=Count("id", filter=Q(due_date__lt=today - dt.timedelta(days=30))),
            paid_30=Count(
                "id", filter=Q(due_date__lt=today - dt.timedelta(days=30), paid_day__lte=F("horizon_30"))
            ),
            customers=Count("loan__customer_id", distinct=True),
            opted_out=Count(
                "loan__customer_id",
                distinct=True,
                filter=Q(loan__customer__opt_out_sms=True)
                | Q(loan__customer__opt_out_email=True)
                | Q(loan__customer__opt_out_push=True)
                | Q(loan__customer__opt_out_call=True),
            ),
        )
        .order_by()
    )
    figures: dict[tuple, list[int]] = {}
    for row in rows:
        key = (row["loan__customer__tier_id"], row["version"], row["arm"], _month(row["cohort"]))
        figures[(*key, Metric.PAID_BY_DUE)] = [row["paid_by_due"], row["due"]]
        figures[(*key, Metric.PAID_WITHIN_7)] = [row["paid_7"], row["due_7"]]
        figures[(*key, Metric.PAID_WITHIN_30)] = [row["paid_30"], row["due_30"]]
        figures[(*key, Metric.OPT_OUT)] = [row["opted_out"], row["customers"]]
    return figures


def _late_by(days: int, today: dt.date) -> Q:
    """Cases whose days past due reached ``days``: counted from the oldest instalment due to today for an open
    case, to the day it closed for a closed one."""
    closed_day = ExpressionWrapper(TruncDate("closed_at") - dt.timedelta(days=days), output_field=DateField())
    return Q(status=CollectionCase.Status.OPEN, oldest_due_date__lte=today - dt.timedelta(days=days)) | Q(
        status=CollectionCase.Status.CLOSED, oldest_due_date__lte=closed_day
    )


def case_figures(today: dt.date) -> dict[tuple, list[int]]:
    """Counts per (tier, version, arm, opening month, metric) of cases, roll rates and promises."""
    figures: dict[tuple, list[int]] = {}
    bucket_counts = {}
    for _metric, low, high in BUCKETS:
        bucket_counts[f"reached_{low}"] = Count("id", filter=_late_by(low, today))
        bucket_counts[f"rolled_{low}"] = Count("id", filter=_late_by(high + 1, today))
    rows = (
        CollectionCase.objects.filter(tier_id__isnull=False)
        .annotate(arm=_arm_of("loan__customer_id", "tier_id"), cohort=TruncMonth("opened_at"))
        .values("tier_id", "policy_version_id", "arm", "cohort")
        .annotate(
            opened=Count("id"),
            cured=Count("id", filter=Q(status=CollectionCase.Status.CLOSED, close_reason="paid")),
            **bucket_counts,
        )
        .order_by()
    )
    for row in rows:
        key = (row["tier_id"], row["policy_version_id"], row["arm"], _month(row["cohort"]))
        figures[(*key, Metric.CURE)] = [row["cured"], row["opened"]]
        for metric, low, _high in BUCKETS:
            if row[f"reached_{low}"]:
                figures[(*key, metric)] = [row[f"rolled_{low}"], row[f"reached_{low}"]]
    promises = (
        PromiseToPay.objects.filter(
            status__in=[PromiseToPay.Status.KEPT, PromiseToPay.Status.BROKEN], case__tier_id__isnull=False
        )
        .annotate(
            arm=_arm_of("case__loan__customer_id", "case__tier_id"), cohort=TruncMonth("case__opened_at")
        )
        .values("case__tier_id", "case__policy_version_id", "arm", "cohort")
        .annotate(resolved=Count("id"), kept=Count("id", filter=Q(status=PromiseToPay.Status.KEPT)))
        .order_by()
    )
    for row in promises:
        key = (row["case__tier_id"], row["case__policy_version_id"], row["arm"], _month(row["cohort"]))
        figures[(*key, Metric.PROMISE_KEPT)] = [row["kept"], row["resolved"]]
    return figures


def effort_figures(cures: dict[tuple, int]) -> dict[tuple, list[int]]:
    """Contacts sent and calls made per cured case, per (tier, version, arm, month)."""
    figures: dict[tuple, list[int]] = {}
    contacts = (
        NotificationLog.objects.filter(status__in=NotificationLog.CONTACTED_STATUSES, tier_id__isnull=False)
        .annotate(arm=_arm_of("customer_id", "tier_id"), cohort=TruncMonth("sent_at"))
        .values("tier_id", "policy_version_id", "arm", "cohort")
        .annotate(n=Count("id"))
        .order_by()
    )
    calls = (
        CallAttempt.objects.filter(task__case__tier_id__isnull=False)
        .annotate(arm=_arm_of("customer_id", "task__case__tier_id"), cohort=TruncMonth("made_at"))
        .values("task__case__tier_id", "task__policy_version_id", "arm", "cohort")
        .annotate(n=Count("id"))
        .order_by()
    )
    for metric, rows, tier, version in (
        (Metric.CONTACTS_PER_CURE, contacts, "tier_id", "policy_version_id"),
        (Metric.CALLS_PER_CURE, calls, "task__case__tier_id", "task__policy_version_id"),
    ):
        for row in rows:
            key = (row[tier], row[version], row["arm"], _month(row["cohort"]))
            figures[(*key, metric)] = [row["n"], cures.get(key, 0)]
    return figures


def compute_outcomes(now: dt.datetime) -> dict[tuple, list[int]]:
    """Every figure as of ``now`` (read only)."""
    today = timezone.localdate(now)
    figures = instalment_figures(today)
    cases = case_figures(today)
    figures.update(cases)
    cures = defaultdict(int)
    for (tier, version, arm, cohort, metric), (k, _n) in cases.items():
        if metric == Metric.CURE:
            cures[(tier, version, arm, cohort)] += k
    figures.update(effort_figures(cures))
    return figures


def run_outcomes(now: dt.datetime | None = None) -> dict:
    """Scheduled job ``strategy-outcomes``: recompute every figure and replace the stored ones in one
    transaction (the page never shows half of a run). Safe to run twice. Returns how many figures it stored."""
    now = now or timezone.now()
    figures = compute_outcomes(now)
    with transaction.atomic():
        OutcomeFigure.objects.all().delete()
        OutcomeFigure.objects.bulk_create(
            [
                OutcomeFigure(
                    tier_id=tier,
                    policy_version_id=version,
                    arm=arm,
                    cohort=cohort,
                    metric=metric,
                    numerator=k,
                    denominator=n,
                    computed_at=now,
                )
                for (tier, version, arm, cohort, metric), (k, n) in sorted(
                    figures.items(), key=lambda item: tuple(str(x) for x in item[0])
                )
            ],
            batch_size=1000,
        )
    return {"figures": len(figures)}
