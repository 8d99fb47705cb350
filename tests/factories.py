"""Hand-written factories: each takes the fields a test cares about and fills the rest."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from loans.models import CreditScore, CreditTier, Customer, Installment, Loan, Payment

_seq = itertools.count(1)


def make_tier(**kwargs) -> CreditTier:
    n = next(_seq)
    kwargs.setdefault("code", f"T{n}")
    kwargs.setdefault("name", f"Tier {n}")
    kwargs.setdefault("min_score", 10000 + n * 100)
    kwargs.setdefault("max_score", kwargs["min_score"] + 99)
    kwargs.setdefault("grace_period_days", 3)
    kwargs.setdefault("max_contacts_per_week", 3)
    kwargs.setdefault("channel_order", "sms,push,email")
    return CreditTier.objects.create(**kwargs)


_PHONE_OF_ZONE = {
    "America/Los_Angeles": "+1415555{n:04d}",
    "America/New_York": "+1212555{n:04d}",
    "Asia/Singapore": "+659{n:07d}",
    "Europe/London": "+44790{n:07d}",
}


def make_customer(**kwargs) -> Customer:
    n = next(_seq)
    kwargs.setdefault("ref", f"C{n:06d}")
    kwargs.setdefault("name", f"Customer {n}")
    # A customer's phone number matches where they live (a mismatch is a case of its own: tests say so).
    kwargs.setdefault(
        "phone",
        _PHONE_OF_ZONE.get(kwargs.get("timezone", "Asia/Shanghai"), "+86138{n:08d}").format(n=n % 10000),
    )
    kwargs.setdefault("email", f"customer{n}@example.com")
    kwargs.setdefault("push_token", f"token-{n}")
    kwargs.setdefault("language", "zh-hans")
    kwargs.setdefault("timezone", "Asia/Shanghai")
    tier = kwargs.pop("tier", None)
    if tier is not None and "credit_score" not in kwargs:
        kwargs["credit_score"] = tier.min_score
    return Customer.objects.create(**kwargs)


def make_loan(customer=None, **kwargs) -> Loan:
    n = next(_seq)
    kwargs.setdefault("ref", f"L{n:07d}")
    kwargs.setdefault("principal", Decimal("3000.00"))
    kwargs.setdefault("currency", "CNY")
    kwargs.setdefault("disbursed_on", dt.date(2026, 1, 1))
    return Loan.objects.create(customer=customer or make_customer(), **kwargs)


def make_installment(loan=None, **kwargs) -> Installment:
    loan = loan or make_loan()
    kwargs.setdefault("seq", (loan.installments.count() + 1))
    kwargs.setdefault("due_date", dt.date(2026, 12, 1))
    kwargs.setdefault("amount_due", Decimal("500.00"))
    return Installment.objects.create(loan=loan, **kwargs)


def make_payment(installment, **kwargs) -> Payment:
    n = next(_seq)
    kwargs.setdefault("ref", f"P{n:07d}")
    kwargs.setdefault("amount", installment.amount_due)
    kwargs.setdefault("received_at", dt.datetime(2026, 11, 30, 4, 0, tzinfo=dt.timezone.utc))
    return Payment.objects.create(loan=installment.loan, installment=installment, **kwargs)


def make_score(customer, score, scored_at=None) -> CreditScore:
    return CreditScore.objects.create(
        customer=customer,
        score=score,
        scored_at=scored_at or dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
    )


def make_user(username, *, group: str | None = None, password="pw-for-tests-1!", **kwargs):
    kwargs.setdefault("is_staff", True)
    user = get_user_model().objects.create_user(username=username, password=password, **kwargs)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user
