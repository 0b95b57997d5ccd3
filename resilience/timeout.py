"""Bound a blocking call in time: past the limit the caller stops waiting for it.

The call keeps its thread until it returns (Python cannot kill a thread), so
implementations should also pass the limit to their own I/O; this is the
guarantee that a caller never waits longer whatever the implementation does.
"""
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")

# Abandoned calls occupy a thread until they finish; a few suffice for a
# consumer that makes one call at a time.
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="time-limited")


class TimeLimitExceeded(TimeoutError):
    pass


def call_with_time_limit(function: Callable[[], T], *, seconds: float) -> T:
    future = _executor.submit(function)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        future.cancel()
        raise TimeLimitExceeded(f"abandoned after {seconds:.1f}s") from None
