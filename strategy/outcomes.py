"""The outcomes job: what each policy version and arm of each tier achieved, by cohort month, as counts
(``OutcomeFigure``). Scheduled (``strategy-outcomes``); the page and the export read the figures it stored.

Units and cohorts (one aggregate query per family, over the whole book, whatever its size):
- instalments, by the month they fell due: paid by the due date, within 7 and within 30 days of it (each out
  of the instalments whose horizon has passed), cured (paid after going past due, ``loans.rates.cure_counts``),
  rolled from one DPD bucket to the next (still unpaid 30 days after entering the bucket, out of those that
  entered it 30 days or more ago, ``loans.rates.roll_counts``), and the share of their customers who opted out
  of a channel; an instalment's version is that of the first contact planned about it (its customer's arm's
  version when none was: a holdout customer may get no contact before it falls due);
- promises, by the month their case opened: kept, out of kept or broken (``promise_kept_counts``); a case's
  version is its own;
- effort: contacts sent (by the version they were decided under, the month they were sent) and calls made (by
  their task's version, the month they were made) per cured instalment of the same version and month.
The dashboard's cure, roll and promise-kept rates count by the same three definitions (over a window instead of
by cohort).
A customer's arm is their assignment in the tier's test (champion when never assigned).
An instalment's first contact and a customer's latest assignment are joined from two views (``FirstContact``,
``CurrentAssignment``, one row per key), not looked up per row: the job's time grows with the book as a scan does.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from django.db import transaction
from django.db.models import Count, F, FilteredRelation, Q, Value
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone

from debt_collection.models import CallAttempt, PromiseToPay
from debt_collection.promises import promise_kept_counts
from loans.models import Arm, Installment
from loans.rates import ROLL_PERIOD_DAYS, cure_counts, days_after_due, roll_counts
from notifications.models import NotificationLog

from .models import OutcomeFigure

Metric = OutcomeFigure.Metric
BUCKETS = ((Metric.ROLL_1_30, 1, 30), (Metric.ROLL_31_60, 31, 60), (Metric.ROLL_61_90, 61, 90))
JOB_ACTOR = "job:strategy_outcomes"


def _arm(customer: str, tier: str) -> dict:
    """Annotations ``arm`` (the customer's latest assignment in the tier, champion when never assigned) and
    ``assigned_version``, by a join on ``CurrentAssignment`` (at most one row per customer and tier)."""
    relation = f"{customer}__outcome_arms" if customer else "outcome_arms"
    return {
        "current_arm": FilteredRelation(relation, condition=Q(**{f"{relation}__tier_id": F(tier)})),
        "arm": Coalesce(F("current_arm__arm"), Value(Arm.CHAMPION.value)),
        "assigned_version": F("current_arm__policy_version_id"),
    }


def _month(value) -> dt.date:
    if isinstance(value, dt.datetime):
        value = value.date()
    return value.replace(day=1)


def instalment_figures(today: dt.date) -> dict[tuple, list[int]]:
    """Counts per (tier, version, arm, due month, metric): [numerator, denominator]."""
    paid_day = TruncDate("paid_at")

    rolls = {}
    for _metric, low, _high in BUCKETS:
        horizon = Q(due_date__lte=today - dt.timedelta(days=low + ROLL_PERIOD_DAYS))
        rolls.update(roll_counts(str(low), horizon, low))

    rows = (
        Installment.objects.filter(due_date__lt=today, loan__customer__tier_id__isnull=False)
        .annotate(**_arm("loan__customer", "loan__customer__tier_id"))
        .annotate(
            version=Coalesce(F("outcome_first_contact__policy_version_id"), F("assigned_version")),
            cohort=TruncMonth("due_date"),
            paid_day=paid_day,
            horizon_7=days_after_due(7),
            horizon_30=days_after_due(30),
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
            **cure_counts(),
            **rolls,
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
        if row["overdue"]:
            figures[(*key, Metric.CURE)] = [row["cured"], row["overdue"]]
        for metric, low, _high in BUCKETS:
            if row[f"from_{low}"]:
                figures[(*key, metric)] = [row[f"rolled_{low}"], row[f"from_{low}"]]
    return figures


def promise_figures() -> dict[tuple, list[int]]:
    """Counts per (tier, version, arm, opening month of the case, ``promise_kept``): [kept, kept or broken]."""
    figures: dict[tuple, list[int]] = {}
    promises = (
        PromiseToPay.objects.filter(case__tier_id__isnull=False)
        .annotate(**_arm("case__loan__customer", "case__tier_id"), cohort=TruncMonth("case__opened_at"))
        .values("case__tier_id", "case__policy_version_id", "arm", "cohort")
        .annotate(**promise_kept_counts())
        .filter(resolved__gt=0)
        .order_by()
    )
    for row in promises:
        key = (row["case__tier_id"], row["case__policy_version_id"], row["arm"], _month(row["cohort"]))
        figures[(*key, Metric.PROMISE_KEPT)] = [row["kept"], row["resolved"]]
    return figures


def effort_figures(cures: dict[tuple, int]) -> dict[tuple, list[int]]:
    """Contacts sent and calls made per cured instalment, per (tier, version, arm, month)."""
    figures: dict[tuple, list[int]] = {}
    contacts = (
        NotificationLog.objects.filter(status__in=NotificationLog.CONTACTED_STATUSES, tier_id__isnull=False)
        .annotate(**_arm("customer", "tier_id"), cohort=TruncMonth("sent_at"))
        .values("tier_id", "policy_version_id", "arm", "cohort")
        .annotate(n=Count("id"))
        .order_by()
    )
    calls = (
        CallAttempt.objects.filter(task__case__tier_id__isnull=False)
        .annotate(**_arm("task__case__loan__customer", "task__case__tier_id"), cohort=TruncMonth("made_at"))
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
    figures.update(promise_figures())
    cures = defaultdict(int)
    for (tier, version, arm, cohort, metric), (k, _n) in figures.items():
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
