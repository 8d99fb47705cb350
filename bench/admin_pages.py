"""Admin at scale: the notification log pages over a big log against the same pages over 10,000 rows.

    .venv/bin/python bench/admin_pages.py --database-url postgres://postgres@127.0.0.1:5432/bench --rows 5000000

Figures: the notification log changelist, a filtered changelist (status and reason) and a customer's contact
timeline, each timed as the median of several requests through Django's test client as a logged-in superuser.
Floor: the same pages when the log holds 10,000 rows, measured in the same run. Target: at most 1.5x.

On PostgreSQL the log is partitioned by month of ``created_at``: the rows are planned five seconds apart from
January 2026 on (5,000,000 rows span ten months), each in its month's partition, created here first.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid

from common import Report, parse_args, setup_django

SMALL = 10_000


BASE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
STEP = dt.timedelta(seconds=5)


def make_month_partitions(total: int) -> None:
    """The month partitions the rows will fall in (PostgreSQL; the migration made them from today's month)."""
    from django.db import connection

    from core.partitions import Partitioning, add_months, create_month_partition, is_partitioned, month_start
    from notifications.models import NotificationLog

    table = NotificationLog._meta.db_table
    if not is_partitioned(connection, table):
        return
    month, last = month_start(BASE), month_start(BASE + STEP * total)
    while month <= last:
        create_month_partition(connection, Partitioning(table, "created_at"), month)
        month = add_months(month, 1)


def fill_to(total: int, customer_ids: list[int], batch: int = 10_000) -> None:
    from django.db import transaction

    from notifications.models import NotificationLog

    have = NotificationLog.objects.count()
    base = BASE
    # Planned over months (the partition key), not all now: created_at is given, not stamped.
    NotificationLog._meta.get_field("created_at").auto_now_add = False
    statuses = ["sent"] * 14 + ["delivered"] * 3 + ["suppressed", "deferred", "cancelled"]
    reasons = {"suppressed": "frequency_cap", "deferred": "outside_contact_window", "cancelled": "paid"}
    while have < total:
        n = min(batch, total - have)
        rows = []
        for i in range(have, have + n):
            status = statuses[i % len(statuses)]
            rows.append(
                NotificationLog(
                    customer_id=customer_ids[i % len(customer_ids)],
                    channel=("sms", "push", "email")[i % 3],
                    kind="pre_due",
                    status=status,
                    reason=reasons.get(status, ""),
                    scheduled_for=base + STEP * i,
                    created_at=base + STEP * i,
                    sent_at=base + dt.timedelta(seconds=i * 5) if status in ("sent", "delivered") else None,
                    destination="+8613900000000",
                    loan_refs=f"BL{i:09d}",
                    body="reminder",
                    dedupe_key=f"adm:{i}",
                    idempotency_key=uuid.uuid4(),
                )
            )
        with transaction.atomic():
            NotificationLog.objects.bulk_create(rows, batch_size=batch)
        have += n
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE notifications_notificationlog")  # and each partition (the bench's own)
            from core.partitions import month_partitions

            for name in month_partitions(connection, "notifications_notificationlog"):
                cursor.execute(f'ANALYZE "{name}"')


def time_pages(client, urls: dict[str, str], repeat: int = 5) -> dict[str, float]:
    out = {}
    for name, url in urls.items():
        samples = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            response = client.get(url)
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        out[name] = statistics.median(samples[1:])  # the first request warms caches
    return out


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], default_rows=5_000_000)
    setup_django(args.database_url)
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    import book
    from loans.models import Customer

    setup_test_environment()
    book.configure()
    book.wipe()
    book.generate(20_000, dt.date.today())
    make_month_partitions(args.rows)
    customer_ids = list(Customer.objects.order_by("id").values_list("id", flat=True))
    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    # The timeline's customer has the same 60 contacts in both measurements (so the page holds the same),
    # while the rest of the log grows around them.
    target = customer_ids.pop(len(customer_ids) // 2)
    fill_to(60, [target])
    changelist = reverse("admin:notifications_notificationlog_changelist")
    urls = {
        "changelist": changelist,
        "filtered changelist": changelist + "?status__exact=suppressed&reason__exact=frequency_cap",
        "customer timeline": reverse("operator:customer_timeline", args=[target]),
    }

    fill_to(SMALL, customer_ids)  # the 60 rows above count towards it
    small = time_pages(client, urls)
    fill_to(args.rows, customer_ids)
    large = time_pages(client, urls)

    report = Report(f"Admin pages over {args.rows:,} notification rows")
    for name in urls:
        report.ratio(
            f"{name} ({args.rows:,} rows)",
            large[name],
            f"same page over {SMALL:,} rows",
            small[name],
            at_most=1.5,
        )
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
