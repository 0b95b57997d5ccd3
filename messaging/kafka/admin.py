"""Topic administration: create the declared topics, check them against the
declaration, and ping the broker. Topics belong to the code that declares them:
no client of ours ever lets the broker auto-create one."""
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from messaging.contract.events import TOPICS, TopicSpec
from messaging.kafka.connection import admin_client

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TopicMismatch:
    """A topic whose partition count is not the declared one (`actual` 0: the topic is missing)."""

    name: str
    expected: int
    actual: int


def topics_ensure(
    *, bootstrap_servers: Sequence[str], topics: Iterable[TopicSpec] = TOPICS, timeout_seconds: float = 10.0
) -> list[str]:
    """Create the topics that do not exist yet with their declared partitions; return the names created.

    A topic that exists with another partition count is logged as an error
    (it cannot be fixed here without moving keys between partitions).
    """
    topics = list(topics)
    admin = admin_client(bootstrap_servers, timeout_seconds)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
        mismatches = _mismatches(admin, topics)
    finally:
        admin.close()
    topics_mismatch_log(mismatches)
    return created


def topics_check(
    *, bootstrap_servers: Sequence[str], topics: Iterable[TopicSpec] = TOPICS, timeout_seconds: float = 10.0
) -> list[TopicMismatch]:
    """Compare the broker's topics with the declared ones; create nothing."""
    admin = admin_client(bootstrap_servers, timeout_seconds)
    try:
        return _mismatches(admin, list(topics))
    finally:
        admin.close()


def _mismatches(admin: KafkaAdminClient, topics: list[TopicSpec]) -> list[TopicMismatch]:
    described = {topic["name"]: topic for topic in admin.describe_topics([spec.name for spec in topics])}
    mismatches = []
    for spec in topics:
        topic = described.get(spec.name)
        missing = topic is None or topic.get("error_code", 0) == UnknownTopicOrPartitionError.errno
        actual = 0 if missing else len(topic["partitions"])
        if actual != spec.partitions:
            mismatches.append(TopicMismatch(spec.name, spec.partitions, actual))
    return mismatches


def topics_mismatch_log(mismatches: Iterable[TopicMismatch]) -> None:
    """Log each topic whose partitions differ from the declaration: keys may land on unexpected partitions."""
    for mismatch in mismatches:
        logger.error(
            "kafka topic missing" if mismatch.actual == 0 else "kafka topic has the wrong partition count",
            extra={
                "event": "resilience",
                "topic": mismatch.name,
                "expected_partitions": mismatch.expected,
                "actual_partitions": mismatch.actual,
            },
        )
