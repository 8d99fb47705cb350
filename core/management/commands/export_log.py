"""``manage.py export_log notifications|audit``: a streamed, masked compliance export with its manifest."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.exports.files import export_to_file
from core.exports.kinds import ExportError, kind_names
from core.exports.writers import FORMATS


class Command(BaseCommand):
    help = (
        "Export the notification log or the audit trail to FILE (CSV, XLSX or JSON) and write "
        "FILE.manifest.json. Names, phones and emails are masked unless --unmasked."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=kind_names())
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--output", required=True, help="The file to write.")
        parser.add_argument(
            "--since", help="ISO-8601 date or time, inclusive (scheduled_for, or at for audit)."
        )
        parser.add_argument("--until", help="ISO-8601 date or time, exclusive.")
        parser.add_argument(
            "--customer",
            metavar="REF",
            help="Only this customer's rows: their contacts, or the audit events about them (their record, "
            "loans, payments, messages, cases, calls and promises).",
        )
        parser.add_argument(
            "--unmasked",
            action="store_true",
            help="Write personal data in clear (for a lawful request only).",
        )

    def handle(self, *args, **options):
        filters = {
            "since": options["since"],
            "until": options["until"],
            "customer_ref": (options["customer"] or "").strip(),
        }
        try:
            result = export_to_file(
                options["kind"],
                options["format"],
                Path(options["output"]),
                filters=filters,
                masked=not options["unmasked"],
            )
        except (ExportError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Exported {result.rows} {options['kind']} rows to {result.path} "
            f"({'masked' if not options['unmasked'] else 'UNMASKED'}; sha256 {result.sha256}); "
            f"manifest {result.manifest_path}"
        )
