"""Days past due are derived, not stored: a case keeps the date they count from (``oldest_due_date``).

Filled from what is there: an open case counts from its loan's oldest unpaid instalment (what the next daily
advance would find); a closed case, or an open one with nothing unpaid any more, from the days past due it
stored, counted back from the day it was last written in the customer's calendar (its close, for a closed
case), so that a closed case still reads the days past due it closed at. Then the stored field goes. Open call
tasks are ranked again by the oldest due date instead of the days past due (``calls.call_priority`` as it
reads when this was written), so that tasks made before and after rank alike.
"""

import datetime as dt
import zoneinfo

from django.db import migrations, models
from django.db.models import Min
from django.utils import timezone

BATCH = 2000


def _local_day(at, tz_name):
    try:
        zone = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.timezone.utc
    return at.astimezone(zone).date()


def count_from_oldest_due_date(apps, schema_editor):
    CollectionCase = apps.get_model("collections", "CollectionCase")
    Installment = apps.get_model("loans", "Installment")
    ids = list(CollectionCase.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        cases = list(
            CollectionCase.objects.filter(pk__in=ids[start : start + BATCH]).select_related("loan__customer")
        )
        open_loans = [c.loan_id for c in cases if c.status == "open"]
        oldest_unpaid = dict(
            Installment.objects.filter(loan_id__in=open_loans, paid_at__isnull=True)
            .order_by()
            .values_list("loan_id")
            .annotate(first=Min("due_date"))
            .values_list("loan_id", "first")
        )
        for case in cases:
            if case.status == "open" and case.loan_id in oldest_unpaid:
                case.oldest_due_date = oldest_unpaid[case.loan_id]
            else:
                written = case.closed_at or case.updated_at or case.opened_at
                day = _local_day(written, case.loan.customer.timezone)
                case.oldest_due_date = day - dt.timedelta(days=case.dpd)
        CollectionCase.objects.bulk_update(cases, ["oldest_due_date"])


def rank_open_tasks(apps, schema_editor):
    CallTask = apps.get_model("collections", "CallTask")
    ids = list(CallTask.objects.filter(status="open").order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        tasks = list(CallTask.objects.filter(pk__in=ids[start : start + BATCH]).select_related("case"))
        for task in tasks:
            case = task.case
            task.priority = (
                min(case.broken_promises, 9) * 10**16
                + min(int(case.amount_overdue), 10**9 - 1) * 10**6
                + (10**6 - 1 - min(case.oldest_due_date.toordinal(), 10**6 - 1))
            )
        CallTask.objects.bulk_update(tasks, ["priority"])


def store_days_past_due(apps, schema_editor):
    """Backwards: the days past due as of now (an open case) or of its close."""
    CollectionCase = apps.get_model("collections", "CollectionCase")
    now = timezone.now()
    ids = list(CollectionCase.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH):
        cases = list(
            CollectionCase.objects.filter(pk__in=ids[start : start + BATCH]).select_related("loan__customer")
        )
        for case in cases:
            day = _local_day(min(now, case.closed_at or now), case.loan.customer.timezone)
            case.dpd = max((day - case.oldest_due_date).days, 0)
        CollectionCase.objects.bulk_update(cases, ["dpd"])


class Migration(migrations.Migration):
    dependencies = [
        ("collections", "0006_field_labels_in_every_language"),
        ("loans", "0006_customer_search_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="collectioncase",
            name="oldest_due_date",
            field=models.DateField(null=True, verbose_name="oldest due date"),
        ),
        migrations.RunPython(count_from_oldest_due_date, store_days_past_due),
        migrations.AlterField(
            model_name="collectioncase",
            name="oldest_due_date",
            field=models.DateField(
                help_text="Due date of the oldest instalment past due: days past due count from it.",
                verbose_name="oldest due date",
            ),
        ),
        migrations.RemoveField(model_name="collectioncase", name="dpd"),
        migrations.RunPython(rank_open_tasks, migrations.RunPython.noop),
    ]
