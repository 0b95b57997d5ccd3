"""Writes of the catalog: categories and products (stock moves live in inventory.py)."""
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Category, Product
from core.errors import Conflict, NotFound

logger = logging.getLogger(__name__)



# Catalog -------------------------------------------------------------------


@transaction.atomic
def category_create(*, name: str, description: str) -> Category:
    try:
        with transaction.atomic():
            return Category.objects.create(name=name, description=description)
    except IntegrityError:
        raise Conflict(f"A category named {name!r} already exists.", problem_type="duplicate-name") from None


@transaction.atomic
def category_update(*, category_id: uuid.UUID, name: str, description: str) -> Category:
    category = Category.objects.select_for_update().filter(id=category_id).first()
    if category is None:
        raise NotFound(f"Category {category_id} not found.")
    category.name = name
    category.description = description
    try:
        with transaction.atomic():
            category.save()
    except IntegrityError:
        raise Conflict(f"A category named {name!r} already exists.", problem_type="duplicate-name") from None
    return category


@transaction.atomic
def category_delete(*, category_id: uuid.UUID) -> None:
    category = Category.objects.select_for_update().filter(id=category_id).first()
    if category is None:
        raise NotFound(f"Category {category_id} not found.")
    product_count = Product.objects.filter(category=category).count()
    if product_count:
        raise Conflict(
            f"Category {category.name!r} still has {product_count} product(s).",
            problem_type="category-not-empty",
            extensions={"productCount": product_count},
        )
    category.delete()


@dataclass(frozen=True)
class ProductData:
    sku: str
    name: str
    description: str
    price: Decimal
    inventory_quantity: int
    category_id: uuid.UUID
    is_active: bool = True


def _category_require(category_id: uuid.UUID) -> Category:
    category = Category.objects.filter(id=category_id).first()
    if category is None:
        raise NotFound(f"Category {category_id} not found.", problem_type="category-not-found")
    return category


def _product_save(product: Product) -> Product:
    try:
        with transaction.atomic():
            product.save()
    except IntegrityError:
        raise Conflict(f"A product with SKU {product.sku!r} already exists.", problem_type="duplicate-sku") from None
    return product


@transaction.atomic
def product_create(*, data: ProductData) -> Product:
    category = _category_require(data.category_id)
    product = Product(
        sku=data.sku,
        name=data.name,
        description=data.description,
        price=data.price,
        inventory_quantity=data.inventory_quantity,
        category=category,
        is_active=data.is_active,
    )
    return _product_save(product)


@transaction.atomic
def product_update(*, product_id: uuid.UUID, data: ProductData) -> Product:
    product = Product.objects.select_for_update().filter(id=product_id).first()
    if product is None:
        raise NotFound(f"Product {product_id} not found.")
    product.category = _category_require(data.category_id)
    product.sku = data.sku
    product.name = data.name
    product.description = data.description
    product.price = data.price
    product.inventory_quantity = data.inventory_quantity
    product.is_active = data.is_active
    return _product_save(product)


@transaction.atomic
def product_deactivate(*, product_id: uuid.UUID) -> None:
    """Soft delete: the product leaves the catalog but orders keep referring to it."""
    updated = Product.objects.filter(id=product_id).update(is_active=False, updated_at=timezone.now())
    if not updated:
        raise NotFound(f"Product {product_id} not found.")
