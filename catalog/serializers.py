"""Input and output shapes of the catalog API (camelCase on the wire)."""
from decimal import Decimal

from django.core.validators import RegexValidator
from rest_framework import serializers

from core.pagination import PagedQuery


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
