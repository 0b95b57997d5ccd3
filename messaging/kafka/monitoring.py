"""Read-only looks at the broker for operators and drills: consumer group
positions and lag, and a topic's values from the earliest offset."""
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError, for_code

from messaging.kafka.connection import NoAutoCreateClient, admin_client, broker_ping

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionPosition:
    committed: int  # the group's committed offset; where it would start (earliest) if it never committed
    end: int  # the high watermark: the offset the next message will get

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


def consumer_group_positions(
    *, bootstrap_servers: Sequence[str], group_id: str, topic: str, timeout_seconds: float
) -> dict[int, PartitionPosition]:
    """Return the group's committed offset and the high watermark of each partition of `topic`.

    A partition the group never committed on reads its earliest offset, where
    the consumers (auto_offset_reset=earliest) would start, so everything still
    on it counts as lag. Only admin requests are made, so reading never joins or
    disturbs the group. Raise ConnectionError when the broker cannot be reached
    or does not answer within about `timeout_seconds`: each request is bounded
    by it, and no request starts once it has passed.
    """
    deadline = time.monotonic() + timeout_seconds

    def in_time() -> None:
        if time.monotonic() > deadline:
            raise ConnectionError(f"Kafka did not answer within {timeout_seconds}s")

    broker_ping(bootstrap_servers=bootstrap_servers, timeout_seconds=timeout_seconds)
    in_time()
    admin = admin_client(bootstrap_servers, timeout_seconds)
    try:
        in_time()
        (described,) = admin.describe_topics([topic])
        if described["error_code"]:
            raise for_code(described["error_code"])(topic)
        partitions = [TopicPartition(topic, info["partition_index"]) for info in described["partitions"]]
        timeout_ms = int(timeout_seconds * 1000)
        in_time()
        latest = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST), timeout_ms=timeout_ms)
        in_time()
        earliest = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST), timeout_ms=timeout_ms)
        in_time()
        committed = admin.list_group_offsets({group_id: partitions}).get(group_id, {})
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        admin.close()
    positions = {}
    for partition in partitions:
        position = committed.get(partition)
        start = position.offset if position is not None and position.offset >= 0 else earliest[partition].offset
        positions[partition.partition] = PartitionPosition(committed=start, end=latest[partition].offset)
    return positions


@dataclass(frozen=True)
class TopicRecord:
    partition: int
    offset: int
    timestamp: int  # unix ms
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def topic_records(
    *, bootstrap_servers: Sequence[str], topic: str, since_ms: int | None, timeout_seconds: float
) -> list[TopicRecord]:
    """Return every record of `topic` written since `since_ms` (unix ms; None: from the earliest offset) up to its end now.

    For audits such as the fault drills' report and the soak's read-back: no
    consumer group, nothing committed, so reading disturbs no consumer. In
    partition order, then offset order. Raise ConnectionError when the broker
    cannot be read to the end within `timeout_seconds`.
    """
    timeout_ms = int(timeout_seconds * 1000)
    consumer = KafkaConsumer(
        bootstrap_servers=list(bootstrap_servers),
        client_id="ecommerce-audit",
        enable_auto_commit=False,
        request_timeout_ms=max(timeout_ms, 1000),
        allow_auto_create_topics=False,
        kafka_client=NoAutoCreateClient,
    )
    deadline = time.monotonic() + timeout_seconds
    try:
        partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return []
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        if since_ms is None:
            consumer.seek_to_beginning(*partitions)
        else:
            starts = consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            for partition in partitions:
                found = starts.get(partition)
                consumer.seek(partition, found.offset if found is not None else end[partition])
        records: list[TopicRecord] = []
        while any(consumer.position(partition) < end[partition] for partition in partitions):
            if time.monotonic() > deadline:
                raise ConnectionError(f"could not read {topic} to its end within {timeout_seconds}s")
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    headers = tuple(record.headers or ())
                    records.append(TopicRecord(record.partition, record.offset, record.timestamp, record.key, record.value, headers))
        return sorted(records, key=lambda record: (record.partition, record.offset))
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        consumer.close(autocommit=False)


def topic_values(
    *, bootstrap_servers: Sequence[str], topic: str, since_ms: int | None, timeout_seconds: float
) -> list[bytes | None]:
    """Return the value of every message of `topic` written since `since_ms` (see topic_records)."""
    records = topic_records(bootstrap_servers=bootstrap_servers, topic=topic, since_ms=since_ms, timeout_seconds=timeout_seconds)
    return [record.value for record in records]


# --- Producing -------------------------------------------------------------


