"""The demo's champion/challenger history (``seed_demo``): tiers B and C run a test started four months ago, and
a few hundred simulated customers (``SIM-`` references, their loans closed: paid off or written off), each in
their recorded arm, paid their monthly instalments with a probability
by tier and arm (the holdout, without pre-due reminders, pays on time less often), so the outcomes page shows
real differences after ``make run``. Idempotent: a second run adds nothing. Random from the caller's
``random.Random``."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal

from django.utils import timezone

from loans.arms import arm_for
from loans.models import (
    CreditTier,
    Customer,
    Installment,
    Loan,
    Payment,
    PolicyAssignment,
    PolicyExperiment,
    PolicyVersion,
)
from loans.services import reallocate_loans

from .experiments import start_test
from .policy import Policy, RuleSpec

ACTOR = "seed_demo"
CUSTOMERS_PER_TIER = 150
MONTHS = 4
# Share paying by the due date, by tier and arm; of the others half pay within 7 days and a third within 30;
# the rest had not paid 30 days on (``_behaviours``).
ON_TIME = {
    ("B", "champion"): 0.80,
    ("B", "challenger"): 0.82,
    ("B", "holdout"): 0.70,
    ("C", "champion"): 0.58,
    ("C", "challenger"): 0.66,
    ("C", "holdout"): 0.45,
}


def challenger_of(tier: CreditTier) -> Policy:
    """B tries one reminder less (no push the day before); C an SMS two days before instead of the email a week
    before."""
    champion = Policy.of(tier)
    if tier.code == "B":
        rules = tuple(r for r in champion.rules if (r.offset_days, r.channel) != (-1, "push"))
    else:
        rules = tuple(r for r in champion.rules if (r.offset_days, r.channel) != (-7, "email"))
        rules += (RuleSpec(-2, "sms", "pre_due", dt.time(10, 0)),)
    return champion.changed(rules=rules)


def seed(today: dt.date, rnd: random.Random) -> dict[str, int]:
    """Start the demo tests and simulate their customers' payments (once); ``backoffice.demo`` then computes the
    outcomes."""
    counts = {"tests": 0, "customers": 0, "payments": 0}
    started = timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=30 * MONTHS + 7), dt.time(9)))
    tiers = {t.code: t for t in CreditTier.objects.filter(code__in=["B", "C"])}
    for code, tier in sorted(tiers.items()):
        test = PolicyExperiment.objects.filter(tier=tier).first()
        if test is None:
            test = start_test(
                tier,
                challenger=challenger_of(tier),
                challenger_share=Decimal("0.3"),
                holdout_share=Decimal("0.1"),
                actor=ACTOR,
                reason="demo: fewer or different pre-due reminders",
                at=started,
            )
            counts["tests"] += 1
        if Customer.objects.filter(ref__startswith=f"SIM-{code}-").exists():
            continue
        made = _simulate(tier, test, today, started, rnd)
        counts["customers"] += made[0]
        counts["payments"] += made[1]
    return counts


def _behaviours(chance: float, n: int, rnd: random.Random) -> list[str]:
    """How ``n`` instalments of one arm were paid: on time for ``chance`` of them, within 7 days for half the
    rest, within 30 for a third, never for the others, in a random order. Drawn as exact shares (not a coin per
    instalment), so each arm shows its configured chance whatever customers the hash of their ids put in it: a
    holdout of a dozen customers would otherwise pay on time more often than the champion now and then."""
    counts = {
        "on_time": round(n * chance),
        "within_7": round(n * (1 - chance) / 2),
        "within_30": round(n * (1 - chance) / 3),
    }
    behaviours = [b for b, k in counts.items() for _ in range(k)][:n]
    behaviours += ["unpaid"] * (n - len(behaviours))
    rnd.shuffle(behaviours)
    return behaviours


def _simulate(tier, test, today, started, rnd) -> tuple[int, int]:
    code = tier.code
    champion = PolicyVersion.objects.latest_ids([tier.pk]).get(tier.pk)
    Customer.objects.bulk_create(
        [
            Customer(
                ref=f"SIM-{code}-{n:04d}",
                name=f"Simulated {code}{n:04d}",
                phone=f"+86139{rnd.randint(0, 99999999):08d}",
                language="zh-hans",
                timezone="Asia/Shanghai",
                credit_score=tier.min_score,
                tier=tier,
            )
            for n in range(1, CUSTOMERS_PER_TIER + 1)
        ]
    )
    customers = list(Customer.objects.filter(ref__startswith=f"SIM-{code}-").order_by("id"))
    Loan.objects.bulk_create(
        [
            Loan(
                ref=f"SIM-L-{c.ref[4:]}",
                customer=c,
                principal=Decimal("4000.00"),
                currency="CNY",
                disbursed_on=started.date(),
            )
            for c in customers
        ]
    )
    loans = {loan.customer_id: loan for loan in Loan.objects.filter(customer__in=customers)}
    arms = {}
    assignments = []
    for c in customers:
        arm = arm_for(c.pk, test.seed, test.challenger_share, test.holdout_share)
        arms[c.pk] = arm
        assignments.append(
            PolicyAssignment(
                customer=c,
                tier=tier,
                seed=test.seed,
                arm=arm,
                policy_version_id=test.challenger_id if arm == "challenger" else champion,
                assigned_at=started,
            )
        )
    PolicyAssignment.objects.bulk_create(assignments, ignore_conflicts=True)
    installments, groups = [], defaultdict(list)
    for c in customers:
        # Customers joined over the first weeks: cohorts spread over the months.
        first_due = started.date() + dt.timedelta(days=14 + rnd.randint(0, 20))
        for seq in range(1, MONTHS + 1):
            due = first_due + dt.timedelta(days=30 * (seq - 1))
            installments.append(
                Installment(loan=loans[c.pk], seq=seq, due_date=due, amount_due=Decimal("1000.00"))
            )
            groups[(arms[c.pk], due < today)].append((loans[c.pk], seq, due))
    paid = []
    for (arm, _is_due), group in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1])):
        for (loan, seq, due), behaviour in zip(group, _behaviours(ON_TIME[(code, arm)], len(group), rnd)):
            if behaviour == "on_time":
                day = due - dt.timedelta(days=rnd.randint(0, 3))
            elif behaviour == "within_7":
                day = due + dt.timedelta(days=rnd.randint(1, 7))
            elif behaviour == "within_30":
                day = due + dt.timedelta(days=rnd.randint(8, 30))
            else:
                continue
            if day < today:
                paid.append((loan, seq, day))
    Installment.objects.bulk_create(installments, batch_size=1000)
    ids = {
        (loan_id, seq): pk
        for loan_id, seq, pk in Installment.objects.filter(loan__in=loans.values()).values_list(
            "loan_id", "seq", "pk"
        )
    }
    Payment.objects.bulk_create(
        [
            Payment(
                ref=f"SIM-P-{loan.ref[6:]}-{seq}",
                loan=loan,
                installment_id=ids[(loan.pk, seq)],
                amount=Decimal("1000.00"),
                received_at=timezone.make_aware(dt.datetime.combine(day, dt.time(12))),
                source=Payment.Source.APP,
            )
            for loan, seq, day in paid
        ],
        batch_size=1000,
    )
    reallocate_loans(
        [loan.pk for loan in loans.values()],
        timezone.make_aware(dt.datetime.combine(today, dt.time(6))),
        payments_recorded=False,
        actor=ACTOR,
    )
    # The simulated history is closed: its loans neither feed the demo's collections nor get reminders now.
    sim = Loan.objects.filter(pk__in=[loan.pk for loan in loans.values()])
    unpaid = Installment.objects.filter(loan__in=sim, paid_at__isnull=True).values("loan_id")
    sim.filter(pk__in=unpaid).update(status=Loan.Status.WRITTEN_OFF)
    sim.exclude(pk__in=unpaid).update(status=Loan.Status.PAID_OFF)
    return len(customers), len(paid)
