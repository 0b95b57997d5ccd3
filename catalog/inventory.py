"""Stock: the one place that locks products and takes or gives back their stock.

Every writer that changes stock locks the products it touches here, in id
order, after any cart row (see `checkout.services.checkout_create`), so two
writers never wait on each other in opposite orders. The database has the
last word: a CHECK constraint refuses negative stock whatever a caller does.
(Saleor keeps the same concern in `checkout/lock_objects.py`.)
"""
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from django.db import connection
from django.db.models import F, Model

from catalog.models import Product
from core.db import rows_with_related

RowT = TypeVar("RowT", bound=Model)


@dataclass(frozen=True)
class Shortage:
    product_id: uuid.UUID
    sku: str | None  # None: the product no longer exists
    requested: int
    available: int


def stock_lock(*, product_ids: set[uuid.UUID] | list[uuid.UUID]) -> dict[uuid.UUID, Product]:
    """Lock the products (in id order) until the transaction ends; return those that exist.

    FOR NO KEY UPDATE: stock changes no key, and a cart add or an order item
    referencing a locked product (its foreign key check) need not wait for it.
    """
    locked = Product.objects.select_for_update(of=("self",), no_key=True).filter(id__in=product_ids).order_by("id")
    return {product.id: product for product in locked}


def stock_read_related(model: type[RowT], field_name: str, value: object, *, field: str = "product") -> list[RowT]:
    """The rows of `model` whose `field_name` is `value`, with their products, in one statement; nothing locked.

    What they show of stock may be gone by the time it is taken: `stock_take`
    checks again under the row's lock.
    """
    return rows_with_related(model, field_name, value, related=field)


def stock_shortages(*, products: Mapping[uuid.UUID, Product], wanted: Mapping[uuid.UUID, int]) -> list[Shortage]:
    """What of `wanted` the products as read cannot supply (an inactive product supplies nothing)."""
    shortages = []
    for product_id, quantity in wanted.items():
        product = products.get(product_id)
        available = product.inventory_quantity if product is not None and product.is_active else 0
        if quantity > available:
            shortages.append(
                Shortage(product_id=product_id, sku=product.sku if product else None, requested=quantity, available=available)
            )
    return shortages


# Built once: the ORM's update() compiles its statement on every call (see core.db's rows by key).
# The stock is checked where it is taken, under the row's lock; the CHECK constraint backs it.
_STOCK_TAKE = (
    f"UPDATE {Product._meta.db_table} SET inventory_quantity = inventory_quantity - %s "
    "WHERE id = %s AND is_active AND inventory_quantity >= %s"
)


def stock_take(*, wanted: Mapping[uuid.UUID, int]) -> list[Shortage]:
    """Decrement the stock of every product in `wanted`, in id order; what is short, if any is (roll back then).

    Each product's row stays locked (FOR NO KEY UPDATE, as any UPDATE of
    other columns than its key) until the transaction ends, so a checkout
    takes stock as the last of its writes: checkouts of one product queue
    for each other only from here to the commit. A cart add of the product
    (its foreign key check takes FOR KEY SHARE) does not wait for it.
    """
    with connection.cursor() as cursor:
        for product_id in sorted(wanted):
            cursor.execute(_STOCK_TAKE, [wanted[product_id], product_id, wanted[product_id]])
            if cursor.rowcount != 1:
                return _shortages_now(wanted, refused=product_id)
    return []


def _shortages_now(wanted: Mapping[uuid.UUID, int], *, refused: uuid.UUID) -> list[Shortage]:
    """A refused take's figures, read as the products are now; `refused` named even if restocked since."""
    products = {product.id: product for product in Product.objects.filter(id__in=list(wanted))}
    if shortages := stock_shortages(products=products, wanted=wanted):
        return shortages
    product = products.get(refused)
    return [
        Shortage(
            product_id=refused, sku=product.sku if product else None, requested=wanted[refused],
            available=product.inventory_quantity if product else 0,
        )
    ]


def stock_release(*, returned: Mapping[uuid.UUID, int]) -> None:
    """Give stock back (a cancelled order); products deleted since are skipped."""
    for product_id in stock_lock(product_ids=list(returned)):
        Product.objects.filter(id=product_id).update(inventory_quantity=F("inventory_quantity") + returned[product_id])
