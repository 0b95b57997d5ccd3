"""The test suite: the real services named by the environment, isolated key spaces."""
from .base import *  # noqa: F403
from .env import env

SECRET_KEY = "test-only-not-a-secret-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Redis database 15 unless told otherwise: the suite flushes its cache, and must
# never flush the one a running platform uses.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/15")
CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = "ecommerce-test"  # noqa: F405
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/14")
OUTBOX_TRIGGER_ON_COMMIT = env.bool("OUTBOX_TRIGGER_ON_COMMIT", default=False)  # tests drive the relay themselves
LOGGING["root"]["level"] = env.str("LOG_LEVEL", default="WARNING")  # noqa: F405
