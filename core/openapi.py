"""The OpenAPI schema generator (drf-spectacular), made to document every error the API answers."""
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

from core.problems import PROBLEM_CONTENT_TYPE, problem_title


class ProblemOutput(serializers.Serializer):
    """RFC 7807 problem details, as every error of the API is rendered (core.problems)."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    correlationId = serializers.CharField(allow_null=True)
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors: field path → messages.",
    )


def problem_responses(*status_codes: int) -> dict[tuple[int, str], OpenApiResponse]:
    """Document the problems an operation answers beyond those `ApiAutoSchema` adds to every operation."""
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemOutput, description=problem_title(code))
        for code in status_codes
    }


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's generator, made to tell the truth about errors and auth.

    Each operation gets the problems that follow from its shape: 400 for any
    input, 401 where a bearer token is read, 403 for manager operations, 404
    for path parameters, 408/413/415 for request bodies, 429 where a throttle
    applies, 503 for a database outage. Operations add their domain problems
    (409, 422, ...) with `problem_responses`. Operations anyone may call have
    no security requirement.
    """

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        problem = {"schema": self.resolve_serializer(ProblemOutput, "response").ref}
        responses = operation.setdefault("responses", {})
        for code in self._problem_codes(operation):
            response = responses.setdefault(str(code), {"description": problem_title(code), "content": {}})
            response.setdefault("content", {}).setdefault(PROBLEM_CONTENT_TYPE, problem)
            if code == 429:
                response["headers"] = {
                    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
                }
        return operation

    def _problem_codes(self, operation: dict[str, Any]) -> list[int]:
        codes = [503]
        has_body = "requestBody" in operation
        if has_body or operation.get("parameters"):
            codes.append(400)
        if self.view.get_authenticators():
            codes.append(401)
        if not self._is_public():
            codes += [401, 403]
        if "{" in self.path:
            codes.append(404)
        if has_body:
            codes += [408, 413, 415]
        if self.view.get_throttles():
            codes.append(429)
        return sorted(set(codes))

    def _is_public(self) -> bool:
        """Whether anyone may call this operation without a token.

        Our permission classes say which methods they open to anonymous
        callers (`anonymous_methods`, core.auth); any other permission
        but AllowAny is taken to need a token.
        """
        return all(
            isinstance(permission, permissions.AllowAny)
            or self.method in getattr(permission, "anonymous_methods", ())
            for permission in self.view.get_permissions()
        )

    def get_auth(self) -> list[dict[str, Any]]:
        if self._is_public():
            return []
        return [requirement for requirement in super().get_auth() if requirement]

    def map_renderers(self, attribute: str) -> list[Any]:
        # Successes are plain JSON; problem+json is documented per error response.
        return [media for media in super().map_renderers(attribute) if media != PROBLEM_CONTENT_TYPE]
