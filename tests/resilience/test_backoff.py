"""The one backoff: exponential, capped, with full or equal jitter drawn from an injectable random source."""
import pytest

from resilience.backoff import Jitter, backoff_seconds
from resilience.policies import RetryConfig
from resilience.retry import retry_delay, retrying
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401

pytestmark = pytest.mark.unit


def waits(jitter: Jitter, draw: float, attempts: int = 6) -> list[float]:
    return [
        backoff_seconds(attempt, initial_seconds=1.0, max_seconds=10.0, jitter=jitter, random=lambda: draw)
        for attempt in range(1, attempts + 1)
    ]


def test_without_jitter_the_wait_doubles_up_to_the_cap():
    assert waits(Jitter.NONE, draw=0.9) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_draws_between_zero_and_the_capped_delay():
    assert waits(Jitter.FULL, draw=0.0) == [0.0] * 6
    assert waits(Jitter.FULL, draw=0.5) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_equal_jitter_keeps_at_least_half_of_the_capped_delay():
    assert waits(Jitter.EQUAL, draw=0.0) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert waits(Jitter.EQUAL, draw=0.999) == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0], rel=1e-3)


def test_another_multiplier_and_an_attempt_below_one():
    assert backoff_seconds(3, initial_seconds=0.5, max_seconds=100.0, multiplier=3.0, jitter=Jitter.NONE) == 4.5
    assert backoff_seconds(0, initial_seconds=0.5, max_seconds=100.0, jitter=Jitter.NONE) == 0.5


def test_the_default_random_source_stays_inside_the_jitter_bounds():
    for attempt in range(1, 8):
        delay = min(2.0 ** (attempt - 1), 30.0)
        full = backoff_seconds(attempt, initial_seconds=1.0, max_seconds=30.0, jitter=Jitter.FULL)
        equal = backoff_seconds(attempt, initial_seconds=1.0, max_seconds=30.0)
        assert 0.0 <= full <= delay
        assert delay / 2 <= equal <= delay


def test_a_retry_policy_waits_through_the_same_function():
    config = RetryConfig(attempts=4, initial_seconds=0.25, multiplier=2.0, max_seconds=0.75, jitter=Jitter.NONE)
    assert [retry_delay(attempt, config) for attempt in (1, 2, 3)] == [0.25, 0.5, 0.75]

    slept: list[float] = []
    controller = retrying(config, retry_on=lambda error: isinstance(error, TimeoutError))
    controller.sleep = slept.append  # tenacity's own hook: no real waiting in a unit test
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TimeoutError("not yet")
        return "answer"

    assert controller(flaky) == "answer"
    assert slept == [0.25, 0.5, 0.75]

    calls.clear()
    with pytest.raises(ValueError):  # not retried: tried once
        controller(lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("terminal")))
    assert len(calls) == 1
