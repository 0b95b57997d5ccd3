"""Kafka topics of SPEC.md, each with its dead-letter sibling."""
from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"

ORDERS_CREATED = "orders.created"
PAYMENTS_COMPLETED = "payments.completed"
ORDERS_CREATED_DLQ = ORDERS_CREATED + DLQ_SUFFIX
PAYMENTS_COMPLETED_DLQ = PAYMENTS_COMPLETED + DLQ_SUFFIX


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


# Keyed by order id, so three partitions keep each order's events in order
# while three consumers can share the load.
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(ORDERS_CREATED, 3),
    TopicSpec(PAYMENTS_COMPLETED, 3),
    TopicSpec(ORDERS_CREATED_DLQ, 1),
    TopicSpec(PAYMENTS_COMPLETED_DLQ, 1),
)
