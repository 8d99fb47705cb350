"""Import benchmark: instalments and payments files through `core.imports.resource.run_import`, speed and memory.

    .venv/bin/python bench/imports.py --rows 1000000
    .venv/bin/python bench/imports.py --rows 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench
    .venv/bin/python bench/imports.py --rows 1000000 --imports-only   # the two imports alone, for their memory
    .venv/bin/python bench/imports.py --rows 1000000 --imports-only --format xlsx   # the same files as XLSX

A book of ``--rows / 4`` loans without instalments is made; then, each in a process of its own (its peak RSS is its own):

1. a CSV of ``--rows`` new instalments (4 a loan) is imported, as a background import job runs it: from the
   stored file's path, all or nothing, each row validated, the audit event written;
2. a CSV of ``--rows`` payments (one a instalment, paying it) is imported: the payments written, then every loan
   re-allocated by the waterfall (allocations, paid instalments, paid-off loans, their audit events, the cure);
3. the same payments file again: every row an update that changes nothing.

Floors, measured in the same run: reading the file alone (Python's csv module over the same file, in a process
of its own: its time and peak RSS), and ``bulk_create`` of the same rows (rolled back). Targets: each import at
least 0.25x the bulk_create floor's rate, a peak RSS under 300 MB for each import, payments at no less than half
the rate of instalments, the re-import at least as fast as the first payments import.

``--format xlsx`` writes the two files as XLSX workbooks (openpyxl's write-only mode, a row at a time) and imports
those; the floor of reading the file alone is then openpyxl's read-only mode over the same workbook.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from decimal import Decimal

from common import ROOT, Report, parse_args, setup_django

RSS_LIMIT_MB = 300
FILES = ROOT / "var" / "bench"
PER_LOAN = 4


def _extra(parser) -> None:
    parser.add_argument("--step", default="", help=argparse_suppress())
    parser.add_argument(
        "--format", default="csv", choices=("csv", "xlsx"), help="the files' format (default csv)"
    )
    parser.add_argument(
        "--imports-only",
        action="store_true",
        help="only the two imports and their peak RSS (no bulk_create floors, no second payments import): "
        "the 1,000,000-row memory run",
    )


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _files(rows: int, fmt: str = "csv") -> dict[str, os.PathLike]:
    tag = "postgres" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    return {
        "instalments": FILES / f"instalments-{rows}-{tag}.{fmt}",
        "payments": FILES / f"payments-{rows}-{tag}.{fmt}",
    }


def _instalment_rows(rows: int):
    yield ["loan_ref", "seq", "due_date", "amount_due"]
    for i in range(rows):
        seq = i % PER_LOAN + 1
        due = dt.date(2026, 1, 15) + dt.timedelta(days=30 * seq)
        yield [f"BL{i // PER_LOAN + 1:09d}", seq, due.isoformat(), "250.00"]


def _payment_rows(rows: int):
    yield ["ref", "loan_ref", "installment_seq", "amount", "received_at", "source"]
    for i in range(rows):
        received = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i)
        yield [
            f"BP{i + 1:09d}",
            f"BL{i // PER_LOAN + 1:09d}",
            "",
            "250.00",
            received.isoformat(),
            "bank_transfer",
        ]


def _write_files(rows: int, fmt: str = "csv") -> None:
    """The two files, written a row at a time (the loans are ``BL000000001``... as ``book.generate`` names them);
    an XLSX workbook through openpyxl's write-only mode (cells as the CSV has them: text, the seq a number)."""
    FILES.mkdir(parents=True, exist_ok=True)
    paths = _files(rows, fmt)
    for kind, make in (("instalments", _instalment_rows), ("payments", _payment_rows)):
        if fmt == "xlsx":
            from openpyxl import Workbook

            book = Workbook(write_only=True)
            sheet = book.create_sheet()
            for row in make(rows):
                sheet.append(row)
            book.save(paths[kind])
            continue
        with open(paths[kind], "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            for row in make(rows):
                writer.writerow(row)


# --- the steps, each in a process of its own ------------------------------------------------------------------
def step_read(rows: int, kind: str, fmt: str) -> dict:
    start = time.perf_counter()
    if fmt == "xlsx":
        from openpyxl import load_workbook

        book = load_workbook(_files(rows, fmt)[kind], read_only=True)
        count = sum(1 for _row in book.worksheets[0].iter_rows(values_only=True)) - 1
        book.close()
    else:
        with open(_files(rows, fmt)[kind], newline="", encoding="utf-8") as handle:
            count = sum(1 for _row in csv.reader(handle)) - 1
    return {"seconds": time.perf_counter() - start, "rows": count}


def step_floor(rows: int, kind: str, fmt: str) -> dict:
    """bulk_create of the same rows in batches of 2,000 (made a batch at a time), rolled back."""
    from django.db import transaction

    from loans.models import Installment, Loan, Payment

    loan_ids = list(Loan.objects.order_by("ref").values_list("id", flat=True)[: -(-rows // PER_LOAN)])
    at = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
    start = time.perf_counter()
    with transaction.atomic():
        for first in range(0, rows, 2000):
            if kind == "instalments":
                objs = [
                    Installment(
                        loan_id=loan_ids[i // PER_LOAN],
                        seq=i % PER_LOAN + 101,
                        due_date=dt.date(2026, 2, 14),
                        amount_due=Decimal("250.00"),
                    )
                    for i in range(first, min(first + 2000, rows))
                ]
                Installment.objects.bulk_create(objs)
            else:
                objs = [
                    Payment(
                        ref=f"FLOOR{i:09d}",
                        loan_id=loan_ids[i // PER_LOAN],
                        amount=Decimal("250.00"),
                        received_at=at,
                        source="bank_transfer",
                    )
                    for i in range(first, min(first + 2000, rows))
                ]
                Payment.objects.bulk_create(objs)
        transaction.set_rollback(True)
    return {"seconds": time.perf_counter() - start}


def step_import(rows: int, kind: str, fmt: str) -> dict:
    from core.imports.resource import run_import
    from loans.resources import InstallmentResource, PaymentResource

    path = _files(rows, fmt)["instalments" if kind == "instalments" else "payments"]
    resource = InstallmentResource() if kind == "instalments" else PaymentResource()
    start = time.perf_counter()
    result, errors = run_import(resource, path, format_name=fmt.upper(), file_name=path.name)
    return {
        "seconds": time.perf_counter() - start,
        "errors": errors[:3],
        "totals": {k: v for k, v in result.totals.items() if v},
    }


STEPS = {"read": step_read, "floor": step_floor, "import": step_import}


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM: its own, not the parent's it was forked from)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(args) -> int:
    name, kind = args.step.split(":")
    if name != "read":
        setup_django(args.database_url)
    else:
        os.environ["DATABASE_URL"] = args.database_url or "sqlite"
    outcome = STEPS[name](args.rows, kind, args.format)
    outcome["rss_mb"] = peak_rss_mb()
    print(json.dumps(outcome))
    return 0


def run_step(args, name: str, kind: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--rows",
        str(args.rows),
        "--step",
        f"{name}:{kind}",
        "--format",
        args.format,
    ]
    if args.database_url:
        command += ["--database-url", args.database_url]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"step {name}:{kind} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    # As in production: with DEBUG on, Django keeps the SQL of the last 9,000 queries of the process (the
    # import's bulk inserts among them), which is neither the import's memory nor its time.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
    args = parse_args(__doc__.splitlines()[0], default_rows=100_000, extra=_extra)
    if args.step:
        return child(args)
    setup_django(args.database_url)
    import book

    n_loans = -(-args.rows // PER_LOAN)
    book.configure()
    book.wipe()
    book.generate(n_loans, dt.date.today(), installments=False)  # the import creates them
    _write_files(args.rows, args.format)
    load = os.getloadavg()

    report = Report(f"Import of {args.rows:,} instalments and {args.rows:,} payments ({args.format.upper()})")
    figures = {}
    for kind in ("instalments", "payments"):
        read = run_step(args, "read", kind)
        floor = None if args.imports_only else run_step(args, "floor", kind)
        figure = run_step(args, "import", kind)
        report.note(f"{kind}: rows {figure['totals']}; errors {figure['errors']}")
        report.failed |= bool(figure["errors"])
        if floor is not None:
            report.ratio(
                f"{kind} import",
                figure["seconds"],
                "bulk_create of the same rows",
                floor["seconds"],
                at_least_rate=0.25,
                rows=args.rows,
            )
        report.note(
            f"{kind}: {figure['seconds']:.1f}s, {args.rows / figure['seconds']:,.0f} rows/s; peak RSS "
            f"{figure['rss_mb']:.0f} MB (limit {RSS_LIMIT_MB} MB) "
            f"{'OK' if figure['rss_mb'] < RSS_LIMIT_MB else 'OVER'}; floor, reading the file alone: "
            f"{read['rss_mb']:.0f} MB in {read['seconds']:.1f}s"
            + ("" if floor is None else f"; bulk_create floor's process {floor['rss_mb']:.0f} MB")
        )
        report.failed |= figure["rss_mb"] >= RSS_LIMIT_MB
        figures[kind] = figure
    if args.imports_only:
        report.ratio(
            "payments import",
            figures["payments"]["seconds"],
            "instalments import",
            figures["instalments"]["seconds"],
            at_least_rate=0.5,
            rows=args.rows,
        )
        _count_rows(report, args.rows)
        report.note(f"load average when the run started: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        report.print()
        return 1 if report.failed else 0
    again = run_step(args, "import", "payments-again")
    report.note(f"payments again: rows {again['totals']}; errors {again['errors']}")
    report.note(
        f"payments again: {again['seconds']:.1f}s, {args.rows / again['seconds']:,.0f} rows/s, peak RSS "
        f"{again['rss_mb']:.0f} MB {'OK' if again['rss_mb'] < RSS_LIMIT_MB else 'OVER'}"
    )
    report.failed |= again["rss_mb"] >= RSS_LIMIT_MB or bool(again["errors"])
    report.ratio(
        "payments import",
        figures["payments"]["seconds"],
        "instalments import",
        figures["instalments"]["seconds"],
        at_least_rate=0.5,
        rows=args.rows,
    )
    report.ratio(
        "payments again (every row unchanged)",
        again["seconds"],
        "first payments import",
        figures["payments"]["seconds"],
        at_least_rate=1.0,
        rows=args.rows,
    )
    _count_rows(report, args.rows)
    report.note(f"load average when the run started: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    report.print()
    return 1 if report.failed else 0


def _count_rows(report, rows: int) -> None:
    from loans.models import Installment, Loan, Payment

    imported = Installment.objects.count(), Payment.objects.count()
    report.note(
        f"in the database: {imported[0]:,} instalments, {imported[1]:,} payments, {Loan.objects.count():,} loans"
    )
    report.failed |= imported != (rows, rows)


if __name__ == "__main__":
    raise SystemExit(main())
