"""Helpers shared by the API views."""
from typing import Any

from rest_framework import serializers

from core.problems import validation_error


def parse(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """Validate request data; invalid data raises a 400 with field errors."""
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise validation_error(serializer.errors)
    return serializer.validated_data
