"""Order reads."""
from datetime import datetime

from django.db.models import Prefetch, QuerySet

from core.errors import NotFound
from orders.models import Order, OrderItem


def _with_items(queryset: QuerySet[Order]) -> QuerySet[Order]:
    return queryset.prefetch_related(Prefetch("items", queryset=OrderItem.objects.order_by("product_sku", "id")))


def order_get(*, order_number: str) -> Order:
    order = _with_items(Order.objects.filter(order_number=order_number)).first()
    if order is None:
        raise NotFound(f"Order {order_number} not found.")
    return order


def order_list(
    *,
    status: str | None = None,
    customer_email: str | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Order]:
    """Orders newest first, filtered; `created_before` is exclusive."""
    queryset = Order.objects.all()
    if status:
        queryset = queryset.filter(status=status)
    if customer_email:
        queryset = queryset.filter(customer_email__iexact=customer_email)
    if created_from:
        queryset = queryset.filter(created_at__gte=created_from)
    if created_before:
        queryset = queryset.filter(created_at__lt=created_before)
    return _with_items(queryset.order_by("-created_at", "-order_number"))
