"""Retry with exponential backoff and jitter, on tenacity."""
import random
from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from resilience.policies import RetryConfig

T = TypeVar("T")


def retrying(config: RetryConfig, *, retry_on: Callable[[BaseException], bool], sleep: Callable[[float], None] | None = None) -> Retrying:
    """A tenacity controller for `config`; only errors `retry_on` accepts are retried."""
    kwargs = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return Retrying(
        stop=stop_after_attempt(config.attempts),
        wait=wait_exponential_jitter(
            multiplier=config.initial_seconds,
            exp_base=config.multiplier,
            max=config.max_seconds,
            jitter=config.jitter_seconds,
        ),
        retry=retry_if_exception(retry_on),
        reraise=True,
        **kwargs,
    )


def backoff_seconds(attempt: int, config: RetryConfig, *, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, plus jitter.

    For work that waits in a table rather than in a sleeping process (outbox
    rows), where tenacity's in-process loop does not apply.
    """
    delay = config.initial_seconds * config.multiplier ** max(attempt - 1, 0)
    return min(delay, config.max_seconds) + rand() * config.jitter_seconds
