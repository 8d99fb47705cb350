"""The loan book of the demo (``backoffice.demo`` composes it with the other apps'; idempotent: a second run
adds nothing).

Tiers A to D, about 300 customers with Chinese and English names and valid local phone numbers, loans in every
state relative to today (not yet due, due today, in grace, overdue at 5/20/45/75/120 days past due, paid off),
some with auto-debit, credit scores (a few new ones not applied yet, so the first ``run_jobs`` moves some
customers to another tier).

Everything random comes from ``random.Random(42)``: the same run on the same day gives the same rows. Rows
that exist (by reference) are left as they are; dates are relative to the day of the first run.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

from django.utils import timezone

from .models import CreditScore, CreditTier, Customer, Installment, Loan, Payment
from .phones import normalize_phone
from .services import reallocate_loans
from .tiers import tier_for

CUSTOMERS = 300

TIERS = [
    # code, name, min, max, risk, grace, cap/week, channel order
    ("A", "A · 优质 Prime", 750, 950, CreditTier.RiskLevel.LOW, 7, 2, "push,email,sms"),
    ("B", "B · 良好 Good", 650, 749, CreditTier.RiskLevel.MEDIUM, 5, 3, "sms,push,email"),
    ("C", "C · 关注 Watch", 550, 649, CreditTier.RiskLevel.HIGH, 3, 4, "sms,push,email,call"),
    ("D", "D · 高风险 High risk", 300, 549, CreditTier.RiskLevel.VERY_HIGH, 3, 6, "sms,call,push,email"),
]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志强晓东海燕玉兰红梅俊杰文博子涵欣怡浩然雨轩思远嘉怡"
FIRST_EN = [
    "James",
    "Mary",
    "John",
    "Linda",
    "Michael",
    "Sarah",
    "David",
    "Emily",
    "Daniel",
    "Grace",
    "Kevin",
    "Amy",
    "Jason",
    "Helen",
    "Eric",
    "Vivian",
    "Tony",
    "Cindy",
    "Peter",
    "Jessica",
    "Andy",
    "Lily",
]
LAST_EN = [
    "Smith",
    "Wong",
    "Chan",
    "Lee",
    "Brown",
    "Taylor",
    "Ng",
    "Lau",
    "Cheung",
    "Johnson",
    "Tan",
    "Lim",
    "Miller",
    "Davis",
    "Ho",
    "Chow",
    "Walker",
    "Young",
]
MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "176",
    "177",
    "180",
    "181",
    "182",
    "185",
    "186",
    "187",
    "188",
    "189",
]

# What the loans look like today: days past due of the focus instalment (negative = due in that many days).
SCENARIOS = [
    ("not_yet_due", -3),
    ("not_yet_due", -7),
    ("not_yet_due", -1),
    ("not_yet_due", -14),
    ("due_today", 0),
    ("in_grace", 1),
    ("in_grace", 2),
    ("overdue", 5),
    ("overdue", 20),
    ("overdue", 45),
    ("overdue", 75),
    ("overdue", 120),
    ("paid_off", None),
    ("not_yet_due", -20),
]

# Of the instalments paid before today, the share paid late, and how late (days after the due date).
LATE_PAYMENT_SHARE = 0.3
LATE_PAYMENT_DAYS = (6, 40)


def _phone(rnd: random.Random, zone: str) -> str:
    for _ in range(20):
        if zone == "America/Los_Angeles":
            raw = f"+1 {rnd.choice(['213', '310', '415', '626'])} 555 01{rnd.randint(0, 99):02d}"
        elif zone == "Asia/Singapore":
            raw = f"+65 {rnd.choice('89')}{rnd.randint(0, 9999999):07d}"
        else:
            raw = f"{rnd.choice(MOBILE_PREFIXES)}{rnd.randint(0, 99999999):08d}"
        try:
            return normalize_phone(raw, "CN")
        except Exception:  # noqa: BLE001 - try another random number
            continue
    return ""


def _add_days(day: dt.date, months: int, step: int = 30) -> dt.date:
    return day + dt.timedelta(days=months * step)


def seed_tiers() -> int:
    """Tiers A to D (update_or_create: the demo values win). Returns how many."""
    for code, name, lo, hi, risk, grace, cap, order in TIERS:
        CreditTier.objects.update_or_create(
            code=code,
            defaults={
                "name": name,
                "min_score": lo,
                "max_score": hi,
                "risk_level": risk,
                "grace_period_days": grace,
                "max_contacts_per_week": cap,
                "channel_order": order,
            },
        )
    return len(TIERS)


def seed_book(today: dt.date, rnd: random.Random) -> dict[str, int]:
    """Customers, credit scores, loans, instalments and payments (new references only, in bulk)."""
    tiers = list(CreditTier.objects.order_by("min_score"))
    now = timezone.now()
    existing_customers = set(Customer.objects.filter(ref__startswith="C1").values_list("ref", flat=True))
    customers, plans = [], []
    for n in range(1, CUSTOMERS + 1):
        ref = f"C1{n:05d}"
        english = rnd.random() < 0.3
        zone = "Asia/Shanghai"
        if english and rnd.random() < 0.25:
            zone = rnd.choice(["America/Los_Angeles", "Asia/Singapore"])
        if english:
            name = f"{rnd.choice(FIRST_EN)} {rnd.choice(LAST_EN)}"
            email = f"{name.lower().replace(' ', '.')}{n}@example.com"
        else:
            name = rnd.choice(SURNAMES) + "".join(rnd.choice(GIVEN) for _ in range(rnd.choice((1, 2))))
            email = f"user{n:05d}@example.cn"
        score = rnd.randint(420, 900)
        phone = _phone(rnd, zone)
        loans = 2 if rnd.random() < 0.35 else 1
        scenario = SCENARIOS[(n - 1) % len(SCENARIOS)]
        autopay = rnd.random() < 0.25
        principal = Decimal(rnd.choice([1200, 1800, 3000, 5000, 6000, 9000, 12000]))
        months = rnd.choice([3, 6, 6, 12])
        flags = rnd.random()
        plans.append((ref, loans, scenario, autopay, principal, months, score))
        if ref in existing_customers:
            continue
        tier = tier_for(score, tiers)
        customer = Customer(
            ref=ref,
            name=name,
            phone=phone,
            email=email if rnd.random() < 0.8 else "",
            push_token=f"demo-push-{n:05d}" if rnd.random() < 0.75 else "",
            language="en" if english else "zh-hans",
            timezone=zone,
            credit_score=score,
            tier=tier,
        )
        if flags < 0.03:
            customer.do_not_contact, customer.do_not_contact_reason = (
                True,
                rnd.choice(["dispute", "bereavement", "legal_hold"]),
            )
        elif flags < 0.08:
            customer.opt_out_sms = True
        elif flags < 0.1:
            customer.opt_out_push = True
        if n in (7, 77) and tiers:
            customer.is_tier_pinned, customer.tier = True, tiers[-1]
            customer.tier_pin_reason = "VIP relationship: keep in the low-risk tier (demo)"
        customers.append(customer)
    Customer.objects.bulk_create(customers, batch_size=500)

    by_ref = dict(Customer.objects.filter(ref__in=[p[0] for p in plans]).values_list("ref", "pk"))
    scored_at = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=30), dt.time(2, 0)))
    scores = [
        CreditScore(customer_id=by_ref[ref], score=score, scored_at=scored_at, applied_at=scored_at)
        for ref, *_rest, score in plans
        if ref not in existing_customers
    ]
    # A few new scores the first run_jobs will apply (some customers move to another tier).
    fresh_at = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=1), dt.time(3, 0)))
    for ref, *_rest, score in plans[::15]:
        if ref not in existing_customers:
            scores.append(
                CreditScore(
                    customer_id=by_ref[ref],
                    score=max(300, min(950, score + rnd.choice([-140, -90, 90, 140]))),
                    scored_at=fresh_at,
                )
            )
    CreditScore.objects.bulk_create(scores, batch_size=500, ignore_conflicts=True)

    existing_loans = set(Loan.objects.filter(ref__startswith="L2").values_list("ref", flat=True))
    loans, schedules = [], []
    counter = 0
    for ref, count, (state, dpd), autopay, principal, months, _score in plans:
        for k in range(count):
            counter += 1
            loan_ref = f"L2{counter:06d}"
            # The second loan of a customer often falls due the same day: one consolidated message.
            same_day = k == 1 and rnd.random() < 0.6
            loan_dpd = dpd if (k == 0 or same_day) else rnd.choice([-5, -10, None])
            loan_state = (
                state if (k == 0 or same_day) else ("paid_off" if loan_dpd is None else "not_yet_due")
            )
            if loan_ref in existing_loans:
                continue
            focus = rnd.randint(1, months) if loan_state != "paid_off" else months
            focus_due = today - dt.timedelta(days=loan_dpd if loan_dpd is not None else rnd.randint(10, 40))
            first_due = _add_days(focus_due, -(focus - 1))
            loans.append(
                Loan(
                    ref=loan_ref,
                    customer_id=by_ref[ref],
                    principal=principal,
                    currency="CNY",
                    disbursed_on=first_due - dt.timedelta(days=30),
                    status=Loan.Status.PAID_OFF if loan_state == "paid_off" else Loan.Status.ACTIVE,
                    autopay=autopay and k == 0,
                )
            )
            schedules.append((loan_ref, principal, months, first_due, focus, loan_state))
    Loan.objects.bulk_create(loans, batch_size=500)

    loan_ids = dict(Loan.objects.filter(ref__in=[s[0] for s in schedules]).values_list("ref", "pk"))
    installments, paid = [], []
    # History: some earlier instalments were paid late (after grace, once a collector had called), so the
    # dashboard's cure and roll rates have something to measure. A Random of its own keeps the rest of the
    # book as it was.
    history = random.Random(7)
    for loan_ref, principal, months, first_due, focus, state in schedules:
        share = (principal / months).quantize(Decimal("0.01"))
        for seq in range(1, months + 1):
            due = _add_days(first_due, seq - 1)
            amount = share if seq < months else principal - share * (months - 1)
            is_paid = state == "paid_off" or seq < focus
            inst = Installment(loan_id=loan_ids[loan_ref], seq=seq, due_date=due, amount_due=amount)
            if is_paid:
                received = timezone.make_aware(
                    dt.datetime.combine(due - dt.timedelta(days=rnd.randint(0, 3)), dt.time(12, 0))
                )
                late = history.randint(LATE_PAYMENT_DAYS[0], LATE_PAYMENT_DAYS[1])
                if history.random() < LATE_PAYMENT_SHARE and due + dt.timedelta(days=late) < today:
                    received = timezone.make_aware(
                        dt.datetime.combine(due + dt.timedelta(days=late), dt.time(15, 0))
                    )
                inst.amount_paid, inst.paid_at = amount, received
                paid.append((loan_ref, seq, amount, received))
            installments.append(inst)
    Installment.objects.bulk_create(installments, batch_size=1000)

    inst_ids = {
        (loan_ref, seq): pk
        for loan_ref, seq, pk in Installment.objects.filter(loan__ref__in=list(loan_ids)).values_list(
            "loan__ref", "seq", "pk"
        )
    }
    sources = [Payment.Source.APP] * 6 + [Payment.Source.BANK_TRANSFER] * 2 + [Payment.Source.AUTODEBIT]
    payments = [
        Payment(
            ref=f"P-{loan_ref}-{seq:02d}",
            loan_id=loan_ids[loan_ref],
            installment_id=inst_ids[(loan_ref, seq)],
            amount=amount,
            received_at=received,
            source=rnd.choice(sources),
        )
        for loan_ref, seq, amount, received in paid
    ]
    Payment.objects.bulk_create(payments, batch_size=1000, ignore_conflicts=True)
    # The allocation of the demo's payments is the product's own (the waterfall), stored as for any payment.
    reallocate_loans(loan_ids.values(), now, payments_recorded=False, actor="seed_demo")
    return {
        "customers": len(customers),
        "loans": len(loans),
        "installments": len(installments),
        "payments": len(payments),
    }
