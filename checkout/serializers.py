"""Input and output shapes of the customer API (camelCase on the wire)."""

from rest_framework import serializers

SESSION_ID_MAX_LENGTH = 128



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
