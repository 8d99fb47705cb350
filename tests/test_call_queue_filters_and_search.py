"""A team lead narrows the queue by collector, stage and DPD bucket, and finds a customer by name or by any part
of the phone number typed in any format; whoever may not see personal data finds by reference only."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from backoffice.roles import COMPLIANCE_OFFICER
from debt_collection.advance import advance_collections
from debt_collection.models import CallTask, CollectionCase

from .factories import make_tier, make_user
from .factories_collections import DUE, day, make_collector, make_ladder, make_overdue_loan, open_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue():
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", ""), (40, "late call", "call_task", "")])
    ann, bob = make_collector("ann"), make_collector("bob")
    li = make_overdue_loan(tier, name="李小龙", phone="+8613812345678")
    smith = make_overdue_loan(tier, name="Alice Smith", phone="+447911123456", timezone="Europe/London")
    old = make_overdue_loan(tier, name="Old Debtor")
    advance_collections(day(3))
    # Days past due count from the oldest due date: 45 days past due on day 3.
    CollectionCase.objects.filter(loan=old).update(
        oldest_due_date=DUE - dt.timedelta(days=42), stage="late call"
    )
    tasks = {name: open_tasks(loan)[0] for name, loan in (("li", li), ("smith", smith), ("old", old))}
    CallTask.objects.filter(pk__in=[tasks["li"].pk, tasks["old"].pk]).update(assigned_to=ann)
    CallTask.objects.filter(pk=tasks["smith"].pk).update(assigned_to=bob)
    lead = make_user("lead", password=None)
    lead.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_calltask", "view_all_calltasks", "view_personal_data"])
    )
    return {"ann": ann, "bob": bob, "lead": lead, **{k: v.pk for k, v in tasks.items()}}


def listed(client, user, **params) -> set[int]:
    with time_machine.travel(day(3, hour=11), tick=False):  # the queue is read at the request's moment
        client.force_login(user)
        response = client.get(reverse("admin:collections_calltask_changelist"), params)
    assert response.status_code == 200
    return {t.pk for t in response.context["cl"].result_list}


def test_it_filters_by_collector_stage_and_dpd_bucket(client, queue):
    lead = queue["lead"]

    assert listed(client, lead, collector=queue["ann"].pk) == {queue["li"], queue["old"]}
    assert listed(client, lead, collector=queue["bob"].pk) == {queue["smith"]}
    assert listed(client, lead, stage="late call") == {queue["old"]}
    assert listed(client, lead, bucket="31-60") == {queue["old"]}
    assert listed(client, lead, bucket="1-30") == {queue["li"], queue["smith"]}
    assert listed(client, lead, bucket="1-30", collector=queue["ann"].pk) == {queue["li"]}


def test_the_collector_filter_offers_only_members_of_the_collector_group(client, queue):
    client.force_login(queue["lead"])
    page = client.get(reverse("admin:collections_calltask_changelist")).content.decode()

    assert f"?collector={queue['ann'].pk}" in page and f"?collector={queue['bob'].pk}" in page
    assert f"?collector={queue['lead'].pk}" not in page


@pytest.mark.parametrize("term", ["12345678", "138 1234 5678", "(138)1234-5678", "+86 138-1234", "5678"])
def test_it_finds_a_customer_by_any_part_of_the_phone_in_any_format(client, queue, term):
    assert listed(client, queue["lead"], q=term) == {queue["li"]}


def test_a_phone_search_keeps_the_filters_chosen(client, queue):
    assert listed(client, queue["lead"], q="1234 5678", collector=queue["bob"].pk) == set()
    assert listed(client, queue["lead"], q="1234 5678", collector=queue["ann"].pk) == {queue["li"]}


def test_it_finds_a_customer_by_name(client, queue):
    assert listed(client, queue["lead"], q="小龙") == {queue["li"]}
    assert listed(client, queue["lead"], q="smith") == {queue["smith"]}


def test_without_personal_data_rights_name_and_phone_find_nothing_but_references_do(client, queue):
    officer = make_user("officer", group=COMPLIANCE_OFFICER, password=None)
    old_ref = CallTask.objects.get(pk=queue["old"]).case.loan.ref

    assert listed(client, officer, q="小龙") == set()
    assert listed(client, officer, q="138 1234 5678") == set()
    assert listed(client, officer, q=old_ref) == {queue["old"]}
    client.force_login(officer)
    assert (
        client.get(
            reverse("admin:collections_calltask_changelist"), {"case__loan__customer__phone__contains": "138"}
        ).status_code
        == 400
    )


def test_a_collector_searches_only_their_own_queue(client, queue):
    assert listed(client, queue["bob"], q="小龙") == set()
    assert listed(client, queue["ann"], q="小龙") == {queue["li"]}
