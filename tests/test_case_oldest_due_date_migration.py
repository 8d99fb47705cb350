"""Upgrading to derived days past due fills the date each case counts from: an open case from its loan's oldest
unpaid instalment, a closed case so that it still reads the days past due it stored at its close; the open
call tasks are ranked by that date."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("collections", "0006_field_labels_in_every_language")]
AFTER = [("collections", "0007_case_oldest_due_date")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_it_fills_the_date_days_past_due_count_from():
    old = migrate(BEFORE)
    try:
        Customer, Loan = old.get_model("loans", "Customer"), old.get_model("loans", "Loan")
        Installment, Case = (
            old.get_model("loans", "Installment"),
            old.get_model("collections", "CollectionCase"),
        )
        CallTask = old.get_model("collections", "CallTask")
        customer = Customer.objects.create(ref="C1", name="C", timezone="Asia/Shanghai")
        far = Customer.objects.create(ref="C2", name="K", timezone="Pacific/Kiritimati")
        at = dt.datetime(2026, 12, 20, 2, 0, tzinfo=dt.UTC)  # 10:00 on the 20th in Shanghai

        def loan(ref, owner=customer):
            return Loan.objects.create(
                ref=ref, customer=owner, principal=100, disbursed_on=dt.date(2026, 1, 1)
            )

        open_loan, paid_loan, closed_loan = loan("open"), loan("paid"), loan("closed", far)
        for seq, due, paid in ((1, dt.date(2026, 11, 1), True), (2, dt.date(2026, 12, 1), False)):
            Installment.objects.create(
                loan=open_loan, seq=seq, due_date=due, amount_due=50, paid_at=at if paid else None
            )
        Installment.objects.create(
            loan=paid_loan, seq=1, due_date=dt.date(2026, 12, 1), amount_due=50, paid_at=at
        )
        open_case = Case.objects.create(loan=open_loan, opened_at=at, dpd=7, amount_overdue=50)
        # Open, but its instalments are paid since the last run: counted back from its stored days past due.
        Case.objects.filter(pk=Case.objects.create(loan=paid_loan, opened_at=at, dpd=4).pk).update(
            updated_at=at
        )
        closed_at = dt.datetime(2026, 12, 10, 11, 0, tzinfo=dt.UTC)  # 01:00 on the 11th on Kiritimati
        Case.objects.create(loan=closed_loan, opened_at=at, dpd=12, status="closed", closed_at=closed_at)
        CallTask.objects.create(case=open_case, scheduled_for=at, created_at=at, priority=7)

        new = migrate(AFTER)

        Case = new.get_model("collections", "CollectionCase")
        counts_from = dict(Case.objects.values_list("loan__ref", "oldest_due_date"))
        assert counts_from == {
            "open": dt.date(2026, 12, 1),
            "paid": dt.date(2026, 12, 20) - dt.timedelta(days=4),
            "closed": dt.date(2026, 12, 11) - dt.timedelta(days=12),
        }
        task = new.get_model("collections", "CallTask").objects.get()
        assert task.priority == 50 * 10**6 + (10**6 - 1 - dt.date(2026, 12, 1).toordinal())
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
