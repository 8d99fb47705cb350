"""Outcomes job benchmark: ``strategy.outcomes.compute_outcomes`` over a generated book, against a floor of one
aggregate query over the same instalments, measured in the same run.

    .venv/bin/python bench/outcomes.py --rows 100000
    .venv/bin/python bench/outcomes.py --rows 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench

The book is ``bench/book.py``'s (four instalments per loan); about two thirds of the instalments already due are
marked paid (some late), and a tenth of the customers of each tier are put in a holdout arm, so every figure
family has rows to count. The floor: ``Installment`` grouped by tier and due month with a count and a count of
the paid ones, one query. The job's time over the floor's is the ratio; run it at 100,000 and 1,000,000 loans:
the ratio staying put says the job grows as the book does (linearly), as the floor does.
"""

from __future__ import annotations

import datetime as dt

from common import Report, parse_args, setup_django, timed


def mark_paid(today: dt.date) -> int:
    """Two thirds of the instalments already due paid (on time, or a week late for every fifth), in SQL."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE loans_installment SET paid_at = (due_date + CASE WHEN id % 5 = 0 THEN 7 ELSE 0 END)"
                "::timestamp + interval '4 hours', amount_paid = amount_due WHERE due_date < %s AND id % 3 <> 0",
                [today],
            )
        else:
            cursor.execute(
                "UPDATE loans_installment SET paid_at = datetime(due_date, CASE WHEN id % 5 = 0 THEN '+7 days' "
                "ELSE '+0 days' END, '+4 hours'), amount_paid = amount_due WHERE due_date < %s AND id % 3 <> 0",
                [today.isoformat()],
            )
        return cursor.rowcount


def put_in_arms(now: dt.datetime) -> int:
    """Every tenth customer of each tier in a holdout arm, the rest champions (recorded as the job reads them)."""
    from loans.models import Customer, PolicyAssignment

    rows = [
        PolicyAssignment(
            customer_id=cid,
            tier_id=tier_id,
            seed="bench",
            arm="holdout" if cid % 10 == 0 else "champion",
            assigned_at=now,
        )
        for cid, tier_id in Customer.objects.values_list("id", "tier_id").iterator(chunk_size=5000)
    ]
    PolicyAssignment.objects.bulk_create(rows, batch_size=5000, ignore_conflicts=True)
    return len(rows)


def floor_query(today: dt.date) -> int:
    from django.db.models import Count, Q
    from django.db.models.functions import TruncMonth

    from loans.models import Installment

    rows = list(
        Installment.objects.filter(due_date__lt=today)
        .annotate(cohort=TruncMonth("due_date"))
        .values("loan__customer__tier_id", "cohort")
        .annotate(n=Count("id"), paid=Count("id", filter=Q(paid_at__isnull=False)))
        .order_by()
    )
    return len(rows)


def main() -> int:
    args = parse_args("Outcomes job vs one aggregate query", 100_000)
    setup_django(args.database_url)
    from django.db import connection
    from django.utils import timezone

    import book
    from core.housekeeping import refresh_planner_statistics
    from loans.models import Installment, PolicyAssignment
    from strategy.outcomes import compute_outcomes

    now = timezone.now()
    today = timezone.localdate(now)
    times: dict[str, float] = {}
    book.configure()
    if not (args.keep and book.book_size() == args.rows):
        with timed("generate", times):
            book.wipe()
            # Instalments due from four months back, so cohorts and horizons have passed.
            counts = book.generate(args.rows, today - dt.timedelta(days=120))
            paid = mark_paid(today)
            PolicyAssignment.objects.all().delete()
            assigned = put_in_arms(now)
        print(f"generated {counts}, {paid:,} paid, {assigned:,} in arms, in {times['generate']:.1f}s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    else:
        refresh_planner_statistics()
    instalments = Installment.objects.count()
    with timed("floor", times):
        groups = floor_query(today)
    with timed("job", times):
        figures = compute_outcomes(now)
    with timed("floor_again", times):
        floor_query(today)
    floor = min(times["floor"], times["floor_again"])
    report = Report(f"Outcomes job over {args.rows:,} loans ({instalments:,} instalments)")
    report.ratio(
        "compute_outcomes (every figure family)",
        times["job"],
        "one aggregate query over the instalments",
        floor,
        at_most=12,
        rows=instalments,
    )
    report.note(f"figures: {len(figures):,}; the floor's groups: {groups:,}")
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
