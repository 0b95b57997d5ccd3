"""Django REST framework, JWT and the OpenAPI schema."""
from datetime import timedelta

from .env import env

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "core.renderers.ProblemJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.GuardedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ApiAutoSchema",
    "EXCEPTION_HANDLER": "core.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
    # Throttles count in Django's cache (Redis), so every web worker shares them.
    "DEFAULT_THROTTLE_RATES": {
        "login-username": env.str("THROTTLE_LOGIN_USERNAME_RATE", default="10/min"),
        "login-client": env.str("THROTTLE_LOGIN_CLIENT_RATE", default="20/min"),
        "checkout-client": env.str("THROTTLE_CHECKOUT_CLIENT_RATE", default="300/min"),
    },
    # How many reverse proxies in front of gunicorn append to X-Forwarded-For.
    # 0: the client address is REMOTE_ADDR and X-Forwarded-For is ignored, so a
    # client cannot pick its own throttle bucket. compose sets 1 (nginx).
    "NUM_PROXIES": env.int("API_TRUSTED_PROXY_COUNT", default=0),
}

# Deepest JSON body accepted (core/parsers.py); ours nest three levels.
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=20)

ACCESS_TOKEN_LIFETIME = timedelta(minutes=env.int("JWT_ACCESS_TOKEN_MINUTES", default=60))

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": ACCESS_TOKEN_LIFETIME,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}
# Without its own key, tokens are signed with SECRET_KEY (simplejwt's default).
if env.str("JWT_SIGNING_KEY", default=""):
    SIMPLE_JWT["SIGNING_KEY"] = env.str("JWT_SIGNING_KEY")

SPECTACULAR_SETTINGS = {
    "TITLE": "E-commerce checkout API",
    "DESCRIPTION": "Catalog, guest carts, idempotent checkout and orders (docs/contract.md in the repository).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The UIs' assets from drf_spectacular_sidecar's static files, served by the
    # platform (whitenoise), instead of a CDN's @latest: the docs render on a
    # machine without internet, and run only the pinned version's script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The role a user needs for the manager endpoints (docs/contract.md "Managers").
MANAGER_GROUP_NAME = "manager"
