"""Compliance verifies the audit trail in the browser: the same check as ``verify_audit``, in the request for a
small trail and in the background, with progress, for a large one."""

from __future__ import annotations

import datetime as dt

import pytest

from backoffice.roles import COLLECTOR
from core import audit_verification
from core.audit_anchors import write_anchor
from core.models import AuditEvent, AuditVerification
from tests.factories import make_user
from tests.factories_audit import make_compliance_officer, make_events, tamper

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
PAGE = "/admin/core/auditevent/verify/"


@pytest.fixture(autouse=True)
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_PATH = tmp_path / "audit-anchor.jsonl"
    return settings.AUDIT_ANCHOR_PATH


def test_a_compliance_officer_verifies_an_intact_trail_and_the_check_is_recorded(client):
    make_events(5)
    write_anchor(NOW)
    client.force_login(make_compliance_officer())
    total = AuditEvent.objects.count()

    response = client.post(PAGE)

    verification = AuditVerification.objects.get()
    assert response.status_code == 302 and response.url == f"{PAGE}{verification.pk}/"
    assert verification.status == AuditVerification.Status.INTACT
    assert (verification.events_checked, verification.anchors_checked) == (total, 1)
    page = client.get(response.url).content.decode()
    assert f"Intact: {total} events verified." in page and 'http-equiv="refresh"' not in page
    event = AuditEvent.objects.get(action="backoffice.audit.verified")
    assert event.after["intact"] is True and event.after["events"] == total


def test_it_names_the_first_event_changed_behind_the_applications_back(client):
    events = make_events(5)
    tamper("UPDATE backoffice_auditevent SET after = %s WHERE id = %s", ['{"v": 999}', events[2].pk])
    client.force_login(make_compliance_officer())

    response = client.post(PAGE)

    verification = AuditVerification.objects.get()
    assert verification.status == AuditVerification.Status.BROKEN
    assert verification.broken_seq == events[2].seq and "content" in verification.problem
    page = client.get(response.url).content.decode()
    assert f"BROKEN at event {events[2].seq}" in page


def test_a_large_trail_is_checked_in_the_background_with_progress(
    client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.AUDIT_VERIFY_BACKGROUND_THRESHOLD = 3
    monkeypatch.setattr(audit_verification, "PROGRESS_EVERY", 2)
    queued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args))
    make_events(6)
    write_anchor(NOW)
    client.force_login(make_compliance_officer())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(PAGE)

    verification = AuditVerification.objects.get()
    assert verification.status == AuditVerification.Status.QUEUED
    assert queued == [("core.audit_verification.run_verification", verification.pk)]
    page = client.get(response.url).content.decode()
    assert 'http-equiv="refresh"' in page and "bo-verification-progress" in page

    seen = []
    original = AuditVerification.objects.filter

    def spy(*args, **kwargs):
        qs = original(*args, **kwargs)
        seen.append(
            AuditVerification.objects.values_list("events_checked", flat=True).get(pk=verification.pk)
        )
        return qs

    monkeypatch.setattr(AuditVerification.objects, "filter", spy)
    assert audit_verification.run_verification(verification.pk) == AuditVerification.Status.INTACT, (
        AuditVerification.objects.get().problem
    )
    assert (
        audit_verification.run_verification(verification.pk) == AuditVerification.Status.INTACT
    )  # walks once

    verification.refresh_from_db()
    assert verification.events_checked == verification.events_total
    assert {2, 4} <= set(seen)  # progress was written as the walk went
    assert AuditEvent.objects.filter(action="backoffice.audit.verified").count() == 1


def test_a_user_who_may_not_view_the_trail_cannot_verify_it(client):
    client.force_login(make_user("kim", group=COLLECTOR))

    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE).status_code == 403
    assert not AuditVerification.objects.exists()


def test_the_audit_trail_list_links_to_the_verification(client):
    client.force_login(make_compliance_officer())

    html = client.get("/admin/core/auditevent/").content.decode()

    assert f'href="{PAGE}"' in html
