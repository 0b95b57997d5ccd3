"""The mock payment provider's behaviour, changeable on a running platform.

Drills slow or break the provider and heal it again without a restart:
`manage.py payment_faults` writes overrides to a Redis hash, and every mock
charge reads them through `payment_faults_current`. Each process caches what
it read for at most `CACHE_SECONDS`, so the hot path does not ask Redis on
every call. Whatever is not overridden, and everything while Redis is
unreachable, comes from the `PAYMENT_MOCK_*` settings.
"""
import logging
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from resilience.redis_client import shared_fail_fast_client

logger = logging.getLogger(__name__)

REDIS_KEY = "payments:mock-faults"
# How stale a process's view of the switch may be.
CACHE_SECONDS = 1.0
FAILURE_KINDS = ("decline", "timeout", "connection")
FIELDS = ("success_rate", "latency_seconds", "failure_kind")


@dataclass(frozen=True)
class PaymentFaults:
    success_rate: float
    latency_seconds: float
    failure_kind: str


class InvalidPaymentFaults(ValueError):
    pass


_lock = threading.Lock()
_cached: tuple[float, dict[str, str]] | None = None  # (read at, overrides)


def _redis() -> redis.Redis:
    return shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)


def _validated(*, success_rate: float | None, latency_seconds: float | None, failure_kind: str | None) -> dict[str, str]:
    overrides: dict[str, str] = {}
    if success_rate is not None:
        if not 0.0 <= success_rate <= 1.0:
            raise InvalidPaymentFaults("the success rate must be between 0 and 1")
        overrides["success_rate"] = repr(float(success_rate))
    if latency_seconds is not None:
        if latency_seconds < 0:
            raise InvalidPaymentFaults("the latency cannot be negative")
        overrides["latency_seconds"] = repr(float(latency_seconds))
    if failure_kind is not None:
        if failure_kind not in FAILURE_KINDS:
            raise InvalidPaymentFaults(f"the failure kind must be one of {', '.join(FAILURE_KINDS)}")
        overrides["failure_kind"] = failure_kind
    return overrides


def payment_faults_set(
    *, success_rate: float | None = None, latency_seconds: float | None = None, failure_kind: str | None = None
) -> dict[str, str]:
    """Override the given values for every process; return all overrides now in force."""
    overrides = _validated(success_rate=success_rate, latency_seconds=latency_seconds, failure_kind=failure_kind)
    client = _redis()
    if overrides:
        client.hset(REDIS_KEY, mapping=overrides)
    payment_faults_cache_clear()
    return payment_faults_overrides()


def payment_faults_reset() -> None:
    """Drop every override: the settings apply again (within CACHE_SECONDS everywhere)."""
    _redis().delete(REDIS_KEY)
    payment_faults_cache_clear()


def payment_faults_overrides() -> dict[str, str]:
    """The overrides stored in Redis (raises if Redis is unreachable)."""
    stored = _redis().hgetall(REDIS_KEY)
    return {key.decode(): value.decode() for key, value in stored.items() if key.decode() in FIELDS}


def _overrides_cached() -> dict[str, str]:
    global _cached
    now = time.monotonic()
    with _lock:
        if _cached is not None and now - _cached[0] < CACHE_SECONDS:
            return _cached[1]
    try:
        overrides = payment_faults_overrides()
    except redis.RedisError as error:
        # Cached too, so a dead Redis costs one short timeout a second, not one a charge.
        logger.warning("payment fault switch unreadable, using settings", extra={"error": repr(error)})
        overrides = {}
    with _lock:
        _cached = (now, overrides)
    return overrides


def payment_faults_current() -> PaymentFaults:
    """The behaviour in force: Redis overrides over the PAYMENT_MOCK_* settings."""
    overrides = _overrides_cached()
    try:
        return PaymentFaults(
            success_rate=float(overrides.get("success_rate", settings.PAYMENT_MOCK_SUCCESS_RATE)),
            latency_seconds=float(overrides.get("latency_seconds", settings.PAYMENT_MOCK_LATENCY_SECONDS)),
            failure_kind=overrides.get("failure_kind", settings.PAYMENT_MOCK_FAILURE_KIND),
        )
    except ValueError:  # written by hand, not by the command
        logger.warning("payment fault switch holds an invalid value, using settings", extra={"overrides": overrides})
        return PaymentFaults(
            success_rate=settings.PAYMENT_MOCK_SUCCESS_RATE,
            latency_seconds=settings.PAYMENT_MOCK_LATENCY_SECONDS,
            failure_kind=settings.PAYMENT_MOCK_FAILURE_KIND,
        )


def payment_faults_cache_clear() -> None:
    """Forget this process's cached read (after a change here, or between tests)."""
    global _cached
    with _lock:
        _cached = None
