"""The case list shows, sorts and filters days past due as of the request's one moment, each case in its customer's
own calendar: two cases counting from the same date are 30 and 31 days past due for customers a day apart."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from backoffice.roles import COLLECTOR
from debt_collection.models import CollectionCase

from .factories import make_customer, make_loan, make_tier, make_user

pytestmark = pytest.mark.django_db

# 12:00 UTC: 02:00 the next day on Kiritimati (UTC+14), 01:00 the same day in Pago Pago (UTC-11).
MOMENT = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC)
COUNTS_FROM = dt.date(2027, 1, 15) - dt.timedelta(days=30)


@pytest.fixture
def cases():
    tier = make_tier()
    made = {}
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        loan = make_loan(make_customer(tier=tier, timezone=zone))
        made[zone] = CollectionCase.objects.create(
            loan=loan, tier=tier, stage="call", opened_at=MOMENT, oldest_due_date=COUNTS_FROM
        )
    closed = make_loan(make_customer(tier=tier, timezone="Asia/Shanghai"))
    made["closed"] = CollectionCase.objects.create(
        loan=closed,
        tier=tier,
        status=CollectionCase.Status.CLOSED,
        opened_at=MOMENT - dt.timedelta(days=40),
        closed_at=MOMENT - dt.timedelta(days=30),
        oldest_due_date=COUNTS_FROM - dt.timedelta(days=20),
    )
    return made


@pytest.fixture
def client(client):
    client.user = make_user("lin", group=COLLECTOR, password=None)
    return client


def case_list(client, **params):
    with time_machine.travel(MOMENT, tick=False):  # a session lasts a working day: log in at that moment
        client.force_login(client.user)
        response = client.get(reverse("admin:collections_collectioncase_changelist"), params)
    assert response.status_code == 200
    return response


def test_it_reads_days_past_due_in_each_customers_calendar(cases):
    kiritimati, pago = cases["Pacific/Kiritimati"], cases["Pacific/Pago_Pago"]
    kiritimati.loan.customer.timezone, pago.loan.customer.timezone = "Pacific/Kiritimati", "Pacific/Pago_Pago"

    assert kiritimati.days_past_due(MOMENT) == 31 and kiritimati.dpd_bucket(MOMENT) == "31-60"
    assert pago.days_past_due(MOMENT) == 30 and pago.dpd_bucket(MOMENT) == "1-30"


def test_the_bucket_filter_follows_each_customers_calendar_at_the_requests_moment(client, cases):
    listed = {
        bucket: {c.pk for c in case_list(client, bucket=bucket).context["cl"].result_list}
        for bucket in ("1-30", "31-60", "61-90", "90+")
    }

    assert listed["1-30"] == {cases["Pacific/Pago_Pago"].pk}
    assert listed["31-60"] == {cases["Pacific/Kiritimati"].pk}
    # A closed case is in no bucket: its loan is past due no more.
    assert listed["61-90"] == set() and listed["90+"] == set()


def test_the_list_shows_and_sorts_by_days_past_due(client, cases):
    response = case_list(client, o="7")  # the days-past-due column, ascending
    rows = response.context["cl"].result_list
    shown = {
        c.pk: (c.loan.customer.timezone, response.context["cl"].model_admin.days_past_due(c)) for c in rows
    }

    # The closed case reads the days past due it closed at (20 + 30 - 30 = 20), however long ago that was.
    assert shown[cases["closed"].pk] == ("Asia/Shanghai", 20)
    assert shown[cases["Pacific/Kiritimati"].pk][1] == 31 and shown[cases["Pacific/Pago_Pago"].pk][1] == 30
    # Sorted by the date the days are counted from: the oldest date is the most days past due at any moment.
    assert [c.pk for c in rows][-1] == cases["closed"].pk
