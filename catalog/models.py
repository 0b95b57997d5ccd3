"""The catalog: categories and products, with their stock.

Its own app so that both sides of an order depend on it and not on each
other: checkout takes stock and creates orders, orders give stock back when
cancelled, and neither imports the other's internals (see `catalog/inventory.py`).
"""
import uuid
from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from core.models import TimestampedModel


class Category(TimestampedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(max_length=1000, blank=True, default="")

    class Meta:
        db_table = "checkout_category"  # moved from the checkout app; the table kept its name
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Product(TimestampedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    sku = models.CharField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(
        max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    inventory_quantity = models.PositiveIntegerField()
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "checkout_product"  # moved from the checkout app; the table kept its name
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["category", "is_active"], name="checkout_pr_categor_7ecef1_idx")]
        constraints = [
            # The last line of defence against oversell: PostgreSQL refuses it.
            models.CheckConstraint(
                condition=Q(inventory_quantity__gte=0), name="product_inventory_not_negative"
            ),
            models.CheckConstraint(condition=Q(price__gte=Decimal("0.01")), name="product_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"
