"""Bound a blocking call in time: past the limit the caller stops waiting for it.

The call keeps its thread until it returns (Python cannot kill a thread), so
implementations should also pass the limit to their own I/O; this is the
guarantee that a caller never waits longer whatever the implementation does.
"""
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from django.conf import settings

T = TypeVar("T")

# Enough for callers that make one call at a time (a Celery task, the relay).
MIN_THREADS = 8

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


class TimeLimitExceeded(TimeoutError):
    pass


def _pool() -> ThreadPoolExecutor:
    """The process's pool for time-limited calls, sized on first use (settings are read by then).

    The order consumer makes up to CONSUMER_MAX_IN_FLIGHT payment calls at
    once, each through this pool; a pool smaller than that would queue them
    behind each other, and a queued call spends its time limit waiting for a
    thread. A call abandoned at its limit keeps its thread until it returns
    (the mock and an HTTP client return by the same limit), while the retry
    that follows needs another: two threads per in-flight message.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            workers = max(MIN_THREADS, 2 * settings.CONSUMER_MAX_IN_FLIGHT)
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="time-limited")
        return _executor


def call_with_time_limit(function: Callable[[], T], *, seconds: float) -> T:
    future = _pool().submit(function)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        future.cancel()
        raise TimeLimitExceeded(f"abandoned after {seconds:.1f}s") from None
