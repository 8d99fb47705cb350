"""On PostgreSQL the audit trail is partitioned by month of ``at``: every event lands in its month's partition
(or the DEFAULT one), upgrading moves every event with its id, the next months' partitions are made ahead of
time, and the append-only triggers hold on every partition. SQLite keeps its plain table."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from core.audit import Event, log_events
from core.audit_verification import verify_chain
from core.models import AuditEvent
from core.partitions import (
    Partitioning,
    create_month_partition,
    ensure_month_partitions,
    is_partitioned,
    month_partitions,
)

TABLE = "backoffice_auditevent"
AUDIT = Partitioning(TABLE, "at")


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def events_at(*moments) -> list[AuditEvent]:
    return log_events(
        Event(action="tests.thing.changed", actor="job:tests", object_id=str(i), after={"i": i}, at=at)
        for i, at in enumerate(moments)
    )


def partition_of(event: AuditEvent) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {TABLE} WHERE id = %s", [event.pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_it_keeps_a_plain_table_on_sqlite_and_partitions_it_on_postgresql():
    assert is_partitioned(connection, TABLE) == (connection.vendor == "postgresql")


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_stores_each_event_in_its_months_partition_and_any_other_in_the_default_one():
    create_month_partition(connection, AUDIT, dt.date(2025, 3, 1))
    march, far = events_at(utc(2025, 3, 31, 23, 59, 59), utc(2099, 1, 1))
    assert partition_of(march) == f"{TABLE}_p202503"
    assert partition_of(far) == f"{TABLE}_default"
    assert verify_chain(check_anchors=False).is_intact


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_creates_the_next_months_partitions_ahead_of_time_once(settings):
    settings.PARTITION_MONTHS_AHEAD = 2
    now = utc(2090, 12, 15, 8)
    assert ensure_month_partitions(now)[TABLE] == 3
    assert {f"{TABLE}_p209012", f"{TABLE}_p209101", f"{TABLE}_p209102"} <= set(
        month_partitions(connection, TABLE)
    )
    assert ensure_month_partitions(now)[TABLE] == 0


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_a_month_whose_events_went_to_the_default_partition_gets_none_and_inserts_still_work():
    (early,) = events_at(utc(2091, 5, 2))
    assert create_month_partition(connection, AUDIT, dt.date(2091, 5, 1)) is False
    (later,) = events_at(utc(2091, 5, 20))
    assert partition_of(early) == partition_of(later) == f"{TABLE}_default"


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_the_trail_stays_append_only_in_every_partition():
    create_month_partition(connection, AUDIT, dt.date(2025, 4, 1))
    in_month, in_default = events_at(utc(2025, 4, 2), utc(2099, 1, 1))
    for sql, event in (
        (f"UPDATE {TABLE}_p202504 SET actor = 'x' WHERE id = %s", in_month),
        (f"DELETE FROM {TABLE}_p202504 WHERE id = %s", in_month),
        (f"DELETE FROM {TABLE}_default WHERE id = %s", in_default),
        (f"DELETE FROM {TABLE} WHERE id = %s", in_month),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [event.pk])


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres_only
def test_upgrading_moves_every_event_with_its_id_into_its_months_partition():
    migrate([("core", "0003_month_archive")])
    try:
        assert not is_partitioned(connection, TABLE)
        before = events_at(utc(2026, 1, 31, 23, 0), utc(2026, 3, 1, 1, 0), utc(2026, 2, 10), utc(2030, 1, 1))
        migrate([("core", "0004_audit_monthly_partitions")])
        assert is_partitioned(connection, TABLE)
        stored = {e.pk: (e.seq, e.hash, e.at) for e in AuditEvent.objects.all()}
        assert stored == {e.pk: (e.seq, e.hash, e.at) for e in before}
        assert [partition_of(e) for e in before] == [
            f"{TABLE}_p202601",
            f"{TABLE}_p202603",
            f"{TABLE}_p202602",
            f"{TABLE}_default",
        ]
        (after,) = events_at(utc(2026, 2, 11))
        assert after.pk > max(e.pk for e in before) and after.seq == before[-1].seq + 1
        assert verify_chain(check_anchors=False).is_intact
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
