"""On PostgreSQL the notification log is partitioned by month of ``created_at`` (when a contact was planned):
upgrading moves every contact with its id and its instalment items, and its keys into the key table."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from core.partitions import is_partitioned
from notifications.models import NotificationItem, NotificationLog
from tests.factories import make_installment
from tests.factories_audit import make_notification

TABLE = "notifications_notificationlog"


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def log_as_of(target):
    """The notification log and its items as the migration ``target`` left them (a later migration may add a
    column the live model already has)."""
    state = MigrationExecutor(connection).loader.project_state(target)
    return state.apps.get_model("notifications", "NotificationLog"), state.apps.get_model(
        "notifications", "NotificationItem"
    )


def partition_of(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_it_keeps_a_plain_log_on_sqlite_and_partitions_it_on_postgresql():
    assert is_partitioned(connection, TABLE) == (connection.vendor == "postgresql")


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_upgrading_moves_every_contact_with_its_id_items_and_keys():
    before = ("notifications", "0007_field_labels_in_every_language")
    migrate([before])
    try:
        assert not is_partitioned(connection, TABLE)
        installment = make_installment()
        customer = installment.loan.customer
        OldLog, OldItem = log_as_of(before)
        contacts = []
        for moment in (
            dt.datetime(2026, 1, 31, 23, tzinfo=dt.UTC),
            dt.datetime(2026, 2, 1, 1, tzinfo=dt.UTC),
        ):
            with time_machine.travel(moment, tick=False):
                contacts.append(
                    OldLog.objects.create(
                        customer_id=customer.pk,
                        channel="sms",
                        kind="pre_due",
                        status="sent",
                        scheduled_for=moment,
                        dedupe_key=f"k{len(contacts)}",
                    )
                )
        OldItem.objects.create(notification_id=contacts[0].pk, installment_id=installment.pk)

        # Upgrading to the newest state: the partitioning and whatever came after it.
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        assert is_partitioned(connection, TABLE)
        stored = {
            n.pk: (n.dedupe_key, n.idempotency_key, n.created_at) for n in NotificationLog.objects.all()
        }
        assert stored == {n.pk: (n.dedupe_key, n.idempotency_key, n.created_at) for n in contacts}
        assert [partition_of(n.pk) for n in contacts] == [f"{TABLE}_p202601", f"{TABLE}_p202602"]
        assert list(NotificationItem.objects.values_list("notification_id", "installment_id")) == [
            (contacts[0].pk, installment.pk)
        ]
        with pytest.raises(IntegrityError), transaction.atomic():
            make_notification(customer=customer, dedupe_key="k1")
        later = make_notification(customer=customer, dedupe_key="k2")
        assert later.pk > contacts[-1].pk
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
