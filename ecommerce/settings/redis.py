"""Redis: the cart cache (Celery's broker is configured in celery.py)."""
from redis.backoff import NoBackoff
from redis.retry import Retry

from .env import env

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Redis is an accelerator for carts, never a dependency of a request: short
# socket timeouts keep a dead or hung Redis from stalling the API.
REDIS_SOCKET_TIMEOUT_SECONDS = env.float("REDIS_SOCKET_TIMEOUT_SECONDS", default=0.25)

CACHES = {
    "default": {
        # One redis client per pool, not per call (ecommerce/cache.py).
        "BACKEND": "ecommerce.cache.ReusedClientRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="ecommerce"),
        "OPTIONS": {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            # No reconnect loop: a cache miss is cheaper than waiting for Redis.
            "retry": Retry(NoBackoff(), 0),
        },
    }
}

# Circuit breaker state shared by every process (resilience/breaker.py).
RESILIENCE_REDIS_URL = env.str("RESILIENCE_REDIS_URL", default="") or REDIS_URL
