"""Prometheus metrics of the dead letters (the unresolved-count gauge is read at scrape time: ecommerce/metrics.py)."""
from prometheus_client import Counter

STORE_FAILURES = Counter(
    "dead_letter_store_failures",
    "Dead letters that could not be stored: transient (retried, offset held) or permanent (left on the .dlq topic only).",
    ["kind"],
)
REPLAYED = Counter("dead_letters_replayed", "Dead letters sent back to their original topic (acknowledged).", ["topic"])

# Exported at zero from the start, so an alert fires on the first failure.
for _kind in ("transient", "permanent"):
    STORE_FAILURES.labels(_kind)
