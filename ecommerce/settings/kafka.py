"""Kafka connection: where the Kafka-protocol broker is (Apache Kafka in compose, tansu locally) and its limits."""
from .env import env

KAFKA_BOOTSTRAP_SERVERS = env.list("KAFKA_BOOTSTRAP_SERVERS", default=["127.0.0.1:9092"])
# Bound on any single call to the broker made from a request (health check).
KAFKA_HEALTH_TIMEOUT_SECONDS = env.float("KAFKA_HEALTH_TIMEOUT_SECONDS", default=2.0)
# Largest message the relay sends (the broker's limit, 1 MiB by default).
KAFKA_MAX_REQUEST_BYTES = env.int("KAFKA_MAX_REQUEST_BYTES", default=1048576)
