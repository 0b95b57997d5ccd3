"""Kafka (the Kafka-protocol broker: Apache Kafka in compose, tansu locally)."""
from .env import env

KAFKA_BOOTSTRAP_SERVERS = env.list("KAFKA_BOOTSTRAP_SERVERS", default=["127.0.0.1:9092"])
# Bound on any single call to the broker made from a request (health check).
KAFKA_HEALTH_TIMEOUT_SECONDS = env.float("KAFKA_HEALTH_TIMEOUT_SECONDS", default=2.0)
