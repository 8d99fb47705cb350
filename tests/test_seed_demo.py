"""``manage.py seed_demo``: realistic, every loan state, every template, demo users; twice = the same rows.

Tests run with DEBUG off, where the command refuses unless told `--allow-production`.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Min, Q

from backoffice.dashboard import dashboard_figures
from debt_collection.models import CallTask, CollectionCase, PromiseToPay
from loans.models import CreditScore, CreditTier, Customer, Installment, Loan, Payment
from notifications.choices import Kind
from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 23)


def counts():
    return {
        model.__name__: model.objects.count()
        for model in (
            CollectionCase,
            CallTask,
            PromiseToPay,
            CreditTier,
            Customer,
            CreditScore,
            Loan,
            Installment,
            Payment,
            ReminderTemplate,
            ReminderRule,
        )
    }


@pytest.fixture
def seeded(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    out = io.StringIO()
    call_command("seed_demo", "--today", TODAY.isoformat(), "--allow-production", stdout=out)
    return out.getvalue()


def test_seeding_twice_gives_the_same_rows(seeded):
    first = counts()
    call_command("seed_demo", "--today", TODAY.isoformat(), "--allow-production", stdout=io.StringIO())
    assert counts() == first
    assert first["Customer"] >= 250 and first["CreditTier"] == 4


def test_it_seeds_loans_in_every_state_relative_to_today(seeded):
    oldest_unpaid = (
        Loan.objects.filter(status=Loan.Status.ACTIVE)
        .annotate(due=Min("installments__due_date", filter=Q(installments__paid_at__isnull=True)))
        .values_list("due", flat=True)
    )
    days_past_due = {(TODAY - due).days for due in oldest_unpaid}
    assert {-3, 0, 1, 2, 5, 20, 45, 75, 120} <= days_past_due
    assert Loan.objects.filter(status=Loan.Status.PAID_OFF).exists()
    assert Loan.objects.filter(autopay=True).exists()
    assert not Installment.objects.filter(loan__status=Loan.Status.PAID_OFF, paid_at__isnull=True).exists()


def test_it_seeds_tiers_a_to_d_with_grace_periods_and_caps(seeded):
    tiers = {t.code: t for t in CreditTier.objects.all()}
    assert [tiers[c].grace_period_days for c in "ABCD"] == [7, 5, 3, 3]
    assert tiers["A"].max_contacts_per_week < tiers["D"].max_contacts_per_week
    assert all(ReminderRule.objects.filter(tier=tiers[c]).exists() for c in "ABCD")
    assert (
        ReminderRule.objects.filter(tier=tiers["D"]).count()
        > ReminderRule.objects.filter(tier=tiers["A"]).count()
    )
    assert ReminderRule.objects.filter(kind="grace").exists()
    assert ContactPolicy.objects.filter(id=1).exists()


def test_it_seeds_a_template_per_kind_channel_and_language(seeded):
    have = set(ReminderTemplate.objects.values_list("kind", "channel", "language"))
    for kind in Kind.values:
        for channel in ("sms", "email", "push"):
            for language in ("zh-hans", "en"):
                assert (kind, channel, language) in have
    assert "{loans}" in ReminderTemplate.objects.get(kind="pre_due", channel="sms", language="zh-hans").body


def test_customers_have_chinese_and_english_names_valid_phones_and_a_few_other_time_zones(seeded):
    assert (
        Customer.objects.filter(language="en").exists()
        and Customer.objects.filter(language="zh-hans").exists()
    )
    assert not Customer.objects.exclude(phone__startswith="+").exists()
    assert Customer.objects.filter(phone__startswith="+86").count() > 200
    assert Customer.objects.exclude(timezone="Asia/Shanghai").exists()
    assert CreditScore.objects.filter(applied_at__isnull=True).exists()  # the first run_jobs moves some tiers


def test_it_prints_working_demo_credentials_for_each_role(seeded, client):
    assert "Demo credentials" in seeded
    users = get_user_model().objects.filter(username__in=["operations", "collector", "compliance", "admin"])
    assert users.count() == 4
    for line in seeded.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in {"operations", "collector", "compliance", "admin"}:
            # Through the admin's log-in form, as a person would (django-axes checks each attempt's request).
            response = client.post("/admin/login/", {"username": parts[0], "password": parts[1]})
            assert response.status_code == 302, parts[0]
            assert client.get("/admin/").status_code == 200
            client.logout()


def test_the_demo_book_has_weeks_of_history_so_the_board_is_not_all_zero_or_hundred_percent(seeded):
    figures = dashboard_figures(TODAY)
    cures = [r["rate"] for r in figures["cure_rates"] if r["rate"] is not None]
    rolls = [r["rate"] for r in figures["roll_rates"] if r["rate"] is not None]
    morning = figures["morning"]

    assert any(0 < rate < 1 for rate in cures)
    assert any(0 < rate < 1 for rate in rolls)
    assert 0 < morning["promise_kept_rate"] < 1
    assert 0 < morning["right_party_rate"] < 1
    assert CollectionCase.objects.filter(status=CollectionCase.Status.CLOSED).count() >= 20
    assert sum(h["payments"] for h in figures["history"]) > 0


@pytest.mark.parametrize("ids_taken", [0, 13, 57])
def test_the_demo_runs_a_champion_challenger_test_whose_outcomes_differ_by_arm(ids_taken):
    from backoffice.demo import seed
    from strategy.models import OutcomeFigure

    # Arms come from a hash of the customer's id, and ids from whatever ran before: the difference must not.
    Customer.objects.bulk_create(Customer(ref=f"TAKEN-{i}", name="Taken") for i in range(ids_taken))
    seed(today=dt.date(2026, 11, 30))
    seed(today=dt.date(2026, 11, 30))

    def rate(arm):
        rows = OutcomeFigure.objects.filter(tier__code="C", arm=arm, metric="paid_by_due")
        return sum(r.numerator for r in rows) / sum(r.denominator for r in rows)

    assert Customer.objects.filter(ref__startswith="SIM-C-").count() == 150
    assert rate("holdout") < rate("champion")
    assert {"champion", "challenger", "holdout"} <= set(
        OutcomeFigure.objects.filter(tier__code="B").values_list("arm", flat=True)
    )


@pytest.mark.parametrize("n", [1, 7, 12, 45, 150])
def test_the_demos_arms_pay_in_their_configured_shares_whatever_their_size(n):
    import random

    from strategy.demo import _behaviours

    behaviours = _behaviours(0.45, n, random.Random(n))
    assert len(behaviours) == n
    assert behaviours.count("on_time") == round(n * 0.45)
    assert behaviours.count("within_7") == round(n * 0.55 / 2)
