"""Named resilience policies (docs/contract.md "Resilience policies"), overridable per environment.

`settings.RESILIENCE_POLICIES` maps a policy name to overrides of the
defaults below, so an environment changes a number without touching code.
"""
import threading
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from resilience.backoff import Jitter
from resilience.breaker import BreakerConfig, CircuitBreaker, RedisStore
from resilience.redis_client import shared_fail_fast_client


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = 3
    initial_seconds: float = 1.0
    multiplier: float = 2.0
    max_seconds: float = 30.0
    # Equal jitter: spread, and never less than half of the contract's "1 s x 2" (docs/contract.md).
    jitter: Jitter = Jitter.EQUAL


@dataclass(frozen=True)
class Policy:
    name: str
    breaker: BreakerConfig | None = None
    retry: RetryConfig | None = None
    timeout_seconds: float | None = None


DEFAULT_POLICIES: dict[str, Policy] = {
    "kafkaPublisher": Policy(
        name="kafkaPublisher",
        breaker=BreakerConfig(window_size=10, minimum_calls=5, failure_rate_threshold=0.5, open_seconds=30, half_open_calls=3),
        retry=RetryConfig(attempts=3, initial_seconds=1.0, multiplier=2.0),
        timeout_seconds=10.0,
    ),
    "paymentService": Policy(
        name="paymentService",
        breaker=BreakerConfig(
            window_size=10,
            minimum_calls=5,
            failure_rate_threshold=0.5,
            open_seconds=30,
            half_open_calls=3,
            slow_call_seconds=5.0,
            slow_call_rate_threshold=0.6,
        ),
        retry=RetryConfig(attempts=3, initial_seconds=1.0, multiplier=2.0),
        timeout_seconds=5.0,
    ),
    "catalogQuery": Policy(name="catalogQuery", timeout_seconds=0.5),
}


def policy(name: str) -> Policy:
    base = DEFAULT_POLICIES[name]
    overrides: dict[str, Any] = getattr(settings, "RESILIENCE_POLICIES", {}).get(name, {})
    breaker = base.breaker
    if breaker is not None and overrides.get("breaker"):
        breaker = replace(breaker, **overrides["breaker"])
    retry = base.retry
    if retry is not None and overrides.get("retry"):
        retry = replace(retry, **overrides["retry"])
    return replace(
        base, breaker=breaker, retry=retry, timeout_seconds=overrides.get("timeout_seconds", base.timeout_seconds)
    )


_breakers: dict[str, CircuitBreaker] = {}
_lock = threading.Lock()


def breaker_for(name: str) -> CircuitBreaker:
    """The process's breaker for a policy, sharing its state through Redis."""
    with _lock:
        breaker = _breakers.get(name)
        if breaker is None:
            config = policy(name).breaker
            if config is None:
                raise ValueError(f"policy {name!r} has no breaker")
            client = shared_fail_fast_client(settings.RESILIENCE_REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)
            breaker = CircuitBreaker(name, config, RedisStore(client))
            _breakers[name] = breaker
        return breaker


def breakers_reset() -> None:
    """Forget this process's breakers (settings changed, or between tests)."""
    with _lock:
        _breakers.clear()
