from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import connection, transaction

from notifications.channels import OutboxBackend
from notifications.dispatch import claim_due, dispatch_due
from notifications.models import NotificationLog, OutboxMessage
from notifications.planning import plan_contacts
from notifications.sending import OutgoingMessage, SendResult

from .factories import make_tier
from .factories_reminders import SHANGHAI, local, make_debtor, make_rule, make_template


class CountingOutbox(OutboxBackend):
    """The outbox, counting every call: the outbox itself would hide a second send of the same key."""

    lock = threading.Lock()
    keys: list[str] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        with CountingOutbox.lock:
            CountingOutbox.keys.append(message.idempotency_key)
        time.sleep(0.005)  # a provider's latency widens the window in which two workers could collide
        return super().send(message)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_dispatching_at_once_never_send_a_contact_twice(settings):
    settings.NOTIFICATION_BACKENDS = {"sms": "tests.test_dispatch_concurrency.CountingOutbox"}
    CountingOutbox.keys = []
    tier = make_tier(max_contacts_per_week=5)
    make_rule(tier, -3, "sms")
    make_template("pre_due", "sms", "zh-hans")
    for _ in range(30):
        make_debtor(tier, due_date=dt.date(2026, 12, 1))
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    start = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            start.wait()
            results.append(dispatch_due(local(SHANGHAI, 2026, 11, 28, 10, 5), batch_size=4))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(CountingOutbox.keys) == 30 and len(set(CountingOutbox.keys)) == 30
    assert sum(r.get("sent", 0) for r in results) == 30
    assert all(r.get("sent", 0) > 0 for r in results)  # both workers took a share
    assert NotificationLog.objects.filter(status=NotificationLog.Status.SENT).count() == 30
    assert OutboxMessage.objects.count() == 30


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_skips_the_rows_another_worker_holds_instead_of_waiting():
    tier = make_tier()
    make_rule(tier, -3, "sms")
    for _ in range(4):
        make_debtor(tier, due_date=dt.date(2026, 12, 1))
    plan_contacts(local(SHANGHAI, 2026, 11, 28, 0, 30))
    ids = list(NotificationLog.objects.order_by("scheduled_for", "id").values_list("id", flat=True))
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                list(
                    NotificationLog.objects.select_for_update()
                    .filter(id__in=ids[:2])
                    .values_list("id", flat=True)
                )
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=other_worker)
    holder.start()
    assert locked.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '5s'")  # waiting for the lock would fail the test, not hang it
    try:
        claimed = claim_due(local(SHANGHAI, 2026, 11, 28, 10, 5), 10)
    finally:
        release.set()
        holder.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert sorted(claimed) == sorted(ids[2:])
