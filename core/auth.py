"""Manager authentication (`POST /auth/login` issues a bearer token, simplejwt) and /metrics access."""
import hmac
import ipaddress
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import AccessToken

from core.errors import DomainError
from core.openapi import problem_responses
from core.problems import problem_response
from core.throttles import LoginClientThrottle, LoginUsernameThrottle


class InvalidCredentials(DomainError):
    status_code = 401
    problem_type = "invalid-credentials"


def user_is_manager(user) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or user.groups.filter(name=settings.MANAGER_GROUP_NAME).exists()


class IsManager(permissions.BasePermission):
    message = "This operation needs a manager."
    # Methods anyone may call; the OpenAPI schema reads it (core.openapi).
    anonymous_methods: tuple[str, ...] = ()

    def has_permission(self, request: Request, view) -> bool:
        return user_is_manager(request.user)


class ManagerOrReadOnly(IsManager):
    anonymous_methods = permissions.SAFE_METHODS

    def has_permission(self, request: Request, view) -> bool:
        return request.method in self.anonymous_methods or super().has_permission(request, view)


class LoginInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class LoginApi(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    # Brute force: attempts per address and per username, shared through Redis.
    throttle_classes = [LoginClientThrottle, LoginUsernameThrottle]

    @extend_schema(
        request=LoginInput,
        responses={
            200: inline_serializer(
                "LoginOutput",
                {
                    "accessToken": serializers.CharField(),
                    "tokenType": serializers.CharField(),
                    "expiresIn": serializers.IntegerField(),
                },
            ),
            **problem_responses(401),
        },
    )
    def post(self, request: Request) -> Response:
        data = LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None or not user.is_active:
            raise InvalidCredentials("Invalid username or password.")
        token = AccessToken.for_user(user)
        return Response(
            {
                "accessToken": str(token),
                "tokenType": "Bearer",
                "expiresIn": int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()),
            }
        )


def metrics_access(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Let a scrape through with `Authorization: Bearer <METRICS_BEARER_TOKEN>` or from `METRICS_ALLOWED_NETWORKS`.

    Only where `METRICS_AUTH_REQUIRED` (production settings). The address is
    REMOTE_ADDR, never a forwarded header: Prometheus scrapes gunicorn
    directly, and the public reverse proxy does not serve /metrics at all.
    """

    @wraps(view)
    def guarded(request: HttpRequest) -> HttpResponse:
        if not settings.METRICS_AUTH_REQUIRED or _metrics_token_valid(request) or _metrics_network_allowed(request):
            return view(request)
        response = problem_response(status_code=401, detail="/metrics needs a bearer token or an allowed network.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response

    return guarded


def _metrics_token_valid(request: HttpRequest) -> bool:
    expected = settings.METRICS_BEARER_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def _metrics_network_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in settings.METRICS_ALLOWED_NETWORKS)
