"""The payment gateway's metrics. Counters an alert reads are exported at zero for their known labels at import."""
from prometheus_client import Counter

# Per call to the provider: "transient_error" is an attempt that told nothing (time-out, reset, 5xx, key in use).
PAYMENT_ATTEMPTS = Counter("payment_attempts", "Calls to the payment gateway by outcome.", ["outcome"])
PAYMENT_LOOKUPS = Counter(
    "payment_lookups", "Charges looked up by idempotency key, by what the provider said.", ["outcome"]
)

for _outcome in ("approved", "declined", "transient_error", "circuit_open"):
    PAYMENT_ATTEMPTS.labels(_outcome)
for _outcome in ("found", "none", "unknown"):
    PAYMENT_LOOKUPS.labels(_outcome)
