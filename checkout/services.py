"""Writes of the customer side: carts and checkout."""
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from catalog.inventory import Shortage, stock_read_related, stock_shortages, stock_take
from catalog.models import Product
from checkout.cart_cache import cart_cache_delete
from checkout.models import Cart, CartItem
from checkout.selectors import cart_items
from core.db import delete_in_batches, row_get, row_insert
from core.errors import Conflict, InvalidRequest, NotFound
from orders.models import Order
from orders.services import CustomerInfo, OrderLine, order_create

logger = logging.getLogger(__name__)


# Carts ---------------------------------------------------------------------


def _cart_expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + settings.CART_IDLE_TTL


def _cart_invalidate(session_id: str) -> None:
    """Drop the cached cart now and again once the write commits.

    The second delete evicts a copy that a concurrent reader may have cached
    from the pre-commit state in between.
    """
    cart_cache_delete(session_id)
    transaction.on_commit(lambda: cart_cache_delete(session_id))


# One statement for a new cart (a cart's first add, which is most adds): the
# insert locks the row it creates. get_or_create takes four (select for
# update, savepoint, insert, release); the ORM has no ON CONFLICT insert that
# says whether it inserted.
_CART_INSERT_UNLESS_EXISTS = f"""
    INSERT INTO {Cart._meta.db_table} (id, session_id, created_at, updated_at, expires_at)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (session_id) DO NOTHING
"""


def _cart_lock_or_create(session_id: str) -> tuple[Cart, bool]:
    """Lock the session's cart, creating it (or renewing an expired one); say whether it is new."""
    while True:
        now = timezone.now()
        cart = Cart(session_id=session_id, created_at=now, updated_at=now, expires_at=_cart_expiry(now))
        with connection.cursor() as cursor:
            # A concurrent insert of the same session waits here until it commits or rolls back.
            cursor.execute(_CART_INSERT_UNLESS_EXISTS, [cart.id, session_id, now, now, cart.expires_at])
            if cursor.rowcount == 1:
                cart._state.adding = False
                return cart, True
        cart = Cart.objects.select_for_update().filter(session_id=session_id).first()
        if cart is None:
            continue  # deleted between the two statements: insert again
        if cart.expires_at <= now:
            # An idle-expired cart starts over empty rather than reviving stale items.
            cart.items.all().delete()
        return cart, False


def _cart_lock_existing(session_id: str) -> Cart:
    cart = (
        Cart.objects.select_for_update()
        .filter(session_id=session_id, expires_at__gt=timezone.now())
        .first()
    )
    if cart is None:
        raise NotFound(f"Cart {session_id} not found.")
    return cart


def _cart_touch(cart: Cart) -> None:
    cart.expires_at = _cart_expiry()
    cart.save(update_fields=["expires_at", "updated_at"])
    _cart_invalidate(cart.session_id)


# Emptying the cart and stamping it changed in one statement; a QuerySet
# delete would first ask its collector about cascades and signals (there are none).
_CART_EMPTY = f"""
    WITH emptied AS (DELETE FROM {CartItem._meta.db_table} WHERE cart_id = %s)
    UPDATE {Cart._meta.db_table} SET updated_at = %s WHERE id = %s
"""


def _cart_empty(cart: Cart) -> None:
    cart.updated_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CART_EMPTY, [cart.id, cart.updated_at, cart.id])


def _insufficient_stock(shortages: list[Shortage], *, detail: str | None = None) -> Conflict:
    """The 409 naming each product short (a cart add's or a checkout's)."""
    names = ", ".join(shortage.sku or str(shortage.product_id) for shortage in shortages)
    return Conflict(
        detail or f"Insufficient stock for: {names}.",
        problem_type="insufficient-stock",
        extensions={
            "products": [
                {
                    "productId": str(shortage.product_id),
                    "productSku": shortage.sku,
                    "requested": shortage.requested,
                    "available": shortage.available,
                }
                for shortage in shortages
            ]
        },
    )


def _stock_check(product: Product, quantity: int) -> None:
    if quantity > product.inventory_quantity:
        raise _insufficient_stock(
            [Shortage(product_id=product.id, sku=product.sku, requested=quantity, available=product.inventory_quantity)],
            detail=f"Only {product.inventory_quantity} of {product.sku} in stock; {quantity} requested.",
        )


@dataclass(frozen=True)
class CartState:
    """A cart as a write left it, read under the write's lock: what the write answers with."""

    cart: Cart
    items: list[CartItem]  # with their products, in the order they were added


def _cart_state(cart: Cart) -> CartState:
    return CartState(cart=cart, items=cart_items(cart))


@transaction.atomic
def cart_item_add(*, session_id: str, product_id: uuid.UUID, quantity: int) -> CartState:
    """Add a product to the session's cart, creating the cart on first add."""
    product = row_get(Product, "id", product_id)
    if product is None or not product.is_active:
        raise NotFound(f"Product {product_id} not found or not available.", problem_type="product-not-found")
    cart, created = _cart_lock_or_create(session_id)
    # A cart created just now has no items: no query for one (its first add, most adds).
    item = None if created else CartItem.objects.filter(cart=cart, product=product).first()
    new_quantity = quantity + (item.quantity if item else 0)
    _stock_check(product, new_quantity)
    if item:
        item.quantity = new_quantity
        item.price_snapshot = product.price
        item.save(update_fields=["quantity", "price_snapshot", "updated_at"])
    else:
        item = CartItem(cart=cart, product=product, quantity=quantity, price_snapshot=product.price)
        row_insert(item)
    if created:
        # A fresh expiry, nothing cached of it to drop before it commits, and
        # its one item in hand: nothing more to read. After the commit, any
        # stale copy left by a deleted cart of the same session goes.
        transaction.on_commit(lambda: cart_cache_delete(session_id))
        return CartState(cart=cart, items=[item])
    _cart_touch(cart)
    return _cart_state(cart)


@transaction.atomic
def cart_item_update(*, session_id: str, item_id: uuid.UUID, quantity: int) -> CartState:
    cart = _cart_lock_existing(session_id)
    item = CartItem.objects.select_related("product").filter(cart=cart, id=item_id).first()
    if item is None:
        raise NotFound(f"Item {item_id} is not in cart {session_id}.")
    _stock_check(item.product, quantity)
    item.quantity = quantity
    item.save(update_fields=["quantity", "updated_at"])
    _cart_touch(cart)
    return _cart_state(cart)


@transaction.atomic
def cart_item_remove(*, session_id: str, item_id: uuid.UUID) -> CartState:
    cart = _cart_lock_existing(session_id)
    deleted, _ = CartItem.objects.filter(cart=cart, id=item_id).delete()
    if not deleted:
        raise NotFound(f"Item {item_id} is not in cart {session_id}.")
    _cart_touch(cart)
    return _cart_state(cart)


@transaction.atomic
def cart_delete(*, session_id: str) -> None:
    deleted, _ = Cart.objects.filter(session_id=session_id, expires_at__gt=timezone.now()).delete()
    if not deleted:
        raise NotFound(f"Cart {session_id} not found.")
    _cart_invalidate(session_id)


def carts_expired_delete(*, batch_size: int) -> int:
    """Delete idle-expired carts (and their items) in small batches; return how many went."""
    return delete_in_batches(Cart.objects.filter(expires_at__lte=timezone.now()), batch_size=batch_size)


# Checkout ------------------------------------------------------------------


# No savepoint when nested: the caller's (the idempotent request's) savepoint
# already undoes this checkout's writes on an error, and a savepoint of its
# own costs two more statements per checkout.
@transaction.atomic(savepoint=False)
def checkout_create(*, session_id: str, customer: CustomerInfo, correlation_id: str | None) -> Order:
    """Turn the session's cart into a PENDING order, all in one transaction.

    Lock order: the cart, then its products by id. Every writer that takes
    both takes them in this order, so concurrent checkouts queue instead of
    deadlocking. The products are locked last, by taking their stock after
    every other write: two checkouts of one product queue only for that
    and the commit, not for each other's whole transaction.
    """
    cart = row_get(Cart, "session_id", session_id, lock=True)
    if cart is None or cart.expires_at <= timezone.now():
        raise InvalidRequest(f"Cart {session_id} not found or expired.", problem_type="cart-not-found")
    # The items and their products in one statement; the cart's lock covers the items.
    read = stock_read_related(CartItem, "cart", cart.id)
    if not read:
        raise InvalidRequest(f"Cart {session_id} is empty.", problem_type="cart-empty")
    items = sorted(read, key=lambda item: (item.created_at, item.id))

    wanted: dict[uuid.UUID, int] = {}
    for item in items:
        wanted[item.product_id] = wanted.get(item.product_id, 0) + item.quantity
    products = {item.product_id: item.product for item in read}
    # Refused before any write when the stock as read is short; stock_take checks again under the lock.
    if shortages := stock_shortages(products=products, wanted=wanted):
        raise _insufficient_stock(shortages)

    order = order_create(
        customer=customer,
        lines=[
            OrderLine(
                product_id=item.product_id,
                product_sku=products[item.product_id].sku,
                product_name=products[item.product_id].name,
                quantity=item.quantity,
                # The price the customer saw in the cart is the price they pay.
                price_snapshot=item.price_snapshot,
            )
            for item in items
        ],
        cart_id=cart.id,
        correlation_id=correlation_id,
    )
    _cart_empty(cart)
    _cart_invalidate(session_id)
    if shortages := stock_take(wanted=wanted):
        # Sold or deactivated meanwhile: the caller's savepoint undoes the order (its number stays a gap).
        raise _insufficient_stock(shortages)
    logger.info("checkout committed", extra={"order_number": order.order_number})
    return order
