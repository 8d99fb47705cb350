"""Import benchmark: instalments through `loans.resources.InstallmentResource` against a bulk_create floor.

    .venv/bin/python bench/imports.py --rows 100000
    .venv/bin/python bench/imports.py --rows 100000 --database-url postgres://postgres@127.0.0.1:5432/bench

Figure: importing a CSV of ``--rows`` new instalments (per-row validation, all-or-nothing) through
`core.imports.resource.run_import`, as a background import job does, from the file's bytes. Floor: bulk_create
of the same instalments into the same table (rolled back). Target: at least 0.25x the floor's rate.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

from common import ROOT, Report, parse_args, setup_django


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], default_rows=100_000)
    setup_django(args.database_url)
    import tablib
    from django.db import transaction

    import book
    from core.imports.resource import run_import
    from loans.models import Installment, Loan
    from loans.resources import InstallmentResource

    per_loan = 4
    n_loans = -(-args.rows // per_loan)
    book.configure()
    book.wipe()
    book.generate(n_loans, dt.date.today())
    Installment.objects.all().delete()  # the import creates them
    loans = list(Loan.objects.order_by("id").values_list("id", "ref")[:n_loans])

    header = ["loan_ref", "seq", "due_date", "amount_due"]
    rows = []
    for i in range(args.rows):
        loan_id, ref = loans[i // per_loan]
        seq = i % per_loan + 1
        rows.append((ref, seq, (dt.date(2026, 1, 15) + dt.timedelta(days=30 * seq)).isoformat(), "250.00"))
    csv_path = ROOT / "var" / "bench" / "installments.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(tablib.Dataset(*rows, headers=header).export("csv"), encoding="utf-8")

    # Floor: bulk_create of the same rows, rolled back.
    objs = [
        Installment(
            loan_id=loans[i // per_loan][0],
            seq=i % per_loan + 1,
            due_date=dt.date(2026, 2, 14),
            amount_due=Decimal("250.00"),
        )
        for i in range(args.rows)
    ]
    start = time.perf_counter()
    with transaction.atomic():
        Installment.objects.bulk_create(objs, batch_size=2000)
        transaction.set_rollback(True)
    floor = time.perf_counter() - start

    # The import as a background import job runs it: run_import reads the file's bytes (the CSV parsing is
    # timed too), imports all or nothing and writes the audit event.
    data = csv_path.read_bytes()
    resource = InstallmentResource()
    start = time.perf_counter()
    _result, errors = run_import(resource, data, format_name="CSV", file_name=csv_path.name)
    seconds = time.perf_counter() - start
    imported = Installment.objects.count()

    report = Report(f"Import of {args.rows:,} instalments")
    report.note(f"rows imported: {imported:,}; errors: {len(errors)} {errors[:3]}")
    # The fast path (no per-row django-import-export machinery) is what a real import of this file takes.
    fast = resource.can_import_fast(tablib.Dataset(headers=header))
    report.note(f"path: {'BookResource.import_rows_fast' if fast else 'django-import-export row loop'}")
    report.failed |= bool(errors)
    report.failed |= imported != args.rows
    report.ratio(
        "InstallmentResource import",
        seconds,
        "bulk_create of the same rows",
        floor,
        at_least_rate=0.25,
        rows=args.rows,
    )
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
