"""Order management: the order consumer and its processed-event record, reconciliation and the payment audit.

Read by orders/consumer.py, orders/processing.py and orders/reconciliation.py.
"""
from .env import env

ORDERS_CONSUMER_GROUP = env.str("ORDERS_CONSUMER_GROUP", default="order-service-group")
# Tries of a message whose processing failed for a non-transient reason, before it is dead-lettered.
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=3)
CONSUMER_RETRY_BACKOFF_SECONDS = env.float("CONSUMER_RETRY_BACKOFF_SECONDS", default=1.0)
# Messages one consumer process works on at once (never two of one order).
# Each holds its slot for the provider's latency and two transactions (about
# 0.35 s against a 300 ms provider), so slots / 0.35 s is the most a process
# pays: 16 paid at most 43.9 orders/s (bench/capacity.py, 2026-12-06), 24 at
# most 68.9/s once checkout no longer queued for order numbers (2026-12-07),
# the platform's limit before its CPU; 32 allow about 90/s. Each is a pool
# thread holding a database connection, so it also bounds the consumer's
# connections (with the web's 30, well under PostgreSQL's 100).
CONSUMER_MAX_IN_FLIGHT = env.int("CONSUMER_MAX_IN_FLIGHT", default=32)
PROCESSED_EVENT_RETENTION_DAYS = env.int("PROCESSED_EVENT_RETENTION_DAYS", default=30)
PROCESSED_EVENT_PURGE_INTERVAL_SECONDS = env.int("PROCESSED_EVENT_PURGE_INTERVAL_SECONDS", default=3600)
# Fault injection for drills and tests only: the consumer kills itself with
# SIGKILL after a message's database commit and before its offset commit.
# The production settings refuse it.
CONSUMER_CRASH_AFTER_DB_COMMIT = env.bool("CONSUMER_CRASH_AFTER_DB_COMMIT", default=False)

# Reconciliation (orders/reconciliation.py): an order PENDING or PROCESSING for
# longer than this is re-driven. Well above the slowest payment (three 5 s
# attempts with backoff), so an order in the consumer's hands is left alone.
ORDER_RECONCILE_AFTER_SECONDS = env.int("ORDER_RECONCILE_AFTER_SECONDS", default=120)
# Re-drives of one order (each waiting twice as long as the one before) before it is flagged for a human.
ORDER_RECONCILE_MAX_ATTEMPTS = env.int("ORDER_RECONCILE_MAX_ATTEMPTS", default=5)
ORDER_RECONCILE_INTERVAL_SECONDS = env.int("ORDER_RECONCILE_INTERVAL_SECONDS", default=60)
# The payment audit (orders/audit.py): the provider's charges since its watermark
# whose order is not PAID are refunded.
PAYMENT_AUDIT_INTERVAL_SECONDS = env.int("PAYMENT_AUDIT_INTERVAL_SECONDS", default=300)
# Charges younger than this are left alone: their payment may still be being recorded.
PAYMENT_AUDIT_GRACE_SECONDS = env.int("PAYMENT_AUDIT_GRACE_SECONDS", default=300)
# How long the audit waits at a charge whose order is still PENDING or PROCESSING
# before it skips it (counted, logged): past reconciliation's whole budget of
# re-drives (120 s doubling five times is about two hours), when the order is flagged for a human.
PAYMENT_AUDIT_UNSETTLED_WAIT_SECONDS = env.int("PAYMENT_AUDIT_UNSETTLED_WAIT_SECONDS", default=6 * 3600)
# A payment in doubt whose key the provider says has no charge is asked again (same key) up to this many
# charge requests in all, the consumer's first included; then the order is FAILED, "provider confirms no charge".
PAYMENT_UNKNOWN_MAX_CHARGES = env.int("PAYMENT_UNKNOWN_MAX_CHARGES", default=3)
