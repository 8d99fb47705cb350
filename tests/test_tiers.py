"""A customer's tier follows their latest credit score, unless an operator pinned it with a reason."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.models import AuditEvent
from loans import signals
from loans.models import CreditScore, CreditTier, Customer
from loans.scores import apply_credit_scores, pin_tier, rederive_customer_tiers
from tests.factories import make_customer, make_score, make_tier

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def tiers():
    return {
        "A": make_tier(code="TA", min_score=750, max_score=950),
        "B": make_tier(code="TB", min_score=650, max_score=749),
        "D": make_tier(code="TD", min_score=300, max_score=649),
    }


@pytest.fixture
def tier_changes():
    received = []

    def receiver(sender, changes, at, **kwargs):
        received.append((changes, at))

    signals.tier_changed.connect(receiver)
    yield received
    signals.tier_changed.disconnect(receiver)


def test_a_customer_gets_the_tier_whose_range_holds_their_score(tiers):
    customer = make_customer(credit_score=700)
    assert customer.tier == tiers["B"]
    customer.credit_score = 800
    customer.save()
    assert customer.tier == tiers["A"]
    customer.credit_score = 100
    customer.save()
    assert customer.tier is None


def test_a_pinned_tier_needs_a_reason_and_no_longer_follows_the_score(tiers):
    customer = make_customer(credit_score=700)
    with pytest.raises(ValidationError):
        pin_tier(customer, tiers["A"], reason="  ", at=AT)
    customer = pin_tier(customer, tiers["A"], reason="Long-standing customer, manual review", at=AT)
    customer.credit_score = 400
    customer.save()
    customer.refresh_from_db()
    assert customer.tier == tiers["A"] and customer.is_tier_pinned
    event = AuditEvent.objects.get(action="loans.customer.tier_pinned")
    assert event.after["tier_pin_reason"] == "Long-standing customer, manual review"


def test_unpinning_lets_the_score_decide_again(tiers, tier_changes, django_capture_on_commit_callbacks):
    customer = make_customer(credit_score=400)
    customer = pin_tier(customer, tiers["A"], reason="VIP", at=AT)
    with django_capture_on_commit_callbacks(execute=True):
        customer = pin_tier(customer, None, reason="review finished", at=AT)
    assert customer.tier == tiers["D"] and not customer.is_tier_pinned and customer.tier_pin_reason == ""
    assert tier_changes[-1][0] == [(customer.pk, tiers["A"].pk, tiers["D"].pk)]
    assert AuditEvent.objects.filter(action="loans.customer.tier_unpinned").exists()


def test_applying_scores_takes_the_latest_score_and_moves_the_tier(
    tiers, tier_changes, django_capture_on_commit_callbacks
):
    customer = make_customer(credit_score=700)
    make_score(customer, 800, scored_at=NOW - dt.timedelta(days=1))
    make_score(customer, 600, scored_at=NOW - dt.timedelta(days=5))  # older, arrived late: does not win
    with django_capture_on_commit_callbacks(execute=True):
        counts = apply_credit_scores(NOW)
    customer.refresh_from_db()
    assert customer.credit_score == 800 and customer.tier == tiers["A"]
    assert counts == {"scores_applied": 2, "customers_updated": 1, "tiers_changed": 1}
    assert tier_changes == [([(customer.pk, tiers["B"].pk, tiers["A"].pk)], NOW)]
    event = AuditEvent.objects.get(action="loans.customer.tier_changed")
    assert event.before == {"tier_id": tiers["B"].pk, "credit_score": 700}
    assert event.after["credit_score"] == 800 and event.after["reason"] == "credit_score"
    assert not CreditScore.objects.filter(applied_at__isnull=True).exists()


def test_applying_scores_twice_changes_nothing_more(tiers):
    customer = make_customer(credit_score=700)
    make_score(customer, 800, scored_at=NOW - dt.timedelta(days=1))
    apply_credit_scores(NOW)
    assert apply_credit_scores(NOW) == {"scores_applied": 0, "customers_updated": 0, "tiers_changed": 0}
    assert AuditEvent.objects.filter(action="loans.customer.tier_changed").count() == 1


def test_a_score_from_the_future_waits_for_its_moment(tiers):
    customer = make_customer(credit_score=700)
    make_score(customer, 800, scored_at=NOW + dt.timedelta(hours=1))
    assert apply_credit_scores(NOW)["scores_applied"] == 0
    assert apply_credit_scores(NOW + dt.timedelta(hours=2))["scores_applied"] == 1


def test_applying_scores_updates_a_pinned_customers_score_but_not_their_tier(tiers):
    customer = pin_tier(make_customer(credit_score=700), tiers["A"], reason="VIP", at=AT)
    make_score(customer, 400, scored_at=NOW - dt.timedelta(hours=1))
    counts = apply_credit_scores(NOW)
    customer.refresh_from_db()
    assert customer.credit_score == 400 and customer.tier == tiers["A"]
    assert counts["tiers_changed"] == 0


def test_applying_scores_costs_the_same_queries_for_three_or_thirty_customers(tiers):
    def queries_for(n):
        customers = [make_customer(credit_score=700) for _ in range(n)]
        for c in customers:
            make_score(c, 800, scored_at=NOW - dt.timedelta(hours=1))
        with CaptureQueriesContext(connection) as ctx:
            apply_credit_scores(NOW)
        return len(ctx.captured_queries)

    assert queries_for(3) == queries_for(30)


def test_changing_tier_ranges_moves_unpinned_customers(tiers):
    customer = make_customer(credit_score=700)
    pinned = pin_tier(make_customer(credit_score=700), tiers["B"], reason="manual", at=AT)
    tiers["A"].min_score, tiers["B"].max_score = 690, 689
    tiers["B"].save()
    tiers["A"].save()
    assert rederive_customer_tiers(at=AT, reason="test")["tiers_changed"] == 1
    assert Customer.objects.get(pk=customer.pk).tier == tiers["A"]
    assert Customer.objects.get(pk=pinned.pk).tier == tiers["B"]


TIER_HEADER = "code,name,min_score,max_score,risk_level,grace_period_days,max_contacts_per_week,channel_order"


def test_two_rows_of_one_tier_file_that_overlap_each_other_save_nothing():
    from core.imports.resource import run_import
    from loans.resources import CreditTierResource

    data = "\n".join([TIER_HEADER, "FA,Prime,9800,9950,low,7,2,sms", "FB,Good,9850,9900,medium,5,3,sms", ""])
    _result, errors = run_import(CreditTierResource(), data, file_name="tiers.csv")
    assert errors == ["line 3, column min_score: Scores 9850-9900 overlap tier FA (9800-9950) of line 2."]
    assert not CreditTier.objects.filter(code__in=["FA", "FB"]).exists()


def test_a_tier_file_of_adjacent_ranges_imports():
    from core.imports.resource import run_import
    from loans.resources import CreditTierResource

    data = "\n".join([TIER_HEADER, "FC,Prime,9800,9899,low,7,2,sms", "FD,Good,9900,9999,medium,5,3,sms", ""])
    _result, errors = run_import(CreditTierResource(), data, file_name="tiers.csv")
    assert errors == [] and CreditTier.objects.filter(code__in=["FC", "FD"]).count() == 2


def test_a_tier_file_is_audited_tier_by_tier_with_before_and_after():
    from core.imports.resource import run_import
    from loans.resources import CreditTierResource
    from tests.factories import make_user

    kept = make_tier(code="FE", name="Kept", min_score=9700, max_score=9799, grace_period_days=3)
    same = make_tier(
        code="FS",
        name="Same",
        min_score=9600,
        max_score=9699,
        grace_period_days=3,
        max_contacts_per_week=3,
        channel_order="sms",
        risk_level="medium",
    )
    data = "\n".join(
        [
            TIER_HEADER,
            "FE,Kept,9700,9799,medium,5,3,sms",
            "FS,Same,9600,9699,medium,3,3,sms",
            "FF,New,9800,9899,low,7,2,sms",
            "",
        ]
    )
    _result, errors = run_import(CreditTierResource(), data, file_name="tiers.csv", user=make_user("ops"))
    assert errors == []
    changed = AuditEvent.objects.get(action="loans.credittier.changed")
    assert changed.actor == "ops" and changed.object_id == str(kept.pk)
    assert changed.before["grace_period_days"] == 3 and changed.after["grace_period_days"] == 5
    created = AuditEvent.objects.get(action="loans.credittier.created")
    assert created.before is None and created.object_id == str(CreditTier.objects.get(code="FF").pk)
    assert created.after["min_score"] == 9800 and created.after["source"] == "import"
    assert not AuditEvent.objects.filter(object_type="loans.CreditTier", object_id=str(same.pk)).exists()


def test_tier_for_picks_the_tier_whose_range_holds_the_score():
    from loans.tiers import tier_for

    low, high = make_tier(min_score=300, max_score=549), make_tier(min_score=550, max_score=949)

    assert tier_for(549, [high, low]) == low
    assert tier_for(550, [high, low]) == high
    assert tier_for(950, [high, low]) is None
    assert tier_for(None, [high, low]) is None
