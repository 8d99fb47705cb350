"""Generate a realistic loan book fast (a few ``INSERT ... SELECT`` statements), for the benchmarks only.

Every loan repays monthly on a cycle day; four instalments are materialised around the run's day (two past, the
current one, the next), so on any day about 1/28 of the book falls due, some are in grace, some overdue (a few deep
overdue), most past ones are paid. Tiers A-D with their rules, templates and ladders are created like the demo.
The book is written by the database itself (``generate_series`` on PostgreSQL, a recursive CTE on SQLite), every
choice a hash of the row's number: a 1,000,000-loan book in minutes, the same book on both databases.
"""

from __future__ import annotations

import datetime as dt

TIERS = [
    # code, name, min, max, risk, grace, cap, channel order
    ("A", "Prime", 750, 1000, "low", 7, 2, "push,sms,email"),
    ("B", "Standard", 650, 749, "medium", 5, 3, "sms,push,email"),
    ("C", "Watch", 550, 649, "high", 3, 4, "sms,push,email"),
    ("D", "High risk", 0, 549, "very_high", 3, 6, "sms,email,push"),
]
RULES = {
    "A": [(-3, "push", "pre_due"), (0, "sms", "due_today")],
    "B": [(-3, "sms", "pre_due"), (0, "sms", "due_today"), (2, "sms", "grace")],
    "C": [(-7, "sms", "pre_due"), (-3, "sms", "pre_due"), (0, "sms", "due_today"), (1, "sms", "grace")],
    "D": [
        (-7, "sms", "pre_due"),
        (-3, "sms", "pre_due"),
        (-1, "push", "pre_due"),
        (0, "sms", "due_today"),
        (1, "sms", "grace"),
    ],
}
STEPS = {
    "A": [
        (8, "early", "sms", "overdue"),
        (15, "firm", "email", "overdue"),
        (30, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "B": [
        (6, "early", "sms", "overdue"),
        (12, "firm", "sms", "overdue"),
        (20, "call", "call_task", ""),
        (60, "agency", "agency", ""),
        (90, "legal", "legal", ""),
    ],
    "C": [
        (4, "early", "sms", "overdue"),
        (8, "call", "call_task", ""),
        (45, "agency", "agency", ""),
        (75, "legal", "legal", ""),
    ],
    "D": [
        (4, "early", "sms", "overdue"),
        (5, "call", "call_task", ""),
        (30, "agency", "agency", ""),
        (60, "legal", "legal", ""),
    ],
}
ZONES = ["Asia/Shanghai"] * 18 + ["Asia/Hong_Kong", "America/Los_Angeles"]


def add_months(day: dt.date, months: int, cycle_day: int) -> dt.date:
    month_index = day.year * 12 + (day.month - 1) + months
    return dt.date(month_index // 12, month_index % 12 + 1, cycle_day)


def configure() -> None:
    """Tiers, rules, templates, steps: idempotent."""
    from django.apps import apps

    from loans.models import CreditTier
    from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate

    tiers = {}
    for code, name, lo, hi, risk, grace, cap, order in TIERS:
        tiers[code], _ = CreditTier.objects.update_or_create(
            code=code,
            defaults=dict(
                name=name,
                min_score=lo,
                max_score=hi,
                risk_level=risk,
                grace_period_days=grace,
                max_contacts_per_week=cap,
                channel_order=order,
            ),
        )
    for code, rules in RULES.items():
        for offset, channel, kind in rules:
            ReminderRule.objects.get_or_create(
                tier=tiers[code],
                offset_days=offset,
                channel=channel,
                kind=kind,
                defaults={"send_time": dt.time(10, 0)},
            )
    for kind in ("pre_due", "due_today", "grace", "overdue", "autodebit_failed", "promise_reminder"):
        for channel in ("sms", "email", "push"):
            for language, body in (
                (
                    "zh-hans",
                    "{customer_name}您好,您的借款{loan_ref}应还{amount_due}{currency},到期日{due_date}。{loans}",
                ),
                (
                    "en",
                    "Dear {customer_name}, {amount_due} {currency} for loan {loan_ref} is due on {due_date}. {loans}",
                ),
            ):
                ReminderTemplate.objects.get_or_create(
                    kind=kind,
                    channel=channel,
                    language=language,
                    defaults={"subject": "Repayment reminder", "body": body},
                )
    ContactPolicy.get()
    if apps.is_installed("debt_collection") and hasattr(apps.get_app_config("collections").module, "models"):
        try:
            step_model = apps.get_model("collections", "EscalationStep")
        except LookupError:
            return
        for code, steps in STEPS.items():
            for min_dpd, stage, action, kind in steps:
                step_model.objects.get_or_create(
                    tier=tiers[code], min_dpd=min_dpd, action=action, defaults={"stage": stage, "kind": kind}
                )


def book_size() -> int:
    from loans.models import Loan

    return Loan.objects.count()


def wipe() -> None:
    """Empty the book and everything that hangs off it (benchmark database only)."""
    from django.apps import apps
    from django.db import connection

    tables = []
    for label in (
        "notifications.NotificationItem",
        "notifications.NotificationLog",
        "notifications.OutboxMessage",
        "loans.AutoDebitAttempt",
        "loans.PaymentAllocation",
        "loans.Payment",
        "loans.Installment",
        "loans.Loan",
        "loans.CreditScore",
        "loans.Customer",
    ):
        tables.append(apps.get_model(label)._meta.db_table)
    if apps.is_installed("debt_collection"):
        for model in apps.get_app_config("collections").get_models():
            if model.__name__ != "EscalationStep" and model.__name__ != "Agency":
                tables.insert(0, model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')


def generate(n_loans: int, today: dt.date, *, installments: bool = True) -> dict[str, int]:
    """Create ``n_loans`` loans (every tenth customer has two, the others one) with four instalments each (none
    with ``installments=False``: a benchmark that imports them), in a few ``INSERT ... SELECT`` statements.

    Deterministic: every choice is a hash of the row's number (``_pick``), the same arithmetic on PostgreSQL and
    SQLite, so both databases get the same book. Ids are given (1..n): the book must be empty (``wipe``).
    """
    from django.db import connection, transaction

    from loans.models import CreditTier

    pg = connection.vendor == "postgresql"
    tiers = list(
        CreditTier.objects.filter(code__in=[t[0] for t in TIERS])
        .order_by("code")
        .values_list("id", "min_score", "max_score")
    )
    n_customers = n_loans // 11 * 10 + min(n_loans % 11, 10)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = f"TIMESTAMPTZ '{now.isoformat()}'" if pg else f"'{now:%Y-%m-%d %H:%M:%S.%f}'"

    # Customers: tier, score within it, language (4 in 5 Chinese), zone (ZONES' shares), SMS opt-out (3%).
    h = _pick("s.x", 1)
    tier = " ".join(f"WHEN {i} THEN {tier_id}" for i, (tier_id, _, _) in enumerate(tiers))
    score = " ".join(
        f"WHEN {i} THEN {lo} + ({h} / {len(tiers)}) % {hi - lo + 1}" for i, (_, lo, hi) in enumerate(tiers)
    )
    zone = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(ZONES) if name != ZONES[0])
    customers = f"""
        INSERT INTO loans_customer (id, ref, name, phone, email, push_token, language, timezone, timezone_source,
            credit_score, tier_id, is_tier_pinned, tier_pin_reason, opt_out_sms, opt_out_email, opt_out_push,
            opt_out_call, do_not_contact, do_not_contact_reason, created_at, updated_at)
        SELECT s.x, 'BC' || {_padded("s.x", 8, pg)}, 'Customer ' || s.x, '+86139' || {_padded("s.x", 8, pg)},
            'c' || s.x || '@example.com', 'tok' || s.x,
            CASE WHEN {_pick("s.x", 2, 5)} = 0 THEN 'en' ELSE 'zh-hans' END,
            CASE {_pick("s.x", 3, len(ZONES))} {zone} ELSE '{ZONES[0]}' END, 'given',
            CASE {h} % {len(tiers)} {score} END, CASE {h} % {len(tiers)} {tier} END, FALSE, '',
            {_pick("s.x", 4, 100)} < 3, FALSE, FALSE, FALSE, FALSE, '', {stamp}, {stamp}
        FROM {_series(n_customers, pg)}"""

    # Loans: loans 11k+10 and 11k+11 are customer 10k+10's. Principal, disbursed 100-700 days ago, 30% autopay.
    position = "(s.x - 1) % 11"
    customer = f"(s.x - 1) / 11 * 10 + CASE WHEN {position} > 9 THEN 9 ELSE {position} END + 1"
    disbursed = (
        f"DATE '{today.isoformat()}' - CAST(100 + {_pick('s.x', 6, 601)} AS integer)"
        if pg
        else f"date('{today.isoformat()}', '-' || (100 + {_pick('s.x', 6, 601)}) || ' days')"
    )
    loans = f"""
        INSERT INTO loans_loan (id, ref, customer_id, principal, currency, disbursed_on, status, autopay, credit,
            legal_hold, created_at, updated_at)
        SELECT s.x, 'BL' || {_padded("s.x", 9, pg)}, {customer},
            CASE {_pick("s.x", 5, 4)} WHEN 0 THEN 1200 WHEN 1 THEN 3000 WHEN 2 THEN 6000 ELSE 12000 END, 'CNY',
            {disbursed}, 'active', {_pick("s.x", 7, 10)} < 3, 0, FALSE, {stamp}, {stamp}
        FROM {_series(n_loans, pg)}"""

    # Instalments: the loan's cycle day (1-28) in the month two months back, last month, this month and next; the
    # past ones paid at 93%; 2% of loans deep overdue (the first instalment 60 days earlier still, unpaid).
    cycle = f"({_pick('l.id', 8, 28)} + 1)"
    deep = f"({_pick('l.id', 9, 50)} = 0 AND k.seq = 1)"
    start = f"DATE '{today.isoformat()}'" if pg else f"'{today.isoformat()}'"
    months = " UNION ALL ".join(
        f"SELECT {seq} AS seq, {_month_start(today, months, pg)} AS start"
        for seq, months in enumerate((-2, -1, 0, 1), start=1)
    )
    due = (
        f"k.start + CAST({cycle} - CASE WHEN {deep} THEN 60 ELSE 0 END AS integer)"
        if pg
        else f"date(k.start, ({cycle} - CASE WHEN {deep} THEN 60 ELSE 0 END) || ' days')"
    )
    paid = f"(i.due < {start} AND {_pick('i.loan_id * 4 + i.seq', 10, 100)} < 93 AND NOT i.deep)"
    instalments = f"""
        INSERT INTO loans_installment (loan_id, seq, due_date, amount_due, amount_paid, paid_at)
        SELECT i.loan_id, i.seq, i.due, i.amount, CASE WHEN {paid} THEN i.amount ELSE 0 END,
            CASE WHEN {paid} THEN {stamp} END
        FROM (SELECT l.id AS loan_id, k.seq, {due} AS due, l.principal / 12 AS amount, {deep} AS deep
              FROM loans_loan l CROSS JOIN ({months}) k) i"""

    counts = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for name, sql in (("customers", customers), ("loans", loans), ("installments", instalments)):
            if name == "installments" and not installments:
                counts[name] = 0
                continue
            cursor.execute(sql)
            counts[name] = cursor.rowcount
        if pg:  # the ids were given: the sequences carry on after them
            for table in ("loans_customer", "loans_loan"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
    return counts


def _pick(number: str, salt: int, choices: int | None = None) -> str:
    """SQL for a hash of the integer expression ``number`` (0 .. 2**32-1; modulo ``choices`` if given): the same
    value on PostgreSQL and SQLite (64-bit integer arithmetic only; SQLite has no XOR operator, so ``a | b - a & b``).
    """

    def xor_shift(h: str) -> str:
        return f"(({h}) | (({h}) >> 16)) - (({h}) & (({h}) >> 16))"

    h = f"((({number}) + {salt * 1_000_003}) * 2654435761) % 4294967296"
    h = f"(({xor_shift(h)}) * 73244475) % 4294967296"
    h = f"(({xor_shift(h)}) * 73244475) % 4294967296"
    h = f"({xor_shift(h)})"
    return f"({h} % {choices})" if choices else h


def _padded(number: str, width: int, pg: bool) -> str:
    return f"lpad(CAST({number} AS text), {width}, '0')" if pg else f"printf('%0{width}d', {number})"


def _series(n: int, pg: bool) -> str:
    """A relation ``s(x)`` of the integers 1..n, in the database's own SQL."""
    if pg:
        return f"generate_series(1, {int(n)}) AS s(x)"
    return f"(WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < {int(n)}) SELECT x FROM r) AS s"


def _month_start(today: dt.date, months: int, pg: bool) -> str:
    """The day before the first of the month ``months`` after ``today``'s, as SQL (cycle day 1 is the first)."""
    first = add_months(today, months, 1) - dt.timedelta(days=1)
    return f"DATE '{first.isoformat()}'" if pg else f"'{first.isoformat()}'"


def states(today: dt.date) -> dict[str, int]:
    """The book's instalments by state on ``today``: paid, not yet due, due today, in the tier's grace, overdue
    (and, of those, more than 30 days)."""
    from django.db.models import Count, F, Q

    from loans.models import Installment

    counts = dict.fromkeys(("paid", "not due", "due today", "in grace", "overdue", "overdue > 30 days"), 0)
    rows = (
        Installment.objects.values_list("due_date", "loan__customer__tier__grace_period_days")
        .annotate(paid=Count("id", filter=Q(amount_paid__gte=F("amount_due"))), n=Count("id"))
        .order_by()
    )
    for due, grace, paid, n in rows:
        counts["paid"] += paid
        late = (today - due).days
        state = (
            "not due"
            if late < 0
            else "due today"
            if late == 0
            else "in grace"
            if late <= grace
            else "overdue"
        )
        counts[state] += n - paid
        if late > 30:
            counts["overdue > 30 days"] += n - paid
    return counts
