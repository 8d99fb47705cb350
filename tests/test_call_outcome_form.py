"""Recording a call is one form: the customer's loans (to say which the call covered), the promise amount
prefilled with the amount overdue, the calls so far; after saving, the next task of the collector's queue opens."""

from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallAttempt, CallTask, PromiseToPay

from .factories import make_installment, make_loan, make_tier
from .factories_collections import DUE, day, make_collector, make_ladder, make_overdue_loan, open_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def book():
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", "")])
    collector = make_collector("kai")
    first = make_overdue_loan(tier, amount=Decimal("750.00"))
    second = make_loan(first.customer)
    make_installment(second, due_date=DUE, amount_due=Decimal("300.00"))
    bigger = make_overdue_loan(tier, amount=Decimal("900.00"))
    smaller = make_overdue_loan(tier, amount=Decimal("100.00"))
    advance_collections(day(3))
    CallTask.objects.update(assigned_to=collector)
    return {
        "collector": collector,
        "first": first,
        "second": second,
        "task": open_tasks(first)[0],
        "other": open_tasks(second)[0],
        "bigger": open_tasks(bigger)[0],
        "smaller": open_tasks(smaller)[0],
    }


def record_url(task) -> str:
    return reverse("admin:collections_calltask_record", args=[task.pk])


def test_the_form_shows_the_customers_loans_the_prefilled_promise_and_the_calls_so_far(client, book):
    task = book["task"]
    record_call_outcome(
        task, outcome="no_answer", note="line busy", actor=book["collector"], at=day(3, hour=9)
    )
    [retry] = open_tasks(book["first"])

    with time_machine.travel(day(3, hour=15), tick=False), timezone.override("Europe/London"):
        client.force_login(book["collector"])
        response = client.get(record_url(retry))

    page = response.content.decode()
    form = response.context["form"]
    assert form["promise_amount"].value() == Decimal("750.00")
    assert [ref for ref, _ in form.fields["covers"].choices] == [book["second"].ref]
    loans = response.context["loans"]
    assert [row["ref"] for row in loans] == [book["first"].ref, book["second"].ref]
    assert loans[0]["is_this"] and loans[1]["case"] is not None  # both overdue
    assert "No answer" in page and "line busy" in page and "kai" in page
    assert response.context["local_time"].endswith("15:00")  # the customer's clock, not the operator's
    assert 'name="covers"' in page and 'type="checkbox"' in page


def test_ticking_another_loan_records_the_call_as_about_both(client, book):
    with time_machine.travel(day(3, hour=11), tick=False):
        client.force_login(book["collector"])
        client.post(
            record_url(book["task"]),
            {"outcome": "reached", "covers": [book["second"].ref], "promise_amount": "750.00"},
        )

    attempt = CallAttempt.objects.get(task=book["task"])
    assert set(attempt.loans.values_list("ref", flat=True)) == {book["first"].ref, book["second"].ref}
    # The prefilled amount is not a promise when the outcome is not one.
    event = AuditEvent.objects.get(action="collections.call.recorded", object_id=str(book["task"].pk))
    assert event.after["promise_amount"] is None and not PromiseToPay.objects.exists()


def test_after_saving_the_next_task_of_the_queue_opens_and_the_last_returns_to_the_queue(client, book):
    collector = book["collector"]
    with time_machine.travel(day(3, hour=11), tick=False):
        client.force_login(collector)
        # Queue order: the biggest amount overdue first.
        first = client.post(record_url(book["bigger"]), {"outcome": "refused"})
        assert first.status_code == 302 and first["Location"] == record_url(book["task"])
        second = client.post(
            record_url(book["task"]),
            {"outcome": "promise_to_pay", "promise_amount": "750.00", "promise_date": "2026-12-08"},
        )
        assert second["Location"] == record_url(book["other"])
        third = client.post(record_url(book["other"]), {"outcome": "refused"})
        assert third["Location"] == record_url(book["smaller"])
        last = client.post(record_url(book["smaller"]), {"outcome": "refused"}, follow=True)

    assert last.redirect_chain[-1][0] == reverse("admin:collections_calltask_changelist")
    assert "Your queue is empty." in last.content.decode()
    assert not CallTask.objects.filter(status="open", assigned_to=collector).exists()


def test_a_refused_call_keeps_the_form_with_what_was_typed(client, book):
    with time_machine.travel(day(3, hour=23), tick=False):
        client.force_login(book["collector"])
        response = client.post(record_url(book["task"]), {"outcome": "reached", "note": "called late"})

    assert response.status_code == 200
    assert "Outside the contact window" in " ".join(response.context["form"].non_field_errors())
    assert response.context["form"]["note"].value() == "called late"
    assert not CallAttempt.objects.exists()
