"""Kafka (the Kafka-protocol broker: Apache Kafka in compose, tansu locally)."""
from .env import env

KAFKA_BOOTSTRAP_SERVERS = env.list("KAFKA_BOOTSTRAP_SERVERS", default=["127.0.0.1:9092"])
# Bound on any single call to the broker made from a request (health check).
KAFKA_HEALTH_TIMEOUT_SECONDS = env.float("KAFKA_HEALTH_TIMEOUT_SECONDS", default=2.0)
# Largest message the relay sends (the broker's limit, 1 MiB by default).
KAFKA_MAX_REQUEST_BYTES = env.int("KAFKA_MAX_REQUEST_BYTES", default=1048576)

# The outbox relay (outbox/relay.py).
# Larger batches amortise the round trips (bench: 500 → 0.57x raw, 1000 → 0.60x, 2000 → 0.65x)
# at the cost of holding more row locks for longer (about 0.4 s at 1000).
OUTBOX_BATCH_SIZE = env.int("OUTBOX_BATCH_SIZE", default=1000)
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=5)
# Wake the relay when a checkout commits; the sweep below is the safety net.
OUTBOX_TRIGGER_ON_COMMIT = env.bool("OUTBOX_TRIGGER_ON_COMMIT", default=True)
OUTBOX_SWEEP_INTERVAL_SECONDS = env.int("OUTBOX_SWEEP_INTERVAL_SECONDS", default=5)
OUTBOX_REQUEUE_INTERVAL_SECONDS = env.int("OUTBOX_REQUEUE_INTERVAL_SECONDS", default=600)
OUTBOX_PURGE_INTERVAL_SECONDS = env.int("OUTBOX_PURGE_INTERVAL_SECONDS", default=3600)
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=168)
OUTBOX_VACUUM_INTERVAL_SECONDS = env.int("OUTBOX_VACUUM_INTERVAL_SECONDS", default=60)
