"""Redis: the cart cache and the circuit breakers' shared state (Celery's broker is configured in celery.py)."""
from typing import Any

from redis.backoff import NoBackoff
from redis.retry import Retry

from .env import env

# Redis is an accelerator for carts, never a dependency of a request: short
# socket timeouts keep a dead or hung Redis from stalling the API.
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=0.25)


def redis_settings(redis_url: str, *, resilience_redis_url: str = "", cache_key_prefix: str) -> dict[str, Any]:
    """Every setting derived from the Redis URL, so a settings module that changes the URL changes them all."""
    return {
        "REDIS_URL": redis_url,
        "CACHES": {
            "default": {
                # One redis client per pool, not per call (core/cache.py).
                "BACKEND": "core.cache.ReusedClientRedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": cache_key_prefix,
                "OPTIONS": {
                    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                    "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
                    # No reconnect loop: a cache miss is cheaper than waiting for Redis.
                    "retry": Retry(NoBackoff(), 0),
                },
            }
        },
        # Circuit breaker state shared by every process (resilience/breaker.py).
        "RESILIENCE_REDIS_URL": resilience_redis_url or redis_url,
    }


_derived = redis_settings(
    env.str("REDIS_URL", default="redis://127.0.0.1:6379/0"),
    resilience_redis_url=env.str("RESILIENCE_REDIS_URL", default=""),
    cache_key_prefix=env.str("CACHE_KEY_PREFIX", default="ecommerce"),
)
REDIS_URL = _derived["REDIS_URL"]
CACHES = _derived["CACHES"]
RESILIENCE_REDIS_URL = _derived["RESILIENCE_REDIS_URL"]
