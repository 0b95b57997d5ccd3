"""Production: no default secret, DEBUG off, secure cookies."""
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .env import env

DEBUG = False
SECRET_KEY = env.str("DJANGO_SECRET_KEY")  # no default: refuse to start without one
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters in production.")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
SIMPLE_JWT["SIGNING_KEY"] = env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY  # noqa: F405

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
# TLS usually ends at the load balancer; turn these on where Django sees HTTPS.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
