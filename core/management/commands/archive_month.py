"""``manage.py archive_month audit|notifications YYYY-MM --output FILE``: move an old month of the audit trail
(which ``verify_audit`` goes on checking through the file) or of the notification log out of the database
(PostgreSQL, where they are partitioned by month) into an archive file and its manifest."""

from __future__ import annotations

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core.audit_archive import ArchiveError, archive_audit_month, manifest_path
from core.log_archive import archivable_kinds, archive_log_month
from core.partitions import parse_month


class Command(BaseCommand):
    help = (
        "Write a month (before the current one) of the audit trail (one event a line in sequence order) or of "
        "the notification log (its contacts and their instalment items) to FILE, and FILE.manifest.json (rows, "
        "SHA-256, first and last seq and hashes or ids); register and audit it, then detach and drop the "
        "month's partition. PostgreSQL only."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "kind", choices=["audit", *archivable_kinds()], help="What to archive: the audit trail or a log."
        )
        parser.add_argument("month", help="The month, YYYY-MM (UTC).")
        parser.add_argument("--output", required=True, help="The archive file to write (must not exist).")
        parser.add_argument("--database", default="default")

    def handle(self, *args, **options):
        try:
            month = parse_month(options["month"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        output = Path(options["output"])
        now, actor = timezone.now(), f"command:archive_month ({getpass.getuser()})"
        try:
            if options["kind"] == "audit":
                manifest = archive_audit_month(month, output, now=now, actor=actor, using=options["database"])
            else:
                manifest = archive_log_month(
                    options["kind"], month, output, now=now, actor=actor, using=options["database"]
                )
        except ArchiveError as exc:
            raise CommandError(f"Nothing archived: {exc}.", returncode=2) from exc
        if options["kind"] == "audit":
            what = f"{manifest['rows']} events" + (
                f" (seq {manifest['first_seq']} to {manifest['last_seq']})" if manifest["rows"] else ""
            )
        else:
            what = ", ".join(f"{count} rows of {table}" for table, count in manifest["rows"].items())
        self.stdout.write(
            f"Archived the {options['kind']} of {manifest['month']}: {what} to {output} (SHA-256 "
            f"{manifest['sha256']}), manifest {manifest_path(output).name}; its partition was dropped."
        )
