"""Archiving an old month of the audit trail (PostgreSQL, where the trail is partitioned by month): the month's
events written to a file in sequence order, one JSON object a line, beside a manifest (rows, SHA-256, first
and last seq and hashes), registered as a ``MonthArchive`` and audited (``backoffice.audit.month_archived``),
then the month's partition detached and dropped. ``verify_audit`` reads the archive files back and walks the
chain through them (``audit_verification``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import connections, transaction

from .audit import _EVENT_COLUMNS, _lock_head, log_event
from .models import AuditEvent, MonthArchive
from .partitions import is_partitioned, month_bounds, month_start, partition_name

ARCHIVE_FORMAT = "audit-month-archive/1"
ARCHIVED = "backoffice.audit.month_archived"
ARCHIVE_FIELDS = ("id", *_EVENT_COLUMNS)


class ArchiveError(Exception):
    """The month cannot be archived (or an archive file cannot be read): nothing was changed."""


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def _line(values: tuple) -> str:
    data = dict(zip(ARCHIVE_FIELDS, values, strict=True))
    data["at"] = data["at"].astimezone(dt.timezone.utc).isoformat()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def _write_events(path: Path, start: dt.datetime, end: dt.datetime, using: str) -> dict[str, Any]:
    """Write the month's events to ``path`` in seq order (constant memory); their count, SHA-256 and ends."""
    digest = hashlib.sha256()
    summary: dict[str, Any] = {"rows": 0, "first": None, "last": None}
    rows = (
        AuditEvent.objects.using(using)
        .filter(at__gte=start, at__lt=end)
        .order_by("seq")
        .values_list(*ARCHIVE_FIELDS)
        .iterator(chunk_size=5000)
    )
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for values in rows:
            text = _line(values)
            fh.write(text)
            digest.update(text.encode("utf-8"))
            event = dict(zip(ARCHIVE_FIELDS, values, strict=True))
            summary["first"] = summary["first"] or event
            summary["last"] = event
            summary["rows"] += 1
        fh.flush()
        os.fsync(fh.fileno())
    summary["sha256"] = digest.hexdigest()
    return summary


def _partition_state(connection, table: str) -> tuple[int, int | None, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*), min(seq), max(seq) FROM {connection.ops.quote_name(table)}")
        return cursor.fetchone()


def archive_audit_month(
    month: dt.date, output: Path, *, now: dt.datetime, actor: str, using: str = "default"
) -> dict[str, Any]:
    """Archive the audit trail's ``month`` (a month before ``now``'s) to ``output`` and its manifest
    (``<output>.manifest.json``), then detach and drop the month's partition. Returns the manifest.

    The file is written outside the chain head's lock; then, holding it, the partition is checked to still
    hold exactly what was written (else nothing is registered and the file is removed: run again), the archive
    is registered and audited, the files take their names and the partition goes, all in one transaction.
    Raises ``ArchiveError`` (and changes nothing) on SQLite, for the current or a future month, a month with no
    partition of its own (already archived, or its rows are in the DEFAULT partition), or an existing file."""
    connection = connections[using]
    table = AuditEvent._meta.db_table
    if not is_partitioned(connection, table):
        raise ArchiveError(
            "the audit trail is partitioned by month on PostgreSQL only: nothing to archive here"
        )
    month = month_start(month)
    if month >= month_start(now):
        raise ArchiveError(f"{month:%Y-%m} is not over yet: only a month before the current one is archived")
    done = MonthArchive.objects.using(using).filter(kind=MonthArchive.Kind.AUDIT, month=month).first()
    if done is not None:
        raise ArchiveError(f"{month:%Y-%m} was archived already, to {done.file_path}")
    part = partition_name(table, month)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [part])
        if cursor.fetchone()[0] is None:
            raise ArchiveError(
                f"the audit trail has no partition for {month:%Y-%m} (its events, if any, are in the DEFAULT "
                "partition, which is not archived)"
            )
    output = Path(output).resolve()
    manifest_file = manifest_path(output)
    for path in (output, manifest_file):
        if path.exists():
            raise ArchiveError(f"{path} exists: choose another name or move it away")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    start, end = month_bounds(month)
    try:
        summary = _write_events(partial, start, end, using)
        with transaction.atomic(using=using):
            _lock_head()
            if _partition_state(connection, part) != (
                summary["rows"],
                summary["first"] and summary["first"]["seq"],
                summary["last"] and summary["last"]["seq"],
            ):
                raise ArchiveError(
                    f"events of {month:%Y-%m} were written while it was archived: run it again"
                )
            manifest = _manifest(month, part, output, summary, now, actor)
            manifest_text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            MonthArchive.objects.using(using).create(
                kind=MonthArchive.Kind.AUDIT,
                month=month,
                file_path=str(output),
                file_sha256=summary["sha256"],
                manifest_sha256=hashlib.sha256(manifest_text.encode("utf-8")).hexdigest(),
                rows=summary["rows"],
                first_seq=manifest["first_seq"],
                last_seq=manifest["last_seq"],
                first_hash=manifest["first_hash"],
                last_hash=manifest["last_hash"],
                archived_at=now,
                archived_by=actor,
            )
            log_event(ARCHIVED, actor=actor, at=now, after=manifest)
            qn = connection.ops.quote_name
            with connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE {qn(table)} DETACH PARTITION {qn(part)}")
                cursor.execute(f"DROP TABLE {qn(part)}")
            _write_text(manifest_file, manifest_text)
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def _manifest(month, part, output: Path, summary, now, actor) -> dict[str, Any]:
    first, last = summary["first"] or {}, summary["last"] or {}
    return {
        "format": ARCHIVE_FORMAT,
        "kind": MonthArchive.Kind.AUDIT.value,
        "month": f"{month:%Y-%m}",
        "partition": part,
        "file": output.name,
        "rows": summary["rows"],
        "sha256": summary["sha256"],
        "first_seq": first.get("seq"),
        "first_prev_hash": first.get("prev_hash", ""),
        "first_hash": first.get("hash", ""),
        "last_seq": last.get("seq"),
        "last_hash": last.get("hash", ""),
        "archived_at": now.astimezone(dt.timezone.utc).isoformat(),
        "archived_by": actor,
    }


def _write_text(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class ArchiveReader:
    """An archive file read back for verification, event by event in the file's order, hashing its bytes as
    it goes: ``events()`` yields ``(seq, line, values)`` with values in ``ARCHIVE_FIELDS`` order; afterwards
    ``rows`` and ``sha256`` say what was read. A line that is not an event raises ``ArchiveError`` naming it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows = 0
        self._digest = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def events(self) -> Iterator[tuple[int, int, tuple]]:
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                self._digest.update(raw)
                try:
                    data = json.loads(raw)
                    data["at"] = dt.datetime.fromisoformat(data["at"])
                    values = tuple(data[name] for name in ARCHIVE_FIELDS)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ArchiveError(
                        f"{self.path.name} line {number} is not an audit event: {exc}"
                    ) from exc
                self.rows += 1
                yield data["seq"], number, values
