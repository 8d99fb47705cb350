"""Money and dates read naturally in both languages: the currency always, grouped digits, one date style per
language, labels instead of codes, a tier named once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.utils import translation

from core.money import format_money
from loans.models import CreditTier
from notifications.choices import Channel, Kind
from notifications.models import ReminderTemplate
from tests.factories import make_customer, make_installment, make_loan, make_tier, make_user

EN, ZH = "en-GB,en;q=0.9", "zh-hans,zh;q=0.9,en;q=0.5"


@pytest.mark.parametrize(
    ("amount", "currency", "language", "text"),
    [
        (Decimal("12000"), "CNY", "en", "CNY 12,000.00"),
        (Decimal("12000"), "CNY", "zh-hans", "¥12,000.00"),
        (Decimal("1234567.891"), "USD", "en", "USD 1,234,567.89"),
        (Decimal("1200.5"), "USD", "zh-hans", "US$1,200.50"),
        (Decimal("-35.2"), "CNY", "zh-hans", "-¥35.20"),
        (Decimal("1000"), "THB", "zh-hans", "THB 1,000.00"),
        ("0.005", "SGD", "en", "SGD 0.01"),
        (None, "CNY", "en", "—"),
    ],
)
def test_it_writes_an_amount_with_its_currency_and_grouped_digits(amount, currency, language, text):
    assert format_money(amount, currency, language) == text


def test_it_writes_money_in_the_active_language_by_default():
    with translation.override("zh-hans"):
        assert format_money(Decimal("88"), "CNY") == "¥88.00"
    with translation.override("en"):
        assert format_money(Decimal("88"), "CNY") == "CNY 88.00"


@pytest.mark.django_db
def test_the_loan_and_instalment_lists_show_money_and_dates_in_the_operators_language(client):
    loan = make_loan(make_customer(), principal=Decimal("12000.00"), disbursed_on=dt.date(2026, 11, 30))
    make_installment(loan, amount_due=Decimal("1500.00"), due_date=dt.date(2026, 12, 30))
    client.force_login(make_user("boss", is_superuser=True))

    english = client.get("/admin/loans/loan/", HTTP_ACCEPT_LANGUAGE=EN).content.decode()
    chinese = client.get("/admin/loans/loan/", HTTP_ACCEPT_LANGUAGE=ZH).content.decode()
    instalments = client.get("/admin/loans/installment/", HTTP_ACCEPT_LANGUAGE=ZH).content.decode()

    assert "CNY 12,000.00" in english and "30 Nov 2026" in english
    assert "¥12,000.00" in chinese and "2026年11月30日" in chinese
    assert "¥1,500.00" in instalments and "2026年12月30日" in instalments


@pytest.mark.parametrize(
    ("code", "name", "label"),
    [
        ("A", "Prime", "A · Prime"),
        ("A", "A · 优质 Prime", "A · 优质 Prime"),
        ("B", "", "B"),
        ("AB", "Abc", "AB · Abc"),
    ],
)
def test_a_tier_is_named_with_its_code_once(code, name, label):
    assert CreditTier.label_for(code, name) == label
    assert str(CreditTier(code=code, name=name)) == label


@pytest.mark.django_db
def test_the_dashboards_cure_rates_name_each_tier_once(client):
    tier = make_tier(code="A", name="A · 优质 Prime")
    loan = make_loan(make_customer(tier=tier))
    make_installment(loan, due_date=dt.date(2026, 11, 20), amount_due=Decimal("10"))
    client.force_login(make_user("boss", is_superuser=True))
    cache.clear()

    with time_machine.travel(dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC), tick=False):
        html = client.get("/admin/", HTTP_ACCEPT_LANGUAGE=EN).content.decode()

    assert "A · 优质 Prime" in html and "A · A · " not in html


def test_a_template_is_named_by_its_labels_not_its_codes():
    template = ReminderTemplate(kind="pre_due", channel="sms", language="en")

    with translation.override("en"):
        name = str(template)

    assert name == f"{Kind('pre_due').label} · {Channel('sms').label} · English"
    assert "pre_due" not in name
