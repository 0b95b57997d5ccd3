"""The one Redis client factory of our code: fail-fast clients, one per process and URL.

Every Redis use outside Django's cache (the breakers' shared state, the jobs'
success record, the relay's wake-up flag, the payment fault switch, the
readiness probe) takes its client from `shared_fail_fast_client`. Django's
cache builds its own pools from CACHES (core/cache.py keeps one client per pool).
"""
import functools

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


@functools.cache
def shared_fail_fast_client(url: str, *, timeout_seconds: float) -> redis.Redis:
    """Return this process's one fail-fast client for `url` and timeout, created on first use.

    Fail-fast: no reconnect-and-retry loop on a dead server. redis-py retries
    connection errors with backoff by default, which turns one unreachable
    Redis into seconds of waiting per call; callers here have a fallback and
    would rather use it. The connection pool is thread-safe and reused;
    redis-py's pool notices a fork and opens new connections in the child.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )
