"""Retry in-process with the one backoff (`resilience.backoff`), on tenacity's loop."""
import random
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from resilience.backoff import backoff_seconds
from resilience.policies import RetryConfig

T = TypeVar("T")


def retry_delay(attempt: int, config: RetryConfig, *, rand: Callable[[], float] = random.random) -> float:
    """Return the wait before retry number `attempt` (1-based) under `config`."""
    return backoff_seconds(
        attempt,
        initial_seconds=config.initial_seconds,
        multiplier=config.multiplier,
        max_seconds=config.max_seconds,
        jitter=config.jitter,
        random=rand,
    )


def retrying(config: RetryConfig, *, retry_on: Callable[[BaseException], bool]) -> Retrying:
    """Return a tenacity controller for `config`; only errors `retry_on` accepts are retried."""

    def wait(state: RetryCallState) -> float:
        return retry_delay(state.attempt_number, config)

    return Retrying(
        stop=stop_after_attempt(config.attempts),
        wait=wait,
        retry=retry_if_exception(retry_on),
        reraise=True,
    )
