"""Prometheus metrics of the outbox relay (gauges over the table: ecommerce/metrics.py)."""
from prometheus_client import Counter, Histogram

PUBLISHED = Counter("outbox_published", "Outbox rows published to Kafka.", ["topic"])
ATTEMPT_ERRORS = Counter(
    "outbox_publish_errors", "Failed publish attempts (the row may be retried).", ["topic", "reason"]
)
FAILED = Counter(
    "outbox_failed",
    "Outbox rows given up on: FAILED (reason retries-exhausted) or REFUSED (the broker's permanent reason).",
    ["topic", "reason"],
)
REQUEUED = Counter("outbox_requeued", "FAILED or REFUSED outbox rows put back to PENDING.")
PURGED = Counter("outbox_purged", "PUBLISHED outbox rows deleted after the retention period.")
BREAKER_SKIPS = Counter("outbox_relay_breaker_rejections", "Relay batches not attempted because the breaker was open.")
COMMIT_TO_PUBLISH = Histogram(
    "outbox_commit_to_publish_seconds",
    "Time from writing an outbox row to Kafka acknowledging it.",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
