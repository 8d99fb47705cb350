"""Dispatch benchmark: sending at the provider's speed, against a local SMS gateway answering in 100 ms.

    .venv/bin/python bench/dispatch.py --rows 20000 --database-url postgres://postgres@127.0.0.1:5432/bench_dispatch \\
        --redis-url redis://127.0.0.1:6379/14

Three figures, each against a floor measured in the same run:

1. ``run_jobs`` at 09:00 for ``--rows`` contacts due then (planned by an untimed run at 08:00), sent through
   ``JsonSmsGatewayBackend`` at ``--concurrency``, against the floor: as many POSTs from as many threads over a
   keep-alive pool straight to the same gateway. Target: at least 0.8x the floor's rate.
2. (PostgreSQL and Redis only) two ``qcluster`` processes against one, each with one worker, sending the same
   day enqueued by ``run_jobs --enqueue`` (``--cluster-rows`` contacts, ``--cluster-concurrency`` each), the
   shared rate limit in Redis set far above what they reach. Target: two reach at least 1.8x the rate of one.
3. ``--lag-rows`` contacts planned for 09:00, sent by one ``run_jobs`` at 09:00: the 95th percentile of the time
   between the run's start (the contacts' scheduled moment) and each message reaching the gateway. For reading.

The gateway runs in this process on its own threads (``tests/latency_gateway.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from common import ROOT, Report, parse_args, setup_django, timed

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
SEND_DAY = dt.date(2026, 12, 1)  # a Tuesday, no public holiday
DUE_DAY = SEND_DAY + dt.timedelta(days=3)
PLAN_AT = dt.datetime.combine(SEND_DAY, dt.time(8, 0), tzinfo=SHANGHAI).astimezone(dt.UTC)
SEND_AT = dt.datetime.combine(SEND_DAY, dt.time(9, 0), tzinfo=SHANGHAI).astimezone(dt.UTC)


def extra_args(parser) -> None:
    parser.add_argument("--latency", type=float, default=0.1, help="gateway latency in seconds (default 0.1)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--redis-url", default="", help="Redis for the shared rate limit and the broker")
    parser.add_argument("--cluster-rows", type=int, default=6000, help="contacts of the cluster figure")
    parser.add_argument("--cluster-concurrency", type=int, default=8, help="requests in flight per cluster")
    parser.add_argument("--lag-rows", type=int, default=50000, help="contacts of the lag figure (0: skip)")
    parser.add_argument(
        "--only", choices=["run", "clusters", "lag"], action="append", help="run only these parts"
    )


def configure_book() -> None:
    """One tier sending SMS only, a reminder 3 days before the due date at 09:00, the window open all day."""
    from loans.models import CreditTier
    from notifications.models import ContactPolicy, ReminderRule, ReminderTemplate

    tier, _ = CreditTier.objects.update_or_create(
        code="S",
        defaults=dict(
            name="Speed",
            min_score=0,
            max_score=1000,
            risk_level="medium",
            grace_period_days=3,
            max_contacts_per_week=20,
            channel_order="sms",
        ),
    )
    ReminderRule.objects.get_or_create(
        tier=tier, offset_days=-3, channel="sms", kind="pre_due", defaults={"send_time": dt.time(9, 0)}
    )
    ReminderTemplate.objects.get_or_create(
        kind="pre_due",
        channel="sms",
        language="zh-hans",
        defaults={
            "body": "{customer_name}您好,您的借款{loan_ref}应还{amount_due}{currency},到期日{due_date}。"
        },
    )
    policy = ContactPolicy.get()
    policy.window_start, policy.window_end = dt.time(0, 0), dt.time(23, 59, 59, 999999)
    policy.save()


def generate(n: int) -> None:
    """``n`` customers of tier S, one loan each, one instalment due on DUE_DAY (the book is wiped first)."""
    from django.db import transaction

    import book
    from loans.models import CreditTier, Customer, Installment, Loan

    book.wipe()
    tier = CreditTier.objects.get(code="S")
    now = dt.datetime.now(dt.UTC)
    for start in range(0, n, 5000):
        with transaction.atomic():
            numbers = range(start + 1, min(n, start + 5000) + 1)
            customers = Customer.objects.bulk_create(
                [
                    Customer(
                        ref=f"SP{i:08d}",
                        name=f"客户{i}",
                        phone=f"+86139{i:08d}",
                        language="zh-hans",
                        timezone="Asia/Shanghai",
                        credit_score=700,
                        tier=tier,
                        created_at=now,
                        updated_at=now,
                    )
                    for i in numbers
                ]
            )
            loans = Loan.objects.bulk_create(
                [
                    Loan(
                        ref=f"SL{i:09d}",
                        customer=customer,
                        principal=Decimal("3000"),
                        currency="CNY",
                        disbursed_on=SEND_DAY - dt.timedelta(days=200),
                        autopay=False,
                        created_at=now,
                        updated_at=now,
                    )
                    for i, customer in zip(numbers, customers)
                ]
            )
            Installment.objects.bulk_create(
                [
                    Installment(loan=loan, seq=1, due_date=DUE_DAY, amount_due=Decimal("250.00"))
                    for loan in loans
                ]
            )


def reset_contacts() -> None:
    """Forget every contact, so the same book can be planned and sent again."""
    from django.db import connection

    from notifications.models import NotificationItem, NotificationLog, OutboxMessage

    tables = [m._meta.db_table for m in (NotificationItem, NotificationLog, OutboxMessage)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        else:
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')


def planner_statistics() -> None:
    from django.db import connection

    from core.housekeeping import refresh_planner_statistics

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    else:
        refresh_planner_statistics()


def plan(n: int) -> None:
    """The untimed run at 08:00: plans every contact for 09:00, sends nothing yet."""
    from django.core.management import call_command

    from notifications.models import NotificationLog

    reset_contacts()
    planner_statistics()
    call_command("run_jobs", now=PLAN_AT.isoformat(), force=True, stdout=open(os.devnull, "w"))
    planned = NotificationLog.objects.filter(status="planned", scheduled_for=SEND_AT).count()
    assert planned == n, f"planned {planned} contacts for 09:00, expected {n}"
    planner_statistics()


def use_gateway(gateway, concurrency: int, rate: float) -> None:
    from django.conf import settings

    settings.NOTIFICATION_BACKENDS = {**settings.NOTIFICATION_BACKENDS, "sms": GATEWAY_BACKEND}
    settings.SMS_GATEWAY_URL = gateway.url
    settings.SMS_GATEWAY_TOKEN = ""
    settings.SMS_GATEWAY_CONCURRENCY = concurrency
    settings.SMS_GATEWAY_RATE_PER_SECOND = rate


GATEWAY_BACKEND = "notifications.channels.JsonSmsGatewayBackend"


def floor_posts(gateway, n: int, concurrency: int) -> float:
    """``n`` POSTs of the gateway's protocol from ``concurrency`` threads over one keep-alive pool: seconds."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=concurrency))
    body = "客户1您好,您的借款SL000000001应还250.00CNY,到期日2026-12-04。"

    def post(i: int) -> None:
        key = str(uuid.uuid4())
        response = session.post(
            gateway.url,
            json={"to": f"+86139{i:08d}", "from": "LENDER", "text": body, "reference": key},
            headers={"Idempotency-Key": key, "Accept": "application/json"},
            timeout=10,
        )
        response.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, range(n)))
    return time.perf_counter() - start


def sent_count() -> int:
    from notifications.models import NotificationLog

    return NotificationLog.objects.filter(status="sent").count()


def run_part(args, report: Report, gateway) -> None:
    from django.core.management import call_command

    n = args.rows
    generate(n)
    plan(n)
    use_gateway(gateway, args.concurrency, 0)
    times: dict[str, float] = {}
    posts_before = gateway.posts
    run_start = time.monotonic()
    with timed("run", times):
        call_command("run_jobs", now=SEND_AT.isoformat(), force=True, stdout=open(os.devnull, "w"))
    run_end = time.monotonic()
    posted = gateway.post_times[posts_before:]
    sent = sent_count()
    assert sent == n, f"sent {sent} of {n}"
    assert gateway.posts - posts_before == n, "each contact is one POST"
    times["floor"] = floor_posts(gateway, n, args.concurrency)
    report.ratio(
        f"run_jobs at 09:00 sending {n:,} contacts ({args.concurrency} in flight, {args.latency * 1000:.0f} ms gateway)",
        times["run"],
        f"{n:,} POSTs from {args.concurrency} threads over a keep-alive pool",
        times["floor"],
        at_least_rate=0.8,
        rows=n,
    )
    sending = posted[-1] - posted[0]
    report.note(
        f"run_jobs: first POST {posted[0] - run_start:.1f}s after its start, last {posted[-1] - run_start:.1f}s, "
        f"then {run_end - posted[-1]:.1f}s to its end; between the first and last POST {n / sending:,.0f} msg/s "
        f"({times['floor'] / sending:.2f}x the floor's rate)"
    )
    report.note(f"connections the gateway saw so far: {len(gateway.connections)}")


def cluster_env(args, gateway, label: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=args.redis_url,
        Q_CLUSTER_NAME="bench-dispatch",
        Q_WORKERS="1",
        SMS_BACKEND=GATEWAY_BACKEND,
        SMS_GATEWAY_URL=gateway.url,
        SMS_SENDER_ID=label,
        SMS_GATEWAY_CONCURRENCY=str(args.cluster_concurrency),
        SMS_GATEWAY_RATE_PER_SECOND="100000",  # shared through Redis, far above what two clusters reach
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def clusters_part(args, report: Report, gateway) -> None:
    import redis

    n = args.cluster_rows
    generate(n)
    seconds = {}
    for clusters in (1, 2):
        plan(n)
        redis.Redis.from_url(args.redis_url).flushdb()
        envs = [cluster_env(args, gateway, label) for label in "AB"[:clusters]]
        procs = [
            subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"],
                cwd=ROOT,
                env=env,
                stdout=open(ROOT / "var" / f"bench-qcluster-{i}.log", "w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for i, env in enumerate(envs)
        ]
        try:
            time.sleep(4)  # the clusters start their workers
            arrivals: dict[str, float] = {}
            gateway.script = arrival_recorder(arrivals)
            start_mono = time.monotonic()
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "manage.py",
                    "run_jobs",
                    "--enqueue",
                    "--chunk-size",
                    str(max(1, n // 24)),
                    "--now",
                    SEND_AT.isoformat(),
                    "--force",
                ],
                cwd=ROOT,
                env=envs[0],
                check=True,
                capture_output=True,
            )
            enqueued = time.perf_counter() - start
            deadline = time.monotonic() + 1800
            while sent_count() < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{clusters} cluster(s) sent {sent_count()} of {n} in 30 minutes")
                time.sleep(0.2)
            seconds[clusters] = time.perf_counter() - start
        finally:
            gateway.script = None
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=20)
                except ProcessLookupError:
                    pass
        print(f"{clusters} cluster(s): {n:,} sent in {seconds[clusters]:.1f}s", flush=True)
        report.note(describe_posts(clusters, seconds[clusters], enqueued, start_mono, gateway, arrivals))
    report.ratio(
        f"two qcluster processes sending {n:,} contacts ({args.cluster_concurrency} in flight each)",
        seconds[2],
        "one qcluster process",
        seconds[1],
        at_least_rate=1.8,
        rows=n,
    )


def arrival_recorder(arrivals: dict[str, float]):
    """A gateway script that notes when each key first arrived and answers normally."""

    def note(key: str, tries: int):
        arrivals.setdefault(key, time.monotonic())
        return None

    return note


def describe_posts(clusters: int, total: float, enqueued: float, start: float, gateway, arrivals) -> str:
    """Where the timed seconds went, read at the gateway: the enqueueing process, and when each cluster's first
    and last POST arrived (a cluster's messages carry its label as sender), so a one-sided tail shows."""
    spans: dict[str, list[float]] = {}
    for key, moment in arrivals.items():
        label = gateway.delivered.get(key, {}).get("from") or "?"
        spans.setdefault(label, []).append(moment - start)
    parts = [
        f"{label}: {len(times):,} POSTs from {min(times):.1f}s to {max(times):.1f}s"
        for label, times in sorted(spans.items())
    ]
    return (
        f"{clusters} cluster(s) in {total:.1f}s: run_jobs --enqueue took {enqueued:.1f}s (from the start); "
        + "; ".join(parts)
    )


def lag_part(args, report: Report, gateway) -> None:
    from django.core.management import call_command

    from notifications.models import NotificationLog

    n = args.lag_rows
    generate(n)
    plan(n)
    use_gateway(gateway, args.concurrency, 0)
    arrivals: dict[str, float] = {}
    script = gateway.script

    def note_arrival(key: str, tries: int):
        arrivals.setdefault(key, time.monotonic())
        return None

    gateway.script = note_arrival
    try:
        start = time.monotonic()
        call_command("run_jobs", now=SEND_AT.isoformat(), force=True, stdout=open(os.devnull, "w"))
        total = time.monotonic() - start
    finally:
        gateway.script = script
    keys = [
        str(k)
        for k in NotificationLog.objects.filter(status="sent").values_list("idempotency_key", flat=True)
    ]
    assert len(keys) == n, f"sent {len(keys)} of {n}"
    lags = sorted(arrivals[key] - start for key in keys)
    p95 = lags[int(0.95 * (len(lags) - 1))]
    report.note(
        f"lag of {n:,} contacts planned for 09:00, sent by one run_jobs at 09:00 ({args.concurrency} in flight): "
        f"p50 {statistics.median(lags):.1f}s, p95 {p95:.1f}s, last {lags[-1]:.1f}s (run {total:.1f}s, "
        f"{n / total:,.0f} msg/s); the log's sent_at is the run's moment, so the lag is read at the gateway"
    )


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], default_rows=20_000, extra=extra_args)
    setup_django(args.database_url or f"sqlite:///{ROOT / 'var' / 'bench-dispatch.sqlite3'}")
    from django.conf import settings

    sys.path.insert(0, str(ROOT))
    from tests.latency_gateway import LatencyGateway

    settings.REDIS_URL = args.redis_url
    settings.PROVIDER_TIMEOUT_SECONDS = 10
    parts = args.only or ["run", "clusters", "lag"]
    configure_book()
    report = Report(f"Dispatch at provider speed ({args.latency * 1000:.0f} ms gateway)")
    gateway = LatencyGateway(latency=args.latency).start()
    try:
        load = os.getloadavg()
        if "run" in parts:
            run_part(args, report, gateway)
        if "clusters" in parts:
            if "postgres" in os.environ["DATABASE_URL"] and args.redis_url:
                clusters_part(args, report, gateway)
            else:
                report.note("two clusters: skipped (needs --database-url postgres://... and --redis-url)")
        if "lag" in parts and args.lag_rows:
            lag_part(args, report, gateway)
        report.note(
            f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f} (2 cores shared with other work)"
        )
    finally:
        gateway.stop()
    report.print()
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
