"""Correlation ids: taken from `X-Correlation-ID` or generated, echoed, logged."""
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "X-Correlation-ID"
# A client-supplied id is kept only if it is short and plain, so it cannot
# inject into log lines or headers downstream.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> None:
    _correlation_id.set(value)


def new_correlation_id() -> str:
    return str(uuid.uuid4())


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        correlation_id = incoming if _VALID_ID.fullmatch(incoming) else new_correlation_id()
        request.correlation_id = correlation_id
        token = _correlation_id.set(correlation_id)
        try:
            response = self.get_response(request)
        finally:
            _correlation_id.reset(token)
        response[HEADER] = correlation_id
        return response


class CorrelationIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            # Django logs a request's outcome after the middleware has reset
            # the context; the request itself still carries the id then.
            record.correlation_id = _correlation_id.get() or getattr(
                getattr(record, "request", None), "correlation_id", None
            )
        return True
