"""Order API shapes (camelCase on the wire)."""
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from core.pagination import PagedQuery
from orders.models import OrderStatus

_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class OrderItemOutput(serializers.Serializer):
    id = serializers.UUIDField()
    productId = serializers.UUIDField(source="product_id")
    productSku = serializers.CharField(source="product_sku")
    productName = serializers.CharField(source="product_name")
    quantity = serializers.IntegerField()
    priceSnapshot = serializers.DecimalField(source="price_snapshot", max_digits=12, decimal_places=2)
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)


class ShippingAddressOutput(serializers.Serializer):
    street = serializers.CharField()
    city = serializers.CharField()
    state = serializers.CharField()
    postalCode = serializers.CharField()
    country = serializers.CharField()


class CustomerInfoOutput(serializers.Serializer):
    name = serializers.CharField(source="customer_name")
    email = serializers.EmailField(source="customer_email")
    phone = serializers.CharField(source="customer_phone")
    shippingAddress = ShippingAddressOutput(source="shipping_address")


class OrderOutput(serializers.Serializer):
    id = serializers.UUIDField()
    orderNumber = serializers.CharField(source="order_number")
    customerInfo = CustomerInfoOutput(source="*")
    items = OrderItemOutput(many=True, source="items.all")
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)
    status = serializers.CharField()
    paymentStatus = serializers.CharField(source="payment_status")
    cancellationReason = serializers.CharField(source="cancellation_reason", allow_blank=True)
    trackingNumber = serializers.CharField(source="tracking_number", allow_blank=True)
    carrier = serializers.CharField(allow_blank=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")
    completedAt = serializers.DateTimeField(source="completed_at", allow_null=True)
    # Set while the payment's outcome is unknown (the order stays PROCESSING until the provider is asked again).
    paymentUnknownSince = serializers.DateTimeField(source="payment_unknown_since", allow_null=True)


class DateBoundField(serializers.CharField):
    """A filter bound: a bare date (`2026-01-31`, the whole UTC day) or an ISO-8601 date-time.

    Both bounds are inclusive on the wire. The value is an aware UTC datetime:
    the first moment covered, or with `end=True` the first moment after the
    range (exclusive), ready for `created_at < bound`.
    """

    default_error_messages = {
        "invalid_bound": "Use an ISO-8601 date (2026-01-31) or date-time.",
        "out_of_range": "The date is out of the supported range.",
    }

    # Longer than any ISO-8601 date-time; checked before parsing (CharField's
    # own validators run on the parsed value, a datetime).
    MAX_LENGTH = 64

    def __init__(self, *, end: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "A date (the whole day, UTC) or an ISO-8601 date-time; inclusive.")
        super().__init__(**kwargs)
        self.end = end

    def to_internal_value(self, data: Any) -> datetime:
        raw = super().to_internal_value(data)
        if len(raw) > self.MAX_LENGTH:
            self.fail("invalid_bound")
        try:
            if _BARE_DATE.fullmatch(raw):
                start = datetime.combine(date.fromisoformat(raw), time.min, tzinfo=timezone.utc)
                return start + timedelta(days=1) if self.end else start
            moment = parse_datetime(raw)
        except ValueError:  # well-formed but impossible, such as February 30
            self.fail("invalid_bound")
        except OverflowError:  # the day after 9999-12-31
            self.fail("out_of_range")
        if moment is None:
            self.fail("invalid_bound")
        try:
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
            return moment + timedelta(microseconds=1) if self.end else moment
        except OverflowError:  # shifted to UTC (or past the bound) beyond year 1 or 9999
            self.fail("out_of_range")


class OrderListQuery(PagedQuery):
    status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
    customerEmail = serializers.EmailField(required=False)
    startDate = DateBoundField(required=False)
    endDate = DateBoundField(required=False, end=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("startDate"), attrs.get("endDate")
        if start is not None and end is not None and start >= end:  # an empty range
            raise serializers.ValidationError({"endDate": ["endDate must not be before startDate."]})
        return attrs


class OrderCancelInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)


class OrderFulfillInput(serializers.Serializer):
    trackingNumber = serializers.CharField(max_length=100)
    carrier = serializers.CharField(max_length=100)
    notes = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
