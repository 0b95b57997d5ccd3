"""The one module that imports kafka-python.

Everything else in the project talks to Kafka through these functions, so the
client library, its configuration and its error types stay in one place.

Topics belong to the code that declares them (`ecommerce/kafka/topics.py`,
created by `topics_ensure`): no client here ever lets the broker auto-create
one with its default partition count. The consumer and producer say so with
`allow_auto_create_topics=False`; kafka-python's admin client always sends
its metadata requests with auto-creation off.
"""
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.admin import NewTopic, OffsetSpec
from kafka.net.compat import KafkaNetClient
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
    UnknownProducerIdError,
    UnknownTopicOrPartitionError,
    for_code,
)
from django.conf import settings

from ecommerce.kafka.topics import TOPICS, TopicSpec
from resilience.policies import policy

logger = logging.getLogger(__name__)


class NoAutoCreateClient(KafkaNetClient):
    """kafka-python's network client, with topic auto-creation really off.

    kafka-python 3.0.12 accepts `allow_auto_create_topics=False` but its
    connection manager builds the cluster metadata without it, so the metadata
    requests for a subscribed or produced-to topic still ask the broker to
    create it (seen: tansu made `orders.created` with 4 partitions). Passed in
    through the public `kafka_client` option until the library hands it on.
    """

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        self.cluster.config["allow_auto_create_topics"] = False


def _admin(bootstrap_servers: Sequence[str], timeout_seconds: float) -> KafkaAdminClient:
    timeout_ms = int(timeout_seconds * 1000)
    return KafkaAdminClient(
        bootstrap_servers=list(bootstrap_servers),
        client_id="ecommerce-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


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
        mismatches = _mismatches(admin, topics)
    finally:
        admin.close()
    topics_mismatch_log(mismatches)
    return created


def topics_check(
    *, bootstrap_servers: Sequence[str], topics: Iterable[TopicSpec] = TOPICS, timeout_seconds: float = 10.0
) -> list[TopicMismatch]:
    """Compare the broker's topics with the declared ones; create nothing."""
    admin = _admin(bootstrap_servers, timeout_seconds)
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
    admin = _admin(bootstrap_servers, timeout_seconds)
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


def topic_values(
    *, bootstrap_servers: Sequence[str], topic: str, since_ms: int | None, timeout_seconds: float
) -> list[bytes | None]:
    """Return the value of every message of `topic` written since `since_ms` (unix ms; None: from the start) up to its end now.

    For audits such as the fault drills' report: no consumer group, nothing
    committed, so reading disturbs no consumer. Raise ConnectionError when the
    broker cannot be read to the end within `timeout_seconds`.
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
        values: list[bytes | None] = []
        while any(consumer.position(partition) < end[partition] for partition in partitions):
            if time.monotonic() > deadline:
                raise ConnectionError(f"could not read {topic} to its end within {timeout_seconds}s")
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
        return values
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        consumer.close(autocommit=False)


# --- Producing -------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    """A record to send, as bytes: the relay's JSON and a dead letter's arbitrary bytes alike."""

    topic: str
    key: bytes | None
    value: bytes | None
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


# The broker no longer knows this idempotent producer's id (it restarted
# empty, as tansu does, or expired the id): kafka-python's producer is then
# unusable for good, every later send failing the same way. A transient
# result makes the relay drop it (event_producer_reset), and the next producer
# asks the broker for a new id. Seen in the broker-loss drill: without this,
# every row after the restart went FAILED and no order was paid.
PRODUCER_IDENTITY_ERRORS = (UnknownProducerIdError, OutOfOrderSequenceNumberError, InvalidProducerEpochError, ProducerFencedError)
# kafka-python raises a bare KafkaError with this text when the broker answers
# the producer-id request with an unexpected error (a broker still starting).
PRODUCER_ID_REFUSED = "Unexpected error in InitProducerIdResponse"


def classify_error(error: BaseException) -> SendResult:
    """Transient when Kafka marks the error retriable, it is a timeout, or the producer's id was lost; permanent otherwise."""
    reason = type(error).__name__
    if isinstance(error, KafkaTimeoutError) or getattr(error, "retriable", False):
        return SendResult(SendStatus.TRANSIENT, repr(error), reason)
    if isinstance(error, PRODUCER_IDENTITY_ERRORS) or PRODUCER_ID_REFUSED in str(error):
        return SendResult(SendStatus.TRANSIENT, repr(error), reason)
    if isinstance(error, KafkaError):
        return SendResult(SendStatus.PERMANENT, repr(error), reason)
    if isinstance(error, (ConnectionError, OSError, TimeoutError)):
        return SendResult(SendStatus.TRANSIENT, repr(error), reason)
    return SendResult(SendStatus.PERMANENT, repr(error), reason)


class EventProducer:
    """An idempotent, acks=all producer whose every call is bounded in time.

    One per process, created after a fork (kafka-python's I/O thread does not
    survive one): use `event_producer()`, the one producer factory.
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
            allow_auto_create_topics=False,
            kafka_client=NoAutoCreateClient,
        )

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send, wait for the acknowledgements within the time limit, report each message.

        Once a message fails at once, later messages with the same key are
        not sent in this batch, so a key's messages never overtake each other.
        """
        deadline = time.monotonic() + self.timeout_seconds
        results: list[SendResult | None] = [None] * len(messages)
        futures = {}
        failed_keys: set[tuple[str, bytes | None]] = set()
        for index, message in enumerate(messages):
            key = (message.topic, message.key)
            if key in failed_keys:
                results[index] = SendResult(SendStatus.NOT_SENT)
                continue
            size = len(message.value or b"")
            if size > self.max_request_bytes:
                results[index] = SendResult(
                    SendStatus.PERMANENT,
                    f"message of {size} bytes exceeds {self.max_request_bytes}",
                    "MessageSizeTooLargeError",
                )
                failed_keys.add(key)
                continue
            try:
                future = self._producer.send(
                    message.topic, key=message.key, value=message.value, headers=list(message.headers)
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


# Every producer call is bounded by this policy's time limit (SPEC.md "Resilience settings").
PRODUCER_POLICY = "kafkaPublisher"


def event_producer() -> EventProducer:
    """This process's producer for the platform's broker, created on first use (so after any fork).

    The one producer factory: the outbox relay and the dead letters both send
    through it, with the `kafkaPublisher` time limit and the broker's message limit.
    """
    global _producer, _producer_pid
    with _producer_lock:
        if _producer is None or _producer_pid != os.getpid():
            _producer = EventProducer(
                bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
                timeout_seconds=policy(PRODUCER_POLICY).timeout_seconds,
                max_request_bytes=settings.KAFKA_MAX_REQUEST_BYTES,
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


# Per (topic, partition), the next offset to read: what a commit records.
Positions = Mapping[tuple[str, int], int]
# Called with the partitions taken from this member and whether they were
# lost (membership gone: their offsets can no longer be committed).
RevokedHook = Callable[[list[tuple[str, int]], bool], None]


class _AssignmentLog(ConsumerRebalanceListener):
    """Log which partitions this member holds, and tell the owner of in-flight work when they go.

    kafka-python 3 calls these methods on its IO thread, inside the caller's
    `poll()` or `close()`: nothing here may block on the broker (a blocking
    commit raises "Cannot block on net.run() from the IO thread itself"), so
    the hook must only hand work back and commit without waiting.
    """

    def __init__(self, group_id: str, on_revoked: RevokedHook | None) -> None:
        self.group_id = group_id
        self.on_revoked = on_revoked

    def on_partitions_revoked(self, revoked) -> None:
        logger.info("partitions revoked", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in revoked)})
        self._tell(revoked, lost=False)

    def on_partitions_lost(self, lost) -> None:
        logger.info("partitions lost", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in lost)})
        self._tell(lost, lost=True)

    def on_partitions_assigned(self, assigned) -> None:
        logger.info("partitions assigned", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in assigned)})

    def _tell(self, partitions, *, lost: bool) -> None:
        if self.on_revoked is None or not partitions:
            return
        try:
            self.on_revoked([(tp.topic, tp.partition) for tp in partitions], lost)
        except Exception:  # raised from here it would fail the rebalance itself; the work is re-delivered anyway
            logger.exception("revoked-partitions hook failed", extra={"event": "resilience", "group": self.group_id})


class BrokerUnavailable(Exception):
    """The consumer lost the broker or its group membership: back off, reconnect, go on.

    `kind` is one of `connection`, `commit_failed`, `rebalance`, `topic_missing`.
    """

    def __init__(self, kind: str, error: BaseException) -> None:
        super().__init__(f"{kind}: {error!r}")
        self.kind = kind
        self.error = error


def _broker_error_kind(error: BaseException) -> str:
    if isinstance(error, CommitFailedError):
        return "commit_failed"
    if isinstance(error, (RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError, IllegalStateError)):
        return "rebalance"  # the partition moved to another member, or this member was forgotten
    if isinstance(error, UnknownTopicOrPartitionError):
        return "topic_missing"
    return "connection"


# Bounds the blocking calls of the consumer, whose default (request_timeout_ms,
# 305 s) would freeze the loop for five minutes when the broker goes away.
CONSUMER_CALL_TIMEOUT_SECONDS = 10.0


class EventConsumer:
    """A consumer-group member that commits only what the caller says is done.

    The caller commits positions (per partition, the next offset to read),
    pauses fetching while it has no room for more, and hears of revoked
    partitions through `on_revoked`. Every broker failure surfaces as
    `BrokerUnavailable`; `reconnect()` drops the kafka-python consumer and
    builds a new one (which rejoins the group and resumes from the committed
    offsets).
    """

    def __init__(
        self,
        *,
        bootstrap_servers: Sequence[str],
        group_id: str,
        topics: Sequence[str],
        max_poll_interval_seconds: float,
    ) -> None:
        self.group_id = group_id
        self.bootstrap_servers = list(bootstrap_servers)
        self.topics = list(topics)
        self.max_poll_interval_seconds = max_poll_interval_seconds
        # Set by the owner of the in-flight work before the first poll:
        # `on_revoked(partitions, lost)`, run on kafka-python's IO thread (see `_AssignmentLog`).
        self.on_revoked: RevokedHook | None = None
        # Connected on first use, so a broker down at start is ridden out like any later outage.
        self._consumer: KafkaConsumer | None = None

    def _connect(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.group_id}-{os.getpid()}",
            enable_auto_commit=False,
            # A broker that came back empty has lost the committed offsets:
            # start from the beginning, the processed-events table absorbs repeats.
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            kafka_client=NoAutoCreateClient,
            # A member that stops polling for this long is presumed dead and its
            # partitions go to the others; it must exceed the slowest message
            # (three 5 s payment attempts with backoff).
            max_poll_interval_ms=int(self.max_poll_interval_seconds * 1000),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            request_timeout_ms=int(CONSUMER_CALL_TIMEOUT_SECONDS * 1000) + 5_000,
            reconnect_backoff_max_ms=5_000,
        )
        consumer.subscribe(self.topics, listener=_AssignmentLog(self.group_id, self.on_revoked))
        return consumer

    def reconnect(self) -> None:
        """Close the current client (if any) and connect a new one; raise BrokerUnavailable if it cannot."""
        self._close_quietly(timeout_seconds=1.0)  # the broker is likely gone: do not wait to leave the group
        try:
            self._consumer = self._connect()
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error

    def poll(self, *, timeout_seconds: float, max_records: int) -> list[IncomingMessage]:
        try:
            batches = self._client().poll(timeout_ms=int(timeout_seconds * 1000), max_records=max_records)
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error
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

    def commit_positions(self, positions: Positions, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS) -> None:
        """Commit the next offset to read per partition; wait for the broker, at most `timeout_seconds`."""
        if not positions:
            return
        try:
            self._client().commit(_offsets(positions), timeout_ms=int(timeout_seconds * 1000))
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error

    def commit_positions_nowait(self, positions: Positions) -> None:
        """Send a commit without waiting for it: the one commit a rebalance hook (IO thread) may make.

        A commit that fails is logged; its messages are delivered again to
        the partition's next owner, where the processed-events table absorbs them.
        """
        if not positions or self._consumer is None:
            return

        def done(offsets, response) -> None:
            if isinstance(response, BaseException):
                logger.warning("commit on revocation failed", extra={"event": "resilience", "group": self.group_id, "error": repr(response)})

        try:
            self._consumer.commit_async(_offsets(positions), callback=done)
        except (KafkaError, OSError) as error:
            logger.warning("commit on revocation failed", extra={"event": "resilience", "group": self.group_id, "error": repr(error)})

    def rewind_to_committed(self) -> None:
        """Fetch every assigned partition again from its committed offset (from the beginning if none).

        For a caller that gave up the messages it had fetched and not
        finished: without this the client would go on after them.
        """
        client = self._client()
        timeout_ms = int(CONSUMER_CALL_TIMEOUT_SECONDS * 1000)
        try:
            for partition in client.assignment():
                committed = client.committed(partition, timeout_ms=timeout_ms)
                if committed is None or committed < 0:
                    client.seek_to_beginning(partition)
                else:
                    client.seek(partition, committed)
        except (KafkaError, OSError, ValueError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; `poll()` keeps the membership alive and returns nothing.

        Call it on every pass while paused: partitions assigned by a
        rebalance arrive unpaused.
        """
        client = self._client()
        assigned = client.assignment()
        if assigned:
            client.pause(*assigned)

    def resume_all(self) -> None:
        """Fetch again from every paused partition."""
        client = self._client()
        paused = client.paused()
        if paused:
            client.resume(*paused)

    def close(self, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS) -> None:
        """Leave the group at once, so its partitions move to the other members now."""
        self._close_quietly(timeout_seconds=timeout_seconds)

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self.reconnect()
        return self._consumer

    def _close_quietly(self, *, timeout_seconds: float) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(autocommit=False, timeout_ms=int(timeout_seconds * 1000))
        except Exception:  # closing against a dead broker may complain; the client is gone either way
            logger.debug("consumer close failed", exc_info=True)


def _offsets(positions: Positions) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1) for (topic, partition), offset in positions.items()}
