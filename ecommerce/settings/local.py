"""Development on a workstation: the local services, debug on, a secret of this checkout's own."""
import secrets
import warnings

from core.planted import planted_defects_validate

from .base import *  # noqa: F403
from .env import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# scripts/run.sh generates a random key into the untracked .env on its first
# run. Without one (a bare `manage.py` command), a random key for this process
# only: never a key from the repository, which would let anyone sign tokens.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    SECRET_KEY = secrets.token_urlsafe(50)
    warnings.warn(
        "DJANGO_SECRET_KEY is not set: using a random key for this process only, so tokens "
        f"and sessions do not survive it. {SECRET_KEY_HINT}",  # noqa: F405
        RuntimeWarning,
        stacklevel=1,
    )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING["handlers"]["console"]["formatter"] = LOG_FORMAT  # noqa: F405

# The per-client checkout limit counts by client address, and every bench and
# fault drill on this machine comes from one address (loopback): at
# production's 300/min they would measure the throttle (429s), not the
# platform. Development on this machine gets a limit no bench reaches; set
# THROTTLE_CHECKOUT_CLIENT_RATE to try the limit itself.
REST_FRAMEWORK = {  # noqa: F405
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {
        **REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],  # noqa: F405
        "checkout-client": env.str("THROTTLE_CHECKOUT_CLIENT_RATE", default="1000000/min"),
    },
}

# Planted defects are for the soak checker's tests (core/planted.py): refused here too.
planted_defects_validate(env.list("PLANTED_DEFECTS", default=[]), environment="local")
