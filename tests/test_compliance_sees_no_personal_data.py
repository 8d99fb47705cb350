"""The demo compliance officer, walking every admin page of the demo book after a day's run, never sees a name,
phone or email of a customer: lists, view pages, history, delete confirmations, the timeline, the template
preview, page titles and breadcrumbs. The outbox used to show destinations in its titles and names in bodies.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import NoReverseMatch, reverse

from backoffice import demo
from backoffice.jobs import run_pipeline
from core.masking import _name_parts, _phone_variants
from loans.models import Customer, Loan
from notifications.models import NotificationLog, OutboxMessage, ReminderTemplate

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 23)
# The first day's run, during the demo contact window (10:00 in Shanghai).
NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
OBJECTS_PER_ADMIN = 3


@pytest.fixture
def demo_book(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    demo.seed(today=TODAY)
    run_pipeline(NOW)
    assert OutboxMessage.objects.exists() and NotificationLog.objects.exists()


def secrets_of_the_book() -> set[str]:
    secrets: set[str] = set()
    for name, phone, email in Customer.objects.values_list("name", "phone", "email"):
        # A Latin name as a whole ("Grace Young", not "Grace": the admin says "Grace period"); a Chinese name
        # and its given name.
        if name and name.isascii():
            secrets.add(name)
        elif name:
            secrets.update(_name_parts(name))
        if phone:
            secrets.update(v for v in _phone_variants(phone) if len(v) >= 8)
        if email:
            secrets.add(email)
    return secrets


def leaked(html: str, secrets: set[str]) -> set[str]:
    """The secrets in the page; a Latin name counts as whole words ("Amy Chan" is not in "Amy Changed")."""
    text = re.sub(r"\s+", " ", html)
    found = set()
    for secret in secrets:
        if secret not in text:
            continue
        if secret.isascii() and secret.replace(" ", "").isalpha():
            if not re.search(rf"(?<![A-Za-z]){re.escape(secret)}(?![A-Za-z])", text):
                continue
        found.add(secret)
    return found


def context(html: str, secret: str) -> str:
    at = html.find(secret)
    return html[max(0, at - 120) : at + len(secret) + 40]


def admin_pages(model_admin) -> list[str]:
    """The changelist, and for a few rows their page, history and delete confirmation."""
    opts = model_admin.model._meta
    info = opts.app_label, opts.model_name
    try:
        urls = [reverse("admin:{}_{}_changelist".format(*info))]
    except NoReverseMatch:
        return []
    pks = model_admin.model._default_manager.order_by("-pk").values_list("pk", flat=True)[:OBJECTS_PER_ADMIN]
    for pk in pks:
        for view in ("change", "history", "delete"):
            urls.append(reverse("admin:{}_{}_{}".format(*info, view), args=[pk]))
    return urls


def test_the_demo_compliance_officer_sees_no_name_phone_or_email_on_any_admin_page(client, demo_book):
    officer = get_user_model().objects.get(username="compliance")
    client.force_login(officer)
    secrets = secrets_of_the_book()
    assert len(secrets) > 500

    urls = []
    for model_admin in admin.site._registry.values():
        urls.extend(admin_pages(model_admin))
    logged = NotificationLog.objects.exclude(body="").order_by("-pk")
    customers = list(dict.fromkeys(logged.values_list("customer_id", flat=True)[:20]))[:OBJECTS_PER_ADMIN]
    for customer_id in customers:
        urls.append(reverse("operator:customer_timeline", args=[customer_id]))
        loan = Loan.objects.filter(customer_id=customer_id).first()
        urls.append(reverse("operator:loan_timeline", args=[loan.pk]))
    customer = Customer.objects.get(pk=customers[0])
    for template in ReminderTemplate.objects.all()[:OBJECTS_PER_ADMIN]:
        preview = reverse("admin:notifications_remindertemplate_preview", args=[template.pk])
        urls.append(f"{preview}?customer={customer.ref}")

    seen = 0
    for url in urls:
        response = client.get(url)
        assert response.status_code in (200, 302, 403, 404), (url, response.status_code)
        if response.status_code != 200:
            continue
        seen += 1
        html = response.content.decode()
        found = leaked(html, secrets)
        assert not found, (url, [context(html, secret) for secret in sorted(found)[:3]])
    # The walk really saw the pages with message text (and was not refused everywhere).
    assert seen > 50
    for name in ("notifications_outboxmessage", "notifications_notificationlog", "core_auditevent"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
