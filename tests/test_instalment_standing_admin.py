"""The loans admin shows each instalment's derived state and DPD bucket (in the customer's calendar, with the
tier's grace period) on the instalment list, the loan page and the customer page, without a query per row."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loans.schedule import local_date

from .factories import make_customer, make_installment, make_loan, make_tier, make_user

pytestmark = pytest.mark.django_db


def book():
    """One loan with an instalment in each state; returns the loan."""
    tier = make_tier(code="GR", grace_period_days=3)
    customer = make_customer(tier=tier, timezone="Asia/Shanghai")
    loan = make_loan(customer, ref="LSTATE1")
    today = local_date(timezone.now(), "Asia/Shanghai")
    for seq, days in ((1, -40), (2, -2), (3, 0), (4, 5)):
        make_installment(
            loan, seq=seq, due_date=today + dt.timedelta(days=days), amount_due=Decimal("100.00")
        )
    make_installment(loan, seq=5, due_date=today - dt.timedelta(days=70), paid_at=timezone.now())
    return loan


def text_of(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_the_instalment_list_shows_each_state_and_dpd_bucket_with_a_fixed_number_of_queries(client):
    loan = book()
    client.force_login(make_user("boss", is_superuser=True))
    url = reverse("admin:loans_installment_changelist")

    client.get(url)  # warms the caches a first request fills (content types, session)
    with CaptureQueriesContext(connection) as few:
        page = text_of(client.get(url))
    for seq in range(6, 16):
        make_installment(loan, seq=seq, due_date=dt.date(2020, 1, seq))
    with CaptureQueriesContext(connection) as many:
        text_of(client.get(url))

    for label in (
        "Overdue",
        "In grace period",
        "Due today",
        "Upcoming",
        "Paid",
        "31-60",
        "1-30",
        "Not past due",
    ):
        assert f">{label}<" in page, label
    assert len(many) == len(few)


def test_the_loan_page_lists_its_instalments_with_state_and_bucket_without_a_query_per_row(client):
    loan = book()
    client.force_login(make_user("boss", is_superuser=True))
    url = reverse("admin:loans_loan_change", args=[loan.pk])

    client.get(url)  # warms the caches a first request fills (content types, session)
    with CaptureQueriesContext(connection) as few:
        page = text_of(client.get(url))
    for seq in range(6, 16):
        make_installment(loan, seq=seq, due_date=dt.date(2020, 1, seq))
    with CaptureQueriesContext(connection) as many:
        more = text_of(client.get(url))

    for label in ("Overdue", "In grace period", "Due today", "Upcoming", "Paid", "31-60"):
        assert label in page, label
    assert more.count("90+") >= 10
    assert len(many) == len(few)


def test_the_customer_page_shows_the_state_and_bucket_of_each_instalment(client):
    loan = book()
    client.force_login(make_user("boss", is_superuser=True))

    page = text_of(client.get(reverse("admin:loans_customer_change", args=[loan.customer.pk])))

    table = page[page.index('class="customer-instalments"') :]
    table = table[: table.index("</table>")]
    assert "<td>Overdue</td><td>31-60</td>" in table and "<td>In grace period</td><td>1-30</td>" in table
    assert "<td>Upcoming</td><td>Not past due</td>" in table and "<td>Paid</td><td>Not past due</td>" in table
