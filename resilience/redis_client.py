"""Redis clients for optional, latency-sensitive calls."""
import functools

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def fail_fast_client(url: str, *, timeout_seconds: float) -> redis.Redis:
    """A client that gives up at once: no reconnect-and-retry loop on a dead server.

    redis-py retries connection errors with backoff by default, which turns
    one unreachable Redis into seconds of waiting per call; callers here
    have a fallback and would rather use it.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )


@functools.cache
def shared_fail_fast_client(url: str, *, timeout_seconds: float) -> redis.Redis:
    """This process's one fail-fast client for `url` (its connection pool is thread-safe and reused)."""
    return fail_fast_client(url, timeout_seconds=timeout_seconds)
