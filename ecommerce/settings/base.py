"""Settings shared by every environment; each concern has a module named after what it holds."""
from .env import BASE_DIR, env

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# Said wherever a secret is missing: no key of this platform is ever written in
# the repository (anyone could sign a manager token with it).
SECRET_KEY_HINT = (
    "Set DJANGO_SECRET_KEY to a random value of at least 50 characters, e.g. "
    "DJANGO_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'); "
    "scripts/run.sh writes one into .env on its first run."
)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "ecommerce",
    "outbox",
    "deadletters",
    "catalog",
    "checkout",
    "payments",
    "orders",
]

MIDDLEWARE = [
    "core.slow_clients.RequestReadTimeoutMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "core.correlation.CorrelationIdMiddleware",
    # Before everything that costs: a refused request does no other work. Its
    # 503 is counted by django-prometheus and carries the correlation id.
    "core.shedding.LoadSheddingMiddleware",
    # Inside the correlation id (its problems carry it), outside everything
    # that can answer an error page.
    "core.problems.ApiProblemMiddleware",
    "core.problems.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the API docs' static files from gunicorn itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "ecommerce.urls"
WSGI_APPLICATION = "ecommerce.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Request limits (core/parsers.py, core/slow_clients.py). A body over
# this many bytes answers 413; the largest legitimate body (a product with a
# 10,000-character description) is far below it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)
# A client that sends nothing of its body for this long loses the request (408).
REQUEST_READ_TIMEOUT_SECONDS = env.float("REQUEST_READ_TIMEOUT_SECONDS", default=10.0)
# Load shedding (core/shedding.py): API requests working at once per web
# process (at least 2, below gunicorn's threads, which stay free to refuse the
# excess and answer health checks), and the Retry-After of the 503 beyond it.
# 8 of gunicorn's 14 threads: at 4, bursts of an open-loop 25 checkouts/s (below
# capacity) were shed (4 and 19 of 1,500 in two runs); at 8 none were (README,
# Benchmark).
WEB_SHED_MAX_IN_FLIGHT = max(env.int("WEB_SHED_MAX_IN_FLIGHT", default=8), 2)
WEB_SHED_RETRY_AFTER_SECONDS = env.int("WEB_SHED_RETRY_AFTER_SECONDS", default=1)
# A request that finds every slot taken waits this long for one, and at most
# this many wait at once per process (the rest are refused at once): with
# gunicorn's 14 threads, 8 working and 4 waiting leave 2 for health checks.
# A stall of a quarter second no longer sheds below capacity (core/shedding.py).
WEB_SHED_QUEUE_SECONDS = max(env.float("WEB_SHED_QUEUE_SECONDS", default=0.25), 0.0)
WEB_SHED_MAX_QUEUED = max(env.int("WEB_SHED_MAX_QUEUED", default=4), 0)

STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

# /metrics (core/auth.py `metrics_access`): open unless production settings
# require a bearer token or a client address in one of the allowed networks.
METRICS_AUTH_REQUIRED = False
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=[])

# Defects planted on purpose for the soak checker's tests (core/planted.py):
# none, whatever the environment says. Only the test settings read
# PLANTED_DEFECTS; the local and production settings refuse to start when it is set.
PLANTED_DEFECTS: frozenset[str] = frozenset()

from .database import *  # noqa: E402,F401,F403
from .logging import *  # noqa: E402,F401,F403
from .redis import *  # noqa: E402,F401,F403
from .rest import *  # noqa: E402,F401,F403
from .celery import *  # noqa: E402,F401,F403
from .kafka import *  # noqa: E402,F401,F403
from .outbox import *  # noqa: E402,F401,F403
from .resilience import *  # noqa: E402,F401,F403
from .checkout import *  # noqa: E402,F401,F403
from .orders import *  # noqa: E402,F401,F403
from .payments import *  # noqa: E402,F401,F403
