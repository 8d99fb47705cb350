"""The instalment list and the loan page judge every instalment at one moment of the request, not at a new
reading of the clock per row: a request that straddles the customer's midnight never shows two instalments
due on the same day as "due today" and "in grace"."""

from __future__ import annotations

import datetime as dt
import types
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from loans.schedule import local_date

from .factories import make_customer, make_installment, make_loan, make_tier, make_user

pytestmark = pytest.mark.django_db


def a_clock_that_jumps_a_day_at_each_reading(start: dt.datetime):
    readings = []

    def now():
        moment = start + dt.timedelta(days=len(readings))
        readings.append(moment)
        return moment

    return types.SimpleNamespace(now=now), readings


def three_due_today():
    """Three instalments due on the customer's today (grace 3 days); returns (loan, today's noon UTC)."""
    customer = make_customer(tier=make_tier(code="GR", grace_period_days=3), timezone="Asia/Shanghai")
    loan = make_loan(customer, ref="LMOMENT")
    noon = timezone.now().replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 in Shanghai
    today = local_date(noon, "Asia/Shanghai")
    for seq in (1, 2, 3):
        make_installment(loan, seq=seq, due_date=today, amount_due=Decimal("100.00"))
    return loan, noon


def test_it_shows_every_instalment_of_the_list_at_the_same_moment(client, monkeypatch):
    loan, noon = three_due_today()
    client.force_login(make_user("boss", is_superuser=True))
    clock, readings = a_clock_that_jumps_a_day_at_each_reading(noon)
    monkeypatch.setattr("loans.book_admin.timezone", clock)

    page = client.get(reverse("admin:loans_installment_changelist")).content.decode()

    assert page.count(">Due today<") == 3
    assert ">In grace period<" not in page
    assert len(readings) == 1


def test_it_shows_every_instalment_of_the_loan_page_at_the_same_moment(client, monkeypatch):
    loan, noon = three_due_today()
    client.force_login(make_user("boss", is_superuser=True))
    clock, readings = a_clock_that_jumps_a_day_at_each_reading(noon)
    monkeypatch.setattr("loans.book_admin.timezone", clock)

    page = client.get(reverse("admin:loans_loan_change", args=[loan.pk])).content.decode()

    assert page.count("Due today") == 3
    assert "In grace period" not in page
    assert len(readings) == 1
