"""Log-ins: a user name is locked out from an address after a few wrong passwords (django-axes), each failure
and lockout is in the audit trail, and an admin session lasts a working day."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.urls import reverse

from core.models import AuditEvent
from tests.factories import make_user

PASSWORD = "right-pass-2026!"
ATTACKER = "10.9.8.7"

pytestmark = pytest.mark.django_db


def attempt(client, username, password, ip=ATTACKER):
    return client.post(reverse("admin:login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_it_answers_only_the_first_few_of_fifty_wrong_passwords(client):
    make_user("ops", password=PASSWORD)
    codes = [attempt(client, "ops", f"guess-{n}").status_code for n in range(50)]
    limit = settings.AXES_FAILURE_LIMIT
    assert 3 <= limit <= 10
    # The form comes back for the first attempts; the one that reaches the limit and all after it are refused.
    assert codes[: limit - 1] == [200] * (limit - 1)
    assert codes[limit - 1 :] == [429] * (50 - limit + 1)


def test_a_locked_out_user_name_is_refused_even_with_the_right_password_from_that_address(client):
    make_user("ops", password=PASSWORD)
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "ops", f"guess-{n}")
    response = attempt(client, "ops", PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert not AuditEvent.objects.filter(action="backoffice.login.succeeded").exists()


def test_the_lockout_is_by_user_name_and_address_together(client):
    make_user("ops", password=PASSWORD)
    make_user("other", password=PASSWORD)
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "ops", f"guess-{n}")
    # The same person from their office, and another user from the attacker's address, still log in.
    assert attempt(client, "ops", PASSWORD, ip="10.1.1.1").status_code == 302
    client.logout()
    assert attempt(client, "other", PASSWORD).status_code == 302


def test_failures_and_the_lockout_are_in_the_audit_trail_without_the_password(client):
    make_user("ops", password=PASSWORD)
    limit = settings.AXES_FAILURE_LIMIT
    for n in range(limit + 1):
        attempt(client, "ops", f"guess-{n}")
    failed = AuditEvent.objects.filter(action="backoffice.login.failed").order_by("seq")
    assert failed.count() == limit + 1
    assert all(e.after["username"] == "ops" and e.after["ip"] == ATTACKER for e in failed)
    assert failed.last().after.get("locked_out") is True  # refused before its password was checked
    locked = AuditEvent.objects.filter(action="backoffice.login.locked_out").order_by("seq")
    assert locked.count() >= 1
    first = locked.first()
    assert first.actor == "anonymous:ops"
    assert first.after == {
        "username": "ops",
        "ip": ATTACKER,
        "failure_limit": limit,
        "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    for event in AuditEvent.objects.all():
        assert "guess-" not in str(event.after)


def test_the_lockout_ends_after_the_cool_off(client):
    from axes.models import AccessAttempt

    make_user("ops", password=PASSWORD)
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "ops", f"guess-{n}")
    assert attempt(client, "ops", PASSWORD).status_code == 429
    # Time is moved by ageing the record of the attempts, not by waiting.
    AccessAttempt.objects.update(
        attempt_time=dt.datetime.now(dt.UTC) - settings.AXES_COOLOFF_TIME - dt.timedelta(seconds=1)
    )
    assert attempt(client, "ops", PASSWORD).status_code == 302


def test_a_successful_log_in_forgets_the_earlier_failures(client):
    make_user("ops", password=PASSWORD)
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(client, "ops", f"guess-{n}")
    assert attempt(client, "ops", PASSWORD).status_code == 302
    client.logout()
    for n in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "ops", f"again-{n}").status_code == 200


def test_an_admin_session_lasts_a_working_day_and_ends_with_the_browser(client):
    make_user("ops", password=PASSWORD)
    assert 8 * 3600 <= settings.SESSION_COOKIE_AGE <= 10 * 3600
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE is True
    assert attempt(client, "ops", PASSWORD).status_code == 302
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert not cookie["expires"] and not cookie["max-age"]  # a browser-session cookie
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE


def test_an_administrator_lifts_a_lockout_in_the_admin_and_it_is_audited(client):
    from axes.models import AccessAttempt

    make_user("ops", password=PASSWORD)
    for n in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, "ops", f"guess-{n}")
    lock = AccessAttempt.objects.get(username="ops", ip_address=ATTACKER)
    admin_client = type(client)()
    admin_client.force_login(make_user("root", is_superuser=True))
    url = reverse("admin:axes_accessattempt_delete", args=[lock.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    event = AuditEvent.objects.get(action="axes.accessattempt.deleted")
    assert event.actor == "root" and event.before["username"] == "ops"
    assert attempt(client, "ops", PASSWORD).status_code == 302
