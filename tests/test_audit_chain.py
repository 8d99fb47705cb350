from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, connections, transaction

from core.audit import COPY_AT_LEAST, Event, append_events, event_hash, log_event, log_events
from core.audit_triggers import missing_audit_triggers
from core.audit_verification import verify_chain
from core.models import GENESIS_HASH, AuditChainHead, AuditEvent
from tests.factories_audit import make_events


@pytest.mark.django_db
def test_each_event_links_to_the_previous_one_and_hashes_its_content():
    first, second, third = make_events(3)
    assert first.prev_hash == GENESIS_HASH or first.seq > 1
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert [e.seq for e in (first, second, third)] == [first.seq, first.seq + 1, first.seq + 2]
    stored = AuditEvent.objects.get(pk=third.pk)
    assert event_hash(stored) == stored.hash
    assert AuditChainHead.objects.get(id=1).hash == third.hash


@pytest.mark.django_db
@pytest.mark.parametrize("size", [3, COPY_AT_LEAST + 7])
def test_a_large_batch_is_stored_exactly_as_a_small_one(size):
    """From COPY_AT_LEAST events on, PostgreSQL writes the batch with COPY: what is stored, its ids and its hashes
    must be what the INSERT path stores."""
    at = dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.timezone.utc)
    events = [
        Event(
            action="tests.thing.changed",
            actor="job:tests",
            object_type="tests.Thing",
            object_id=str(i),
            at=at + dt.timedelta(seconds=i),
            before=None if i % 2 else {"status": "planned"},
            after={"name": '王小明\t"quoted"\n', "amount": Decimal("12.50"), "i": i, "none": None},
        )
        for i in range(size)
    ]
    rows = log_events(events)
    stored = {e.pk: e for e in AuditEvent.objects.filter(pk__in=[r.pk for r in rows])}
    assert len(stored) == size
    for i, row in enumerate(rows):
        saved = stored[row.pk]
        assert (saved.seq, saved.hash, saved.at) == (row.seq, row.hash, at + dt.timedelta(seconds=i))
        assert saved.before == (None if i % 2 else {"status": "planned"})
        assert saved.after == {"name": '王小明\t"quoted"\n', "amount": "12.50", "i": i, "none": None}
        assert event_hash(saved) == saved.hash
    assert AuditChainHead.objects.get(id=1).hash == rows[-1].hash
    assert verify_chain(check_anchors=False).is_intact


@pytest.mark.django_db
@pytest.mark.parametrize("writer", [log_events, append_events])
def test_the_hash_covers_what_is_stored_whatever_the_keys_and_values(writer):
    """The chain is computed in one pass from each value's canonical text: it must be the hash the verifier
    recomputes from the stored row, also for keys that are not strings (they sort as strings once stored)."""
    at = dt.datetime(2026, 11, 24, 2, 30, 0, 123456, tzinfo=dt.timezone.utc)
    values = [
        {"b": 1, "a": [{"z": Decimal("1.10"), "y": at, "x": dt.date(2026, 1, 2)}], "c": None},
        {1: "one", 10: "ten", 2: "two"},
        {"outer": {3: 1, "3a": [True, 0.1, -2]}, "王": '"quoted"\t\n'},
        [{"seq": 2}, {"seq": 1}],
        "plain text",
        Decimal("-0.50"),
    ]
    events = [
        Event(
            action="tests.thing.changed",
            actor="job:tests",
            object_id=i,
            at=at,
            before=v,
            after=values[-1 - i],
        )
        for i, v in enumerate(values)
    ]
    first = AuditChainHead.objects.get(id=1).seq + 1
    writer(events)
    stored = list(AuditEvent.objects.filter(seq__gte=first).order_by("seq"))
    assert len(stored) == len(values)
    assert stored[1].before == {"1": "one", "10": "ten", "2": "two"}
    assert stored[0].before["a"][0]["z"] == "1.10"
    for event in stored:
        assert event_hash(event) == event.hash
    assert verify_chain(check_anchors=False).is_intact


@pytest.mark.django_db
def test_an_event_is_written_in_the_transaction_of_the_change_it_records():
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        log_event("tests.thing.changed", actor="job:tests", after={"v": 1})
        raise RuntimeError("the change failed")
    assert AuditEvent.objects.count() == before
    assert verify_chain(check_anchors=False).is_intact


@pytest.mark.django_db
def test_the_database_refuses_to_update_an_event():
    event = log_event("tests.thing.changed", actor="job:tests", after={"v": 1})
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE backoffice_auditevent SET action = 'x' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor="someone else")
    assert AuditEvent.objects.get(pk=event.pk).action == "tests.thing.changed"


@pytest.mark.django_db
def test_the_database_refuses_to_delete_an_event():
    event = log_event("tests.thing.changed", actor="job:tests", after={"v": 1})
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM backoffice_auditevent WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_postgresql_refuses_to_truncate_the_trail():
    log_event("tests.thing.changed", actor="job:tests")
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE backoffice_auditevent")


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_postgresql_refuses_to_truncate_one_months_partition_of_the_trail():
    from core.partitions import Partitioning, create_month_partition, month_partitions

    create_month_partition(connection, Partitioning("backoffice_auditevent", "at"), dt.date(2024, 3, 1))
    log_event("tests.thing.changed", actor="job:tests", at=dt.datetime(2024, 3, 5, tzinfo=dt.UTC))
    partitions = month_partitions(connection, "backoffice_auditevent")
    assert "backoffice_auditevent_p202403" in partitions and len(partitions) >= 2
    assert missing_audit_triggers(connection) == []
    for partition in partitions:  # the new month's, the ones the migration made, and DEFAULT
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {partition}")
    assert AuditEvent.objects.filter(at__lt=dt.datetime(2024, 4, 1, tzinfo=dt.UTC)).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_a_partition_without_its_truncate_guard_is_reported_missing():
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER backoffice_auditevent_default_no_truncate ON backoffice_auditevent_default"
        )
    assert missing_audit_triggers(connection) == ["backoffice_auditevent_default: TRUNCATE"]


@pytest.mark.django_db(transaction=True)
def test_a_flush_lifts_the_triggers_only_for_its_own_time():
    from django.core.management import call_command

    make_events(2)
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
    assert missing_audit_triggers(connection) == []
    assert AuditChainHead.objects.get(id=1).seq == 0
    make_events(1)
    assert verify_chain(check_anchors=False).is_intact


@pytest.mark.django_db(transaction=True)
def test_a_flush_sets_the_old_chains_anchor_file_aside_so_the_new_trail_anchors_again(settings):
    from django.core.management import call_command

    from core.audit_anchors import write_anchor

    moment = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    make_events(3)
    write_anchor(moment)
    old = settings.AUDIT_ANCHOR_PATH.read_text()

    call_command("flush", interactive=False, verbosity=0)

    assert not settings.AUDIT_ANCHOR_PATH.exists()
    [aside] = settings.AUDIT_ANCHOR_PATH.parent.glob("audit-anchor.before-flush-*.jsonl")
    assert aside.read_text() == old
    make_events(2)
    assert write_anchor(moment)["written"] == 1
    assert verify_chain().is_intact


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain():
    writers, per_writer = 6, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    log_event("tests.thing.changed", actor=f"job:writer{n}", object_id=str(i), after={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    seqs = list(AuditEvent.objects.values_list("seq", flat=True))
    assert len(seqs) == writers * per_writer == len(set(seqs))
    assert sorted(seqs) == list(range(1, writers * per_writer + 1))
    result = verify_chain(check_anchors=False)
    assert result.is_intact, result.problem
    assert result.count == writers * per_writer


def test_the_one_encoder_writes_what_djangos_encoder_writes():
    """``core.audit`` keeps one JSON encoder for every value of a batch: its text is DjangoJSONEncoder's, sorted
    keys, for every kind of value an event may carry."""
    import uuid

    from core.audit import _CANONICAL, _encode

    at = dt.datetime(2026, 11, 24, 2, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    values = [
        {"b": Decimal("250.00"), "a": at, "c": [dt.date(2026, 1, 2), dt.time(9, 30, 0, 500), None, True]},
        {"z": uuid.UUID(int=7), "y": dt.timedelta(days=1, seconds=5), "x": 0.1, "w": -2, "王": '"q"\t\n'},
        [{"seq": 2, "amount": Decimal("-0.50")}, {"seq": 1}],
        {"nested": {"b": {"d": 1, "c": [Decimal("1E+2"), Decimal("0.000")]}, "a": ""}},
        Decimal("12.5"),
        at,
        "plain text",
        12,
    ]
    for value in values:
        assert _encode(value) == _CANONICAL.encode(value)
