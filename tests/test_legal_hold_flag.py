"""A legal referral puts the loan on the loan book's legal hold in its own transaction, and the hold ends with
the case: the reminder engine reads the flag, not the collections app."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.models import AuditEvent
from debt_collection.advance import advance_collections
from debt_collection.legal import refer_to_legal
from loans.models import Loan

from .factories_collections import day, high_risk_tier, make_overdue_loan, open_case, pay

pytestmark = pytest.mark.django_db


def test_it_holds_the_loan_when_an_operator_refers_its_case_to_legal():
    loan = make_overdue_loan(high_risk_tier())
    advance_collections(day(3))

    refer_to_legal(open_case(loan), actor="ops", at=day(3, hour=11))

    assert Loan.objects.get(pk=loan.pk).legal_hold
    event = AuditEvent.objects.get(action="collections.case.referred_to_legal")
    assert event.after["legal_hold"] is True


def test_it_holds_the_loan_when_the_ladder_reaches_its_legal_step():
    loan = make_overdue_loan(high_risk_tier())
    other = make_overdue_loan(high_risk_tier())

    advance_collections(day(60))

    assert Loan.objects.get(pk=loan.pk).legal_hold and open_case(loan).is_frozen
    assert Loan.objects.get(pk=other.pk).legal_hold


def test_it_lifts_the_hold_when_the_case_under_legal_closes(django_capture_on_commit_callbacks):
    loan = make_overdue_loan(high_risk_tier())
    untouched = make_overdue_loan(high_risk_tier())
    advance_collections(day(60))
    case = open_case(loan)

    with django_capture_on_commit_callbacks(execute=True):
        pay(loan, Decimal("500.00"), day(61))

    case.refresh_from_db()
    assert case.status == "closed"
    assert not Loan.objects.get(pk=loan.pk).legal_hold
    assert Loan.objects.get(pk=untouched.pk).legal_hold
    closed = AuditEvent.objects.get(action="collections.case.closed", object_id=str(case.pk))
    assert closed.after["legal_hold"] is False


def test_a_loan_never_referred_is_never_held():
    loan = make_overdue_loan(high_risk_tier())
    advance_collections(day(30))
    assert not Loan.objects.get(pk=loan.pk).legal_hold
