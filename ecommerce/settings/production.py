"""Production: no default secret, DEBUG off, HTTPS enforced, operational pages behind credentials.

`manage.py check --deploy` passes with these settings (tests/ecommerce/test_hardening.py
runs it); the one warning silenced is justified below.
"""
from django.core.exceptions import ImproperlyConfigured

from core.planted import planted_defects_validate

from .base import *  # noqa: F403
from .env import env

DEBUG = False

# Django's own --deploy check asks for 50 characters; refuse to start with less.
MIN_SECRET_LENGTH = 50
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if len(SECRET_KEY) < MIN_SECRET_LENGTH:
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is missing or shorter than {MIN_SECRET_LENGTH} characters. {SECRET_KEY_HINT}"  # noqa: F405
    )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
JWT_SIGNING_KEY = env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY
if len(JWT_SIGNING_KEY) < MIN_SECRET_LENGTH:
    raise ImproperlyConfigured(f"JWT_SIGNING_KEY is shorter than {MIN_SECRET_LENGTH} characters. {SECRET_KEY_HINT}")  # noqa: F405
SIMPLE_JWT["SIGNING_KEY"] = JWT_SIGNING_KEY  # noqa: F405

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
# TLS ends at the reverse proxy, which must set X-Forwarded-Proto itself
# (overwriting any client value, as compose's nginx does): Django then knows
# which requests came over HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# Probes and Prometheus talk to gunicorn directly over the internal network.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [
    # HSTS preload (security.W021) is a promise to browser vendors about the
    # whole registered domain, which only its owner can make: it stays a
    # deliberate opt-in (DJANGO_SECURE_HSTS_PRELOAD), not a default.
    "security.W021",
]

METRICS_AUTH_REQUIRED = True

# A test and drill hook (orders/management/commands/consume_orders.py): a
# production consumer that kills itself after every commit would pay orders
# one at a time, restarting forever.
if CONSUMER_CRASH_AFTER_DB_COMMIT:  # noqa: F405
    raise ImproperlyConfigured("CONSUMER_CRASH_AFTER_DB_COMMIT is a test and drill hook; production refuses it.")
# Planted defects are for the soak checker's tests (core/planted.py): refused here.
planted_defects_validate(env.list("PLANTED_DEFECTS", default=[]), environment="production")
