"""An old month of the audit trail is moved to an archive file (PostgreSQL, where the trail is partitioned by
month), and ``verify_audit`` goes on proving the chain through it: a changed archive fails, naming the first
broken event."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.audit import Event, log_events
from core.audit_anchors import write_anchor
from core.audit_archive import ARCHIVED, ArchiveError, archive_audit_month
from core.models import AuditEvent, MonthArchive
from core.partitions import Partitioning, create_month_partition, month_partitions

TABLE = "backoffice_auditevent"
NOW = dt.datetime(2025, 9, 10, 8, 0, tzinfo=dt.UTC)
JUNE = dt.date(2025, 6, 1)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def events_at(*moments) -> list[AuditEvent]:
    return log_events(
        Event(action="tests.thing.changed", actor="job:tests", object_id=str(i), after={"i": i}, at=at)
        for i, at in enumerate(moments)
    )


def verify(*archives) -> str:
    out = StringIO()
    call_command("verify_audit", *[f"--archive={a}" for a in archives], stdout=out)
    return out.getvalue()


def archive(month: str, output) -> str:
    out = StringIO()
    call_command("archive_month", "audit", month, "--output", str(output), stdout=out)
    return out.getvalue()


@pytest.fixture
def months():
    """Partitions for June, July and August 2025, and events in them (July's straddling June's in seq order,
    as a pipeline that took its ``now`` before midnight writes after an event of the next month)."""
    for month in (6, 7, 8):
        create_month_partition(connection, Partitioning(TABLE, "at"), dt.date(2025, month, 1))
    events = events_at(
        utc(2025, 6, 3),
        utc(2025, 6, 15),
        utc(2025, 7, 1, 0, 0, 1),
        utc(2025, 6, 30, 23, 59, 59),
        utc(2025, 7, 20),
        utc(2025, 8, 5),
    )
    write_anchor(utc(2025, 8, 6))
    return events


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_archives_an_old_month_and_the_chain_still_verifies_through_it(months, tmp_path):
    total = AuditEvent.objects.count()
    said = archive("2025-06", tmp_path / "audit-2025-06.jsonl")

    assert "3 events" in said and f"{TABLE}_p202506" not in month_partitions(connection, TABLE)
    assert not AuditEvent.objects.filter(at__lt=utc(2025, 7, 1)).exists()
    manifest = json.loads((tmp_path / "audit-2025-06.jsonl.manifest.json").read_text())
    june = [months[0], months[1], months[3]]
    assert (manifest["rows"], manifest["first_seq"], manifest["last_seq"]) == (3, june[0].seq, june[-1].seq)
    assert (manifest["first_hash"], manifest["last_hash"]) == (june[0].hash, june[-1].hash)
    registered = MonthArchive.objects.get(kind="audit", month=JUNE)
    assert registered.file_sha256 == manifest["sha256"]
    recorded = AuditEvent.objects.get(action=ARCHIVED)
    assert recorded.after == manifest
    assert f"{total + 1} events verified (3 of them from archive files)" in verify()


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_a_moved_archive_is_given_to_verify_audit_and_a_missing_one_fails(months, tmp_path):
    archive("2025-06", tmp_path / "audit-2025-06.jsonl")
    cold = tmp_path / "cold"
    cold.mkdir()
    for name in ("audit-2025-06.jsonl", "audit-2025-06.jsonl.manifest.json"):
        shutil.move(tmp_path / name, cold / name)

    with pytest.raises(CommandError, match="the archive of 2025-06 .* give its file with --archive"):
        verify()
    assert "3 of them from archive files" in verify(cold / "audit-2025-06.jsonl")


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_a_changed_archive_fails_naming_its_first_broken_event(months, tmp_path):
    path = tmp_path / "audit-2025-06.jsonl"
    archive("2025-06", path)
    lines = path.read_text().splitlines(keepends=True)
    second = json.loads(lines[1])
    second["after"] = {"i": 99}
    lines[1] = json.dumps(second, sort_keys=True, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))

    with pytest.raises(CommandError) as broken:
        verify()
    message = str(broken.value)
    assert (
        f"BROKEN at event seq {second['seq']} (id {second['id']}, archive audit-2025-06.jsonl line 2)"
        in message
    )
    assert "hash does not match the event's content" in message


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_an_archive_missing_an_event_or_changed_byte_for_byte_fails(months, tmp_path):
    path = tmp_path / "audit-2025-06.jsonl"
    archive("2025-06", path)
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    with pytest.raises(CommandError, match=f"sequence broken: expected seq {months[1].seq}"):
        verify()
    path.write_text(original.replace('"after":{"i":0}', '"after": {"i":0}'))
    with pytest.raises(CommandError, match="is not the file that was archived"):
        verify()


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_a_late_event_of_an_archived_month_goes_to_the_default_partition_and_verifies(months, tmp_path):
    archive("2025-06", tmp_path / "audit-2025-06.jsonl")
    (late,) = events_at(utc(2025, 6, 29))
    assert AuditEvent.objects.get(pk=late.pk).seq == late.seq
    assert "3 of them from archive files" in verify()


@pytest.mark.django_db
@pytest.mark.postgres_only
def test_it_refuses_the_current_month_an_archived_one_and_an_existing_file(months, tmp_path):
    with pytest.raises(ArchiveError, match="2025-09 is not over yet"):
        archive_audit_month(dt.date(2025, 9, 1), tmp_path / "a.jsonl", now=NOW, actor="tests")
    existing = tmp_path / "exists.jsonl"
    existing.write_text("keep me")
    with pytest.raises(ArchiveError, match="exists"):
        archive_audit_month(JUNE, existing, now=NOW, actor="tests")
    assert (
        existing.read_text() == "keep me" and AuditEvent.objects.filter(at__lt=utc(2025, 7, 1)).count() == 3
    )
    archive_audit_month(JUNE, tmp_path / "a.jsonl", now=NOW, actor="tests")
    with pytest.raises(ArchiveError, match="archived already"):
        archive_audit_month(JUNE, tmp_path / "b.jsonl", now=NOW, actor="tests")
    with pytest.raises(ArchiveError, match="no partition for 2025-05"):
        archive_audit_month(dt.date(2025, 5, 1), tmp_path / "c.jsonl", now=NOW, actor="tests")
    assert not (tmp_path / "b.jsonl").exists() and not (tmp_path / "c.jsonl").exists()


@pytest.mark.django_db
def test_it_says_why_nothing_is_archived_on_sqlite(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's answer; PostgreSQL archives (the tests above)")
    with pytest.raises(CommandError, match="partitioned by month on PostgreSQL only"):
        archive("2025-06", tmp_path / "a.jsonl")
    with pytest.raises(CommandError, match="not a month: expected YYYY-MM"):
        archive("June", tmp_path / "a.jsonl")
    assert not (tmp_path / "a.jsonl").exists()
