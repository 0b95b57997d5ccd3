"""Order management's metrics (the consumer's included); the scrape-time gauges are in ecommerce/metrics.py.

Counters an alert reads are exported at zero for their known labels at
import, so an alert can fire on the first event.
"""
from prometheus_client import Counter, Gauge, Histogram

from messaging.contract.events import ORDERS_CREATED

CONSUMED = Counter("orders_consumer_consumed", "Messages taken from Kafka by the order consumer.", ["topic"])
DEAD_LETTERED = Counter("orders_consumer_dead_lettered", "Messages sent to a dead-letter topic.", ["topic", "reason"])
TRANSIENT_RETRIES = Counter("orders_consumer_transient_retries", "Messages retried after an infrastructure error.")
BROKER_ERRORS = Counter(
    "orders_consumer_broker_errors",
    "Broker failures the order consumer rode out (it backed off, reconnected or rejoined, and went on).",
    ["kind"],
)
# "max": with several consumer processes, the scrape shows the freshest
# heartbeat; a stale value means no consumer loop is turning at all.
HEARTBEAT = Gauge(
    "orders_consumer_heartbeat_timestamp_seconds",
    "Unix time of the order consumer loop's latest iteration.",
    multiprocess_mode="max",
)
# "livesum": the messages all running consumer processes hold at once; at
# CONSUMER_MAX_IN_FLIGHT per process the consumers are the bottleneck.
IN_FLIGHT = Gauge(
    "orders_consumer_in_flight",
    "Messages the order consumer has taken and not finished (running or waiting behind their order).",
    multiprocess_mode="livesum",
)
BROKER_ERROR_KINDS = ("connection", "commit_failed", "rebalance", "topic_missing")
DEAD_LETTER_REASONS = ("poison", "processing-error")
PROCESSED = Counter("orders_consumer_processed", "OrderCreated events applied, by outcome.", ["outcome"])
DUPLICATES = Counter("orders_consumer_duplicates", "OrderCreated deliveries already applied (redeliveries).")
PROCESSING_SECONDS = Histogram(
    "orders_consumer_processing_seconds",
    "Time to apply one OrderCreated, payment included.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
PAYMENT_REFUNDS = Counter("payment_refunds", "Refunds asked of the payment gateway, by outcome.", ["outcome"])
UNMATCHED_CHARGES = Counter(
    "payment_unmatched_charges",
    "Successful gateway charges without a PAID order found by the payment audit, by what was done.",
    ["action"],
)
RECONCILED = Counter(
    "orders_reconciled", "Stuck orders re-driven by reconciliation, by what was done.", ["action"]
)

for _outcome in ("paid", "payment_failed", "payment_unknown", "skipped"):
    PROCESSED.labels(_outcome)
for _outcome in ("refunded", "failed"):
    PAYMENT_REFUNDS.labels(_outcome)
for _action in ("refunded", "flagged"):
    UNMATCHED_CHARGES.labels(_action)
for _action in ("republished", "payment_resumed", "payment_charged_again", "flagged"):
    RECONCILED.labels(_action)
for _kind in BROKER_ERROR_KINDS:
    BROKER_ERRORS.labels(_kind)
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERED.labels(ORDERS_CREATED, _reason)
CONSUMED.labels(ORDERS_CREATED)
