"""One message per customer, per channel, per day: collections notices and auto-debit failure notices too."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from backoffice.jobs import run_pipeline
from core.models import AuditEvent
from debt_collection.models import CaseStepRun, CollectionCase
from loans.autodebit import run_autodebit
from loans.gateways import simulate_failure
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog

from .factories import make_customer, make_installment, make_loan
from .factories_collections import DUE, day, low_risk_tier, overdue_templates
from .factories_reminders import make_template

pytestmark = pytest.mark.django_db


def debtor_with_loans(tier, n, *, due_date=DUE, autopay=False, amount="500.00"):
    customer = make_customer(tier=tier)
    installments = [
        make_installment(make_loan(customer, autopay=autopay), due_date=due_date, amount_due=Decimal(amount))
        for _ in range(n)
    ]
    return customer, installments


def test_it_sends_one_collections_message_naming_both_loans_overdue_the_same_day():
    overdue_templates()
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, installments = debtor_with_loans(tier, 2)

    run_pipeline(day(6))  # the day after the grace period: both cases open at the early SMS step

    assert CollectionCase.objects.filter(loan__customer=customer).count() == 2
    assert CaseStepRun.objects.filter(case__loan__customer=customer, result="performed").count() == 2
    logs = list(NotificationLog.objects.filter(customer=customer))
    assert [(log.channel, log.kind, log.status, log.reason) for log in logs] == [
        ("sms", "overdue", "sent", "")
    ]
    [log] = logs
    refs = sorted(i.loan.ref for i in installments)
    assert sorted(log.loan_refs.split(",")) == refs
    assert set(log.installments.all()) == set(installments)
    for ref in refs:
        assert ref in log.body
    assert "1000.00" in log.body
    assert not NotificationLog.objects.filter(reason="frequency_cap").exists()


def test_a_collections_message_already_planned_takes_in_a_second_case_of_the_same_day():
    overdue_templates()
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, [first] = debtor_with_loans(tier, 1)

    run_pipeline(day(6, hour=6))  # before the window opens: the message waits
    [pending] = NotificationLog.objects.filter(customer=customer)
    assert pending.status == "deferred"
    second = make_installment(make_loan(customer), due_date=DUE)  # a loan loaded later the same day
    run_pipeline(day(6, hour=9))

    [log] = NotificationLog.objects.filter(customer=customer)
    assert log.pk == pending.pk and log.status == "sent"
    assert set(log.installments.all()) == {first, second}
    assert first.loan.ref in log.body and second.loan.ref in log.body
    assert AuditEvent.objects.filter(action="notifications.contact.extended", object_id=str(log.pk)).exists()


def test_running_the_ladder_again_the_same_day_plans_no_second_message():
    overdue_templates()
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, _ = debtor_with_loans(tier, 2)

    run_pipeline(day(6))
    run_pipeline(day(6, hour=15))
    run_pipeline(day(7))

    assert NotificationLog.objects.filter(customer=customer).count() == 1


def test_auto_debit_failures_of_one_day_make_one_notice_naming_every_loan():
    make_template(kind="autodebit_failed", body="{customer_name}: auto-debit failed.\n{loans}")
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, installments = debtor_with_loans(tier, 3, autopay=True)
    now = day(0, hour=9)

    with simulate_failure("insufficient_funds"):
        run_autodebit(now)
    dispatch_due(now)

    logs = list(NotificationLog.objects.filter(customer=customer))
    assert [(log.kind, log.status) for log in logs] == [("autodebit_failed", "sent")]
    [log] = logs
    assert set(log.installments.all()) == set(installments)
    for inst in installments:
        assert inst.loan.ref in log.body


def test_auto_debit_failures_recorded_in_several_chunks_still_make_one_notice(monkeypatch):
    import loans.autodebit

    monkeypatch.setattr(loans.autodebit, "CHUNK", 1)
    make_template(kind="autodebit_failed", body="{customer_name}: auto-debit failed.\n{loans}")
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, installments = debtor_with_loans(tier, 2, autopay=True)

    with simulate_failure("insufficient_funds"):
        run_autodebit(day(0, hour=9))

    [log] = NotificationLog.objects.filter(customer=customer)
    assert set(log.installments.all()) == set(installments)


def test_auto_debit_failures_of_different_days_are_separate_notices():
    make_template(kind="autodebit_failed", body="{customer_name}: auto-debit failed.\n{loans}")
    tier = low_risk_tier(max_contacts_per_week=3)
    customer = make_customer(tier=tier)
    make_installment(make_loan(customer, autopay=True), due_date=DUE)
    make_installment(make_loan(customer, autopay=True), due_date=DUE + dt.timedelta(days=1))

    with simulate_failure("insufficient_funds"):
        run_autodebit(day(0, hour=9))
        run_autodebit(day(1, hour=9))

    assert NotificationLog.objects.filter(customer=customer, kind="autodebit_failed").count() == 2


def test_promises_of_one_customer_due_the_same_day_share_one_reminder():
    from debt_collection.advance import advance_collections
    from debt_collection.models import PromiseToPay
    from debt_collection.promises import resolve_promises

    overdue_templates()
    tier = low_risk_tier(max_contacts_per_week=1)
    customer, installments = debtor_with_loans(tier, 2)
    advance_collections(day(6))
    for case in CollectionCase.objects.filter(loan__customer=customer):
        PromiseToPay.objects.create(
            case=case, amount=Decimal("500.00"), promised_date=day(10).date(), created_at=day(6)
        )

    resolve_promises(day(9))
    dispatch_due(day(9))

    [log] = NotificationLog.objects.filter(customer=customer, kind="promise_reminder")
    assert log.status == "sent" and set(log.installments.all()) == set(installments)
    for inst in installments:
        assert inst.loan.ref in log.body
    assert PromiseToPay.objects.filter(reminder_planned_at__isnull=False).count() == 2
