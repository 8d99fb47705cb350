"""Writing one export to a file: ``export_to_file``, behind ``manage.py export_log``, the admin's "Export" button
and the background task. The file appears only when complete; beside ``FILE`` it writes ``FILE.manifest.json``
(row count, SHA-256 of FILE, filters, format, columns, masking, time and who) and then records
``backoffice.export.completed`` in the audit trail. That event is written after the export's snapshot was
read, so an export of the audit trail never contains its own export event (the next one will)."""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.utils import timezone

from ..audit import log_event
from ..models import ExportJob
from ..private_files import create_private, write_private
from .kinds import ExportError, clean_filters, export_kind
from .rows import CHUNK_SIZE
from .writers import FORMATS, WRITERS, file_sha256


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
    """Write the ``kind`` export (a registered kind, see ``kinds``) in ``fmt`` to ``output`` and its manifest
    beside it, then record ``backoffice.export.completed`` (user, filters, manifest hash) in the audit trail.

    Personal data is masked unless ``masked`` is false. The file appears only when complete (written under a
    temporary name, then renamed). ``progress(rows_written)`` is called after every chunk. Raises ExportError
    on an unknown kind, format or filter, and OSError when the file cannot be written."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format “{fmt}”: use {', '.join(FORMATS)}.")
    filters = clean_filters(kind, filters)
    export = export_kind(kind)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = export.columns
    batches = export.batches(export.queryset(filters), masked=masked, fmt=fmt)
    partial = output.with_name(f".{output.name}.partial")
    create_private(partial)  # the writers (and XlsxWriter) open it again: its mode stays
    writer = WRITERS[fmt](partial, columns, plain=export.plain)
    count, last_seq = 0, None
    try:
        for batch in batches:
            writer.write_batch(batch)
            count += len(batch)
            if export.through_seq and batch:
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
    if export.through_seq:
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
        object_type=ExportJob._meta.label if job_id else "",
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
