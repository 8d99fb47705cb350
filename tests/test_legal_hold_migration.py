"""Upgrading sets the loan book's legal hold on the loans under legal referral that day (an open case frozen by
the referral), and on no other loan."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("collections", "0003_call_attempts"), ("loans", "0004_customer_timezone_source")]
AFTER = [("collections", "0004_loan_legal_hold_from_referrals")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_holds_the_loans_under_legal_referral():
    old = migrate(BEFORE)
    try:
        Customer, Loan = old.get_model("loans", "Customer"), old.get_model("loans", "Loan")
        Case = old.get_model("collections", "CollectionCase")
        customer = Customer.objects.create(ref="C1", name="C", timezone="Asia/Shanghai")
        at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        loans = {
            name: Loan.objects.create(
                ref=name, customer=customer, principal=100, disbursed_on=dt.date(2026, 1, 1)
            )
            for name in ("referred", "open", "closed_referral", "none")
        }
        Case.objects.create(loan=loans["referred"], opened_at=at, is_frozen=True)
        Case.objects.create(loan=loans["open"], opened_at=at)
        Case.objects.create(
            loan=loans["closed_referral"], opened_at=at, is_frozen=True, status="closed", closed_at=at
        )

        new = migrate(AFTER)

        held = new.get_model("loans", "Loan").objects.filter(legal_hold=True)
        assert list(held.values_list("ref", flat=True)) == ["referred"]
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
