"""Daily run benchmark: `run_jobs` for one day over a generated book, against a bulk_create floor.

    .venv/bin/python bench/daily_run.py --rows 1000000                     # its own SQLite file under var/
    .venv/bin/python bench/daily_run.py --rows 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench

The figure: the whole pipeline for one moment (apply scores, auto-debit, planning, collections, dispatch to the
outbox backend). The floor: bulk_create of as many rows as the run inserted into the four tables that take nearly
all of them (the log, its items, the outbox and the audit trail), into the same database, in the same run.
Target: at most 3x. Printed for reading: the first floor, bulk_create of the log rows alone; queries per 1,000
loans (must not grow with the book) and each step's seconds and queries.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
import zoneinfo

from common import ROOT, Report, parse_args, peak_rss_mb, setup_django, timed


def rows_per_table() -> dict[str, int]:
    """Row counts of the tables the daily run inserts into (the floor only writes the first)."""
    from django.apps import apps

    names = [
        "notifications.NotificationLog",
        "notifications.NotificationItem",
        "notifications.OutboxMessage",
        "core.AuditEvent",
        "collections.CollectionCase",
        "collections.CaseStepRun",
        "collections.CallTask",
        "collections.LegalReferral",
        "loans.AutoDebitAttempt",
        "loans.Payment",
    ]
    return {name.split(".")[1]: apps.get_model(name).objects.count() for name in names}


def log_rows(n: int, prefix: str, now, customer_id: int) -> list:
    """``n`` planned log rows of one customer, as the floors write them."""
    from notifications.models import NotificationLog

    return [
        NotificationLog(
            customer_id=customer_id,
            channel="sms",
            kind="pre_due",
            status="planned",
            scheduled_for=now,
            dedupe_key=f"{prefix}:{i}",
            idempotency_key=uuid.uuid4(),
        )
        for i in range(max(n, 1))
    ]


def rows_like_the_run(inserted: dict[str, int], now, customer_id: int) -> tuple[list, list, list]:
    """As many log, outbox and audit rows as the run inserted (built before the floor's clock starts)."""
    import hashlib

    from django.db.models import Max

    from core.models import AuditEvent
    from notifications.models import OutboxMessage

    outbox = [
        OutboxMessage(
            channel="sms",
            destination="+8613700000000",
            subject="",
            body="您的还款 500.00 元将于 2026-12-01 到期。",
            idempotency_key=uuid.uuid4(),
            provider_message_id=f"floor-{uuid.uuid4().hex}",
        )
        for _ in range(inserted["OutboxMessage"])
    ]
    seq = AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
    audit = [
        AuditEvent(
            seq=seq + 1 + i,
            at=now,
            actor="job:floor",
            action="notifications.contact.sent",
            object_type="notifications.NotificationLog",
            object_id=str(i),
            before={"status": "planned"},
            after={"status": "sent", "reason": "", "customer_id": customer_id, "channel": "sms"},
            prev_hash="0" * 64,
            hash=hashlib.sha256(f"floor:{seq + 1 + i}".encode()).hexdigest(),
        )
        for i in range(inserted["AuditEvent"])
    ]
    return log_rows(inserted["NotificationLog"], "floor-all", now, customer_id), outbox, audit


def bulk_create_like_the_run(rows: tuple[list, list, list], n_items: int) -> None:
    """bulk_create the rows, and ``n_items`` items on the new log rows, in one transaction rolled back."""
    from django.db import transaction

    from core.models import AuditEvent
    from loans.models import Installment
    from notifications.models import NotificationItem, NotificationLog, OutboxMessage

    logs, outbox, audit = rows
    with transaction.atomic():
        NotificationLog.objects.bulk_create(logs, batch_size=2000)
        log_ids = (
            [log.pk for log in logs]
            if logs[0].pk
            else list(
                NotificationLog.objects.filter(dedupe_key__startswith="floor-all:").values_list(
                    "id", flat=True
                )
            )
        )
        installment_ids = list(
            Installment.objects.order_by("id").values_list("id", flat=True)[: n_items // len(log_ids) + 1]
        )
        NotificationItem.objects.bulk_create(
            [
                NotificationItem(
                    notification_id=log_ids[i % len(log_ids)],
                    installment_id=installment_ids[i // len(log_ids)],
                )
                for i in range(n_items)
            ],
            batch_size=2000,
        )
        OutboxMessage.objects.bulk_create(outbox, batch_size=2000)
        AuditEvent.objects.bulk_create(audit, batch_size=2000)
        transaction.set_rollback(True)


def arguments(parser) -> None:
    parser.add_argument(
        "--warm-up-days",
        type=int,
        default=1,
        help="days run (untimed) before the measured day, so the book is in its daily steady state rather than "
        "opening every backlog case at once (default 1; 0 measures the very first run over a new book)",
    )
    parser.add_argument(
        "--day",
        type=dt.date.fromisoformat,
        default=None,
        help="the measured day, YYYY-MM-DD (default today). Cycle days run 1 to 28, so on the 29th to the 31st "
        "nothing falls due and no auto-debit runs: a lighter day than most. A kept book was generated around "
        "the day of its first run",
    )


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        default_rows=1_000_000,
        extra=arguments,
    )
    # Its own SQLite file by default, so another benchmark running at the same time cannot wipe its book.
    setup_django(args.database_url or f"sqlite:///{ROOT / 'var' / 'bench-daily.sqlite3'}")

    from django.db import connection, transaction
    from django.utils import timezone

    import book
    from backoffice.jobs import pipeline_steps, run_pipeline
    from core.heap import fewer_collections
    from core.housekeeping import refresh_planner_statistics
    from notifications.models import NotificationLog, OutboxMessage

    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    now = dt.datetime.combine(args.day or dt.date.today(), dt.time(10, 30), tzinfo=shanghai).astimezone(
        dt.timezone.utc
    )
    today = now.astimezone(shanghai).date()

    times: dict[str, float] = {}
    book.configure()
    if not (args.keep and book.book_size() == args.rows):
        with timed("generate", times):
            book.wipe()
            counts = book.generate(args.rows, today)
        print(f"generated {counts} in {times['generate']:.1f}s")
    else:
        NotificationLog.objects.all().delete()
        OutboxMessage.objects.all().delete()

    def planner_statistics() -> None:
        # A live database has planner statistics: PostgreSQL's autovacuum analyses tables as they change, the
        # hourly housekeeping does it for SQLite. A book loaded a minute ago in bulk has none, and the planners
        # would join whole tables for a batch of 500 rows.
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        else:
            refresh_planner_statistics()

    planner_statistics()
    for back in range(args.warm_up_days, 0, -1):
        with timed(f"warm-up {back}", times):
            run_pipeline(now - dt.timedelta(days=back))
        print(f"warm-up day -{back}: {times[f'warm-up {back}']:.1f}s")
    planner_statistics()
    before = NotificationLog.objects.count()
    written_before = rows_per_table()

    queries = {"n": 0}

    def count(execute, sql, params, many, context):
        queries["n"] += 1
        return execute(sql, params, many, context)

    summary: dict[str, dict] = {}
    steps: list[str] = []
    # This process's CPU seconds per step (the database server's are not in them): on a machine shared with
    # other work they move far less than the seconds on the clock.
    cpu: dict[str, float] = {}
    # As run_pipeline runs them: with the garbage collector collecting rarely.
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with connection.execute_wrapper(count), timed("run", times), fewer_collections():
        for name, step in pipeline_steps():
            start_queries, start_cpu = queries["n"], time.process_time()
            with timed(name, times):
                summary[name] = step(now) or {}
            cpu[name] = time.process_time() - start_cpu
            steps.append(f"{name} {times[name]:.2f}s/{cpu[name]:.2f}s cpu/{queries['n'] - start_queries}q")
    rss_after_run = peak_rss_mb()
    produced = NotificationLog.objects.count() - before
    inserted = {name: n - written_before[name] for name, n in rows_per_table().items()}
    sent = NotificationLog.objects.filter(status__in=["sent", "delivered"], sent_at__gte=now).count()

    # A first floor, for reading: the same number of log rows, bulk_created into the same table, rolled back.
    from loans.models import Customer

    customer_id = Customer.objects.order_by("id").values_list("id", flat=True).first()
    rows = log_rows(produced, "floor", now, customer_id)
    with timed("floor", times):
        with transaction.atomic():
            NotificationLog.objects.bulk_create(rows, batch_size=2000)
            transaction.set_rollback(True)

    # The floor of the target: bulk_create of as many rows as the run inserted into the four tables that take nearly
    # all of them (log, items, outbox, audit trail).
    like_the_run = rows_like_the_run(inserted, now, customer_id)
    with timed("floor_all", times):
        bulk_create_like_the_run(like_the_run, inserted["NotificationItem"])

    report = Report(f"Daily run over {args.rows:,} loans")
    report.note(f"pipeline summary: {summary}")
    report.note(f"notification rows written: {produced:,} ({sent:,} sent to the outbox)")
    big = sum(
        inserted[name] for name in ("NotificationLog", "NotificationItem", "OutboxMessage", "AuditEvent")
    )
    report.ratio(
        "run_jobs (one day)",
        times["run"],
        f"bulk_create of the {big:,} rows it inserted into the log, its items, the outbox and the audit trail",
        times["floor_all"],
        at_most=3,
    )
    report.note(
        f"rows inserted in all: {sum(inserted.values()):,} ({sum(inserted.values()) / max(produced, 1):.1f} per log row: "
        + ", ".join(f"{name} {n:,}" for name, n in inserted.items() if n)
        + "); not counted: the updates of log rows (claimed, then sent) and of the cases whose amount overdue, "
        "tier or stage moved (days past due are derived, no case is written for them)"
    )
    report.note(
        f"for reading: {times['run'] / times['floor']:.2f}x a bulk_create of the {produced:,} log rows alone "
        f"({times['floor']:.2f}s)"
    )
    report.note(
        f"queries: {queries['n']:,} in all, {queries['n'] / max(args.rows / 1000, 1):.2f} per 1,000 loans"
    )
    report.note("steps (seconds / this process's CPU seconds / queries): " + ", ".join(steps))
    report.note(f"this process's CPU seconds for the whole run: {sum(cpu.values()):.2f}s")
    report.note(f"moment: {timezone.localtime(now, shanghai):%Y-%m-%d %H:%M %Z}")
    report.note(
        f"peak RSS of this process: {rss_after_run:,.0f} MB after the run, {peak_rss_mb():,.0f} MB after the floors "
        "(which hold every row they write in memory)"
    )
    report.note(
        "load average at the start of the run and at the end: "
        + f"{load} / "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
