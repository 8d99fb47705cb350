"""A compliance officer exports any log over a range of days from its list page (both days included, in the
back office's time zone)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo

import pytest
from django.urls import reverse

from core.audit import log_event
from core.models import ExportJob
from tests.factories import make_customer
from tests.factories_audit import make_compliance_officer, make_notification

pytestmark = pytest.mark.django_db

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, 0, tzinfo=SHANGHAI)


def export(client, model, **form):
    response = client.post(reverse(f"admin:{model}_export"), {"format": "csv", "query": "", **form})
    return response


def rows_of(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


def test_it_exports_the_notification_log_of_the_days_asked_for_both_included(client, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    alice = make_customer()
    inside = [
        make_notification(alice, scheduled_for=at(10, 0)),
        make_notification(alice, scheduled_for=at(12, 23)),
    ]
    make_notification(alice, scheduled_for=at(9, 23))  # the evening before
    make_notification(alice, scheduled_for=at(13, 0))  # the midnight after
    client.force_login(make_compliance_officer())

    response = export(client, "notifications_notificationlog", from_date="2026-11-10", to_date="2026-11-12")

    assert response.status_code == 200
    assert sorted(int(r["id"]) for r in rows_of(response)) == sorted(n.pk for n in inside)
    job = ExportJob.objects.get()
    assert job.filters["since"].startswith("2026-11-10T00:00:00+08:00")
    assert job.filters["until"].startswith("2026-11-13T00:00:00+08:00")


def test_it_exports_the_audit_trail_from_a_day_on(client, settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    log_event("loans.customer.changed", actor="old", at=at(1, 12))
    log_event("loans.customer.changed", actor="new", at=at(20, 12))
    client.force_login(make_compliance_officer())

    response = export(client, "core_auditevent", from_date="2026-11-15")

    actors = [r["actor"] for r in rows_of(response)]
    assert actors[0] == "new" and "old" not in actors  # (the officer's own log-in event may follow)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"from_date": "2026-11-12", "to_date": "2026-11-10"}, "comes after its last day"),
        ({"from_date": "12/11/2026"}, "is not a date"),
    ],
)
def test_a_bad_range_is_refused_and_nothing_is_exported(client, form, message):
    client.force_login(make_compliance_officer())

    response = export(client, "notifications_notificationlog", **form)

    assert response.status_code == 302
    assert message in [str(m) for m in response.wsgi_request._messages][0]
    assert not ExportJob.objects.exists()


def test_the_export_form_offers_the_range(client):
    client.force_login(make_compliance_officer())

    html = client.get(reverse("admin:core_auditevent_changelist")).content.decode()

    assert 'name="from_date"' in html and 'name="to_date"' in html
