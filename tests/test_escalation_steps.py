"""The ladder as configuration: imported with the columns of SPEC.md, edited inline on the tier, seeded for the demo."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse

from core.imports.resource import run_import
from debt_collection import demo
from debt_collection.models import Agency, EscalationStep
from debt_collection.resources import EscalationStepResource
from loans.schedule import DpdBucket, InstallmentState, dpd_bucket, installment_state

from .factories import make_tier
from .factories_collections import DUE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("days_after_due", "state"),
    [(-1, "upcoming"), (0, "due"), (1, "grace"), (5, "grace"), (6, "overdue"), (40, "overdue")],
)
def test_an_instalment_is_in_grace_until_the_tiers_grace_period_ends(days_after_due, state):
    import datetime as dt

    today = DUE + dt.timedelta(days=days_after_due)
    assert installment_state(due_date=DUE, today=today, grace_period_days=5) == state
    assert (
        installment_state(due_date=DUE, today=today, grace_period_days=5, is_paid=True)
        == InstallmentState.PAID
    )


@pytest.mark.parametrize(
    ("dpd", "bucket"),
    [
        (0, ""),
        (1, "1-30"),
        (30, "1-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, "61-90"),
        (90, "61-90"),
        (91, "90+"),
    ],
)
def test_days_past_due_fall_into_buckets(dpd, bucket):
    assert dpd_bucket(dpd) == DpdBucket(bucket)


def test_escalation_steps_are_imported_keyed_by_tier_dpd_and_action():
    tier = make_tier(code="A")
    data = "tier_code,min_dpd,stage,action,kind\nA,1,early,sms,overdue\nA,15,call,call_task,\nA,90,legal,legal,\n"

    result, errors = run_import(EscalationStepResource(), data)
    again, _ = run_import(EscalationStepResource(), data.replace("early", "gentle"))

    assert errors == []
    assert list(tier.escalation_steps.values_list("min_dpd", "stage", "action", "kind")) == [
        (1, "gentle", "sms", "overdue"),
        (15, "call", "call_task", ""),
        (90, "legal", "legal", ""),
    ]


def test_a_bad_escalation_row_is_reported_with_line_and_column_and_nothing_is_saved():
    make_tier(code="A")
    data = "tier_code,min_dpd,stage,action,kind\nA,1,early,sms,overdue\nZ,5,firm,sms,overdue\nA,7,firm,fax,overdue\n"

    _result, errors = run_import(EscalationStepResource(), data)

    assert any(e.startswith("line 3, column tier_code") for e in errors), errors
    assert any(e.startswith("line 4, column action") for e in errors), errors
    assert not EscalationStep.objects.exists()


def test_a_messaging_step_needs_a_template_kind_in_the_database():
    tier = make_tier()
    with pytest.raises(IntegrityError), transaction.atomic():
        EscalationStep.objects.create(tier=tier, min_dpd=1, stage="early", action="sms", kind="")


def test_the_ladder_is_edited_inline_on_the_credit_tier(client):
    tier = make_tier()
    EscalationStep.objects.create(tier=tier, min_dpd=3, stage="call", action="call_task")
    admin = get_user_model().objects.create_superuser("root", password=None)
    client.force_login(admin)

    response = client.get(reverse("admin:loans_credittier_change", args=[tier.pk]))

    assert response.status_code == 200
    assert b"escalation_steps-0-min_dpd" in response.content


def test_the_demo_ladders_are_seeded_once_per_existing_tier():
    make_tier(code="A", min_score=700, max_score=999)
    make_tier(code="D", min_score=0, max_score=399)

    first = demo.seed()
    second = demo.seed()

    assert first["escalation_steps"] == len(demo.LADDERS["A"]) + len(demo.LADDERS["D"])
    assert second == {"escalation_steps": 0, "agencies": 0, "cases": 0, "calls": 0, "promises": 0}
    d_call = EscalationStep.objects.get(tier__code="D", action="call_task").min_dpd
    a_call = EscalationStep.objects.get(tier__code="A", action="call_task").min_dpd
    assert d_call < a_call
    assert Agency.objects.count() == 2


def test_the_overdue_filter_uses_each_tiers_grace_period():
    import datetime as dt

    from loans.models import CreditTier, Installment
    from loans.schedule import overdue_q

    from .factories_collections import make_overdue_loan

    short, long = make_tier(grace_period_days=2), make_tier(grace_period_days=7)
    today = DUE + dt.timedelta(days=5)
    short_loan, long_loan = make_overdue_loan(short), make_overdue_loan(long)

    overdue = Installment.objects.filter(overdue_q(today, CreditTier.objects.all()))

    assert list(overdue.values_list("loan_id", flat=True)) == [short_loan.pk]
    assert (
        Installment.objects.filter(overdue_q(today + dt.timedelta(days=3), CreditTier.objects.all())).count()
        == 2
    )
    assert long_loan.installments.count() == 1
