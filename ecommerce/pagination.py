"""Spring-style pages: 0-based `page`, `size` (default 20, max 100)."""
import math
from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(min_value=0, default=0)
    size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)


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
