"""Order management's counters; the scrape-time gauges are in ecommerce/metrics.py.

Counters an alert reads are exported at zero for their known labels at
import, so an alert can fire on the first event.
"""
from prometheus_client import Counter, Histogram

PROCESSED = Counter("orders_consumer_processed", "OrderCreated events applied, by outcome.", ["outcome"])
DUPLICATES = Counter("orders_consumer_duplicates", "OrderCreated deliveries already applied (redeliveries).")
PROCESSING_SECONDS = Histogram(
    "orders_consumer_processing_seconds",
    "Time to apply one OrderCreated, payment included.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
PAYMENT_ATTEMPTS = Counter("payment_attempts", "Calls to the payment gateway by outcome.", ["outcome"])
PAYMENT_REFUNDS = Counter("payment_refunds", "Refunds asked of the payment gateway, by outcome.", ["outcome"])
UNMATCHED_CHARGES = Counter(
    "payment_unmatched_charges",
    "Successful gateway charges without a PAID order found by the payment audit, by what was done.",
    ["action"],
)
RECONCILED = Counter(
    "orders_reconciled", "Stuck orders re-driven by reconciliation, by what was done.", ["action"]
)

for _outcome in ("paid", "payment_failed", "skipped"):
    PROCESSED.labels(_outcome)
for _outcome in ("approved", "declined", "transient_error", "circuit_open"):
    PAYMENT_ATTEMPTS.labels(_outcome)
for _outcome in ("refunded", "failed"):
    PAYMENT_REFUNDS.labels(_outcome)
for _action in ("refunded", "flagged"):
    UNMATCHED_CHARGES.labels(_action)
for _action in ("republished", "payment_resumed", "flagged"):
    RECONCILED.labels(_action)
