"""The one backoff: how long to wait before retry number N, exponential, capped and jittered.

Every wait before a retry in this code base is computed here: the payment
policy's tenacity loop (`resilience.retry.retrying`), the outbox rows' and the
reconciled orders' next attempt, the consumer's messages and its broker
reconnects. tenacity has the same formulas (`wait_random_exponential`,
`wait_exponential_jitter`), but they take tenacity's RetryCallState and so fit
only its in-process loop; the relay and reconciliation store a due time in a
row instead. So the formula is this plain function, and `retrying` hands it
to tenacity as its wait.
"""
import random as random_module
from collections.abc import Callable
from enum import Enum


class Jitter(str, Enum):
    NONE = "none"  # the exact delay: for a wait nobody else shares
    # Uniform in [0, delay]: spreads a crowd of clients best (AWS, "Exponential Backoff And Jitter").
    FULL = "full"
    # delay / 2 plus uniform in [0, delay / 2]: spread, yet never less than half the delay.
    EQUAL = "equal"


def backoff_seconds(
    attempt: int,
    *,
    initial_seconds: float,
    max_seconds: float,
    multiplier: float = 2.0,
    jitter: Jitter = Jitter.EQUAL,
    random: Callable[[], float] = random_module.random,
) -> float:
    """Return the wait before retry number `attempt` (1-based): `initial * multiplier ** (attempt - 1)`, capped, jittered.

    `random` returns a float in [0, 1); tests pass their own.
    """
    delay = min(initial_seconds * multiplier ** max(attempt - 1, 0), max_seconds)
    if jitter == Jitter.FULL:
        return delay * random()
    if jitter == Jitter.EQUAL:
        return delay / 2 + delay / 2 * random()
    return delay
