"""Reads of the customer side: the cart document."""
from typing import Any

from django.utils import timezone

from checkout.cart_cache import cart_cache_get, cart_cache_set
from checkout.models import Cart, CartItem
from core.errors import NotFound
from core.timestamps import utc_timestamp


def _money(value: Any) -> str:
    return f"{value:.2f}"


def cart_items(cart: Cart) -> list[CartItem]:
    """The cart's items with their products, in the order they were added."""
    return list(CartItem.objects.filter(cart=cart).select_related("product").order_by("created_at", "id"))


def cart_document(cart: Cart, items: list[CartItem]) -> dict[str, Any]:
    """The cart as the API returns it (and as the cache stores it), from the cart and all its items."""
    subtotal = sum((item.subtotal for item in items), 0)
    return {
        "id": str(cart.id),
        "sessionId": cart.session_id,
        "items": [
            {
                "id": str(item.id),
                "productId": str(item.product_id),
                "productSku": item.product.sku,
                "productName": item.product.name,
                "quantity": item.quantity,
                "priceSnapshot": _money(item.price_snapshot),
                "subtotal": _money(item.subtotal),
            }
            for item in items
        ],
        "subtotal": _money(subtotal),
        "createdAt": utc_timestamp(cart.created_at),
        "updatedAt": utc_timestamp(cart.updated_at),
        "expiresAt": utc_timestamp(cart.expires_at),
    }


def cart_active_get(*, session_id: str) -> Cart | None:
    return Cart.objects.filter(session_id=session_id, expires_at__gt=timezone.now()).first()


def cart_detail(*, session_id: str) -> dict[str, Any]:
    """Read a cart from the cache, else from PostgreSQL (then cache it)."""
    cached = cart_cache_get(session_id)
    if cached is not None and cached["expiresAt"] > utc_timestamp(timezone.now()):
        return cached
    cart = cart_active_get(session_id=session_id)
    if cart is None:
        raise NotFound(f"Cart {session_id} not found.")
    document = cart_document(cart, cart_items(cart))
    cart_cache_set(session_id, document)
    return document

