"""Checkout: carts, idempotency keys and the periodic jobs that clean them up (checkout/tasks.py)."""
from datetime import timedelta

from .env import env

# Carts and idempotency (docs/contract.md "Retention" and "Idempotency-Key").
CART_IDLE_TTL = timedelta(minutes=env.int("CART_IDLE_TTL_MINUTES", default=30))
IDEMPOTENCY_KEY_TTL = timedelta(hours=env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24))
# Rows deleted per statement by the cleanup jobs: small enough that no batch
# holds locks long enough to be felt on the checkout path.
CLEANUP_BATCH_SIZE = env.int("CLEANUP_BATCH_SIZE", default=1000)
# How often the cleanup jobs run (installed by `manage.py setup_schedules`).
IDEMPOTENCY_CLEANUP_INTERVAL_SECONDS = env.int("IDEMPOTENCY_CLEANUP_INTERVAL_SECONDS", default=3600)
CART_CLEANUP_INTERVAL_SECONDS = env.int("CART_CLEANUP_INTERVAL_SECONDS", default=3600)
