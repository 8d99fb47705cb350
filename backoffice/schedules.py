"""The django-q2 schedules of the product, registered on every migrate and keyed by name (never duplicated)."""

from __future__ import annotations

SCHEDULES = [
    {
        # Planning is per local day and idempotent, so running the whole pipeline several times a day is safe
        # and picks up each time zone's new day soon after its midnight.
        "name": "daily-pipeline",
        "func": "backoffice.tasks.run_daily_pipeline",
        "minutes": 15,
    },
    {"name": "dispatch-due", "func": "backoffice.tasks.dispatch_due", "minutes": 1},
    # Ends imports and exports whose worker died; removes files past their retention.
    {"name": "housekeeping", "func": "core.housekeeping.run_housekeeping", "minutes": 60},
    # Delivery receipts that came before their send was recorded and were not applied by the dispatcher.
    {"name": "parked-receipts", "func": "notifications.receipts.run_parked_receipts", "minutes": 10},
    # What each policy version and arm achieved (the Strategy outcomes page and export read it).
    {"name": "strategy-outcomes", "func": "strategy.outcomes.run_outcomes", "minutes": 360},
]


def register_schedules(using: str = "default") -> int:
    """Create or update each schedule by name; returns how many were created. Safe to run twice."""
    from django.db import connections
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return 0  # a partial migrate that has not reached django-q's tables yet
    created = 0
    for spec in SCHEDULES:
        _obj, was_created = Schedule.objects.using(using).update_or_create(
            name=spec["name"],
            defaults={
                "func": spec["func"],
                "schedule_type": Schedule.MINUTES,
                "minutes": spec["minutes"],
                "repeats": -1,
            },
        )
        created += was_created
    return created


def register_schedules_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """Receiver of ``post_migrate`` (sent once per migrate for the back office)."""
    register_schedules(using=using)
