"""The loan book's database constraints and model validation hold whatever writes the rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from loans.models import CreditTier, Customer, Installment, Loan, Payment
from tests.factories import make_customer, make_installment, make_loan, make_payment, make_tier

pytestmark = pytest.mark.django_db


def refused(create) -> bool:
    try:
        with transaction.atomic():
            create()
    except IntegrityError:
        return True
    return False


def test_it_refuses_a_second_customer_loan_or_payment_with_the_same_ref():
    customer = make_customer(ref="C-DUP")
    loan = make_loan(customer, ref="L-DUP")
    installment = make_installment(loan)
    make_payment(installment, ref="P-DUP")
    assert refused(lambda: make_customer(ref="C-DUP"))
    assert refused(lambda: make_loan(customer, ref="L-DUP"))
    assert refused(lambda: make_payment(installment, ref="P-DUP"))


def test_it_refuses_two_instalments_with_the_same_number_on_one_loan():
    loan = make_loan()
    make_installment(loan, seq=1)
    assert refused(lambda: make_installment(loan, seq=1))
    make_installment(make_loan(), seq=1)  # the same number on another loan is fine


def test_it_refuses_negative_amounts_in_the_database():
    loan = make_loan()
    assert refused(
        lambda: Installment.objects.create(
            loan=loan, seq=9, due_date=dt.date(2026, 1, 1), amount_due=Decimal("-1")
        )
    )
    assert refused(lambda: Loan.objects.filter(pk=loan.pk).update(principal=Decimal("-0.01")))
    installment = make_installment(loan)
    assert refused(
        lambda: Payment.objects.create(
            ref="P-ZERO",
            loan=loan,
            installment=installment,
            amount=Decimal("0"),
            received_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        )
    )


def test_it_refuses_a_tier_whose_minimum_is_above_its_maximum():
    assert refused(lambda: CreditTier.objects.create(code="BAD", name="Bad", min_score=700, max_score=600))


def test_it_refuses_overlapping_tier_ranges_in_validation():
    make_tier(code="LOW", min_score=600, max_score=699)
    overlapping = CreditTier(code="HIGH", name="High", min_score=650, max_score=800, channel_order="sms")
    with pytest.raises(ValidationError) as exc:
        overlapping.full_clean()
    assert "overlap tier LOW" in str(exc.value)
    CreditTier(code="HIGH", name="High", min_score=700, max_score=800, channel_order="sms").full_clean()


def test_it_stores_phone_numbers_as_e164_and_refuses_what_is_not_one():
    customer = Customer(ref="C-PHONE", name="王芳", phone="138 0013 8000", timezone="Asia/Shanghai")
    customer.full_clean()
    assert customer.phone == "+8613800138000"
    customer.phone = "12ab"
    with pytest.raises(ValidationError) as exc:
        customer.full_clean()
    assert "phone" in exc.value.message_dict


def test_it_refuses_an_unknown_time_zone():
    customer = Customer(ref="C-TZ", name="Amy", phone="+8613800138001", timezone="Mars/Olympus")
    with pytest.raises(ValidationError) as exc:
        customer.full_clean()
    assert "timezone" in exc.value.message_dict


def test_it_refuses_a_pinned_tier_without_a_reason_in_the_database():
    tier = make_tier()
    customer = make_customer(tier=tier)
    assert refused(
        lambda: Customer.objects.filter(pk=customer.pk).update(is_tier_pinned=True, tier_pin_reason="")
    )
