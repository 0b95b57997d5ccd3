"""Development on a workstation: the local services, debug on, a throwaway secret."""
from .base import *  # noqa: F403
from .env import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret-0123456789")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # noqa: F405
