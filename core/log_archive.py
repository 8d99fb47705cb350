"""Archiving an old month of a partitioned log that is not the audit trail (PostgreSQL): the month's rows, and the
rows of the tables that hang on them, written to a file beside a manifest, registered (``MonthArchive``) and
audited, then the rows of those tables deleted and the month's partition detached and dropped.

An app registers its log from its ``AppConfig.ready`` (the notification log and its instalment items:
``notifications.archive``), so core never imports the apps. The audit trail has its own archive, whose events
``verify_audit`` walks (``core.audit_archive``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections, transaction

from .audit import log_event
from .audit_archive import ArchiveError, manifest_path
from .models import MonthArchive
from .partitions import is_partitioned, month_start, partition_name

LOG_ARCHIVE_FORMAT = "log-month-archive/1"


@dataclass(frozen=True)
class ArchivableLog:
    """A log partitioned by month of ``key``: ``children`` are (table, column) pairs of the rows that hang on
    a log row by its id and leave with it; a month holding a row that matches ``busy`` (SQL over the log's
    columns: a contact still to be sent) is not archived; ``changed`` is the column every update of a row
    sets, by which a month written to while it is archived is told."""

    kind: str
    table: str
    key: str
    children: tuple[tuple[str, str], ...]
    busy: str
    changed: str
    action: str


_LOGS: dict[str, ArchivableLog] = {}


def register_archivable_log(log: ArchivableLog) -> None:
    _LOGS[log.kind] = log


def archivable_kinds() -> tuple[str, ...]:
    return tuple(_LOGS)


def _state(cursor, qn, log: ArchivableLog, part: str) -> tuple:
    cursor.execute(f"SELECT count(*), max({qn(log.changed)}), max(id) FROM {qn(part)}")
    state = list(cursor.fetchone())
    for table, column in log.children:
        cursor.execute(
            f"SELECT count(*), max(c.id) FROM {qn(table)} c WHERE c.{qn(column)} IN (SELECT id FROM {qn(part)})"
        )
        state += list(cursor.fetchone())
    return tuple(state)


def _write_rows(connection, log: ArchivableLog, part: str, path: Path) -> dict[str, Any]:
    """The month's rows in id order, then each child table's rows in id order, a JSON object a line
    (``{"table": ..., "row": {...}}``), with their counts and the file's SHA-256."""
    qn = connection.ops.quote_name
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    queries = [(log.table, f"SELECT row_to_json(t)::text FROM {qn(part)} t ORDER BY t.id")]
    queries += [
        (
            table,
            f"SELECT row_to_json(c)::text FROM {qn(table)} c "
            f"WHERE c.{qn(column)} IN (SELECT id FROM {qn(part)}) ORDER BY c.id",
        )
        for table, column in log.children
    ]
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for table, sql in queries:
            counts[table] = 0
            with connection.chunked_cursor() as cursor:
                cursor.execute(sql)
                while batch := cursor.fetchmany(5000):
                    for (row,) in batch:
                        text = f'{{"table":{json.dumps(table)},"row":{row}}}\n'
                        fh.write(text)
                        digest.update(text.encode("utf-8"))
                    counts[table] += len(batch)
        fh.flush()
        os.fsync(fh.fileno())
    return {"rows": counts, "sha256": digest.hexdigest()}


def archive_log_month(
    kind: str, month: dt.date, output: Path, *, now: dt.datetime, actor: str, using: str = "default"
) -> dict[str, Any]:
    """Archive ``kind``'s ``month`` (a month before ``now``'s) to ``output`` and ``<output>.manifest.json``,
    then delete its children's rows and detach and drop the month's partition. Returns the manifest.

    The file is written first; then, holding the month's partition and the child tables in SHARE mode, the
    month is checked to be as written (else nothing changes and the file is removed: run again), the archive
    is registered and audited (``log.action``, the manifest), the rows go and the files take their names, in
    one transaction. Raises ``ArchiveError``, changing nothing, on SQLite, for the current or a future month,
    a month already archived or with no partition of its own, a month still holding a row to be sent, or an
    existing file."""
    log = _LOGS.get(kind)
    if log is None:
        raise ArchiveError(f"{kind!r} is not an archivable log (one of: {', '.join(_LOGS) or 'none'})")
    connection = connections[using]
    qn = connection.ops.quote_name
    if not is_partitioned(connection, log.table):
        raise ArchiveError(
            f"the {kind} log is partitioned by month on PostgreSQL only: nothing to archive here"
        )
    month = month_start(month)
    if month >= month_start(now):
        raise ArchiveError(f"{month:%Y-%m} is not over yet: only a month before the current one is archived")
    done = MonthArchive.objects.using(using).filter(kind=kind, month=month).first()
    if done is not None:
        raise ArchiveError(f"{month:%Y-%m} was archived already, to {done.file_path}")
    part = partition_name(log.table, month)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [part])
        if cursor.fetchone()[0] is None:
            raise ArchiveError(f"the {kind} log has no partition for {month:%Y-%m}")
        cursor.execute(f"SELECT count(*) FROM {qn(part)} WHERE {log.busy}")
        busy = cursor.fetchone()[0]
    if busy:
        raise ArchiveError(
            f"{busy} rows of {month:%Y-%m} are still to be sent: archive the month once they are not"
        )
    output = Path(output).resolve()
    manifest_file = manifest_path(output)
    for path in (output, manifest_file):
        if path.exists():
            raise ArchiveError(f"{path} exists: choose another name or move it away")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    try:
        with connection.cursor() as cursor:
            before = _state(cursor, qn, log, part)
        written = _write_rows(connection, log, part, partial)
        with transaction.atomic(using=using), connection.cursor() as cursor:
            for table in (part, *(table for table, _ in log.children)):
                cursor.execute(f"LOCK TABLE {qn(table)} IN SHARE MODE")
            if _state(cursor, qn, log, part) != before or written["rows"][log.table] != before[0]:
                raise ArchiveError(f"rows of {month:%Y-%m} changed while it was archived: run it again")
            manifest = {
                "format": LOG_ARCHIVE_FORMAT,
                "kind": kind,
                "month": f"{month:%Y-%m}",
                "partition": part,
                "file": output.name,
                "rows": written["rows"],
                "sha256": written["sha256"],
                "first_id": None,
                "last_id": before[2],
                "archived_at": now.astimezone(dt.timezone.utc).isoformat(),
                "archived_by": actor,
            }
            cursor.execute(f"SELECT min(id) FROM {qn(part)}")
            manifest["first_id"] = cursor.fetchone()[0]
            manifest_text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            MonthArchive.objects.using(using).create(
                kind=kind,
                month=month,
                file_path=str(output),
                file_sha256=written["sha256"],
                manifest_sha256=hashlib.sha256(manifest_text.encode("utf-8")).hexdigest(),
                rows=written["rows"][log.table],
                archived_at=now,
                archived_by=actor,
            )
            log_event(log.action, actor=actor, at=now, after=manifest)
            for table, column in log.children:
                cursor.execute(f"DELETE FROM {qn(table)} WHERE {qn(column)} IN (SELECT id FROM {qn(part)})")
            # Deferred foreign key checks still pending in this transaction would forbid dropping the table.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {qn(log.table)} DETACH PARTITION {qn(part)}")
            cursor.execute(f"DROP TABLE {qn(part)}")
            with manifest_file.open("w", encoding="utf-8") as fh:
                fh.write(manifest_text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return manifest
