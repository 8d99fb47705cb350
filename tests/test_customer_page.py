"""A customer at a glance: one page, for every role, with where each loan stands and everything that happened."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice.roles import COLLECTOR, COMPLIANCE_OFFICER, OPERATIONS
from debt_collection.advance import advance_collections
from debt_collection.call_outcomes import record_call_outcome
from debt_collection.models import CallAttempt, PromiseToPay
from loans.models import Loan
from loans.services import record_payment
from notifications.models import NotificationLog

from .factories import make_installment, make_loan, make_tier, make_user
from .factories_collections import DUE, day, make_collector, make_ladder, make_overdue_loan, open_tasks
from .factories_operator import make_log

pytestmark = pytest.mark.django_db

NOW = day(4)  # 10:00 in Shanghai, 4 days after the due date


@pytest.fixture
def book():
    """Bob owes two instalments of 500 on one loan (the first 4 days late, 100 of it paid) and one of 300 on
    another not yet due; the collector alice called once without an answer, a retry is planned."""
    alice = make_collector("alice")
    tier = make_tier(grace_period_days=2, max_contacts_per_week=50)
    make_ladder(tier, [(1, "call", "call_task", "")])
    loan = make_overdue_loan(tier, name="Bob Lee", phone="+8613800138000", installments=2, ref="C-BOB")
    customer = loan.customer
    later = make_loan(customer, ref="L-LATER")
    make_installment(later, due_date=DUE + dt.timedelta(days=60), amount_due=Decimal("300.00"))
    advance_collections(day(3))
    [task] = open_tasks(loan)
    record_call_outcome(task, outcome="no_answer", actor=alice, at=day(3, hour=11))
    payment = record_payment(loan=loan, amount=Decimal("100"), received_at=day(3, hour=12), ref="PAY-1")
    promise = PromiseToPay.objects.create(
        case=task.case, amount=Decimal("400"), promised_date=DUE + dt.timedelta(days=6), created_at=day(3, 13)
    )
    PromiseToPay.objects.create(
        case=task.case,
        amount=Decimal("50"),
        promised_date=DUE,
        created_at=day(-5),
        status=PromiseToPay.Status.BROKEN,
    )
    planned = make_log(customer, status=NotificationLog.Status.PLANNED, scheduled_for=day(5), channel="email")
    return {
        "customer": customer,
        "loan": loan,
        "later": later,
        "call": CallAttempt.objects.get(task=task),
        "payment": payment,
        "promise": promise,
        "planned": planned,
    }


def page(client, user, customer, **params):
    with time_machine.travel(NOW, tick=False):
        if user is not None:
            client.force_login(user)  # the session is as young as the clock says
        response = client.get(f"/admin/loans/customer/{customer.pk}/timeline/", params)
    assert response.status_code == 200
    return response.content.decode()


def row(html: str, anchor: str) -> str:
    return html.split(f'id="{anchor}"')[1].split("</tr>")[0]


def test_it_shows_where_each_loan_stands_by_the_instalment_rules(client, book):
    html = page(client, make_user("col", group=COLLECTOR), book["customer"])

    late = row(html, f"standing-{book['loan'].ref}")
    assert "CNY 900.00" in late  # outstanding: 400 left of the first instalment and the second
    assert "CNY 400.00" in late  # arrears: only what is past due
    assert "2026-12-01" in late and '<td class="bo-dpd">4</td>' in late and "1-30" in late
    assert "Overdue" in late  # past the tier's 2 days of grace
    assert "call" in late and "alice" in late  # the case's stage and the collector of its next call
    current = row(html, f"standing-{book['later'].ref}")
    assert "CNY 300.00" in current and "no open case" in current and '<td class="bo-dpd">0</td>' in current


def test_it_shows_the_next_contact_the_next_call_and_the_promises(client, book):
    html = page(client, make_user("ops", group=OPERATIONS), book["customer"])

    assert "2026-12-06 10:00 CST · Email" in html  # the next planned contact, in the operators' zone
    assert "1 open · 0 kept · 1 broken" in html
    assert "next call" in html


def test_the_timeline_shows_calls_promises_and_payments_beside_messages(client, book):
    html = page(client, make_user("ops", group=OPERATIONS), book["customer"])

    call = row(html, f"call-{book['call'].pk}")
    assert "No answer" in call and "alice" in call
    payment = row(html, f"payment-{book['payment'].pk}")
    assert "PAY-1" in payment and "CNY 100.00" in payment and "#1: CNY 100.00" in payment
    assert "CNY 400.00 by 2026-12-07" in row(html, f"promise-{book['promise'].pk}")
    assert f'id="contact-{book["planned"].pk}"' in html
    # Audit events read as sentences.
    assert "Call recorded by alice: no answer" in html
    assert "Payment PAY-1 of 100.00 recorded by" in html
    assert '"outcome"' not in html and "is_conversation" not in html


def test_the_call_filter_shows_the_calls_made(client, book):
    html = page(client, make_user("ops", group=OPERATIONS), book["customer"], show="call")

    assert f'id="call-{book["call"].pk}"' in html
    assert 'data-kind="payment"' not in html and 'data-kind="message"' not in html


def test_the_status_filter_is_about_messages(client, book):
    html = page(client, make_user("ops", group=OPERATIONS), book["customer"], status="planned")

    assert f'id="contact-{book["planned"].pk}"' in html
    assert 'data-kind="call"' not in html and 'data-kind="payment"' not in html


def test_it_filters_the_timeline_by_days_of_the_operators_zone(client, book):
    ops = make_user("ops", group=OPERATIONS)

    on_the_day = page(client, ops, book["customer"], since="2026-12-04", until="2026-12-04")
    before = page(client, ops, book["customer"], until="2026-12-03")

    assert f'id="call-{book["call"].pk}"' in on_the_day and f'id="payment-{book["payment"].pk}"' in on_the_day
    assert f'id="contact-{book["planned"].pk}"' not in on_the_day  # on the 6th
    assert f'id="call-{book["call"].pk}"' not in before and 'data-kind="promise"' in before  # the broken one


def test_it_shows_consent_and_holds(client, book):
    customer = book["customer"]
    customer.opt_out_sms = True
    customer.do_not_contact, customer.do_not_contact_reason = True, "bereavement"
    customer.save()
    Loan.objects.filter(pk=book["loan"].pk).update(legal_hold=True)

    html = page(client, make_user("ops", group=OPERATIONS), customer)

    consent = html.split('id="bo-consent"')[1].split("</dl>")[0]
    assert "SMS" in consent and "Bereavement" in consent
    assert book["loan"].ref in consent and book["later"].ref not in consent  # the loan under legal hold
    assert "legal hold" in row(html, f"standing-{book['loan'].ref}")


@pytest.mark.parametrize(
    "role, sees_name", [(OPERATIONS, True), (COLLECTOR, True), (COMPLIANCE_OFFICER, False)]
)
def test_every_role_opens_the_page_masked_as_it_may_see(client, book, role, sees_name):
    html = page(client, make_user("someone", group=role), book["customer"])

    assert ("Bob Lee" in html) is sees_name
    assert ("+8613800138000" in html) is sees_name
    assert "CNY 900.00" in html and f'id="call-{book["call"].pk}"' in html


def test_the_page_costs_the_same_queries_however_long_the_history(client, book):
    ops = make_user("ops", group=OPERATIONS)
    customer = book["customer"]
    page(client, ops, customer)  # warm the permission and content type caches
    with CaptureQueriesContext(connection) as few:
        page(client, None, customer)
    case = book["promise"].case
    for n in range(8):
        at = day(3, hour=12) - dt.timedelta(hours=n + 1)
        CallAttempt.objects.create(customer=customer, made_at=at, outcome="no_answer", made_by="alice")
        PromiseToPay.objects.create(
            case=case, amount=Decimal("10"), promised_date=DUE, created_at=at, status=PromiseToPay.Status.KEPT
        )
        record_payment(loan=book["later"], amount=Decimal("1"), received_at=at, ref=f"PAY-{n + 2}")
        make_log(customer, scheduled_for=at, status=NotificationLog.Status.SENT)

    with CaptureQueriesContext(connection) as many:
        html = page(client, None, customer)

    assert html.count('data-kind="call"') == 9 and html.count('data-kind="payment"') == 9
    assert len(many) == len(few)
    assert sum("backoffice_auditevent" in q["sql"] for q in many.captured_queries) == 1


def test_it_refuses_staff_who_may_see_neither_the_customer_nor_the_log(client, book):
    client.force_login(make_user("nosy"))

    response = client.get(f"/admin/loans/customer/{book['customer'].pk}/timeline/")

    assert response.status_code == 403
