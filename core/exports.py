"""Compliance exports of the notification log and the audit trail: streamed, masked, escaped, with a manifest.

``export_to_file`` is the one workflow behind ``manage.py export_log``, the admin's "Export" button and the
background task ``run_export_job``. Rows are read and written 2,000 at a time (CSV with ``csv.writer``, hashed
as it is written; XLSX with XlsxWriter in constant-memory mode; JSON as a streamed array), so memory stays flat
whatever the row count. Notification rows are read as the database driver returns them (times as text, no
Django converters), masked with ``mask_customer_text`` and escaped as each row is built: the hot loop of a
multi-million-row export; ``tests/test_export_fast_paths.py`` holds it to the plain way, byte for byte.
Beside ``FILE`` it writes ``FILE.manifest.json`` (row count, SHA-256 of FILE, filters, format, columns,
masking, time and who) and then records
``backoffice.export.completed`` in the audit trail. That event is written after the export's snapshot was
read, so an export of the audit trail never contains its own export event (the next one will).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import getpass
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.models import F, Func, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from .audit import log_event
from .masking import (
    can_see_personal_data,
    mask_customer_text,
    mask_destination,
    mask_name,
    mask_value,
)
from .models import AuditEvent, ExportJob
from .private_files import create_private, write_private

logger = logging.getLogger(__name__)

CHUNK_SIZE = 2000
FORMATS = ("csv", "xlsx", "json")
KINDS = ("notifications", "audit")

NOTIFICATION_COLUMNS = (
    "id",
    "customer_ref",
    "customer_name",
    "loan_refs",
    "channel",
    "kind",
    "status",
    "reason",
    "scheduled_for",
    "sent_at",
    "destination",
    "subject",
    "body",
    "attempts",
    "provider_message_id",
)
AUDIT_COLUMNS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "prev_hash",
    "hash",
)
COLUMNS = {"notifications": NOTIFICATION_COLUMNS, "audit": AUDIT_COLUMNS}

# The values read for a notification row: the columns, then what masking needs to know about the customer.
_NOTIFICATION_FIELDS = (
    "id",
    "customer__ref",
    "customer__name",
    "loan_refs",
    "channel",
    "kind",
    "status",
    "reason",
    "scheduled_for",
    "sent_at",
    "destination",
    "subject",
    "body",
    "attempts",
    "provider_message_id",
    "customer__phone",
    "customer__email",
)

# Filters an export accepts (the same for the command line, the admin and the background task).
NOTIFICATION_FILTERS = (
    "since",
    "until",
    "status",
    "reason",
    "channel",
    "kind",
    "customer_ref",
    "loan_ref",
    "q",
)
AUDIT_FILTERS = ("since", "until", "action_prefix", "actor", "object_type", "object_id", "q")
FILTERS = {"notifications": NOTIFICATION_FILTERS, "audit": AUDIT_FILTERS}

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAX_CELL = 32767


class ExportError(ValueError):
    """An export was asked with an unknown kind, format or filter."""


def escape_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula gets a leading single quote (numbers are untouched)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _parse_moment(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise ExportError(f"“{value}” is not an ISO-8601 date or time.") from exc
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def clean_filters(kind: str, filters: dict[str, Any] | None) -> dict[str, str]:
    """Keep the non-empty filters, as strings; raise ExportError on a kind or filter this export does not know."""
    if kind not in KINDS:
        raise ExportError(f"Unknown export “{kind}”: use {' or '.join(KINDS)}.")
    cleaned = {}
    for key, value in (filters or {}).items():
        if value in (None, ""):
            continue
        if key not in FILTERS[kind]:
            raise ExportError(f"Unknown filter “{key}” for the {kind} export.")
        if key in ("since", "until"):
            value = _parse_moment(value).isoformat()
        cleaned[key] = str(value)
    return dict(sorted(cleaned.items()))


def filtered_queryset(kind: str, filters: dict[str, Any] | None) -> QuerySet:
    """The rows an export with these filters holds, in a stable order (id for notifications, seq for audit).

    ``since`` is inclusive and ``until`` exclusive, on ``scheduled_for`` (notifications) or ``at`` (audit);
    ``q`` matches as the admin's search box does (one term)."""
    from notifications.models import NotificationLog

    filters = clean_filters(kind, filters)
    if kind == "notifications":
        qs = NotificationLog.objects.order_by("id")
        time_field = "scheduled_for"
        exact = {
            "status": "status",
            "reason": "reason",
            "channel": "channel",
            "kind": "kind",
            "customer_ref": "customer__ref",
        }
    else:
        qs = AuditEvent.objects.order_by("seq")
        time_field = "at"
        exact = {"actor": "actor", "object_type": "object_type", "object_id": "object_id"}
    if "since" in filters:
        qs = qs.filter(**{f"{time_field}__gte": _parse_moment(filters["since"])})
    if "until" in filters:
        qs = qs.filter(**{f"{time_field}__lt": _parse_moment(filters["until"])})
    for key, lookup in exact.items():
        if key in filters:
            qs = qs.filter(**{lookup: filters[key]})
    if kind == "notifications":
        if "loan_ref" in filters:
            qs = qs.filter(loan_refs__contains=filters["loan_ref"])
        if "q" in filters:
            qs = qs.filter(Q(customer__ref__iexact=filters["q"]) | Q(loan_refs__contains=filters["q"]))
    else:
        if "action_prefix" in filters:
            qs = qs.filter(action__startswith=filters["action_prefix"])
        if "q" in filters:
            qs = qs.filter(Q(object_id__iexact=filters["q"]) | Q(action__istartswith=filters["q"]))
    return qs


def _moment(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value else None


# PostgreSQL spells the instant in UTC itself, always with six fraction digits (psycopg's datetime loader, which
# Django wraps in Python, would otherwise build every time as a datetime first).
_PG_UTC_ISO = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"


def _time_reading(connection) -> tuple[Callable[[str], Any] | None, Callable[[Any], str | None]]:
    """How an export reads a time column: what to select instead of the column (None: the column), and how
    what is read becomes UTC ISO-8601 text, exactly as ``_moment`` spells it.

    SQLite's column is read as the text Django stored, a naive UTC time ``YYYY-MM-DD HH:MM:SS[.ffffff]``
    (``str(datetime)``) and rearranged; any other text (another time zone, another spelling) goes through
    Django's own converter. PostgreSQL's ``to_char`` text drops a zero fraction, as ``isoformat`` does."""
    if connection.vendor == "postgresql":

        def read_pg(value: Any) -> str | None:
            if value is None:
                return None
            return (value[:-7] if value.endswith(".000000") else value) + "+00:00"

        return (lambda name: Func(F(name), template=_PG_UTC_ISO, output_field=TextField())), read_pg
    if connection.vendor != "sqlite":
        return None, _moment
    utc = connection.timezone_name == "UTC"
    convert = connection.ops.convert_datetimefield_value

    def read_sqlite(value: Any) -> str | None:
        if value is None:
            return None
        if (
            utc
            and value.__class__ is str
            and (len(value) == 19 or (len(value) == 26 and value[19] == "." and value[20:] != "000000"))
            and value[4:17:3] == "-- ::"  # value[4], [7], [10], [13], [16]
        ):
            return value[:10] + "T" + value[11:] + "+00:00"
        return _moment(convert(value, None, connection))

    return (lambda name: Cast(name, TextField())), read_sqlite


def _raw_batches(qs: QuerySet) -> Iterator[list[tuple]]:
    """The rows of a ``values_list`` query as the database driver returns them, a chunk at a time: what
    ``iterator(chunk_size=CHUNK_SIZE)`` reads (a server-side cursor on PostgreSQL), without Django's per-value
    converters (the caller converts what needs it)."""
    from django.db.models.sql.constants import MULTI

    chunked = not connections[qs.db].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    compiler = qs.query.get_compiler(using=qs.db)
    yield from compiler.execute_sql(MULTI, chunked_fetch=chunked, chunk_size=CHUNK_SIZE)


_TIME_COLUMNS = ("scheduled_for", "sent_at")


def notification_batches(qs: QuerySet, *, masked: bool, escape: bool = False) -> Iterator[list[tuple]]:
    """The notification rows (tuples in ``NOTIFICATION_COLUMNS`` order), masked if asked, a chunk at a time.

    The hot loop of every notification export (millions of rows): raw driver rows, positional access, one
    pass of ``mask_customer_text`` per subject and body. With ``escape`` (spreadsheet formats), every text
    cell a spreadsheet would run is escaped as ``_cell`` does, after masking: the destination on its own (a
    phone starts with "+"), then one look at the first characters of the other text cells (all but the times,
    which start with a digit), and ``_cell`` for the rare row that holds one."""
    select_time, moment = _time_reading(connections[qs.db])
    fields = _NOTIFICATION_FIELDS
    if select_time is not None:
        qs = qs.annotate(**{f"{name}_text": select_time(name) for name in _TIME_COLUMNS})
        fields = tuple(f"{f}_text" if f in _TIME_COLUMNS else f for f in fields)
    for rows in _raw_batches(qs.values_list(*fields)):
        batch = []
        append = batch.append
        for (
            pk,
            customer_ref,
            customer_name,
            loan_refs,
            channel,
            kind,
            status,
            reason,
            scheduled_for,
            sent_at,
            destination,
            subject,
            body,
            attempts,
            provider_message_id,
            phone,
            email,
        ) in rows:
            if masked:
                phone, email = phone or "", email or ""
                subject = mask_customer_text(subject, customer_name or "", phone, email) if subject else ""
                body = mask_customer_text(body, customer_name or "", phone, email) if body else ""
                customer_name = mask_name(customer_name or "")
                destination = mask_destination(destination or "")
            if escape and destination[:1] in _FORMULA_FIRST:
                destination = "'" + destination  # most phone destinations: "+86..."
            row = (
                pk,
                customer_ref,
                customer_name,
                loan_refs,
                channel,
                kind,
                status,
                reason,
                moment(scheduled_for),
                moment(sent_at),
                destination,
                subject,
                body,
                attempts,
                provider_message_id,
            )
            if escape and not _FORMULA_FIRST.isdisjoint(
                (
                    customer_ref[:1],
                    customer_name[:1],
                    loan_refs[:1],
                    channel[:1],
                    kind[:1],
                    status[:1],
                    reason[:1],
                    subject[:1],
                    body[:1],
                    provider_message_id[:1],
                )
            ):
                row = tuple(_cell(v) if v.__class__ is str else v for v in row)
            append(row)
        yield batch


def audit_batches(qs: QuerySet, *, masked: bool) -> Iterator[list[tuple]]:
    """The audit rows (tuples in ``AUDIT_COLUMNS`` order), masked if asked, a chunk at a time."""
    batch: list[tuple] = []
    for seq, at, actor, action, object_type, object_id, before, after, prev_hash, hash_ in qs.values_list(
        *AUDIT_COLUMNS
    ).iterator(chunk_size=CHUNK_SIZE):
        if masked:
            before, after = mask_value(before), mask_value(after)
        batch.append(
            (seq, _moment(at), actor, action, object_type, object_id, before, after, prev_hash, hash_)
        )
        if len(batch) == CHUNK_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


_FORMULA_FIRST = frozenset(FORMULA_PREFIXES)


def _cell(value: Any) -> Any:
    """A value as a flat spreadsheet cell: JSON text for objects, empty for nothing, escaped text."""
    cls = value.__class__
    if cls is str:  # the common case first: it runs for most cells of millions of rows
        return "'" + value if value and value[0] in _FORMULA_FIRST else value
    if cls is int:
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    if isinstance(value, bool):
        value = str(value).lower()
    return escape_formula(value)


class _Lines(list):
    """Where ``csv.writer`` writes: each row's line appended (``write`` is ``list.append``, no Python call)."""

    write = list.append


class _CsvWriter:
    """CSV in UTF-8 with a byte-order mark, written a batch at a time and hashed as it is written.

    ``plain`` rows (only text, integers and None, already escaped: ``notification_batches``) are written as
    they are; other rows (audit: JSON values, booleans) go cell by cell through ``_cell``."""

    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        self.fh = path.open("wb")
        self.digest = hashlib.sha256()
        self.plain = plain
        self.lines = _Lines()
        self.writer = csv.writer(self.lines)
        # The byte-order mark: Excel opens Chinese names correctly only with it.
        self._emit(codecs.BOM_UTF8)
        self.writer.writerow(columns)
        self._emit("".join(self.lines).encode("utf-8"))

    def _emit(self, data: bytes) -> None:
        self.digest.update(data)
        self.fh.write(data)

    def write_batch(self, rows: list[tuple]) -> None:
        lines = self.lines
        lines.clear()
        if self.plain:
            self.writer.writerows(rows)
        else:
            self.writer.writerows([[_cell(v) for v in row] for row in rows])
        self._emit("".join(lines).encode("utf-8"))

    def sha256(self) -> str | None:
        return self.digest.hexdigest()

    def close(self) -> None:
        self.fh.close()


class _XlsxWriter:
    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        import xlsxwriter

        self.workbook = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self.sheet = self.workbook.add_worksheet("export")
        for col, name in enumerate(columns):
            self.sheet.write_string(0, col, name)
        self.row = 1

    def write_batch(self, rows: list[tuple]) -> None:
        for row in rows:
            for col, raw in enumerate(row):
                value = _cell(raw)
                if isinstance(value, int | float):
                    self.sheet.write_number(self.row, col, value)
                else:
                    self.sheet.write_string(self.row, col, str(value)[:XLSX_MAX_CELL])
            self.row += 1

    def sha256(self) -> str | None:
        return None  # hashed from the file once it is complete

    def close(self) -> None:
        self.workbook.close()


class _JsonWriter:
    def __init__(self, path: Path, columns: tuple[str, ...], *, plain: bool = False):
        self.fh = path.open("w", encoding="utf-8")
        self.fh.write("[")
        self.columns = columns
        self.first = True

    def write_batch(self, rows: list[tuple]) -> None:
        for row in rows:
            self.fh.write("\n" if self.first else ",\n")
            self.fh.write(
                json.dumps(
                    dict(zip(self.columns, row, strict=True)), ensure_ascii=False, cls=DjangoJSONEncoder
                )
            )
            self.first = False

    def sha256(self) -> str | None:
        return None

    def close(self) -> None:
        self.fh.write("\n]\n")
        self.fh.close()


WRITERS = {"csv": _CsvWriter, "xlsx": _XlsxWriter, "json": _JsonWriter}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


@dataclass
class ExportResult:
    path: Path
    rows: int
    sha256: str
    manifest_path: Path
    manifest_sha256: str
    manifest: dict[str, Any] = field(default_factory=dict)


def export_to_file(
    kind: str,
    fmt: str,
    output: Path | str,
    *,
    filters: dict[str, Any] | None = None,
    masked: bool = True,
    user=None,
    generated_by: str = "",
    progress: Callable[[int], None] | None = None,
    job_id: int | None = None,
) -> ExportResult:
    """Write the ``kind`` export (``notifications`` or ``audit``) in ``fmt`` to ``output`` and its manifest
    beside it, then record ``backoffice.export.completed`` (user, filters, manifest hash) in the audit trail.

    Personal data is masked unless ``masked`` is false. The file appears only when complete (written under a
    temporary name, then renamed). ``progress(rows_written)`` is called after every chunk. Raises ExportError
    on an unknown kind, format or filter, and OSError when the file cannot be written."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format “{fmt}”: use {', '.join(FORMATS)}.")
    filters = clean_filters(kind, filters)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = COLUMNS[kind]
    qs = filtered_queryset(kind, filters)
    if kind == "notifications":
        # JSON is not a spreadsheet: its values are not escaped.
        batches = notification_batches(qs, masked=masked, escape=fmt != "json")
    else:
        batches = audit_batches(qs, masked=masked)
    partial = output.with_name(f".{output.name}.partial")
    create_private(partial)  # the writers (and XlsxWriter) open it again: its mode stays
    # Notification rows hold only text, integers and None, escaped (the CSV writer's fast path).
    writer = WRITERS[fmt](partial, columns, plain=kind == "notifications")
    count, last_seq = 0, None
    try:
        for batch in batches:
            writer.write_batch(batch)
            count += len(batch)
            if kind == "audit" and batch:
                last_seq = batch[-1][0]
            if progress is not None and len(batch) == CHUNK_SIZE:
                progress(count)
        digest = writer.sha256()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, output)
    if progress is not None:
        progress(count)
    digest = digest or file_sha256(output)
    who = generated_by or (user.get_username() if user is not None else _command_line_user())
    manifest = {
        "file": output.name,
        "kind": kind,
        "format": fmt,
        "rows": count,
        "sha256": digest,
        "filters": filters,
        "columns": list(columns),
        "masked": masked,
        "generated_at": timezone.now().astimezone(dt.UTC).isoformat(),
        "generated_by": who,
    }
    if kind == "audit":
        # The export's own completion event comes after this seq: an audit export never contains itself.
        manifest["through_seq"] = last_seq
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode(
        "utf-8"
    )
    mpath = manifest_path_for(output)
    write_private(mpath, manifest_bytes)
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    log_event(
        "backoffice.export.completed",
        actor=user if user is not None else who,
        object_type="core.ExportJob" if job_id else "",
        object_id=str(job_id or ""),
        after={
            "kind": kind,
            "format": fmt,
            "filters": filters,
            "rows": count,
            "masked": masked,
            "file": output.name,
            "sha256": digest,
            "manifest_sha256": manifest_sha,
            "generated_by": who,
        },
    )
    return ExportResult(output, count, digest, mpath, manifest_sha, manifest)


def _command_line_user() -> str:
    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):
        return "command line"


# --- Exports asked from the admin -------------------------------------------------------------------------


def background_threshold() -> int:
    return int(getattr(settings, "EXPORT_BACKGROUND_THRESHOLD", 20000))


def may_export(user, kind: str) -> bool:
    from .models import EXPORT_PERMISSIONS

    return bool(user is not None and user.is_active and user.has_perm(EXPORT_PERMISSIONS[kind]))


def start_export(user, kind: str, fmt: str, filters: dict[str, Any] | None) -> ExportJob:
    """Create the export job of ``user``; run it now when it is small, else queue it as a django-q2 task.

    Masked unless the user may see personal data. Raises PermissionError when the user may not export this
    kind, ExportError on a bad format or filter."""
    if not may_export(user, kind):
        raise PermissionError(f"{user} may not export the {kind}.")
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format “{fmt}”.")
    filters = clean_filters(kind, filters)
    threshold = background_threshold()
    estimate = filtered_queryset(kind, filters)[: threshold + 1].count()
    job = ExportJob.objects.create(
        user=user,
        kind=kind,
        format=fmt,
        filters=filters,
        is_masked=not can_see_personal_data(user),
        total_estimate=estimate,
    )
    if estimate <= threshold:
        run_export_job(job.pk)
        job.refresh_from_db()
    else:
        from django_q.tasks import async_task

        async_task("core.exports.run_export_job", job.pk, task_name=f"export-{job.pk}", group="exports")
    return job


def job_file_path(job: ExportJob) -> Path:
    return Path(settings.EXPORT_ROOT) / job.file_path


def run_export_job(job_id: int) -> dict[str, Any]:
    """Run one queued export job (the django-q2 task). Safe to run twice: only a queued job is claimed, so a
    second run returns without writing; a job left running by a worker killed at the cluster's timeout is
    claimed again by the retry. A failure is stored on the job (status ``failed``) and logged."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=int(settings.Q_CLUSTER.get("timeout", 900)))
    claimable = Q(status=ExportJob.Status.QUEUED) | Q(status=ExportJob.Status.RUNNING, started_at__lt=stale)
    claimed = ExportJob.objects.filter(claimable, pk=job_id).update(
        status=ExportJob.Status.RUNNING, started_at=now, rows_done=0
    )
    if not claimed:
        return {"job": job_id, "skipped": "not queued"}
    job = ExportJob.objects.select_related("user").get(pk=job_id)
    if job.total_estimate is None or job.total_estimate > background_threshold():
        total = filtered_queryset(job.kind, job.filters).count()
        ExportJob.objects.filter(pk=job_id).update(total_estimate=total)
    masked = job.is_masked or not can_see_personal_data(job.user)
    relative = Path(f"{job.kind}-{now:%Y%m%dT%H%M%S}-{job.pk}.{job.format}")
    try:
        result = export_to_file(
            job.kind,
            job.format,
            Path(settings.EXPORT_ROOT) / relative,
            filters=job.filters,
            masked=masked,
            user=job.user,
            progress=lambda n: ExportJob.objects.filter(pk=job_id).update(rows_done=n),
            job_id=job.pk,
        )
    except Exception as exc:
        logger.exception("export job %s failed", job_id)
        ExportJob.objects.filter(pk=job_id).update(
            status=ExportJob.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        return {"job": job_id, "failed": str(exc)}
    ExportJob.objects.filter(pk=job_id).update(
        status=ExportJob.Status.DONE,
        rows_done=result.rows,
        is_masked=masked,
        file_path=str(relative),
        file_sha256=result.sha256,
        manifest_sha256=result.manifest_sha256,
        finished_at=timezone.now(),
    )
    return {"job": job_id, "rows": result.rows}


ALL_EXPORTS_PERMISSION = "core.access_all_exports"


def may_see_all_exports(user) -> bool:
    """Whether ``user`` sees every user's exports in the list (else only their own)."""
    return bool(user is not None and user.is_active and user.has_perm(ALL_EXPORTS_PERMISSION))


def may_download(user, job: ExportJob) -> bool:
    """The owner, or a user granted ``core.access_all_exports`` (and, for an unmasked file, the right to
    see personal data). Being allowed to export the same kind is not enough: the file is someone else's."""
    if user is None or not user.is_active:
        return False
    if job.user_id == user.pk:
        return True
    return may_see_all_exports(user) and (job.is_masked or can_see_personal_data(user))


__all__ = [
    "AUDIT_COLUMNS",
    "NOTIFICATION_COLUMNS",
    "ExportError",
    "ExportResult",
    "clean_filters",
    "escape_formula",
    "export_to_file",
    "filtered_queryset",
    "may_download",
    "may_export",
    "may_see_all_exports",
    "run_export_job",
    "start_export",
]
