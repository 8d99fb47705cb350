"""Rate limits shared by every worker: a token bucket per provider, in Redis when the product has one.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; each message takes one. With
``REDIS_URL`` set the bucket lives in Redis and one Lua script refills and takes atomically on Redis's own clock,
so every thread, worker process and cluster sending through the same provider shares one limit. Without Redis
(the embedded mode, one process) the bucket is in the process.

A provider that answers "too many requests" (HTTP 429 with ``Retry-After``) holds the bucket off: nobody takes
a token until the time it named has passed, and the bucket starts again empty.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from django.conf import settings


class TokenBucket(Protocol):
    def take(self) -> float:
        """Take a token: 0.0 when one was taken, else the seconds to wait before asking again."""
        ...

    def hold_off(self, seconds: float) -> None:
        """Give no token for ``seconds`` from now, and start again from an empty bucket."""
        ...


class LocalBucket:
    """A bucket in this process, safe across its threads."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens, self.stamp, self.paused_until = float(burst), clock(), 0.0
        self._lock = threading.Lock()

    def take(self) -> float:
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                return self.paused_until - now
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def hold_off(self, seconds: float) -> None:
        with self._lock:
            now = self.clock()
            self.paused_until = max(self.paused_until, now + seconds)
            self.tokens, self.stamp = 0.0, max(now, self.paused_until)


# KEYS[1]: the bucket; ARGV: rate, burst, seconds to keep an idle bucket. Answers the seconds to wait ("0": a
# token was taken) as a string, since Redis would truncate a Lua number to an integer.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp', 'paused_until')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
local paused = tonumber(state[3]) or 0
if now < paused then
  return tostring(paused - now)
end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now), 'paused_until', tostring(paused))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return tostring(wait)
"""

# KEYS[1]: the bucket; ARGV: seconds to hold off, seconds to keep an idle bucket.
_HOLD_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local paused = math.max(tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'tokens', '0', 'stamp', tostring(paused), 'paused_until', tostring(paused))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + math.ceil(tonumber(ARGV[1])))
return 1
"""


class RedisBucket:
    """A bucket in Redis, shared by every process using the same key."""

    def __init__(self, client, key: str, rate: float, burst: float):
        self.client, self.key, self.rate, self.burst = client, key, float(rate), float(burst)
        # An idle bucket refills to full within burst / rate seconds; it need not outlive that by much.
        self.idle_ttl = max(60, int(self.burst / self.rate) + 60)
        self._take = client.register_script(_TAKE)
        self._hold_off = client.register_script(_HOLD_OFF)

    def take(self) -> float:
        return float(self._take(keys=[self.key], args=[self.rate, self.burst, self.idle_ttl]))

    def hold_off(self, seconds: float) -> None:
        self._hold_off(keys=[self.key], args=[max(0.0, float(seconds)), self.idle_ttl])


def acquire(bucket: TokenBucket, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until ``bucket`` gives a token, and take it."""
    while True:
        wait = bucket.take()
        if wait <= 0:
            return
        sleep(wait)


UNLIMITED = 1e9  # tokens a second: never the limit
_local_buckets: dict[tuple, LocalBucket] = {}
_redis_clients: dict[tuple[int, str], object] = {}
_lock = threading.Lock()


def bucket_for(name: str, rate: float, burst: float | None = None) -> TokenBucket:
    """The bucket named ``name`` giving ``rate`` tokens a second (0: no limit), up to ``burst`` at once (default
    one second's worth). In Redis when ``settings.REDIS_URL`` is set (shared by every process), else one per
    process and name."""
    rate = float(rate)
    if rate <= 0:
        # No limit of ours, but a provider's 429 still holds every sender off.
        rate = burst = UNLIMITED
    burst = max(1.0, float(burst if burst is not None else rate))
    redis_url = getattr(settings, "REDIS_URL", "")
    if redis_url:
        return RedisBucket(_redis_client(redis_url), f"throttle:{name}", rate, burst)
    with _lock:
        key = (os.getpid(), name, rate, burst)
        bucket = _local_buckets.get(key)
        if bucket is None:
            bucket = _local_buckets[key] = LocalBucket(rate, burst)
        return bucket


def _redis_client(url: str):
    """One client (one connection pool) per process and address: a forked worker makes its own."""
    import redis

    key = (os.getpid(), url)
    with _lock:
        client = _redis_clients.get(key)
        if client is None:
            client = _redis_clients[key] = redis.Redis.from_url(url)
        return client
