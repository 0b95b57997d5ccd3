"""Guest carts and checkout: carts in PostgreSQL with a Redis cache, and the
checkout that writes an order and its OrderCreated outbox row in one
transaction under an Idempotency-Key.

Imports `catalog`, `orders` (order_create, which writes the outbox row), `core`
and `resilience`; never `ecommerce`.
"""
