"""A legal referral freezes automatic contact about that loan, in the planner and at send time."""

from __future__ import annotations

import datetime as dt

import pytest

from debt_collection.models import CollectionCase
from loans.models import Loan
from notifications.dispatch import dispatch_due
from notifications.models import NotificationLog
from notifications.planning import plan_contacts

from .factories import make_tier
from .factories_reminders import SHANGHAI, local, make_debtor, make_rule, make_template

pytestmark = pytest.mark.django_db

PLAN_AT = local(SHANGHAI, 2026, 11, 28, 10, 30)  # three days before the 1 December due date


def freeze(installment):
    """A legal referral as collections records it: the loan on the loan book's legal hold, its case frozen."""
    Loan.objects.filter(pk=installment.loan_id).update(legal_hold=True)
    return CollectionCase.objects.create(
        loan=installment.loan,
        tier=installment.loan.customer.tier,
        stage="legal",
        opened_at=PLAN_AT,
        oldest_due_date=installment.due_date,
        is_frozen=True,
    )


@pytest.fixture
def debtor():
    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(10, 0))
    make_template("pre_due", "sms", "zh-hans", body="{customer_name}: {loans}")
    return make_debtor(tier, loans=2, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)


def test_a_consolidated_reminder_leaves_out_the_loan_under_legal_hold(debtor):
    customer, (held, free) = debtor
    plan_contacts(PLAN_AT)
    freeze(held)

    dispatch_due(PLAN_AT)

    log = NotificationLog.objects.get(customer=customer)
    assert log.status == "sent"
    assert log.loan_refs == free.loan.ref
    assert held.loan.ref not in log.body and free.loan.ref in log.body


def test_a_reminder_only_about_frozen_loans_is_suppressed_at_send_time(debtor):
    customer, installments = debtor
    plan_contacts(PLAN_AT)
    for installment in installments:
        freeze(installment)

    dispatch_due(PLAN_AT)

    log = NotificationLog.objects.get(customer=customer)
    assert (log.status, log.reason) == ("suppressed", "do_not_contact")


def test_the_planner_never_plans_a_contact_about_a_frozen_loan(debtor):
    customer, (held, free) = debtor
    freeze(held)
    freeze(free)
    assert plan_contacts(PLAN_AT)["planned"] == 0
    assert not NotificationLog.objects.filter(customer=customer).exists()


def test_the_daily_freeze_cancels_pending_contacts_only_about_frozen_loans():
    from debt_collection.legal import enforce_legal_freeze

    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(10, 0))
    _alone, (only_frozen,) = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    _both, (held, free) = make_debtor(tier, loans=2, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    _quiet, (paid_up,) = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    plan_contacts(PLAN_AT)
    NotificationLog.objects.filter(customer=_quiet).update(status=NotificationLog.Status.SENT)
    for installment in (only_frozen, held, paid_up):
        freeze(installment)

    assert enforce_legal_freeze(PLAN_AT) == 1

    assert [log.status for log in NotificationLog.objects.filter(customer=_alone)] == ["cancelled"]
    assert [log.status for log in NotificationLog.objects.filter(customer=_both)] == [
        "planned"
    ]  # a loan still free
    assert [log.status for log in NotificationLog.objects.filter(customer=_quiet)] == ["sent"]
    assert enforce_legal_freeze(PLAN_AT) == 0


def test_the_freeze_of_some_customers_cancels_only_their_contacts_and_the_book_the_rest():
    from debt_collection.legal import enforce_legal_freeze

    tier = make_tier()
    make_rule(tier, -3, "sms", send_time=dt.time(10, 0))
    first, (first_loan,) = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    second, (second_loan,) = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    _free, _ = make_debtor(tier, due_date=dt.date(2026, 12, 1), timezone=SHANGHAI)
    plan_contacts(PLAN_AT)
    for installment in (first_loan, second_loan):
        freeze(installment)

    assert enforce_legal_freeze(PLAN_AT, customer_ids=[first.id, _free.id]) == 1
    assert [log.status for log in NotificationLog.objects.filter(customer=first)] == ["cancelled"]
    assert [log.status for log in NotificationLog.objects.filter(customer=second)] == ["planned"]

    assert enforce_legal_freeze(PLAN_AT) == 1
    assert [log.status for log in NotificationLog.objects.filter(customer=second)] == ["cancelled"]
    assert [log.status for log in NotificationLog.objects.filter(customer=_free)] == ["planned"]
