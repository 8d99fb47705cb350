import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.audit import log_event
from notifications.models import NotificationLog
from tests.factories import make_customer, make_installment, make_loan, make_user
from tests.factories_operator import make_log

S = NotificationLog.Status
R = NotificationLog.Reason
AT = dt.datetime(2026, 6, 15, 2, 0, tzinfo=dt.timezone.utc)


def grant(user, *codenames):
    for codename in codenames:
        app, code = codename.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=code))
    return user


@pytest.fixture
def operator(db):
    return grant(make_user("operator"), "notifications.view_notificationlog")


@pytest.fixture
def two_loans(db):
    """A customer in New York with two loans due the same day: one SMS sent covering both, then a second SMS
    about the second loan held back by the weekly cap."""
    customer = make_customer(name="Alice Smith", phone="+8613812345678", timezone="America/New_York")
    first, second = make_loan(customer, ref="L-FIRST"), make_loan(customer, ref="L-SECOND")
    i1, i2 = make_installment(first), make_installment(second)
    sent = make_log(
        customer,
        installments=[i1, i2],
        status=S.SENT,
        scheduled_for=AT,
        sent_at=AT + dt.timedelta(minutes=1),
        body="Alice Smith, 2 loans are due. Questions: +8613812345678",
        provider_message_id="prov-123",
    )
    held = make_log(
        customer,
        installments=[i2],
        kind="overdue",
        status=S.SUPPRESSED,
        reason=R.FREQUENCY_CAP,
        scheduled_for=AT + dt.timedelta(days=3),
        body="Alice Smith, loan L-SECOND is overdue.",
    )
    log_event(
        "notifications.contact.suppressed",
        actor="job:dispatch_due",
        object_type="notifications.NotificationLog",
        object_id=str(held.pk),
        after={"reason": "frequency_cap", "contacts_in_7_days": 3, "cap": 3, "destination": "+8613812345678"},
    )
    log_event(
        "notifications.contact.sent",
        actor="job:dispatch_due",
        object_type="notifications.NotificationLog",
        object_id=str(sent.pk),
    )
    return {"customer": customer, "first": first, "second": second, "sent": sent, "held": held}


def test_it_answers_why_the_second_loan_got_no_sms(client, operator, two_loans):
    client.force_login(operator)

    response = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/")

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="contact-{two_loans["held"].pk}"' in html and f'id="contact-{two_loans["sent"].pk}"' in html
    held_row = html.split(f'id="contact-{two_loans["held"].pk}"')[1].split('id="contact-')[0]
    assert "Weekly contact cap reached" in held_row  # the reason code in plain words
    assert "L-SECOND" in held_row
    assert 'data-action="notifications.contact.suppressed"' in held_row  # the audit event behind it
    # ... read as a sentence, not as JSON
    assert "Held back by job:dispatch_due: weekly contact cap reached (3 of 3 in 7 days)" in held_row
    assert "contacts_in_7_days" not in held_row
    sent_row = html.split(f'id="contact-{two_loans["sent"].pk}"')[1].split('id="contact-')[0]
    assert "L-FIRST, L-SECOND" in sent_row  # the consolidated SMS covered both loans
    assert "prov-123" in sent_row


def test_times_show_in_the_operators_zone_and_in_the_customers(client, operator, two_loans, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    client.force_login(operator)

    html = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/").content.decode()

    assert "2026-06-15 10:00 CST" in html  # 02:00 UTC in the operators' zone
    assert "2026-06-14 22:00 EDT" in html  # and in New York, where the customer lives
    assert "2026-06-15 10:01 CST" in html  # sent a minute later
    assert "2026-06-15 02:00 UTC" not in html


def test_personal_data_is_masked_without_the_permission(client, operator, two_loans):
    client.force_login(operator)

    html = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/").content.decode()

    assert "Alice Smith" not in html and "+8613812345678" not in html
    assert "A**** S****" in html and "+86138****5678" in html


def test_personal_data_shows_with_the_permission(client, operator, two_loans):
    grant(operator, "loans.view_personal_data")
    client.force_login(operator)

    html = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/").content.decode()

    assert "Alice Smith, 2 loans are due. Questions: +8613812345678" in html


def test_the_loan_timeline_shows_only_contacts_that_covered_that_loan(client, operator, two_loans):
    other = make_log(
        two_loans["customer"], installments=[make_installment(two_loans["first"])], scheduled_for=AT
    )
    client.force_login(operator)

    html = client.get(f"/admin/loans/loan/{two_loans['second'].pk}/timeline/").content.decode()

    assert f'id="contact-{two_loans["held"].pk}"' in html and f'id="contact-{two_loans["sent"].pk}"' in html
    assert f'id="contact-{other.pk}"' not in html
    first_only = client.get(f"/admin/loans/loan/{two_loans['first'].pk}/timeline/").content.decode()
    assert (
        f'id="contact-{two_loans["held"].pk}"' not in first_only and f'id="contact-{other.pk}"' in first_only
    )


def test_it_refuses_staff_without_the_view_permission_on_the_log(client, two_loans):
    client.force_login(make_user("nosy"))

    response = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/")

    assert response.status_code == 403


def test_it_sends_anonymous_visitors_to_the_login(client, two_loans):
    response = client.get(f"/admin/loans/customer/{two_loans['customer'].pk}/timeline/")

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_it_filters_by_status_and_paginates(client, operator, two_loans):
    customer = two_loans["customer"]
    for n in range(51):
        make_log(
            customer,
            status=S.DEFERRED,
            reason=R.OUTSIDE_CONTACT_WINDOW,
            scheduled_for=AT - dt.timedelta(hours=n + 1),
        )
    client.force_login(operator)

    first = client.get(
        f"/admin/loans/customer/{customer.pk}/timeline/", {"status": "deferred"}
    ).content.decode()
    second = client.get(
        f"/admin/loans/customer/{customer.pk}/timeline/", {"status": "deferred", "page": 2}
    ).content.decode()

    assert first.count('data-status="deferred"') == 50 and 'data-status="sent"' not in first
    assert second.count('data-status="deferred"') == 1
    assert "Page 2 of 2" in second and "status=deferred" in first


def test_the_page_costs_the_same_queries_for_few_or_many_contacts(client, operator, two_loans):
    customer = two_loans["customer"]
    client.force_login(operator)
    url = f"/admin/loans/customer/{customer.pk}/timeline/"
    client.get(url)  # warm the content types and permission caches of this process

    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(20):
        log = make_log(
            customer,
            installments=[make_installment(two_loans["first"])],
            scheduled_for=AT + dt.timedelta(hours=n),
        )
        log_event(
            "notifications.contact.planned",
            actor="job:plan",
            object_type="notifications.NotificationLog",
            object_id=str(log.pk),
        )
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)

    assert response.content.decode().count('data-action="notifications.contact.planned"') == 20
    assert len(many) == len(few)
    assert sum("backoffice_auditevent" in q["sql"] for q in many.captured_queries) == 1
    assert (
        sum("notifications_notificationlog" in q["sql"] for q in many.captured_queries) == 3
    )  # count + page + the next planned contact


@pytest.mark.parametrize("model", ["customer", "loan"])
def test_the_change_page_links_to_the_timeline(client, operator, two_loans, monkeypatch, model):
    from django.contrib import admin

    from loans.models import Customer, Loan

    model_admin = admin.site._registry[{"customer": Customer, "loan": Loan}[model]]
    # The model admin names this template in change_form_template (see the README's operator screens).
    monkeypatch.setattr(model_admin, "change_form_template", f"admin/loans/{model}/change_form.html")
    grant(operator, f"loans.view_{model}")
    obj = two_loans["customer"] if model == "customer" else two_loans["second"]
    client.force_login(operator)

    html = client.get(f"/admin/loans/{model}/{obj.pk}/change/").content.decode()

    assert f'href="/admin/loans/{model}/{obj.pk}/timeline/" class="bo-timeline-link"' in html
