"""Scale-out for real: PostgreSQL, the Redis broker and two `qcluster` processes, one killed with SIGKILL midway.

Every planned contact must end sent exactly once (one outbox message per contact, or one message taken by the
SMS gateway) and none may be lost. Once through the outbox, once through a local JSON SMS gateway answering in
100 ms, which the clusters send to concurrently within a rate limit they share through Redis.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest
from django.db import connection

from core.audit_verification import verify_chain
from notifications.models import (
    ContactPolicy,
    JurisdictionPolicy,
    NotificationLog,
    OutboxMessage,
    ReminderRule,
    ReminderTemplate,
)
from tests.factories import make_customer, make_installment, make_loan, make_tier
from tests.latency_gateway import LatencyGateway
from tests.real_clock import real_now

ROOT = Path(__file__).resolve().parent.parent
CUSTOMERS = 160

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cluster_env(redis_url: str, tmp_path: Path, label: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=redis_url,
        Q_CLUSTER_NAME="scaleout-test",  # one queue shared by both clusters
        Q_WORKERS="2",
        SMS_BACKEND="tests.scaleout_backend.SlowOutboxBackend",
        SLOW_BACKEND_SECONDS="0.1",
        SLOW_BACKEND_LOG=str(tmp_path / "sends.log"),
        CLUSTER_LABEL=label,
        DISPATCH_BATCH_SIZE="5",
        DISPATCH_CLAIM_LEASE_SECONDS="2",
        PROVIDER_TIMEOUT_SECONDS="0.2",
        AUDIT_ANCHOR_PATH=str(tmp_path / "anchor.jsonl"),
        EXPORT_ROOT=str(tmp_path / "exports"),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    # Its own session, so the sentinel, pusher, workers and monitor can be killed together.
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def enqueue_daily_run(env: dict[str, str], now: dt.datetime) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "run_jobs",
            "--enqueue",
            "--chunk-size",
            "10",
            "--now",
            now.isoformat(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def book_due_today():
    policy = ContactPolicy.get()
    policy.window_start, policy.window_end = dt.time(0, 0), dt.time(23, 59, 59, 999999)
    policy.save()
    # Nor a country's hours: the seeded Chinese convention (08:00-21:00) would defer every contact when the
    # suite runs at night in Shanghai, and it is seeded only until the first transactional test flushes it.
    JurisdictionPolicy.objects.all().delete()
    tier = make_tier(code="S", max_contacts_per_week=3, channel_order="sms,email")
    ReminderRule.objects.create(
        tier=tier, offset_days=0, channel="sms", kind="due_today", send_time=dt.time(0, 0)
    )
    ReminderTemplate.objects.create(
        kind="due_today", channel="sms", language="zh-hans", body="{customer_name}: {amount_due} {due_date}"
    )
    today = real_now(zoneinfo.ZoneInfo("Asia/Shanghai")).date()  # the clusters' day, not a pinned one
    for _ in range(CUSTOMERS):
        make_installment(make_loan(make_customer(tier=tier)), due_date=today)
    return tier


@pytest.fixture
def gateway():
    gateway = LatencyGateway(latency=0.1).start()
    yield gateway
    gateway.stop()


def through_gateway(env: dict[str, str], gateway: LatencyGateway, label: str) -> dict[str, str]:
    env.update(
        SMS_BACKEND="notifications.channels.JsonSmsGatewayBackend",
        SMS_GATEWAY_URL=gateway.url,
        SMS_SENDER_ID=label,  # which cluster sent it, as the gateway sees it
        SMS_GATEWAY_CONCURRENCY="2",
        SMS_GATEWAY_RATE_PER_SECOND="100",
        PROVIDER_MAX_THROTTLE_WAIT_SECONDS="0",
        PROVIDER_TIMEOUT_SECONDS="0.5",  # the claim lease of a 5-row batch: 3 rounds of 2 x 1.5 s
    )
    return env


@pytest.mark.parametrize("provider", ["outbox", "gateway"])
def test_two_clusters_one_killed_midway_send_every_contact_exactly_once(
    provider, book_due_today, redis_url, tmp_path, request
):
    env_a, env_b = cluster_env(redis_url, tmp_path, "A"), cluster_env(redis_url, tmp_path, "B")
    gateway = request.getfixturevalue("gateway") if provider == "gateway" else None
    if gateway:
        env_a, env_b = through_gateway(env_a, gateway, "A"), through_gateway(env_b, gateway, "B")
    cluster_a = start_cluster(env_a, tmp_path / "cluster-a.log")
    cluster_b = start_cluster(env_b, tmp_path / "cluster-b.log")
    try:
        now = real_now()
        out = enqueue_daily_run(env_a, now)
        assert "enqueued=16" in out, out

        sends = tmp_path / "sends.log"

        def senders_so_far():
            if gateway:
                with gateway.lock:
                    senders = [message["from"] for message in gateway.delivered.values()]
                return {label: senders.count(label) for label in ("A", "B")}
            lines = sends.read_text().split() if sends.exists() else []
            return {label: lines[0::2].count(label) for label in ("A", "B")}

        # Whichever cluster the broker fed first is killed once it has sent a few messages.
        busy = wait_for(
            lambda: next((k for k, n in senders_so_far().items() if n >= 3), None),
            90,
            "a cluster to send a few messages",
        )
        victim, survivor = (cluster_a, cluster_b) if busy == "A" else (cluster_b, cluster_a)
        kill_group(
            victim
        )  # SIGKILL in the middle of its work: claimed rows and queued chunks are lost with it
        assert victim.returncode is not None
        sent_before_sweep = NotificationLog.objects.filter(status="sent").count()
        assert sent_before_sweep < CUSTOMERS, "the kill came too late to prove anything"

        # What the schedules do next: the daily run again (idempotent planning) and the dispatch sweep, which
        # takes over rows whose claim lapsed with the dead cluster.
        time.sleep(6.5)  # the claim lease of a 5-row batch with a 0.2 s provider timeout
        enqueue_daily_run(env_b, real_now())
        wait_for(
            lambda: (
                NotificationLog.objects.filter(status="sent").count() == CUSTOMERS
                and not NotificationLog.objects.filter(status__in=["planned", "deferred"]).exists()
            ),
            120,
            "the surviving cluster to send every contact",
        )
        assert survivor.poll() is None  # the survivor did the rest
    finally:
        kill_group(cluster_a)
        kill_group(cluster_b, signal.SIGTERM)

    logs = NotificationLog.objects.all()
    assert logs.count() == CUSTOMERS  # one contact per customer: planning twice added nothing
    assert set(logs.values_list("status", flat=True)) == {"sent"}
    keys = set(logs.values_list("idempotency_key", flat=True))
    if gateway:
        # Exactly once: the gateway took one message per contact; a re-send after the kill carried the same key
        # and was answered with the first message's id.
        assert set(gateway.delivered) == {str(key) for key in keys}
        for key, provider_id in logs.values_list("idempotency_key", "provider_message_id"):
            assert provider_id == gateway.delivered[str(key)]["message_id"]
    else:
        assert OutboxMessage.objects.count() == CUSTOMERS  # exactly once: no message reached a customer twice
        assert set(OutboxMessage.objects.values_list("idempotency_key", flat=True)) == keys
    assert senders_so_far()[busy] >= 3  # the killed cluster had been sending when it died
    # Four worker processes and the enqueuing commands wrote the audit trail without forking it.
    verification = verify_chain(path=tmp_path / "anchor.jsonl")
    assert verification.problem == "", verification.problem
    assert verification.count >= 2 * CUSTOMERS  # planned and sent, for every contact
