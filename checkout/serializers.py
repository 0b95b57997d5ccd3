"""Input and output shapes of the customer API (camelCase on the wire)."""
from decimal import Decimal

from django.core.validators import RegexValidator
from rest_framework import serializers

from ecommerce.pagination import PagedQuery

SESSION_ID_MAX_LENGTH = 128


class CategoryInput(serializers.Serializer):
    name = serializers.CharField(min_length=1, max_length=100)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class CategoryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class ProductInput(serializers.Serializer):
    sku = serializers.CharField(
        max_length=50,
        validators=[RegexValidator(r"^[A-Z0-9-]+$", "Use only A-Z, 0-9 and '-'.")],
    )
    name = serializers.CharField(min_length=1, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10000)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    inventoryQuantity = serializers.IntegerField(min_value=0, max_value=2_000_000_000)
    categoryId = serializers.UUIDField()
    isActive = serializers.BooleanField(required=False, default=True)


class ProductOutput(serializers.Serializer):
    id = serializers.UUIDField()
    sku = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    inventoryQuantity = serializers.IntegerField(source="inventory_quantity")
    categoryId = serializers.UUIDField(source="category_id")
    isActive = serializers.BooleanField(source="is_active")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class ProductQuery(PagedQuery):
    categoryId = serializers.UUIDField(required=False)
    isActive = serializers.BooleanField(required=False, default=True)


class CartItemAddInput(serializers.Serializer):
    productId = serializers.UUIDField()
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)


class CartItemUpdateInput(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=1, max_value=1_000_000)


class ShippingAddressInput(serializers.Serializer):
    street = serializers.CharField(max_length=200)
    city = serializers.CharField(max_length=100)
    state = serializers.CharField(max_length=100)
    postalCode = serializers.CharField(max_length=20)
    country = serializers.CharField(max_length=100)


class CustomerInfoInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField(max_length=254)
    phone = serializers.RegexField(r"^\+?[0-9]{10,20}$", max_length=21)
    shippingAddress = ShippingAddressInput()


class CheckoutInput(serializers.Serializer):
    sessionId = serializers.CharField(max_length=SESSION_ID_MAX_LENGTH)
    customerInfo = CustomerInfoInput()


class CheckoutOutput(serializers.Serializer):
    orderNumber = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()


class CartItemOutput(serializers.Serializer):
    id = serializers.UUIDField()
    productId = serializers.UUIDField()
    productSku = serializers.CharField()
    productName = serializers.CharField()
    quantity = serializers.IntegerField()
    priceSnapshot = serializers.DecimalField(max_digits=12, decimal_places=2)
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)


class CartOutput(serializers.Serializer):
    """Documents the cart shape; carts are rendered by `checkout.selectors.cart_document`."""

    id = serializers.UUIDField()
    sessionId = serializers.CharField()
    items = CartItemOutput(many=True)
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)
    createdAt = serializers.DateTimeField()
    updatedAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField()
