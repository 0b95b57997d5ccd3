"""Rate limits for login (per username and per client) and checkout (per client).

DRF's `SimpleRateThrottle` keeps each bucket's request times in Django's cache,
which is Redis here, so every gunicorn worker and every host share the counts.
Its `timer` is a class attribute: tests replace it to step past a window. The
rates are settings (`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`); a throttled
request answers 429 problem+json with `Retry-After` (core.problems).
"""
import hashlib
import logging
from typing import Any

from django.core.cache import cache
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _FailOpenCache:
    """Django's cache for the throttles, where an unreachable Redis counts nothing.

    Redis is an accelerator in this platform, never a reason to refuse a
    customer: a cache error lets the request through and is logged.
    """

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return cache.get(key, default)
        except (RedisError, OSError) as error:
            _log_unavailable(error)
            return default

    def set(self, key: str, value: Any, timeout: float | None = None) -> None:
        try:
            cache.set(key, value, timeout)
        except (RedisError, OSError) as error:
            _log_unavailable(error)


def _log_unavailable(error: Exception) -> None:
    logger.warning("throttle store unavailable; request allowed", extra={"event": "resilience", "error": repr(error)})


class _SharedRateThrottle(SimpleRateThrottle):
    """A throttle whose counts live in Redis, read per request, failing open.

    DRF reads the rates once at import; reading them here lets settings
    overrides (and tests) take effect.
    """

    cache = _FailOpenCache()

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def _key(self, ident: str) -> str:
        # Hashed: a username may be any text, and keys should be short and plain.
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}


class LoginClientThrottle(_SharedRateThrottle):
    """Login attempts per client address (REMOTE_ADDR, or X-Forwarded-For behind `NUM_PROXIES` proxies)."""

    scope = "login-client"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self._key(self.get_ident(request))


class LoginUsernameThrottle(_SharedRateThrottle):
    """Login attempts per username, from any number of addresses."""

    scope = "login-username"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        data = request.data
        username = data.get("username") if isinstance(data, dict) else None
        if not isinstance(username, str) or not username:
            return None  # the serializer answers 400; nothing to count against
        return self._key(username.casefold())


class CheckoutClientThrottle(_SharedRateThrottle):
    """Checkouts per client address: generous, it stops floods rather than shoppers."""

    scope = "checkout-client"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self._key(self.get_ident(request))
