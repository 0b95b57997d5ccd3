"""Spring-style pages: 0-based `page`, `size` (default 20, max 100)."""
import math
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# Far beyond any real catalog; keeps page × size inside PostgreSQL's OFFSET range.
MAX_PAGE = 10_000_000


class PagedQuery(serializers.Serializer):
    """The paging half of a list operation's query; list queries extend it with their filters."""

    page = serializers.IntegerField(min_value=0, max_value=MAX_PAGE, default=0)
    size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)


def page_output(item: type[serializers.Serializer]) -> serializers.Serializer:
    """Document the page object `page_of` renders, holding `item`s (OpenAPI only)."""
    return inline_serializer(
        name=item.__name__.removesuffix("Output") + "Page",
        fields={
            "content": item(many=True),
            "totalElements": serializers.IntegerField(),
            "totalPages": serializers.IntegerField(),
            "size": serializers.IntegerField(),
            "number": serializers.IntegerField(),
        },
    )


def page_of(queryset: QuerySet, *, page: int, size: int, render: Callable[[list], Any]) -> dict[str, Any]:
    total = queryset.count()
    rows = list(queryset[page * size : page * size + size]) if page * size < total else []
    return {
        "content": render(rows),
        "totalElements": total,
        "totalPages": math.ceil(total / size) if total else 0,
        "size": size,
        "number": page,
    }
