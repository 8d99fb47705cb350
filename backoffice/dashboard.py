"""The figures of the admin's front page, computed by the database and cached for a minute.

Definitions (also printed on the page):

- *Today* is the calendar day in the back office's ``TIME_ZONE``; contacts count by ``scheduled_for``.
- *Held back* contacts are those deferred, suppressed or cancelled, grouped by reason code.
- *Overdue book*: unpaid instalments past their due date on loans not written off, bucketed by days past due
  (DPD, counted from the due date: 1-30, 31-60, 61-90, 90+); the amount is what is still owed on them.
- *Roll rate* of a bucket: of the instalments that were unpaid and in that bucket 30 days ago, the share still
  unpaid today, which with 30-day buckets means they moved ("rolled") into the next bucket. "Current" is the
  instalments falling due within the 30 days from that snapshot. (``loans.rates.roll_counts``: the outcomes
  job counts its roll rates by the same rule.)
- *Cure rate* of a tier: of the instalments due in the last 90 days that were not paid by their due date, the
  share paid since. The tier is the customer's current tier. (``loans.rates.cure_counts``, as the outcomes job.)
- *Collectors' open tasks*: call tasks not yet done, per assigned collector (once collections is installed).
- *Promises due today*: promises to pay still pending whose date is today; *broken yesterday*: promises marked
  broken during yesterday.
- *Promise-kept rate*: of the promises dated in the last 30 days (before today) that were resolved, the share
  kept (``debt_collection.promises.promise_kept_counts``, as the outcomes job).
- *Right-party-contact rate*: of the calls completed in the last 30 days, the share in which the collector spoke
  with the customer (reached, promise, dispute, refusal: the conversation outcomes of a call).
- *Call queue ageing*: open call tasks by how long ago they became callable (their "call from").
- *Amount collected by stage*: payments received in the last 30 days on a loan while a collections case was open
  on it, by the stage the case had reached (its stage now).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from debt_collection.models import CallTask, PromiseToPay
from debt_collection.promises import promise_kept_counts
from loans.models import AutoDebitAttempt, Installment, Loan, Payment
from loans.rates import ROLL_PERIOD_DAYS, cure_counts, roll_counts
from loans.schedule import DPD_BUCKET_BOUNDS
from notifications.models import NotificationLog

CACHE_SECONDS = 60
HISTORY_DAYS = 14
CURE_WINDOW_DAYS = 90
HELD_BACK_STATUSES = (
    NotificationLog.Status.DEFERRED,
    NotificationLog.Status.SUPPRESSED,
    NotificationLog.Status.CANCELLED,
)
CONTACTED = (NotificationLog.Status.SENT, NotificationLog.Status.DELIVERED)
# (key, first DPD, last DPD or None for open-ended): the loan book's buckets
DPD_BUCKETS = tuple((bucket.value, first, last) for bucket, (first, last) in DPD_BUCKET_BOUNDS.items())
ROLL_BUCKETS = (("current", -29, 0), *DPD_BUCKETS[:-1])
NEXT_BUCKET = {"current": "1-30", "1-30": "31-60", "31-60": "61-90", "61-90": "90+"}

MONEY = DecimalField(max_digits=16, decimal_places=2)
ZERO = Decimal("0.00")


def local_zone() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_today() -> dt.date:
    return timezone.now().astimezone(local_zone()).date()


def day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of ``day`` in the back office's time zone, as an aware datetime."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=local_zone())


def _due_range(today: dt.date, first_dpd: int, last_dpd: int | None) -> Q:
    """Instalments whose DPD on ``today`` lies in [first_dpd, last_dpd] (DPD = today - due_date)."""
    q = Q(due_date__lte=today - dt.timedelta(days=first_dpd))
    if last_dpd is not None:
        q &= Q(due_date__gte=today - dt.timedelta(days=last_dpd))
    return q


def _book():
    return Installment.objects.exclude(loan__status=Loan.Status.WRITTEN_OFF)


def contacts_today(today: dt.date) -> dict[str, Any]:
    """Today's contacts by status and channel, and the held-back ones by status and reason (2 queries)."""
    start, end = day_start(today), day_start(today + dt.timedelta(days=1))
    todays = NotificationLog.objects.filter(scheduled_for__gte=start, scheduled_for__lt=end)
    matrix = {
        (row["status"], row["channel"]): row["n"]
        for row in todays.order_by().values("status", "channel").annotate(n=Count("id"))
    }
    held = list(
        todays.filter(status__in=HELD_BACK_STATUSES)
        .order_by()
        .values("status", "reason")
        .annotate(n=Count("id"))
        .order_by("-n", "status", "reason")
    )
    return {"matrix": matrix, "held_back": [(r["status"], r["reason"], r["n"]) for r in held]}


def daily_history(today: dt.date, days: int = HISTORY_DAYS) -> list[dict[str, Any]]:
    """The last ``days`` days up to today: contacts by outcome and payments received (2 queries)."""
    zone = local_zone()
    first = today - dt.timedelta(days=days - 1)
    start, end = day_start(first), day_start(today + dt.timedelta(days=1))
    contacts = {
        row["day"]: row
        for row in NotificationLog.objects.filter(scheduled_for__gte=start, scheduled_for__lt=end)
        .annotate(day=TruncDate("scheduled_for", tzinfo=zone))
        .order_by()
        .values("day")
        .annotate(
            contacted=Count("id", filter=Q(status__in=CONTACTED)),
            held_back=Count("id", filter=Q(status__in=HELD_BACK_STATUSES)),
            failed=Count("id", filter=Q(status=NotificationLog.Status.FAILED)),
            pending=Count("id", filter=Q(status=NotificationLog.Status.PLANNED)),
        )
    }
    payments = {
        row["day"]: row
        for row in Payment.objects.filter(received_at__gte=start, received_at__lt=end)
        .annotate(day=TruncDate("received_at", tzinfo=zone))
        .order_by()
        .values("day")
        .annotate(n=Count("id"), amount=Sum("amount"))
    }
    history = []
    for i in range(days):
        day = first + dt.timedelta(days=i)
        c, p = contacts.get(day, {}), payments.get(day, {})
        history.append(
            {
                "day": day,
                "contacted": c.get("contacted", 0),
                "held_back": c.get("held_back", 0),
                "failed": c.get("failed", 0),
                "pending": c.get("pending", 0),
                "payments": p.get("n", 0),
                "paid_amount": p.get("amount") or ZERO,
            }
        )
    return history


def overdue_book(today: dt.date) -> list[dict[str, Any]]:
    """Unpaid instalments past due by DPD bucket: count and amount still owed (1 query)."""
    owed = ExpressionWrapper(F("amount_due") - F("amount_paid"), output_field=MONEY)
    aggregates = {}
    for key, first, last in DPD_BUCKETS:
        in_bucket = _due_range(today, first, last)
        aggregates[f"n_{key}"] = Count("id", filter=in_bucket)
        aggregates[f"amount_{key}"] = Coalesce(Sum(owed, filter=in_bucket), ZERO, output_field=MONEY)
    totals = _book().filter(paid_at__isnull=True, due_date__lt=today).aggregate(**aggregates)
    return [
        {"bucket": key, "count": totals[f"n_{key}"], "amount": totals[f"amount_{key}"]}
        for key, _f, _l in DPD_BUCKETS
    ]


def roll_rates(today: dt.date) -> list[dict[str, Any]]:
    """For each bucket 30 days ago, how many were unpaid in it then and how many of those are still unpaid
    today (so in the next bucket now), and the share (1 query)."""
    snapshot = today - dt.timedelta(days=ROLL_PERIOD_DAYS)
    aggregates = {}
    for key, first, last in ROLL_BUCKETS:
        aggregates.update(roll_counts(key, _due_range(snapshot, first, last), snapshot))
    oldest = snapshot - dt.timedelta(days=ROLL_BUCKETS[-1][2])
    newest = snapshot - dt.timedelta(days=ROLL_BUCKETS[0][1])
    totals = _book().filter(due_date__gte=oldest, due_date__lte=newest).aggregate(**aggregates)
    rows = []
    for key, _f, _l in ROLL_BUCKETS:
        base, rolled = totals[f"from_{key}"], totals[f"rolled_{key}"]
        rows.append(
            {
                "from_bucket": key,
                "to_bucket": NEXT_BUCKET[key],
                "base": base,
                "rolled": rolled,
                "rate": (Decimal(rolled) / Decimal(base)).quantize(Decimal("0.0001")) if base else None,
            }
        )
    return rows


def cure_rates(today: dt.date) -> list[dict[str, Any]]:
    """Per current tier: instalments due in the last 90 days not paid by their due date, how many of them were
    paid since, and the share (1 query)."""
    rows = (
        _book()
        .filter(due_date__gte=today - dt.timedelta(days=CURE_WINDOW_DAYS), due_date__lt=today)
        .order_by()
        .values("loan__customer__tier_id", "loan__customer__tier__code", "loan__customer__tier__name")
        .annotate(**cure_counts())
        .filter(overdue__gt=0)
        .order_by("loan__customer__tier__code")
    )
    return [
        {
            "tier_id": r["loan__customer__tier_id"],
            "tier_code": r["loan__customer__tier__code"] or "",
            "tier_name": r["loan__customer__tier__name"] or "",
            "overdue": r["overdue"],
            "cured": r["cured"],
            "rate": (Decimal(r["cured"]) / Decimal(r["overdue"])).quantize(Decimal("0.0001"))
            if r["overdue"]
            else None,
        }
        for r in rows
    ]


def collector_tasks(today: dt.date) -> list[dict[str, Any]]:
    """Open call tasks per assigned collector, and how many of them are callable by the end of today
    (1 query)."""
    rows = (
        CallTask.objects.filter(status=CallTask.Status.OPEN)
        .order_by()
        .values("assigned_to_id", "assigned_to__username")
        .annotate(
            open=Count("id"),
            due_now=Count("id", filter=Q(scheduled_for__lt=day_start(today + dt.timedelta(days=1)))),
        )
        .order_by("assigned_to__username")
    )
    return [
        {
            "collector": r["assigned_to__username"] or "",
            "collector_id": r["assigned_to_id"],
            "open": r["open"],
            "due_now": r["due_now"],
        }
        for r in rows
    ]


KPI_WINDOW_DAYS = 30
# (key, fewest days late, most days late or None): how long an open call task has been callable.
QUEUE_AGES = (("later", None, -1), ("today", 0, 0), ("1-2", 1, 2), ("3-7", 3, 7), ("8+", 8, None))


def morning_board(today: dt.date) -> dict[str, Any]:
    """What an operations lead asks first: promises due today and broken yesterday, auto-debit failures of
    yesterday and today, the call queue by age, and the promise-kept and right-party-contact rates of the last
    30 days, and the amount collected by stage (6 queries)"""

    yesterday = today - dt.timedelta(days=1)
    window_start = today - dt.timedelta(days=KPI_WINDOW_DAYS)
    promises = PromiseToPay.objects.aggregate(
        due_today=Count("id", filter=Q(status=PromiseToPay.Status.PENDING, promised_date=today)),
        due_today_amount=Coalesce(
            Sum("amount", filter=Q(status=PromiseToPay.Status.PENDING, promised_date=today)),
            ZERO,
            output_field=MONEY,
        ),
        broken_yesterday=Count(
            "id",
            filter=Q(
                status=PromiseToPay.Status.BROKEN,
                resolved_at__gte=day_start(yesterday),
                resolved_at__lt=day_start(today),
            ),
        ),
        **promise_kept_counts(Q(promised_date__gte=window_start, promised_date__lt=today)),
    )
    debits = AutoDebitAttempt.objects.aggregate(
        failed_yesterday=Count("id", filter=Q(status=AutoDebitAttempt.Status.FAILED, attempted_on=yesterday)),
        failed_today=Count("id", filter=Q(status=AutoDebitAttempt.Status.FAILED, attempted_on=today)),
    )
    ages = {}
    for key, fewest, most in QUEUE_AGES:
        q = Q()
        if most is not None:
            q &= Q(scheduled_for__gte=day_start(today - dt.timedelta(days=most)))
        if fewest is not None:
            q &= Q(scheduled_for__lt=day_start(today - dt.timedelta(days=fewest - 1)))
        ages[key] = Count("id", filter=q)
    queue = CallTask.objects.filter(status=CallTask.Status.OPEN).aggregate(total=Count("id"), **ages)
    calls = CallTask.objects.filter(
        status=CallTask.Status.DONE,
        completed_at__gte=day_start(window_start),
        completed_at__lt=day_start(today + dt.timedelta(days=1)),
    ).aggregate(
        completed=Count("id"),
        right_party=Count("id", filter=Q(outcome__in=CallTask.CONVERSATION_OUTCOMES)),
    )
    in_case = Q(loan__collection_cases__opened_at__lte=F("received_at")) & (
        Q(loan__collection_cases__closed_at__isnull=True)
        | Q(loan__collection_cases__closed_at__gte=F("received_at"))
    )
    collected = [
        {"stage": r["loan__collection_cases__stage"] or "", "payments": r["n"], "amount": r["amount"]}
        for r in Payment.objects.filter(
            in_case,
            received_at__gte=day_start(window_start),
            received_at__lt=day_start(today + dt.timedelta(days=1)),
        )
        .order_by()
        .values("loan__collection_cases__stage")
        .annotate(n=Count("id"), amount=Sum("amount"))
        .order_by("-amount")
    ]
    return {
        "promises": promises,
        "promise_kept_rate": _rate(promises["kept"], promises["resolved"]),
        "autodebit": debits,
        "queue": queue,
        "calls": calls,
        "right_party_rate": _rate(calls["right_party"], calls["completed"]),
        "collected_by_stage": collected,
    }


def _rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001")) if whole else None


def dashboard_figures(today: dt.date | None = None) -> dict[str, Any]:
    """Every figure of the front page as plain data (codes, ints, Decimals, dates), cached for 60 seconds.

    Reads only; about 8 queries on a cold cache, none on a warm one.
    """
    today = today or local_today()
    key = f"backoffice:dashboard:{today.isoformat()}"
    figures = cache.get(key)
    if figures is None:
        figures = {
            "today": today,
            "computed_at": timezone.now(),
            "contacts": contacts_today(today),
            "history": daily_history(today),
            "overdue": overdue_book(today),
            "roll_rates": roll_rates(today),
            "cure_rates": cure_rates(today),
            "collector_tasks": collector_tasks(today),
            "morning": morning_board(today),
        }
        cache.set(key, figures, CACHE_SECONDS)
    return figures


def clear_cache(today: dt.date | None = None) -> None:
    cache.delete(f"backoffice:dashboard:{(today or local_today()).isoformat()}")


__all__ = ["clear_cache", "dashboard_figures", "local_today"]
