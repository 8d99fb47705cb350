"""Whether a viewer sees personal data is decided per request: one ModelAdmin serves every user at once.

With the outbox's admin keeping the last request's choice on itself, a compliance officer's page built while
an operations user loaded the same list showed unmasked destinations.
"""

from __future__ import annotations

import threading

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import results
from django.test import RequestFactory
from django.urls import reverse

from backoffice import roles
from notifications.channels import OutboxBackend
from notifications.models import NotificationLog, OutboxMessage
from notifications.sending import OutgoingMessage
from tests.factories import make_customer, make_user
from tests.factories_audit import make_compliance_officer, make_notification

pytestmark = pytest.mark.django_db

PHONE = "+8613812345678"
NAME = "Alice Smith"


@pytest.fixture
def outbox(db):
    alice = make_customer(name=NAME, phone=PHONE, email="alice.smith@example.com")
    log = make_notification(alice, status="sent", body=f"Dear {NAME}, please pay.", destination=PHONE)
    OutboxMessage.objects.create(
        channel="sms",
        destination=PHONE,
        subject="",
        body=log.body,
        idempotency_key=log.idempotency_key,
        provider_message_id="outbox-1",
    )
    return alice


def _request(user):
    request = RequestFactory().get(reverse("admin:notifications_outboxmessage_changelist"))
    request.user = user
    return request


def _changelist(model_admin, request):
    changelist = model_admin.get_changelist_instance(request)
    changelist.formset = None  # as changelist_view sets it for a list without editable columns
    return changelist


def _rendered(changelist) -> str:
    return "".join(str(cell) for row in results(changelist) for cell in row)


def _rendered_rows(model_admin, request) -> str:
    return _rendered(_changelist(model_admin, request))


def test_it_masks_a_compliance_list_built_while_operations_loads_the_same_list(outbox):
    officer = make_compliance_officer()
    operations = make_user("ops", group=roles.OPERATIONS)
    model_admin = admin.site._registry[OutboxMessage]

    # Interleaved as two threads of one server interleave them: both lists are built, then rendered.
    compliance_list = _changelist(model_admin, _request(officer))
    operations_list = _changelist(model_admin, _request(operations))
    compliance_rows = _rendered(compliance_list)
    operations_rows = _rendered(operations_list)

    assert PHONE not in compliance_rows and NAME not in compliance_rows
    assert "+86138****5678" in compliance_rows
    assert PHONE in operations_rows and NAME in operations_rows


@pytest.mark.django_db(transaction=True)
def test_it_masks_every_compliance_response_while_operations_users_load_the_outbox_at_the_same_time(outbox):
    officer = make_compliance_officer()
    operations = make_user("ops", group=roles.OPERATIONS)
    model_admin = admin.site._registry[OutboxMessage]
    barrier = threading.Barrier(4)
    leaks: list[str] = []
    errors: list[BaseException] = []

    def load(user, rounds=10):
        try:
            for _ in range(rounds):
                request = _request(user)
                changelist = _changelist(model_admin, request)
                barrier.wait(timeout=10)  # every thread has built its list before any renders
                rendered = _rendered(changelist)
                if user.pk == officer.pk and (PHONE in rendered or NAME in rendered):
                    leaks.append(rendered)
                barrier.wait(timeout=10)
        except BaseException as exc:  # noqa: BLE001 (reported below, in the test's thread)
            errors.append(exc)
            barrier.abort()
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=load, args=(u,)) for u in (officer, operations, officer, operations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    assert leaks == []


def test_the_outbox_admin_keeps_no_viewer_state_on_itself(outbox):
    officer = make_compliance_officer()
    model_admin = admin.site._registry[OutboxMessage]
    before = dict(vars(model_admin))
    _rendered_rows(model_admin, _request(officer))
    assert dict(vars(model_admin)) == before


def test_an_outbox_message_sent_by_the_backend_is_masked_with_its_customers_name(outbox):
    """Through the real backend and the notification's idempotency key, not a hand-made row."""
    officer = make_compliance_officer()
    bob = make_customer(name="Bob Stone", phone="+8613912345678", email="bob@example.com")
    log = make_notification(bob, status="sent", body="Hello Bob Stone, 13912345678.", destination=bob.phone)
    OutboxBackend().send(
        OutgoingMessage(
            channel="sms",
            destination=bob.phone,
            subject="",
            body=log.body,
            idempotency_key=str(log.idempotency_key),
        )
    )
    assert NotificationLog.objects.filter(pk=log.pk).exists()
    rendered = _rendered_rows(admin.site._registry[OutboxMessage], _request(officer))
    for secret in ("Bob Stone", "Stone", "13912345678", "bob@example.com"):
        assert secret not in rendered
