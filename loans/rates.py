"""The collection rates' one definition each, as aggregates over instalments: the dashboard (by window and
current tier) and the outcomes job (by due month, policy version and arm) group them differently and count the
same way. Nothing here reads the clock or the database: the callers give the day and the rows.

- An instalment *went past due* when it was not paid by the end of its due date (``went_overdue_q``).
- *Cure*: of the instalments that went past due, those paid since.
- *Roll*: of the instalments still unpaid at the end of a day (the day they stood in a bucket of days past due),
  those still unpaid ``ROLL_PERIOD_DAYS`` later; with 30-day buckets that is the next bucket. Exact per instalment
  (its due date and when it was paid), not read from a case.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, DateField, ExpressionWrapper, F, Q

from .schedule import unpaid_after_q, went_overdue_q

ROLL_PERIOD_DAYS = 30


def days_after_due(days: int) -> ExpressionWrapper:
    """The row's due date plus ``days``, as a date."""
    return ExpressionWrapper(F("due_date") + dt.timedelta(days=days), output_field=DateField())


def cure_counts(within: Q | None = None) -> dict[str, Count]:
    """Aggregates ``overdue`` (instalments of ``within`` that went past due) and ``cured`` (those of them paid
    since)."""
    base = went_overdue_q() if within is None else within & went_overdue_q()
    return {"overdue": Count("id", filter=base), "cured": Count("id", filter=base & Q(paid_at__isnull=False))}


def roll_counts(name: str, within: Q, day: dt.date | int) -> dict[str, Count]:
    """Aggregates ``from_<name>`` (instalments of ``within`` still unpaid at the end of ``day``) and
    ``rolled_<name>`` (those of them still unpaid ``ROLL_PERIOD_DAYS`` later).

    ``day`` is a date (the dashboard's snapshot, every instalment in the bucket then) or a number of days past
    the due date (an outcome cohort's bucket: each instalment on the day it entered it)."""
    if isinstance(day, int):
        start, end = days_after_due(day), days_after_due(day + ROLL_PERIOD_DAYS)
    else:
        start, end = day, day + dt.timedelta(days=ROLL_PERIOD_DAYS)
    base = within & unpaid_after_q(start)
    return {
        f"from_{name}": Count("id", filter=base),
        f"rolled_{name}": Count("id", filter=base & unpaid_after_q(end)),
    }
