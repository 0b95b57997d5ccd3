"""The one module that imports kafka-python.

Everything else in the project talks to Kafka through these functions, so the
client library, its configuration and its error types stay in one place.
"""
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from ecommerce.kafka.topics import TOPICS, TopicSpec

logger = logging.getLogger(__name__)


def _admin(bootstrap_servers: Sequence[str], timeout_seconds: float) -> KafkaAdminClient:
    timeout_ms = int(timeout_seconds * 1000)
    return KafkaAdminClient(
        bootstrap_servers=list(bootstrap_servers),
        client_id="ecommerce-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def topics_ensure(
    *, bootstrap_servers: Sequence[str], topics: Iterable[TopicSpec] = TOPICS, timeout_seconds: float = 10.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = _admin(bootstrap_servers, timeout_seconds)
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
        return created
    finally:
        admin.close()


def broker_ping(*, bootstrap_servers: Sequence[str], timeout_seconds: float) -> None:
    """Raise if no bootstrap server accepts a connection and answers a metadata call.

    A TCP connect first keeps the common failure (nothing listening) fast and
    free of kafka-python's reconnect loop; a paused broker accepts connections
    but never answers, which the bounded metadata call then catches.
    """
    last_error: Exception | None = None
    for server in bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_seconds):
                break
        except OSError as error:
            last_error = error
    else:
        raise ConnectionError(f"no Kafka bootstrap server reachable: {last_error}")
    try:
        admin = _admin(bootstrap_servers, timeout_seconds)
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    try:
        admin.list_topics()
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        admin.close()


@dataclass(frozen=True)
class PartitionPosition:
    committed: int  # the group's committed offset; 0 when it never committed
    end: int  # the high watermark: the offset the next message will get

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


def consumer_group_positions(
    *, bootstrap_servers: Sequence[str], group_id: str, topic: str, timeout_seconds: float
) -> dict[int, PartitionPosition]:
    """Return the group's committed offset and the high watermark of each partition of `topic`.

    A partition the group never committed reads committed 0, so its whole
    high watermark is lag. The reading client never subscribes, so it neither
    joins nor disturbs the group. Raise ConnectionError when the broker does
    not answer in time.
    """
    timeout_ms = max(int(timeout_seconds * 1000), 100)
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=list(bootstrap_servers),
            group_id=group_id,
            client_id=f"{group_id}-lag-reader",
            enable_auto_commit=False,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    try:
        partitions = [TopicPartition(topic, number) for number in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return {}
        ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
        positions = {}
        for partition in partitions:
            committed = consumer.committed(partition, timeout_ms=timeout_ms)
            positions[partition.partition] = PartitionPosition(
                committed=committed if committed and committed > 0 else 0, end=ends[partition]
            )
        return positions
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        consumer.close(autocommit=False)


# --- Producing -------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class SendStatus(str, Enum):
    ACKED = "ACKED"
    TRANSIENT = "TRANSIENT"  # broker unreachable, timed out, not enough replicas: try again later
    PERMANENT = "PERMANENT"  # too large, invalid topic, refused: retrying cannot help
    NOT_SENT = "NOT_SENT"  # held back behind an earlier failed message with the same key


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    error: str = ""
    reason: str = ""


def classify_error(error: BaseException) -> SendResult:
    """Transient when Kafka marks the error retriable (or it is a timeout), permanent otherwise."""
    reason = type(error).__name__
    if isinstance(error, KafkaTimeoutError) or getattr(error, "retriable", False):
        return SendResult(SendStatus.TRANSIENT, repr(error), reason)
    if isinstance(error, KafkaError):
        return SendResult(SendStatus.PERMANENT, repr(error), reason)
    if isinstance(error, (ConnectionError, OSError, TimeoutError)):
        return SendResult(SendStatus.TRANSIENT, repr(error), reason)
    return SendResult(SendStatus.PERMANENT, repr(error), reason)


class EventProducer:
    """An idempotent, acks=all producer whose every call is bounded in time.

    One per process, created after a fork (kafka-python's I/O thread does not
    survive one): use `event_producer()`.
    """

    def __init__(self, *, bootstrap_servers: Sequence[str], timeout_seconds: float, max_request_bytes: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_request_bytes = max_request_bytes
        timeout_ms = int(timeout_seconds * 1000)
        linger_ms = 2
        # kafka-python insists delivery > linger + request; keep both inside the limit.
        request_timeout_ms = max(timeout_ms // 2, 200)
        delivery_timeout_ms = max(timeout_ms, request_timeout_ms + linger_ms + 1)
        self._producer = KafkaProducer(
            bootstrap_servers=list(bootstrap_servers),
            client_id=f"ecommerce-outbox-{os.getpid()}",
            acks="all",
            enable_idempotence=True,
            # A record is given up (and retried by the relay) after this long;
            # the producer's own retries happen inside it.
            delivery_timeout_ms=delivery_timeout_ms,
            request_timeout_ms=request_timeout_ms,
            max_block_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            linger_ms=linger_ms,
            max_request_size=max_request_bytes,
        )

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send, wait for the acknowledgements within the time limit, report each message.

        Once a message fails at once, later messages with the same key are
        not sent in this batch, so a key's messages never overtake each other.
        """
        deadline = time.monotonic() + self.timeout_seconds
        results: list[SendResult | None] = [None] * len(messages)
        futures = {}
        failed_keys: set[tuple[str, str]] = set()
        for index, message in enumerate(messages):
            key = (message.topic, message.key)
            if key in failed_keys:
                results[index] = SendResult(SendStatus.NOT_SENT)
                continue
            if len(message.value) > self.max_request_bytes:
                results[index] = SendResult(
                    SendStatus.PERMANENT,
                    f"message of {len(message.value)} bytes exceeds {self.max_request_bytes}",
                    "MessageSizeTooLargeError",
                )
                failed_keys.add(key)
                continue
            try:
                future = self._producer.send(
                    message.topic, key=message.key.encode(), value=message.value, headers=list(message.headers)
                )
            except Exception as error:  # raised synchronously: metadata timeout, bad arguments
                results[index] = classify_error(error)
                failed_keys.add(key)
                continue
            if future.is_done and future.failed():
                results[index] = classify_error(future.exception)
                failed_keys.add(key)
                continue
            futures[index] = future
        try:
            self._producer.flush(timeout=max(deadline - time.monotonic(), 0.0))
        except KafkaTimeoutError:
            pass  # the unfinished sends are reported as transient below
        for index, future in futures.items():
            if not future.is_done:
                results[index] = SendResult(SendStatus.TRANSIENT, "no acknowledgement in time", "AckTimeout")
            elif future.failed():
                results[index] = classify_error(future.exception)
            else:
                results[index] = SendResult(SendStatus.ACKED)
        return [result for result in results if result is not None]

    def close(self, timeout_seconds: float = 0.0) -> None:
        try:
            self._producer.close(timeout=timeout_seconds)
        except Exception:  # closing a producer of a dead broker may complain; it is gone either way
            logger.debug("producer close failed", exc_info=True)


_producer: EventProducer | None = None
_producer_pid: int | None = None
_producer_lock = threading.Lock()


def event_producer(*, bootstrap_servers: Sequence[str], timeout_seconds: float, max_request_bytes: int) -> EventProducer:
    """This process's producer, created on first use (so after any fork)."""
    global _producer, _producer_pid
    with _producer_lock:
        if _producer is None or _producer_pid != os.getpid():
            _producer = EventProducer(
                bootstrap_servers=bootstrap_servers, timeout_seconds=timeout_seconds, max_request_bytes=max_request_bytes
            )
            _producer_pid = os.getpid()
        return _producer


def event_producer_reset() -> None:
    """Drop this process's producer: after an outage its buffers hold only stale sends."""
    global _producer
    with _producer_lock:
        if _producer is not None and _producer_pid == os.getpid():
            _producer.close()
        _producer = None


# --- Consuming -------------------------------------------------------------


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


class _AssignmentLog(ConsumerRebalanceListener):
    """Log which partitions this member holds: what an operator asks first about a consumer group."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id

    def on_partitions_revoked(self, revoked) -> None:
        logger.info("partitions revoked", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in revoked)})

    def on_partitions_assigned(self, assigned) -> None:
        logger.info("partitions assigned", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in assigned)})


class EventConsumer:
    """A consumer-group member that commits only what the caller says is done."""

    def __init__(
        self,
        *,
        bootstrap_servers: Sequence[str],
        group_id: str,
        topics: Sequence[str],
        max_poll_interval_seconds: float,
    ) -> None:
        self.group_id = group_id
        self._consumer = KafkaConsumer(
            bootstrap_servers=list(bootstrap_servers),
            group_id=group_id,
            client_id=f"{group_id}-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A member that stops polling for this long is presumed dead and its
            # partitions go to the others; it must exceed the slowest message
            # (three 5 s payment attempts with backoff).
            max_poll_interval_ms=int(max_poll_interval_seconds * 1000),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        self._consumer.subscribe(list(topics), listener=_AssignmentLog(group_id))

    def poll(self, *, timeout_seconds: float, max_records: int) -> list[IncomingMessage]:
        batches = self._consumer.poll(timeout_ms=int(timeout_seconds * 1000), max_records=max_records)
        messages = []
        for records in batches.values():
            for record in records:
                messages.append(
                    IncomingMessage(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        timestamp=record.timestamp,
                        key=record.key,
                        value=record.value,
                        headers=tuple((name, value or b"") for name, value in (record.headers or [])),
                    )
                )
        return sorted(messages, key=lambda message: (message.topic, message.partition, message.offset))

    def commit(self, message: IncomingMessage) -> None:
        """Mark everything up to and including `message` done for its partition."""
        partition = TopicPartition(message.topic, message.partition)
        self._consumer.commit({partition: OffsetAndMetadata(message.offset + 1, "", -1)})

    def rewind(self, message: IncomingMessage) -> None:
        """Deliver `message` (and what followed it) again on the next poll."""
        self._consumer.seek(TopicPartition(message.topic, message.partition), message.offset)

    def close(self) -> None:
        """Leave the group at once, so its partitions move to the other members now."""
        self._consumer.close(autocommit=False)
