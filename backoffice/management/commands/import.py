"""``manage.py import <resource> <file> [--format CSV|XLSX] [--dry-run] --noinput``

Replaces django-import-export's command of the same name (this app comes first in INSTALLED_APPS): that one
does not report invalid rows at all and prints no column. Here every bad cell is printed as
``line 7, column phone: “12ab” is not a phone number.``, nothing of the file is saved, and the exit status
is 1. A file that cannot be read (not CSV or XLSX, not UTF-8 or GB18030 text) or whose header is not the
resource's is one clear error, never a traceback. A successful import writes ``backoffice.import.completed``
(file name, SHA-256, row counts) to the audit trail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from import_export.command_utils import get_resource_class
from import_export.results import RowResult

from core.imports.files import FileReadError, read_dataset
from core.imports.resource import BookResource, file_sha256
from core.imports.rows import open_rows


class Command(BaseCommand):
    help = (
        "Import a CSV or XLSX file with a resource (e.g. loans.resources.CustomerResource); all or nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "resource", help="Dotted path of the resource, e.g. loans.resources.CustomerResource."
        )
        parser.add_argument("import_file_name", help='The file to import ("-" for standard input).')
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )
        parser.add_argument(
            "-n", "--dry-run", action="store_true", help="Check the whole file and save nothing."
        )
        parser.add_argument(
            "--format",
            choices=["CSV", "XLSX", "csv", "xlsx"],
            help="CSV or XLSX (guessed from the file name's extension otherwise).",
        )
        parser.add_argument("--actor", default="command:import", help="Who imports, for the audit trail.")
        parser.add_argument("--raise-errors", action="store_true", help="Raise the first error (debugging).")

    def handle(self, *args, **options):
        file_name = options["import_file_name"]
        if options["interactive"]:
            if input("Are you sure you want to import the data? [yes/no]: ") != "yes":
                raise CommandError("Import cancelled.")

        resource_class = get_resource_class(options["resource"])
        resource = resource_class()
        if file_name == "-":
            raw: bytes | Path = sys.stdin.buffer.read()
        else:
            raw = Path(file_name)
            try:
                with open(raw, "rb") as handle:
                    handle.read(1)
            except OSError as exc:
                raise CommandError(f"Cannot read {file_name}: {exc.strerror}") from exc
        try:
            name = None if file_name == "-" else file_name
            if isinstance(resource, BookResource):  # read as it is imported, a chunk at a time
                dataset = open_rows(raw, options["format"], name)
            else:
                dataset = read_dataset(
                    raw if isinstance(raw, bytes) else raw.read_bytes(), options["format"], name
                )
        except FileReadError as exc:
            raise CommandError(f"{os.path.basename(file_name)}: {exc}") from exc

        result = resource.import_data(
            dataset,
            dry_run=options["dry_run"],
            raise_errors=options["raise_errors"],
            file_name=os.path.basename(file_name),
            file_sha256=file_sha256(raw),
            user=options["actor"],
        )
        if isinstance(resource, BookResource):
            errors = result.book_errors
        else:  # a plain resource: still report validation errors with their line
            errors = [f"line {n + 1}: {e.error}" for n, errs in result.row_errors() for e in errs]
            errors += [f"line {r.number + 1}: {r.error_dict}" for r in result.invalid_rows]
            errors += [f"file: {e.error}" for e in result.base_errors]

        totals = result.totals
        counts = (
            f"{totals[RowResult.IMPORT_TYPE_NEW]} new, {totals[RowResult.IMPORT_TYPE_UPDATE]} updated, "
            f"{totals[RowResult.IMPORT_TYPE_SKIP]} unchanged"
        )
        name = resource._meta.model._meta.verbose_name_plural if resource._meta.model else "rows"
        if errors:
            for line in errors:
                self.stderr.write(self.style.ERROR(line))
            raise CommandError(
                f"{len(errors)} error(s) in {os.path.basename(file_name)}: nothing of this file was saved."
            )
        if options["dry_run"]:
            self.stdout.write(
                self.style.NOTICE(f"Dry run, nothing saved. The file is valid: {counts} {name}.")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {os.path.basename(file_name)}: {counts} {name}."))
