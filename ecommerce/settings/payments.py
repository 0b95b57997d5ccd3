"""The payment gateway (orders/payments.py) and order management's consumer."""
from .env import env

# The mock gateway's behaviour, so tests and drills can inject faults.
PAYMENT_MOCK_SUCCESS_RATE = env.float("PAYMENT_MOCK_SUCCESS_RATE", default=1.0)
PAYMENT_MOCK_LATENCY_SECONDS = env.float("PAYMENT_MOCK_LATENCY_SECONDS", default=0.05)
# What a failure is when one happens: decline, timeout or connection.
PAYMENT_MOCK_FAILURE_KIND = env.str("PAYMENT_MOCK_FAILURE_KIND", default="decline")

ORDERS_CONSUMER_GROUP = env.str("ORDERS_CONSUMER_GROUP", default="order-service-group")
# Tries of a message whose processing failed for a non-transient reason, before it is dead-lettered.
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=3)
CONSUMER_RETRY_BACKOFF_SECONDS = env.float("CONSUMER_RETRY_BACKOFF_SECONDS", default=1.0)
# Messages one consumer process works on at once (never two of one order):
# 16 pays ~50 orders/s against a 300 ms provider, and each is a pool thread
# holding a database connection, so it also bounds the consumer's connections.
CONSUMER_MAX_IN_FLIGHT = env.int("CONSUMER_MAX_IN_FLIGHT", default=16)
PROCESSED_EVENT_RETENTION_DAYS = env.int("PROCESSED_EVENT_RETENTION_DAYS", default=30)
PROCESSED_EVENT_PURGE_INTERVAL_SECONDS = env.int("PROCESSED_EVENT_PURGE_INTERVAL_SECONDS", default=3600)
# Fault injection for drills and tests only: the consumer kills itself with
# SIGKILL after a message's database commit and before its offset commit.
CONSUMER_CRASH_AFTER_DB_COMMIT = env.bool("CONSUMER_CRASH_AFTER_DB_COMMIT", default=False)
