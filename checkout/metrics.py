"""Prometheus metrics of the customer side."""
from prometheus_client import Counter

CART_CACHE_ERRORS = Counter(
    "cart_cache_errors_total",
    "Cart cache operations that failed because Redis was unreachable; the cart was served from PostgreSQL.",
    ["operation"],
)
CHECKOUTS = Counter("checkout_requests_total", "Checkout outcomes.", ["outcome"])
IDEMPOTENCY_REPLAYS = Counter(
    "idempotency_replays_total", "Requests answered from a stored Idempotency-Key response."
)
IDEMPOTENCY_CLEANUP_DELETED = Counter(
    "idempotency_cleanup_deleted", "Expired idempotency records deleted by the cleanup job."
)
CART_CLEANUP_DELETED = Counter("cart_cleanup_deleted", "Expired carts deleted by the cleanup job.")
