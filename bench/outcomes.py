"""Outcomes job benchmark: ``strategy.outcomes.compute_outcomes`` over a generated book, against a floor of one
aggregate query over the same instalments, measured in the same run.

    .venv/bin/python bench/outcomes.py --rows 100000
    .venv/bin/python bench/outcomes.py --rows 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench

The book has ``bench/book.py``'s tiers and shape (four monthly instalments per loan, about one customer in ten
with two loans) but is written by a few ``INSERT ... SELECT`` statements (a million loans in minutes, not the
hours Python objects take on a shared machine); about two thirds of the instalments already due are marked paid
(some late), and a tenth of the customers of each tier are put in a holdout arm. Its history is
written in SQL so every figure family has rows to count: a contact sent (with its item) about every other
instalment, a collections case on every fourth loan (every other one closed paid), a promise (kept or broken) on
every other case, and a call task with its call on every case. The floor: ``Installment`` grouped by tier and due month with a count and a count of
the paid ones, one query. The job's time over the floor's is the ratio; run it at 100,000 and 1,000,000 loans:
the ratio staying put says the job grows as the book does (linearly), as the floor does.
"""

from __future__ import annotations

import datetime as dt

import book
from common import Report, parse_args, setup_django, timed


def series(n: int) -> str:
    """A relation ``s(x)`` of the integers 1..n, in the database's own SQL."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return f"generate_series(1, {int(n)}) AS s(x)"
    return f"(WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < {int(n)}) SELECT x FROM r) AS s"


def generate(n_loans: int, today: dt.date) -> dict[str, int]:
    """Customers, loans and four instalments per loan (the current month's cycle day, two months before, one
    after), in SQL; every tier as ``book.configure`` made it. Ids are given (1..n), the book being empty."""
    from django.db import connection, transaction

    from loans.models import CreditTier

    pg = connection.vendor == "postgresql"
    tiers = list(CreditTier.objects.filter(code__in=[t[0] for t in book.TIERS]).values_list("id", flat=True))
    tier = "CASE s.x % {} {} END".format(
        len(tiers), " ".join(f"WHEN {i} THEN {t}" for i, t in enumerate(tiers))
    )
    customers = n_loans - n_loans // 10
    now = "now()" if pg else "datetime('now')"
    month = today.replace(day=1).isoformat()
    if pg:
        due = f"(DATE '{month}' + (k.seq - 3) * interval '1 month')::date + CAST(l.id % 28 AS integer)"
    else:
        due = f"date('{month}', (k.seq - 3) || ' months', (l.id % 28) || ' days')"
    statements = {
        "customers": f"""
            INSERT INTO loans_customer (id, ref, name, phone, email, push_token, language, credit_score,
                is_tier_pinned, tier_pin_reason, opt_out_sms, opt_out_email, opt_out_push, opt_out_call,
                do_not_contact, do_not_contact_reason, created_at, updated_at, tier_id, timezone_source, timezone)
            SELECT s.x, 'BC' || s.x, 'Customer ' || s.x, '+86139' || s.x, 'c' || s.x || '@example.com',
                'tok' || s.x, CASE WHEN s.x % 5 = 0 THEN 'en' ELSE 'zh-hans' END, 700, FALSE, '',
                s.x % 33 = 0, FALSE, FALSE, FALSE, FALSE, '', {now}, {now}, {tier}, 'given',
                CASE WHEN s.x % 20 = 0 THEN 'America/Los_Angeles' ELSE 'Asia/Shanghai' END
            FROM {series(customers)}""",
        "loans": f"""
            INSERT INTO loans_loan (id, ref, principal, currency, disbursed_on, status, autopay, created_at,
                updated_at, customer_id, credit, legal_hold)
            SELECT s.x, 'BL' || s.x, 3000, 'CNY', '{(today - dt.timedelta(days=400)).isoformat()}', 'active',
                s.x % 3 = 0, {now}, {now}, CAST(s.x - 1 AS bigint) * {customers} / {n_loans} + 1, 0, FALSE
            FROM {series(n_loans)}""",
        "installments": f"""
            INSERT INTO loans_installment (seq, due_date, amount_due, amount_paid, paid_at, loan_id)
            SELECT k.seq, {due}, 250, 0, NULL, l.id
            FROM loans_loan l CROSS JOIN (SELECT 1 AS seq UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) k""",
    }
    counts = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for name, sql in statements.items():
            cursor.execute(sql)
            counts[name] = cursor.rowcount
    return counts


def mark_paid(today: dt.date) -> int:
    """Two thirds of the instalments already due paid (on time, or a week late for every fifth), in SQL."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE loans_installment SET paid_at = (due_date + CASE WHEN id %% 5 = 0 THEN 7 ELSE 0 END)"
                "::timestamp + interval '4 hours', amount_paid = amount_due WHERE due_date < %s AND id %% 3 <> 0",
                [today],
            )
        else:
            cursor.execute(
                "UPDATE loans_installment SET paid_at = datetime(due_date, CASE WHEN id %% 5 = 0 THEN '+7 days' "
                "ELSE '+0 days' END, '+4 hours'), amount_paid = amount_due WHERE due_date < %s AND id %% 3 <> 0",
                [today.isoformat()],
            )
        return cursor.rowcount


def add_history() -> dict[str, int]:
    """Contacts, items, cases, promises, call tasks and calls, in SQL (dates from the instalments' due dates)."""
    from django.db import connection

    from loans.models import PolicyVersion

    pg = connection.vendor == "postgresql"

    def moment(date_sql: str, days: int) -> str:
        if pg:
            return f"(({date_sql}) + {days})::timestamp + interval '2 hours'"
        return f"datetime({date_sql}, '{days:+d} days', '+2 hours')"

    def day(date_sql: str, days: int) -> str:
        return f"(({date_sql}) + {days})" if pg else f"date({date_sql}, '{days:+d} days')"

    uuid = "gen_random_uuid()" if pg else "lower(hex(randomblob(16)))"
    versions = dict(
        PolicyVersion.objects.filter(is_proposal=False)
        .order_by("tier_id", "number")
        .values_list("tier_id", "id")
    )
    version = "CASE c.tier_id " + " ".join(f"WHEN {t} THEN {v}" for t, v in versions.items()) + " END"
    if not versions:
        version = "NULL"
    counts = {}
    statements = {
        "contacts": f"""
            INSERT INTO notifications_notificationlog (id, customer_id, tier_id, policy_version_id, channel, kind,
                status, reason, due_date, offset_days, scheduled_for, sent_at, destination, language, subject,
                body, loan_refs, attempts, last_error, provider_message_id, idempotency_key, dedupe_key,
                created_at, updated_at)
            SELECT i.id, l.customer_id, c.tier_id, {version}, 'sms', 'pre_due', 'sent', '', i.due_date, -3,
                {moment("i.due_date", -3)}, {moment("i.due_date", -3)}, '', 'zh-hans', '', '', l.ref, 1, '', '',
                {uuid}, 'bench:' || i.id, {moment("i.due_date", -4)}, {moment("i.due_date", -3)}
            FROM loans_installment i JOIN loans_loan l ON l.id = i.loan_id JOIN loans_customer c ON c.id = l.customer_id
            WHERE i.id % 2 = 0""",
        "items": """
            INSERT INTO notifications_notificationitem (notification_id, installment_id)
            SELECT i.id, i.id FROM loans_installment i WHERE i.id % 2 = 0""",
        "cases": f"""
            INSERT INTO collections_collectioncase (loan_id, tier_id, policy_version_id, stage, status, opened_at,
                closed_at, close_reason, oldest_due_date, amount_overdue, is_frozen, broken_promises, updated_at)
            SELECT l.id, c.tier_id, {version}, 'call', CASE WHEN l.id % 8 = 0 THEN 'closed' ELSE 'open' END,
                {moment("i.due", 8)}, CASE WHEN l.id % 8 = 0 THEN {moment("i.due", 30)} END,
                CASE WHEN l.id % 8 = 0 THEN 'paid' ELSE '' END, i.due, 100, FALSE, 0, {moment("i.due", 8)}
            FROM loans_loan l JOIN loans_customer c ON c.id = l.customer_id
            JOIN (SELECT loan_id, min(due_date) AS due FROM loans_installment GROUP BY loan_id) i ON i.loan_id = l.id
            WHERE l.id % 4 = 0""",
        "promises": f"""
            INSERT INTO collections_promisetopay (case_id, amount, promised_date, status, created_at, resolved_at)
            SELECT k.id, 100, {day("k.oldest_due_date", 15)}, CASE WHEN k.id % 4 = 0 THEN 'kept' ELSE 'broken' END,
                k.opened_at, {moment("k.oldest_due_date", 16)}
            FROM collections_collectioncase k WHERE k.id % 2 = 0""",
        "call tasks": """
            INSERT INTO collections_calltask (case_id, priority, policy_version_id, scheduled_for, status, outcome,
                note, cancel_reason, created_at, completed_at)
            SELECT k.id, 0, k.policy_version_id, k.opened_at, 'done', 'reached', '', '', k.opened_at, k.opened_at
            FROM collections_collectioncase k""",
        "calls": """
            INSERT INTO collections_callattempt (customer_id, task_id, made_at, outcome, is_conversation,
                voicemail_message, made_by)
            SELECT l.customer_id, t.id, t.completed_at, 'reached', TRUE, '', 'bench'
            FROM collections_calltask t JOIN collections_collectioncase k ON k.id = t.case_id
            JOIN loans_loan l ON l.id = k.loan_id""",
    }
    with connection.cursor() as cursor:
        for name, sql in statements.items():
            cursor.execute(sql)
            counts[name] = cursor.rowcount
    return counts


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

    from core.housekeeping import refresh_planner_statistics
    from loans.models import Installment, PolicyAssignment
    from strategy.outcomes import compute_outcomes

    now = timezone.now()
    today = timezone.localdate(now)
    times: dict[str, float] = {}
    book.configure()
    if not (args.keep and book.book_size() == args.rows):
        with timed("generate", times):
            PolicyAssignment.objects.all().delete()  # they hold customers, which the wipe empties
            book.wipe()
            # Instalments due from four months back, so cohorts and horizons have passed.
            counts = generate(args.rows, today - dt.timedelta(days=120))
            paid = mark_paid(today)
            history = add_history()
            assigned = put_in_arms(now)
        print(
            f"generated {counts}, {paid:,} paid, {history}, {assigned:,} in arms, in {times['generate']:.1f}s"
        )
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
