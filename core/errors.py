"""Errors that services raise and the API layer renders as problem+json.

Services know nothing of HTTP; each error carries the status it maps to so the
one exception handler in `core.problems` can render it.
"""
from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    status_code = 400
    problem_type = "bad-request"

    def __init__(
        self, detail: str, *, problem_type: str | None = None, extensions: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if problem_type:
            self.problem_type = problem_type
        self.extensions = dict(extensions or {})


class InvalidRequest(DomainError):
    status_code = 400
    problem_type = "bad-request"


class NotFound(DomainError):
    status_code = 404
    problem_type = "not-found"


class Conflict(DomainError):
    status_code = 409
    problem_type = "conflict"


class Unprocessable(DomainError):
    status_code = 422
    problem_type = "unprocessable-content"
