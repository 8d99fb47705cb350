"""Finding anything in the logs: the notification log, the audit trail, the call log and the payments by
customer (or loan) reference and by a range of days of the operators' zone; the exports hold what the list
showed."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice import roles
from core.audit import log_event
from core.exports.jobs import job_file_path, run_export_job
from core.models import AuditEvent, ExportJob
from debt_collection.models import CallAttempt
from loans.services import record_payment
from tests.factories import make_customer, make_installment, make_loan, make_user
from tests.factories_operator import make_log

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LOGS = "/admin/notifications/notificationlog/"
AUDIT = "/admin/core/auditevent/"
CALLS = "/admin/collections/callattempt/"
PAYMENTS = "/admin/loans/payment/"


@pytest.fixture
def two_customers(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    bob = make_customer(ref="C-BOB", name="Bob Lee")
    carol = make_customer(ref="C-CAROL", name="Carol King")
    bob_loan, carol_loan = make_loan(bob, ref="L-BOB"), make_loan(carol, ref="L-CAROL")
    bob_inst, carol_inst = make_installment(bob_loan), make_installment(carol_loan)
    # 01:00 on 15 June in Shanghai, and 00:30 on 16 June there.
    early = make_log(bob, installments=[bob_inst], scheduled_for=dt.datetime(2026, 6, 14, 17, 0, tzinfo=UTC))
    late = make_log(bob, installments=[bob_inst], scheduled_for=dt.datetime(2026, 6, 15, 16, 30, tzinfo=UTC))
    other = make_log(
        carol, installments=[carol_inst], scheduled_for=dt.datetime(2026, 6, 15, 2, 0, tzinfo=UTC)
    )
    for log in (early, late, other):
        log_event(
            "notifications.contact.planned",
            actor="job:plan",
            object_type="notifications.NotificationLog",
            object_id=str(log.pk),
        )
    payment = record_payment(
        loan=bob_loan,
        amount=Decimal("100"),
        received_at=dt.datetime(2026, 6, 15, 3, 0, tzinfo=UTC),
        ref="PAY-B",
    )
    record_payment(
        loan=carol_loan,
        amount=Decimal("100"),
        received_at=dt.datetime(2026, 6, 15, 3, 0, tzinfo=UTC),
        ref="PAY-C",
    )
    call = CallAttempt.objects.create(
        customer=bob, made_at=dt.datetime(2026, 6, 15, 2, 0, tzinfo=UTC), outcome="no_answer", made_by="alice"
    )
    call.loans.add(bob_loan)
    CallAttempt.objects.create(
        customer=carol,
        made_at=dt.datetime(2026, 6, 16, 2, 0, tzinfo=UTC),
        outcome="no_answer",
        made_by="alice",
    )
    return {
        "bob": bob,
        "carol": carol,
        "early": early,
        "late": late,
        "other": other,
        "payment": payment,
        "call": call,
    }


def listed(client, url, **params) -> list:
    response = client.get(url, params)
    assert response.status_code == 200, response
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize("role", [roles.OPERATIONS, roles.COMPLIANCE_OFFICER])
def test_the_notification_log_is_found_by_customer_or_loan_reference(client, two_customers, role):
    client.force_login(make_user("someone", group=role))
    early, late, other = two_customers["early"], two_customers["late"], two_customers["other"]

    assert set(listed(client, LOGS, q="C-BOB")) == {early, late}
    assert set(listed(client, LOGS, q="c-bob")) == {early, late}
    assert set(listed(client, LOGS, q="L-CAROL")) == {other}


def test_the_notification_log_is_narrowed_to_days_of_the_operators_zone(client, two_customers):
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    on_the_15th = listed(client, LOGS, scheduled_for__from="2026-06-15", scheduled_for__to="2026-06-15")

    assert set(on_the_15th) == {two_customers["early"], two_customers["other"]}
    assert set(listed(client, LOGS, scheduled_for__from="2026-06-16")) == {two_customers["late"]}


def test_a_day_that_is_not_a_day_is_refused_with_a_message(client, two_customers):
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    response = client.get(LOGS, {"scheduled_for__from": "15/06/2026"})

    assert response.status_code == 302 and "e=1" in response["Location"]


def test_the_audit_trail_is_found_by_customer_reference(client, two_customers):
    client.force_login(make_user("officer", group=roles.COMPLIANCE_OFFICER))

    events = listed(client, AUDIT, q="C-BOB")

    about = {(e.object_type, e.object_id) for e in events}
    assert ("notifications.NotificationLog", str(two_customers["early"].pk)) in about
    assert ("loans.Payment", str(two_customers["payment"].pk)) in about
    assert ("notifications.NotificationLog", str(two_customers["other"].pk)) not in about
    assert all(
        e.object_type != "loans.Payment" or e.object_id == str(two_customers["payment"].pk) for e in events
    )


def test_the_audit_trail_is_narrowed_to_days_of_the_operators_zone(client, two_customers):
    client.force_login(make_user("officer", group=roles.COMPLIANCE_OFFICER))
    today = AuditEvent.objects.latest("seq").at.astimezone(dt.timezone(dt.timedelta(hours=8))).date()

    assert listed(client, AUDIT, at__from=today.isoformat(), at__to=today.isoformat())
    assert listed(client, AUDIT, at__to=(today - dt.timedelta(days=1)).isoformat()) == []


def test_the_call_log_and_the_payments_are_found_by_reference_and_days(client, two_customers):
    client.force_login(make_user("ops", group=roles.OPERATIONS))

    assert listed(client, CALLS, q="c-bob") == [two_customers["call"]]
    assert listed(client, CALLS, q="L-BOB") == [two_customers["call"]]
    assert listed(client, CALLS, made_at__from="2026-06-16") == [
        c for c in CallAttempt.objects.filter(customer=two_customers["carol"])
    ]
    assert [p.ref for p in listed(client, PAYMENTS, q="C-BOB")] == ["PAY-B"]
    assert listed(client, PAYMENTS, received_at__from="2026-06-16") == []
    assert len(listed(client, PAYMENTS, received_at__from="2026-06-15", received_at__to="2026-06-15")) == 2


def test_an_export_of_the_searched_and_narrowed_log_holds_exactly_the_listed_rows(client, two_customers):
    officer = make_user("officer", group=roles.COMPLIANCE_OFFICER)
    client.force_login(officer)
    query = "q=C-BOB&scheduled_for__from=2026-06-15&scheduled_for__to=2026-06-15"

    client.post(f"{LOGS}export/", {"format": "json", "query": query})
    job = ExportJob.objects.filter(user=officer).latest("pk")
    if job.status == ExportJob.Status.QUEUED:
        run_export_job(job.pk)
        job.refresh_from_db()

    assert job.status == ExportJob.Status.DONE
    rows = json.loads(job_file_path(job).read_text())
    assert [r["id"] for r in rows] == [two_customers["early"].pk]


def test_an_export_file_is_named_by_the_time_of_the_operators_zone(settings, two_customers):
    settings.EXPORT_BACKGROUND_THRESHOLD = 0
    officer = make_user("officer", group=roles.COMPLIANCE_OFFICER)
    job = ExportJob.objects.create(user=officer, kind="notifications", format="csv", filters={})
    moment = dt.datetime(2026, 6, 15, 17, 30, tzinfo=UTC)  # 01:30 on 16 June in Shanghai

    with time_machine.travel(moment, tick=False):
        run_export_job(job.pk)

    job.refresh_from_db()
    assert job_file_path(job).name == f"notifications-20260616T013000-{job.pk}.csv"


@pytest.mark.parametrize("url", [LOGS, AUDIT, CALLS, PAYMENTS])
def test_a_search_by_reference_costs_the_same_queries_for_few_or_many_rows(client, two_customers, url):
    client.force_login(make_user("ops", group=roles.OPERATIONS))
    client.get(url, {"q": "C-BOB"})
    with CaptureQueriesContext(connection) as few:
        client.get(url, {"q": "C-BOB"})
    bob = two_customers["bob"]
    loan = make_loan(bob)
    for n in range(10):
        inst = make_installment(loan, due_date=dt.date(2026, 7, 1) + dt.timedelta(days=n))
        make_log(bob, installments=[inst], scheduled_for=dt.datetime(2026, 6, 20, n, tzinfo=UTC))
        record_payment(
            loan=loan, amount=Decimal("1"), received_at=dt.datetime(2026, 6, 20, n, tzinfo=UTC), ref=f"P{n}"
        )
        CallAttempt.objects.create(
            customer=bob, made_at=dt.datetime(2026, 6, 20, n, tzinfo=UTC), outcome="no_answer", made_by="bot"
        ).loans.add(loan)
    with CaptureQueriesContext(connection) as many:
        client.get(url, {"q": "C-BOB"})

    assert len(many) == len(few)


def test_a_call_reads_with_the_time_of_the_operators_zone(two_customers):
    call = two_customers["call"]  # 02:00 UTC, 10:00 in Shanghai

    assert "at 2026-06-15 10:00 (no_answer)" in str(call)
