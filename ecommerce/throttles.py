"""Rate limits for login (per username and per client) and checkout (per client).

DRF's `SimpleRateThrottle` keeps each bucket's request times in Django's cache,
which is Redis here, so every gunicorn worker and every host share the counts.
Its `timer` is a class attribute: tests replace it to step past a window. The
rates are settings (`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`); a throttled
request answers 429 problem+json with `Retry-After` (ecommerce.problems).
"""
import hashlib
import logging
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


class _SharedRateThrottle(SimpleRateThrottle):
    """A throttle that reads its rate per request and lets requests through when Redis is down.

    DRF reads the rates once at import; reading them here lets settings
    overrides (and tests) take effect. Redis is an accelerator in this
    platform, never a reason to refuse a customer: a cache error allows the
    request and is logged.
    """

    def get_rate(self) -> str | None:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as error:  # redis-py's errors, whatever the cause
            logger.warning(
                "throttle unavailable; request allowed",
                extra={"event": "resilience", "scope": self.scope, "error": repr(error)},
            )
            return True

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
