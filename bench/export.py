"""Export benchmark: `export_log notifications` to CSV against two floors measured in the same run.

    .venv/bin/python bench/export.py --rows 1000000
    .venv/bin/python bench/export.py --rows 1000000 --database-url postgres://postgres@127.0.0.1:5432/bench

Figures: the product's streamed, masked, escaped export (run as the real command, in its own process, so its peak
memory is its own). Floor 1: a raw ``values_list(...).iterator()`` + ``csv.writer`` loop over the same columns
(target: at least 0.6x its rate). Floor 2: a stock django-import-export ``ModelResource`` export (target: the product
at least 5x its rate; the stock export holds everything in memory, so it runs on at most --stock-rows rows and is
compared by rate). Peak memory of the product's export must stay under 200 MB whatever the row count.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
import time
import uuid

from common import ROOT, Report, parse_args, setup_django

COLUMNS = [
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
]


def fill(rows: int, batch: int = 5000) -> None:
    from django.db import transaction

    import book
    from loans.models import Customer
    from notifications.models import NotificationLog

    if NotificationLog.objects.count() == rows:
        return
    book.wipe()
    book.configure()
    customers = min(max(rows // 20, 100), 50_000)
    base = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    Customer.objects.bulk_create(
        [
            Customer(
                ref=f"EC{i:07d}",
                name=f"王小明{i}" if i % 3 else f"Alice Walker {i}",
                phone=f"+86137{i:08d}",
                email=f"person{i}@example.com",
                timezone="Asia/Shanghai",
            )
            for i in range(customers)
        ],
        batch_size=batch,
    )
    ids = list(Customer.objects.values_list("id", flat=True))
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        with transaction.atomic():
            NotificationLog.objects.bulk_create(
                [
                    NotificationLog(
                        customer_id=ids[(done + i) % len(ids)],
                        channel="sms",
                        kind="pre_due",
                        status="sent",
                        scheduled_for=base + dt.timedelta(seconds=done + i),
                        sent_at=base + dt.timedelta(seconds=done + i),
                        destination=f"+86137{(done + i) % len(ids):08d}",
                        loan_refs=f"BL{done + i:09d}",
                        body=f"王小明您好,您的借款BL{done + i:09d}应还500.00CNY,请致电+8613700000000或邮件pay@example.com",
                        attempts=1,
                        provider_message_id=f"outbox-{done + i}",
                        dedupe_key=f"bench:{done + i}",
                        idempotency_key=uuid.uuid4(),
                    )
                    for i in range(n)
                ],
                batch_size=batch,
            )
        done += n


def vm_hwm_mb(pid: int) -> float:
    """The process's own peak resident memory (VmHWM). Unlike the rusage of a child, it does not carry over
    the memory of the (big) benchmark process the child was forked from."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_child(args: list[str]) -> tuple[float, float, str]:
    """Run a command; return (seconds, its own peak RSS in MB, output)."""
    start = time.perf_counter()
    log = ROOT / "var" / "bench" / "child.log"
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, vm_hwm_mb(proc.pid))
            time.sleep(0.02)
    seconds = time.perf_counter() - start
    output = log.read_text()
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{output}")
    return seconds, peak, output


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        default_rows=1_000_000,
        extra=lambda p: p.add_argument("--stock-rows", type=int, default=100_000),
    )
    setup_django(args.database_url)
    from import_export import resources

    from notifications.models import NotificationLog

    fill(args.rows)
    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)

    # Floor 1: raw iterator + csv.writer.
    start = time.perf_counter()
    with open(out_dir / "floor.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in NotificationLog.objects.order_by("id").values_list(*COLUMNS).iterator(chunk_size=2000):
            writer.writerow(row)
    floor = time.perf_counter() - start

    # The product, as its command, in its own process.
    output = out_dir / "notifications.csv"
    seconds, rss, _ = run_child(
        [
            sys.executable,
            "manage.py",
            "export_log",
            "notifications",
            "--format",
            "csv",
            "--output",
            str(output),
        ]
    )

    # Floor 2: stock django-import-export resource on a slice, compared by rate.
    stock_rows = min(args.stock_rows, args.rows)

    class StockResource(resources.ModelResource):
        class Meta:
            model = NotificationLog

    start = time.perf_counter()
    dataset = StockResource().export(queryset=NotificationLog.objects.order_by("id")[:stock_rows])
    (out_dir / "stock.csv").write_text(dataset.csv, encoding="utf-8")
    stock = time.perf_counter() - start

    report = Report(f"Export of {args.rows:,} notification rows to CSV")
    report.ratio(
        "export_log notifications --format csv",
        seconds,
        "values_list().iterator() + csv.writer",
        floor,
        at_least_rate=0.6,
        rows=args.rows,
    )
    product_rate = args.rows / seconds
    stock_rate = stock_rows / stock
    ok = product_rate >= 5 * stock_rate
    report.note(
        f"vs stock ModelResource export ({stock_rows:,} rows, {stock:.2f}s): {product_rate / stock_rate:.1f}x its rate"
        f" (needs >= 5x) {'OK' if ok else 'UNDER'}"
    )
    report.failed |= not ok
    report.note(
        f"peak memory of the export process: {rss:.0f} MB (limit 200 MB) {'OK' if rss < 200 else 'OVER'}"
    )
    report.failed |= rss >= 200
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
