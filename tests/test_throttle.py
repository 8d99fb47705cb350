"""The token buckets behind every provider's rate limit: in the process, and in Redis shared by processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.throttle import LocalBucket, RedisBucket, acquire, bucket_for

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_it_gives_a_burst_then_one_token_per_period():
    clock = FakeClock()
    bucket = LocalBucket(rate=4, burst=2, clock=clock)

    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.25
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.25)


def test_it_never_holds_more_than_its_burst():
    clock = FakeClock()
    bucket = LocalBucket(rate=10, burst=3, clock=clock)
    clock.now += 3600

    assert [bucket.take() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.take() > 0


def test_a_hold_off_gives_no_token_until_it_passed_then_starts_empty():
    clock = FakeClock()
    bucket = LocalBucket(rate=2, burst=5, clock=clock)
    bucket.hold_off(10)

    assert bucket.take() == pytest.approx(10)
    clock.now += 9.5
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == pytest.approx(0.5)  # empty when the hold-off ends: no burst of pent-up tokens
    clock.now += 0.5
    assert bucket.take() == 0.0


def test_a_shorter_hold_off_does_not_shorten_a_longer_one():
    clock = FakeClock()
    bucket = LocalBucket(rate=1, burst=1, clock=clock)
    bucket.hold_off(30)
    bucket.hold_off(1)

    assert bucket.take() == pytest.approx(30)


def test_acquire_sleeps_the_waits_the_bucket_names():
    class Scripted:
        waits = [0.5, 0.25, 0.0]

        def take(self):
            return self.waits.pop(0)

    slept = []
    acquire(Scripted(), sleep=slept.append)

    assert slept == [0.5, 0.25]


def test_without_redis_each_name_has_one_bucket_in_the_process(settings):
    settings.REDIS_URL = ""

    first, again, other = bucket_for("t-a", 5), bucket_for("t-a", 5), bucket_for("t-b", 5)

    assert isinstance(first, LocalBucket)
    assert first is again and first is not other


def test_a_rate_of_zero_never_limits_but_still_holds_off(settings):
    settings.REDIS_URL = ""
    bucket = bucket_for("t-unlimited", 0)

    assert all(bucket.take() == 0.0 for _ in range(10_000))
    bucket.hold_off(60)
    assert bucket.take() > 59


@pytest.mark.redis
def test_with_redis_the_bucket_lives_there_and_a_hold_off_reaches_every_user(settings, redis_url):
    import redis

    settings.REDIS_URL = redis_url
    bucket = bucket_for("t-shared", 1000)
    assert isinstance(bucket, RedisBucket)
    other = RedisBucket(redis.Redis.from_url(redis_url), "throttle:t-shared", 1000, 1000)

    assert bucket.take() == 0.0
    other.hold_off(30)
    assert 29 < bucket.take() <= 30


TAKER = textwrap.dedent(
    """
    import sys
    from django.conf import settings
    settings.configure(REDIS_URL=sys.argv[1])
    from core.throttle import bucket_for
    bucket = bucket_for("t-two-processes", rate=0.001, burst=300)
    print("ready", flush=True)
    sys.stdin.readline()  # both processes begin together
    print(sum(1 for _ in range(300) if bucket.take() == 0.0))
    """
)


@pytest.mark.redis
def test_two_processes_share_one_redis_bucket_and_never_take_more_than_it_holds(redis_url):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, redis_url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    taken = [int(proc.communicate(timeout=60)[0].strip()) for proc in procs]

    # 600 attempts on a bucket of 300 that refills once in 1,000 seconds: exactly 300 granted in all
    # (two buckets of their own would have granted 600).
    assert sum(taken) == 300, taken
