"""Order API shapes (camelCase on the wire)."""
from rest_framework import serializers

from orders.models import OrderStatus


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


class OrderListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=OrderStatus.choices, required=False)
    customerEmail = serializers.EmailField(required=False)
    # A date means the whole day (UTC); a date-time is used as given.
    startDate = serializers.CharField(required=False)
    endDate = serializers.CharField(required=False)
    page = serializers.IntegerField(min_value=0, default=0)
    size = serializers.IntegerField(min_value=1, max_value=100, default=20)


class OrderCancelInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)


class OrderFulfillInput(serializers.Serializer):
    trackingNumber = serializers.CharField(max_length=100)
    carrier = serializers.CharField(max_length=100)
    notes = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
