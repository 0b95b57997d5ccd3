"""Reads of the catalog: categories and products, and the time limit of every customer read."""
import uuid
from contextlib import AbstractContextManager

from django.db.models import QuerySet

from catalog.models import Category, Product
from core.db import statement_timeout
from core.errors import NotFound
from resilience.policies import policy


def category_list() -> QuerySet[Category]:
    return Category.objects.order_by("name")


def category_get(*, category_id: uuid.UUID) -> Category:
    category = Category.objects.filter(id=category_id).first()
    if category is None:
        raise NotFound(f"Category {category_id} not found.")
    return category


def product_list(*, category_id: uuid.UUID | None, is_active: bool) -> QuerySet[Product]:
    queryset = Product.objects.filter(is_active=is_active)
    if category_id is not None:
        queryset = queryset.filter(category_id=category_id)
    return queryset.order_by("name", "id")


def product_get(*, product_id: uuid.UUID) -> Product:
    product = Product.objects.filter(id=product_id).first()
    if product is None:
        raise NotFound(f"Product {product_id} not found.")
    return product


def query_timeout() -> AbstractContextManager[None]:
    """The `catalogQuery` policy: a catalog or cart read that takes longer is abandoned (503)."""
    return statement_timeout(int(policy("catalogQuery").timeout_seconds * 1000))
