"""``manage.py archive_month audit YYYY-MM --output FILE``: move an old month of the audit trail out of the
database (PostgreSQL, where the trail is partitioned by month) into an archive file and its manifest, which
``verify_audit`` goes on checking."""

from __future__ import annotations

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.audit_archive import ArchiveError, archive_audit_month, manifest_path
from core.partitions import parse_month


class Command(BaseCommand):
    help = (
        "Write a month of the audit trail (a month before the current one) to FILE, one event a line in "
        "sequence order, and FILE.manifest.json (rows, SHA-256, first and last seq and hashes); register and "
        "audit it, then detach and drop the month's partition. PostgreSQL only."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["audit"], help="What to archive: the audit trail.")
        parser.add_argument("month", help="The month, YYYY-MM (UTC).")
        parser.add_argument("--output", required=True, help="The archive file to write (must not exist).")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        try:
            month = parse_month(options["month"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        output = Path(options["output"])
        try:
            manifest = archive_audit_month(
                month,
                output,
                now=timezone.now(),
                actor=f"command:archive_month ({getpass.getuser()})",
                using=options["database"],
            )
        except ArchiveError as exc:
            raise CommandError(f"Nothing archived: {exc}.", returncode=2) from exc
        span = (
            f"events seq {manifest['first_seq']} to {manifest['last_seq']}"
            if manifest["rows"]
            else "no events"
        )
        self.stdout.write(
            f"Archived the audit trail of {manifest['month']}: {manifest['rows']} events ({span}) to "
            f"{output} (SHA-256 {manifest['sha256']}), manifest {manifest_path(output).name}; its partition "
            "was dropped."
        )
