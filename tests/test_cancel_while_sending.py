"""A contact cancelled while a worker records it sent: the two never both happen. The cancellation locks the
contacts it reads, so a worker's write waits for it, and a contact sent before that read is left as it is."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import OperationalError, connection

from core.models import AuditEvent
from notifications.cancelling import cancel_pending
from notifications.models import NotificationItem, NotificationLog
from tests.factories import make_customer, make_installment, make_loan
from tests.factories_audit import make_notification

NOW = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)


def _send_from_another_worker(contact_id: int) -> bool:
    """Record the contact sent from another connection, as a worker would; False when it had to wait."""
    outcome = []

    def worker():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '300ms'")  # it would wait for the cancellation's commit
            NotificationLog.objects.filter(pk=contact_id).update(status=NotificationLog.Status.SENT)
            outcome.append(True)
        except OperationalError:
            outcome.append(False)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=30)
    return outcome == [True]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("by", ["customer", "instalment"])
def test_a_contact_sent_while_it_is_being_cancelled_is_never_recorded_as_cancelled(by):
    customer = make_customer()
    installment = make_installment(loan=make_loan(customer=customer))
    contact = make_notification(customer=customer, status="planned", scheduled_for=NOW)
    NotificationItem.objects.create(notification=contact, installment=installment)
    sent_meanwhile = []

    def sent_elsewhere_before_the_write(execute, sql, params, many, context):
        # Between the cancellation's read of the contact and its write.
        if sql.startswith('UPDATE "notifications_notificationlog"') and not sent_meanwhile:
            sent_meanwhile.append(_send_from_another_worker(contact.id))
        return execute(sql, params, many, context)

    scope = {"customer_ids": [customer.id]} if by == "customer" else {"installment_ids": [installment.id]}
    with connection.execute_wrapper(sent_elsewhere_before_the_write):
        cancelled = cancel_pending(reason="paid", actor="test", at=NOW, **scope)

    status = NotificationLog.objects.get(pk=contact.pk).status
    events = AuditEvent.objects.filter(
        action="notifications.contact.cancelled", object_id=str(contact.id)
    ).count()
    # Cancelled and recorded so, or sent and neither: never a cancellation recorded for a contact sent.
    assert (status, cancelled, events) in {("cancelled", 1, 1), ("sent", 0, 0)}
    assert sent_meanwhile == [False]  # the worker waited for the cancellation
