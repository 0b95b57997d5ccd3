"""The event producer: an idempotent, acks=all kafka-python producer whose every
call is bounded in time, its send results classified, one per process."""
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from django.conf import settings
from kafka import KafkaProducer
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    UnknownProducerIdError,
)

from messaging.kafka.connection import KeyHashCachingPartitioner, ProducerClient
from resilience.policies import policy

logger = logging.getLogger(__name__)


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


# Bytes a partition's record batch may grow to. kafka-python's default (16 KiB,
# about 14 OrderCreated events) closes a batch and wakes the sender thread
# through a socket every few sends: a third of a relay batch's send time.
BATCH_BYTES = 256 * 1024


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
            batch_size=min(BATCH_BYTES, max_request_bytes),
            max_request_size=max_request_bytes,
            allow_auto_create_topics=False,
            kafka_client=ProducerClient,
            partitioner=KeyHashCachingPartitioner(),
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


# Every producer call is bounded by this policy's time limit (docs/contract.md "Resilience policies").
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


def event_producer_send(messages: Sequence[OutgoingMessage]) -> list[SendResult]:
    """Send through this process's producer and report each message; drop the producer after a transient failure.

    The one "send, and reset on a transient failure": after one, the
    producer's buffers hold only sends given up on, and a fresh producer keeps
    them from going out long after, behind later retries (or asks a broker
    that lost our producer id for a new one). A producer that cannot even be
    created (broker unreachable) makes every message TRANSIENT. Never raises
    for a broker problem; retrying is the caller's business (the outbox row,
    the consumer's RETRY, the operator's replay).
    """
    if not messages:
        return []
    try:
        results = event_producer().send_batch(messages)
    except Exception as error:  # the producer could not even be created: broker unreachable
        logger.warning("kafka producer unavailable", extra={"event": "resilience", "error": repr(error)})
        event_producer_reset()
        return [SendResult(SendStatus.TRANSIENT, repr(error), type(error).__name__)] * len(messages)
    if any(result.status == SendStatus.TRANSIENT for result in results):
        event_producer_reset()
    return results
