"""The test suite: the real services named by the environment, isolated key spaces."""
import os

from core.planted import planted_defects_validate

from .base import *  # noqa: F403
from .database import database_settings
from .env import env
from .redis import redis_settings

SECRET_KEY = "test-only-not-a-secret-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite's own Redis databases, named here and nowhere else. It flushes its
# cache, wipes breaker keys and fills Celery queues, none of which may touch a
# running platform's databases (0 and 1). Read from TEST_* variables, not
# REDIS_URL, so a shell set up for the platform cannot point the suite at the
# platform's data; and every value derived from the URL (cache, breaker
# state) is derived again from this one, not inherited from base.
_redis = redis_settings(env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15"), cache_key_prefix="ecommerce-test")
REDIS_URL = _redis["REDIS_URL"]
CACHES = _redis["CACHES"]
RESILIENCE_REDIS_URL = _redis["RESILIENCE_REDIS_URL"]
CELERY_BROKER_URL = env.str("TEST_CELERY_BROKER_URL", default="redis://127.0.0.1:6379/14")
# Celery reads CELERY_BROKER_URL from the environment before any setting, and a
# platform's value may be there (its shell, or `.env`, which the env reader
# loads): make the environment say what the settings say, for this process and
# every worker or consumer it starts.
os.environ["CELERY_BROKER_URL"] = CELERY_BROKER_URL
# No idle-in-transaction limit by default: pytest-django wraps a test in a
# transaction that stays open, idle, while the test waits for other processes
# (a consumer, a worker, a broker restart), a minute at times. Its own variable,
# so a platform's DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS (.env) never applies.
DATABASES = database_settings(
    idle_in_transaction_timeout_ms=env.int("TEST_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", default=0)
)
OUTBOX_TRIGGER_ON_COMMIT = env.bool("OUTBOX_TRIGGER_ON_COMMIT", default=False)  # tests drive the relay themselves
LOGGING["root"]["level"] = env.str("LOG_LEVEL", default="WARNING")  # noqa: F405
# No test reaches a payment provider it did not start (the `payment_provider` fixture sets its own URL):
# the default, port 9 (discard), refuses connections, where 8100 may be a running platform's provider.
PAYMENT_PROVIDER_URL = env.str("TEST_PAYMENT_PROVIDER_URL", default="http://127.0.0.1:9")
# The soak checker's tests plant defects in the processes they start (core/planted.py).
PLANTED_DEFECTS = planted_defects_validate(env.list("PLANTED_DEFECTS", default=[]), environment="test")
