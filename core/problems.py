"""RFC 7807 problem details for every error the API can return.

DRF errors go through `problem_exception_handler`; errors Django raises outside
DRF views (unknown URLs, a database outage in middleware) through the handlers
and middleware below. A stack trace never reaches a client: unexpected errors
are logged with it and answered with a bare 500 problem.
"""
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from core.correlation import get_correlation_id
from core.errors import DomainError, InvalidRequest

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://errors.ecommerce.example/"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "unprocessable-content",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


def problem_title(status_code: int) -> str:
    return _TITLES.get(status_code, "Error")


def problem_body(
    *,
    status_code: int,
    detail: str,
    problem_type: str | None = None,
    title: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (problem_type or _TYPES.get(status_code, "error")),
        "title": title or problem_title(status_code),
        "status": status_code,
        "detail": detail,
        "correlationId": get_correlation_id(),
    }
    body.update(extensions or {})
    return body


def problem_response(**kwargs: Any) -> JsonResponse:
    """Render a problem outside DRF (plain Django views and handlers)."""
    body = problem_body(**kwargs)
    return JsonResponse(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE)


def validation_error(detail: Any) -> DomainError:
    """A 400 carrying DRF serializer errors as `errors` (field path → messages)."""
    errors = _flatten_errors(detail)
    return InvalidRequest(_first_message(errors), problem_type="validation-error", extensions={"errors": errors})


def domain_error_body(error: DomainError) -> dict[str, Any]:
    return problem_body(
        status_code=error.status_code, detail=error.detail, problem_type=error.problem_type, extensions=error.extensions
    )


def _flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into `field.path → messages`."""
    errors: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = f"{prefix}.{field}" if prefix else str(field)
            if field == "non_field_errors":
                name = prefix or "body"
            for key, messages in _flatten_errors(value, name).items():
                errors.setdefault(key, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            errors[prefix or "body"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    errors.update(_flatten_errors(item, f"{prefix}[{index}]"))
    else:
        errors[prefix or "body"] = [str(detail)]
    return errors


def _first_message(errors: dict[str, list[str]]) -> str:
    for field, messages in errors.items():
        if messages:
            return f"{field}: {messages[0]}"
    return "The request is invalid."


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer every exception raised in a DRF view with problem+json."""
    _render_as_json(context)
    headers: dict[str, str] = {}
    extensions: dict[str, Any] = {}
    problem_type = None

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, RequestDataTooBig):
        # Raised by Django while DRF reads `request.data`.
        return _problem(413, _too_large_detail(), None)
    if isinstance(exc, UnreadablePostError):
        # The client stopped sending its body (or sent it slower than the
        # read timeout allows); see `core.slow_clients`.
        return _problem(408, BODY_NOT_RECEIVED, None)
    if isinstance(exc, DomainError):
        set_rollback()
        return _problem(exc.status_code, exc.detail, exc.problem_type, exc.extensions)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable", exc_info=exc)
        set_rollback()
        return _problem(503, "The database is unavailable; retry later.", "service-unavailable")
    if isinstance(exc, DatabaseError):
        logger.exception("database error", exc_info=exc)
        set_rollback()
        return _problem(500, "An unexpected error occurred.", None)

    if not isinstance(exc, exceptions.APIException):
        logger.error("unhandled error", exc_info=exc)
        set_rollback()
        return _problem(500, "An unexpected error occurred.", None)

    status_code = exc.status_code
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten_errors(exc.detail)
        extensions["errors"] = errors
        detail = _first_message(errors)
        problem_type = "validation-error"
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else str(exc.default_detail)

    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        status_code = status.HTTP_401_UNAUTHORIZED
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    if getattr(exc, "wait", None) is not None:
        # Rounded up: a client that waits exactly this long is let through.
        headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))

    set_rollback()
    return _problem(status_code, detail, problem_type, extensions, headers)


def _render_as_json(context: dict[str, Any]) -> None:
    # A browser's Accept header would otherwise pick the browsable API's
    # HTML renderer for an error labelled problem+json.
    request = context.get("request")
    if request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def _problem(
    status_code: int,
    detail: str,
    problem_type: str | None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = problem_body(
        status_code=status_code, detail=detail, problem_type=problem_type, extensions=extensions
    )
    return Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)


def _too_large_detail() -> str:
    return f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return problem_response(status_code=413, detail=_too_large_detail())
    return problem_response(status_code=400, detail="The request could not be understood.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_response(status_code=403, detail="You do not have permission to do this.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return problem_response(status_code=404, detail=f"No resource at {request.path}.")


def handler500(request: HttpRequest) -> JsonResponse:
    return problem_response(status_code=500, detail="An unexpected error occurred.")


class DatabaseUnavailableMiddleware:
    """Answer 503 when the database is down outside a DRF view (admin, sessions)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)):
            logger.error("database unavailable", exc_info=exception)
            return problem_response(
                status_code=503,
                detail="The database is unavailable; retry later.",
                problem_type="service-unavailable",
            )
        return None


API_PREFIX = "/api/"
# The 408's detail: the client stopped sending its body (core.slow_clients).
BODY_NOT_RECEIVED = "The request body was not received in time."


class ApiProblemMiddleware:
    """Answer problem+json for every error under `/api/`, whatever `DEBUG` says.

    With `DEBUG` on, Django renders an unknown URL (and a `SuspiciousOperation`
    or an unhandled error outside DRF) as its HTML debug page, chosen at request
    time; Django's own 405 has an empty HTML body. An API client must never get
    either: it would list every URL pattern, and clients parse problem+json.
    Pages outside `/api/` keep Django's behaviour.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith(API_PREFIX)
            and not _is_json(response.get("Content-Type", ""))
        ):
            return _problem_for_status(request, response)
        return response


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ("application/json", PROBLEM_CONTENT_TYPE)


def _problem_for_status(request: HttpRequest, response: HttpResponse) -> JsonResponse:
    status_code = response.status_code
    if status_code == 404:
        return handler404(request)
    if status_code == 405:
        problem = problem_response(status_code=405, detail=f"Method {request.method} is not allowed here.")
        if response.has_header("Allow"):
            problem["Allow"] = response["Allow"]
        return problem
    if status_code >= 500:
        return handler500(request)
    return problem_response(status_code=status_code, detail=f"{problem_title(status_code)}.")
