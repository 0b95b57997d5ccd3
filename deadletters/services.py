"""Dead letters, in one place: publish to the `.dlq` topic, store, replay, resolve.

A dead letter is the original message, byte for byte (key, value, headers),
plus `dlt-*` headers that say where it came from and why it failed
(docs/contract.md "Dead letters"). Publishing and replaying go through the one producer of
the Kafka boundary (`messaging.kafka.producer.event_producer_send`).

Replay publishes the stored bytes directly and records `replayed_at` only
after the broker acknowledged them. It does not go through the outbox: an
outbox row carries a JSON payload, which cannot hold arbitrary bytes, and
an operator replaying from the admin is better served by the broker's
answer now (replayed, or refused and why) than by a row that may fail later
out of sight. A crash between the acknowledgement and the update leaves the
letter unmarked, so it may be replayed twice; the consumer's processed-events
table makes that harmless.
"""
import logging
import re
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, InterfaceError, OperationalError
from django.utils import timezone

from deadletters.metrics import REPLAYED, STORE_FAILURES
from deadletters.models import DeadLetter, content_digest
from messaging.contract.events import dead_letter_topic
from messaging.kafka.consumer import IncomingMessage
from messaging.kafka.producer import OutgoingMessage, SendStatus, event_producer_send

logger = logging.getLogger(__name__)

ERROR_HEADER_PREFIX = "dlt-"
ORIGINAL_TOPIC = "dlt-original-topic"
ORIGINAL_PARTITION = "dlt-original-partition"
ORIGINAL_OFFSET = "dlt-original-offset"
ORIGINAL_TIMESTAMP = "dlt-original-timestamp"
CONSUMER_GROUP = "dlt-original-consumer-group"
EXCEPTION_CLASS = "dlt-exception-fqcn"
EXCEPTION_MESSAGE = "dlt-exception-message"
EXCEPTION_STACKTRACE = "dlt-exception-stacktrace"
ATTEMPTS = "dlt-attempts"

# Kafka headers have no size limit of their own but count against the message's.
MAX_STACKTRACE_BYTES = 8000
MAX_EXCEPTION_MESSAGE_BYTES = 2000
# Enough to recognise a message in the admin's list and search; the bytes are kept whole.
PREVIEW_CHARACTERS = 2000

# The database is down or unreachable: try again later, the message is not at fault.
TRANSIENT_STORE_ERRORS = (OperationalError, InterfaceError)


class DeadLetterUnavailable(Exception):
    """Neither the `.dlq` topic nor the table could take the message yet: retry later, do not commit."""


@dataclass(frozen=True)
class DeadLetterContext:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    consumer_group: str
    attempts: int


def exception_class_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_headers(
    original: Sequence[tuple[str, bytes]], context: DeadLetterContext, error: BaseException
) -> list[tuple[str, bytes]]:
    """Return the original headers without earlier `dlt-*` ones, plus this failure's."""
    kept = [(name, value) for name, value in original if not name.startswith(ERROR_HEADER_PREFIX)]
    stack = "".join(traceback.format_exception(error)).encode(errors="replace")[-MAX_STACKTRACE_BYTES:]
    added = [
        (ORIGINAL_TOPIC, context.topic.encode()),
        (ORIGINAL_PARTITION, str(context.partition).encode()),
        (ORIGINAL_OFFSET, str(context.offset).encode()),
        (ORIGINAL_TIMESTAMP, str(context.timestamp if context.timestamp is not None else "").encode()),
        (CONSUMER_GROUP, context.consumer_group.encode()),
        (EXCEPTION_CLASS, exception_class_name(error).encode()),
        (EXCEPTION_MESSAGE, str(error).encode(errors="replace")[:MAX_EXCEPTION_MESSAGE_BYTES]),
        (EXCEPTION_STACKTRACE, stack),
        (ATTEMPTS, str(context.attempts).encode()),
    ]
    return kept + added


def preview(data: bytes | None, *, limit: int = PREVIEW_CHARACTERS) -> str:
    """Return readable text for bytes: UTF-8 where it decodes, `\\xNN` escapes for the rest and for control bytes.

    Never a NUL, which PostgreSQL refuses in text.
    """
    if data is None:
        return ""
    text = _text(bytes(data).decode("utf-8", errors="backslashreplace"))
    return text if len(text) <= limit else text[:limit] + "…"


# Control characters but newline, tab and carriage return, which read as what they are.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _text(value: str) -> str:
    """Escape control characters (NUL above all) so the text is storable and readable."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value)


@dataclass
class PendingDeadLetter:
    """A message on its way to the dead letters; kept by the consumer across retries.

    `published` is set once the `.dlq` topic acknowledged it, so a retry after
    a storage failure stores it without publishing it again.
    """

    message: IncomingMessage
    error: BaseException
    attempts: int
    group: str
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    published: bool = False
    publish_refused: str = ""
    retries: int = 0
    digest: str = ""

    def __post_init__(self) -> None:
        self.digest = message_digest(self.message)
        context = DeadLetterContext(
            topic=self.message.topic,
            partition=self.message.partition,
            offset=self.message.offset,
            timestamp=self.message.timestamp,
            consumer_group=self.group,
            attempts=self.attempts,
        )
        self.headers = dead_letter_headers(self.message.headers, context, self.error)


def message_digest(message: IncomingMessage) -> str:
    """The message's content digest (key, value, original headers), as its dead letter stores it."""
    return content_digest(message.key, message.value, message.headers)


class DeadLetterMemory:
    """A consumer's messages on their way to the dead letters that could not be made safe yet.

    When such a message runs again it goes straight back to the dead letters,
    neither processed again nor (once on the `.dlq` topic) published twice.
    An entry is found by where its message was read and by its content: a
    broker that came back empty reuses offsets, and a new message at an old
    one must be processed, never dead-lettered as the message once there.
    """

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int, int], PendingDeadLetter] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def remember(self, pending: PendingDeadLetter) -> None:
        message = pending.message
        with self._lock:
            self._pending[(message.topic, message.partition, message.offset)] = pending

    def take(self, message: IncomingMessage) -> PendingDeadLetter | None:
        """Return (and forget) the message's pending dead letter; None if there is none for this very message."""
        with self._lock:
            pending = self._pending.pop((message.topic, message.partition, message.offset), None)
        if pending is not None and pending.digest != message_digest(message):
            logger.warning(
                "another message at the offset of a pending dead letter: processing it, forgetting the old one",
                extra={
                    "event": "resilience",
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                },
            )
            return None
        return pending

    def forget_partition(self, topic: str, partition: int) -> None:
        """Forget a partition's entries: its offsets name other messages now."""
        with self._lock:
            for place in [place for place in self._pending if place[:2] == (topic, partition)]:
                del self._pending[place]

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


def dead_letter_deliver(*, pending: PendingDeadLetter) -> None:
    """Publish the message to its `.dlq` topic and store it; return once it is safe somewhere.

    Raise DeadLetterUnavailable when it should be tried again (broker or
    database unreachable). A permanent failure of one of the two is logged
    and counted, and the message counts as safe on the other; only when
    neither takes it is it tried again (never dropped).
    """
    if not pending.published and not pending.publish_refused:
        _publish(pending)
    try:
        dead_letter_store(pending=pending)
    except TRANSIENT_STORE_ERRORS as error:
        STORE_FAILURES.labels("transient").inc()
        logger.warning(
            "dead letter not stored, database unavailable; will retry",
            extra={"event": "resilience", "topic": pending.message.topic, "offset": pending.message.offset, "error": repr(error)},
        )
        raise DeadLetterUnavailable(f"database: {error!r}") from error
    except Exception as error:  # a row the database refuses: retrying cannot help
        STORE_FAILURES.labels("permanent").inc()
        logger.error(
            "dead letter not stored",
            extra={
                "event": "resilience",
                "topic": pending.message.topic,
                "partition": pending.message.partition,
                "offset": pending.message.offset,
                "on_dead_letter_topic": pending.published,
                "error": repr(error),
            },
        )
        if not pending.published:
            raise DeadLetterUnavailable(f"refused by both the topic and the table: {error!r}") from error


def _publish(pending: PendingDeadLetter) -> None:
    message = pending.message
    target = dead_letter_topic(message.topic)
    outgoing = OutgoingMessage(topic=target, key=message.key, value=message.value, headers=tuple(pending.headers))
    [result] = event_producer_send([outgoing])
    if result.status == SendStatus.ACKED:
        pending.published = True
        return
    if result.status == SendStatus.PERMANENT:
        # Too large or refused: the table still keeps the bytes.
        pending.publish_refused = f"{result.reason}: {result.error}"
        logger.error(
            "dead-letter topic refused the message",
            extra={"event": "resilience", "topic": target, "offset": message.offset, "error": pending.publish_refused},
        )
        return
    raise DeadLetterUnavailable(f"{target}: {result.reason} {result.error}")


def dead_letter_store(*, pending: PendingDeadLetter) -> DeadLetter | None:
    """Store the dead letter; None if this very message was stored before (a redelivery after a crash).

    Another message at a stored offset (a broker that came back empty) is
    another dead letter: it gets a row of its own, with its own bytes.
    """
    message, error = pending.message, pending.error
    stack = dict(pending.headers)[EXCEPTION_STACKTRACE].decode(errors="replace")
    letter = DeadLetter(
        original_topic=message.topic,
        original_partition=message.partition,
        original_offset=message.offset,
        original_timestamp=message.timestamp,
        consumer_group=pending.group,
        dead_letter_topic=dead_letter_topic(message.topic),
        key=message.key,
        value=message.value,
        header_names=[name.encode() for name, _ in message.headers],
        header_values=[value for _, value in message.headers],
        key_preview=preview(message.key),
        value_preview=preview(message.value),
        exception_class=exception_class_name(error),
        exception_message=_text(str(error))[:MAX_EXCEPTION_MESSAGE_BYTES],
        stack_trace=_text(stack),
        attempts=pending.attempts,
        content_digest=pending.digest,
    )
    try:
        letter.save()
    except IntegrityError:
        if DeadLetter.objects.filter(
            original_topic=message.topic,
            original_partition=message.partition,
            original_offset=message.offset,
            consumer_group=pending.group,
            content_digest=pending.digest,
        ).exists():
            return None  # this message was dead-lettered before a crash; the row is there
        raise
    return letter


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    refused: list[str]


def dead_letters_replay(*, ids: list[int]) -> ReplayReport:
    """Send dead letters back to their original topic, byte for byte, without the `dlt-*` headers.

    A letter is marked replayed only once the broker acknowledged it; one the
    broker did not take is reported in `refused` and left as it was.
    """
    letters = list(DeadLetter.objects.filter(id__in=ids).order_by("id"))
    messages = [
        OutgoingMessage(
            topic=letter.original_topic,
            key=bytes(letter.key) if letter.key is not None else None,
            value=bytes(letter.value) if letter.value is not None else None,
            headers=tuple((name, value) for name, value in letter.headers if not name.startswith(ERROR_HEADER_PREFIX)),
        )
        for letter in letters
    ]
    results = event_producer_send(messages)
    acked = [letter for letter, result in zip(letters, results) if result.status == SendStatus.ACKED]
    refused = [
        f"#{letter.id}: not replayed ({result.reason or result.status.value}) {result.error}".rstrip()
        for letter, result in zip(letters, results)
        if result.status != SendStatus.ACKED
    ]
    DeadLetter.objects.filter(id__in=[letter.id for letter in acked]).update(replayed_at=timezone.now())
    for letter in acked:
        REPLAYED.labels(letter.original_topic).inc()
    if acked:
        logger.warning(
            "dead letters replayed",
            extra={"event": "resilience", "dead_letter_ids": [letter.id for letter in acked]},
        )
    return ReplayReport(replayed=len(acked), refused=refused)


def dead_letter_value_correct(*, letter: DeadLetter, value: str) -> DeadLetter:
    """Replace a dead letter's value with corrected text (the admin's fix-then-replay flow)."""
    letter.value = value.encode()
    letter.value_preview = preview(letter.value)
    letter.save(update_fields=["value", "value_preview"])
    return letter


def dead_letters_resolve(*, ids: list[int]) -> int:
    """Mark dead letters as dealt with; return how many were still open."""
    return DeadLetter.objects.filter(id__in=ids, resolved_at__isnull=True).update(resolved_at=timezone.now())
