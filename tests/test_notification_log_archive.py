"""An old month of the notification log leaves the database for an archive file (PostgreSQL): its contacts and
their instalment items, once none of them is still to be sent; their keys stay taken."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.audit_archive import ArchiveError
from core.log_archive import archive_log_month
from core.models import AuditEvent, MonthArchive
from core.partitions import Partitioning, create_month_partition, month_partitions
from notifications.models import NotificationItem, NotificationLog
from tests.factories import make_installment
from tests.factories_audit import make_notification

TABLE = "notifications_notificationlog"
JUNE = dt.date(2025, 6, 1)
NOW = dt.datetime(2025, 9, 10, 8, tzinfo=dt.UTC)


@pytest.fixture
def june():
    """Two contacts planned in June 2025 (one with an instalment item) and one planned in July."""
    for month in (6, 7):
        create_month_partition(connection, Partitioning(TABLE, "created_at"), dt.date(2025, month, 1))
    installment = make_installment()
    customer = installment.loan.customer
    made = []
    for day, key in (
        (dt.datetime(2025, 6, 3, tzinfo=dt.UTC), "a"),
        (dt.datetime(2025, 6, 30, tzinfo=dt.UTC), "b"),
    ):
        with time_machine.travel(day, tick=False):
            made.append(make_notification(customer=customer, dedupe_key=key))
    with time_machine.travel(dt.datetime(2025, 7, 2, tzinfo=dt.UTC), tick=False):
        made.append(make_notification(customer=customer, dedupe_key="c"))
    NotificationItem.objects.create(notification=made[0], installment=installment)
    NotificationItem.objects.create(notification=made[2], installment=installment)
    return made


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_archives_a_month_of_contacts_with_their_items_and_keeps_their_keys(june, tmp_path):
    out = StringIO()
    path = tmp_path / "notifications-2025-06.jsonl"
    call_command("archive_month", "notifications", "2025-06", "--output", str(path), stdout=out)

    assert (
        "2 rows of notifications_notificationlog, 1 rows of notifications_notificationitem" in out.getvalue()
    )
    assert f"{TABLE}_p202506" not in month_partitions(connection, TABLE)
    assert list(NotificationLog.objects.values_list("dedupe_key", flat=True)) == ["c"]
    assert list(NotificationItem.objects.values_list("notification_id", flat=True)) == [june[2].pk]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["table"] for x in lines] == [TABLE, TABLE, "notifications_notificationitem"]
    assert [x["row"]["id"] for x in lines[:2]] == [june[0].pk, june[1].pk]
    assert lines[0]["row"]["dedupe_key"] == "a" and lines[2]["row"]["notification_id"] == june[0].pk
    manifest = json.loads((tmp_path / "notifications-2025-06.jsonl.manifest.json").read_text())
    assert manifest["rows"] == {TABLE: 2, "notifications_notificationitem": 1}
    assert MonthArchive.objects.get(kind="notifications", month=JUNE).file_sha256 == manifest["sha256"]
    assert AuditEvent.objects.get(action="notifications.log.month_archived").after == manifest
    NotificationLog.objects.bulk_create(
        [
            NotificationLog(
                customer=june[2].customer, channel="sms", kind="pre_due", scheduled_for=NOW, dedupe_key="a"
            )
        ],
        ignore_conflicts=True,
    )
    assert not NotificationLog.objects.filter(dedupe_key="a").exists()  # planned once, archived, never again


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_refuses_a_month_with_a_contact_still_to_be_sent_and_changes_nothing(june, tmp_path):
    NotificationLog.objects.filter(pk=june[1].pk).update(status="deferred")
    with pytest.raises(ArchiveError, match="1 rows of 2025-06 are still to be sent"):
        archive_log_month("notifications", JUNE, tmp_path / "n.jsonl", now=NOW, actor="tests")
    with pytest.raises(ArchiveError, match="2025-09 is not over yet"):
        archive_log_month("notifications", dt.date(2025, 9, 1), tmp_path / "n.jsonl", now=NOW, actor="tests")
    assert NotificationLog.objects.count() == 3 and NotificationItem.objects.count() == 2
    assert not (tmp_path / "n.jsonl").exists() and not MonthArchive.objects.exists()


@pytest.mark.django_db
def test_it_says_why_nothing_is_archived_on_sqlite(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's answer; PostgreSQL archives (the tests above)")
    with pytest.raises(CommandError, match="partitioned by month on PostgreSQL only"):
        call_command("archive_month", "notifications", "2025-06", "--output", str(tmp_path / "n.jsonl"))
