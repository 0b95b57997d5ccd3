"""Carts cached in Redis; PostgreSQL stays the source of truth.

Every cache call is allowed to fail: a Redis outage costs latency, never a
request. A failure is logged, counted and then, for a short while, the cache
is skipped in this process so a dead Redis is not asked on every call.
"""
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

from checkout.metrics import CART_CACHE_ERRORS
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

# After a failure, requests skip Redis this long instead of paying its timeout each time.
SKIP_AFTER_FAILURE_SECONDS = 5.0

_suspension = Suspension(SKIP_AFTER_FAILURE_SECONDS)


def _key(session_id: str) -> str:
    return f"cart:{session_id}"


def _available() -> bool:
    return not _suspension.active()


def _failed(operation: str, error: Exception) -> None:
    _suspension.trip()
    CART_CACHE_ERRORS.labels(operation=operation).inc()
    logger.warning(
        "cart cache unavailable, using PostgreSQL",
        extra={"event": "resilience", "operation": operation, "error": repr(error)},
    )


def cart_cache_get(session_id: str) -> dict[str, Any] | None:
    if not _available():
        return None
    try:
        return cache.get(_key(session_id))
    except Exception as error:  # any Redis client error: fall back to the database
        _failed("get", error)
        return None


def cart_cache_set(session_id: str, cart: dict[str, Any]) -> None:
    if not _available():
        return
    try:
        cache.set(_key(session_id), cart, timeout=int(settings.CART_IDLE_TTL.total_seconds()))
    except Exception as error:
        _failed("set", error)


def cart_cache_delete(session_id: str) -> None:
    # Always attempted, even while skipping reads: a stale entry must not outlive a write.
    try:
        cache.delete(_key(session_id))
    except Exception as error:
        _failed("delete", error)


def cart_cache_reset_for_tests() -> None:
    _suspension.reset()
