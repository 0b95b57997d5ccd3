"""The order-management consumer of `orders.created`: the poll loop.

Processing is `orders.processing.process_order_created_message`; this module
decides what happens around it: offsets are committed only after the
message's database work committed (or after its dead letter is safely
stored), transient infrastructure errors are retried without committing,
other errors a bounded number of times before the message is dead-lettered,
and SIGTERM finishes the message in hand, commits and leaves the group.
"""
import logging
import os
import signal
import time
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, close_old_connections
from prometheus_client import Counter

from ecommerce.kafka.client import (
    EventConsumer,
    IncomingMessage,
    OutgoingMessage,
    SendStatus,
)
from ecommerce.kafka.topics import ORDERS_CREATED, dead_letter_topic
from orders.processing import PoisonMessage, process_order_created_message
from outbox.relay import outbox_producer
from resilience.dead_letters import DeadLetterContext, dead_letter_headers, exception_class_name
from resilience.models import DeadLetter

logger = logging.getLogger(__name__)

CONSUMED = Counter("orders_consumer_consumed", "Messages taken from Kafka by the order consumer.", ["topic"])
DEAD_LETTERED = Counter("orders_consumer_dead_lettered", "Messages sent to a dead-letter topic.", ["topic", "reason"])
TRANSIENT_RETRIES = Counter("orders_consumer_transient_retries", "Messages retried after an infrastructure error.")
# DeadLettersArriving reads these: exported at zero from process start.
for _reason in ("poison", "processing-error"):
    DEAD_LETTERED.labels(ORDERS_CREATED, _reason)

INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)
# The longest a transient retry waits before trying again.
MAX_TRANSIENT_BACKOFF_SECONDS = 30.0
# Longer than the slowest message: three 5 s payment attempts with backoff, twice over.
MAX_POLL_INTERVAL_SECONDS = 120.0


class DeadLetterUnavailable(Exception):
    """The dead-letter topic could not take the message: retry later, do not commit."""


def dead_letter(message: IncomingMessage, error: BaseException, *, group: str, attempts: int) -> None:
    """Publish the message to its `.dlq` topic and store it for the admin."""
    context = DeadLetterContext(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
        consumer_group=group,
        attempts=attempts,
    )
    headers = dead_letter_headers(message.headers, context, error)
    target = dead_letter_topic(message.topic)
    [result] = outbox_producer().send_batch(
        [
            OutgoingMessage(
                topic=target,
                key=(message.key or b"").decode(errors="replace"),
                value=message.value or b"",
                headers=tuple(headers),
            )
        ]
    )
    if result.status != SendStatus.ACKED:
        raise DeadLetterUnavailable(f"{target}: {result.reason} {result.error}")
    stack = dict(headers)["dlt-exception-stacktrace"].decode(errors="replace")
    try:
        DeadLetter.objects.create(
            original_topic=message.topic,
            original_partition=message.partition,
            original_offset=message.offset,
            original_timestamp=message.timestamp,
            consumer_group=group,
            dead_letter_topic=target,
            key=message.key.decode(errors="replace") if message.key is not None else None,
            value=(message.value or b"").decode(errors="replace"),
            headers=[[name, value.decode(errors="replace")] for name, value in message.headers],
            exception_class=exception_class_name(error),
            exception_message=str(error)[:2000],
            stack_trace=stack,
            attempts=attempts,
        )
    except IntegrityError:
        pass  # this delivery was dead-lettered before a crash; the row is there
    reason = "poison" if isinstance(error, PoisonMessage) else "processing-error"
    DEAD_LETTERED.labels(message.topic, reason).inc()
    logger.error(
        "message dead-lettered",
        extra={
            "event": "resilience",
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "dead_letter_topic": target,
            "exception_class": exception_class_name(error),
            "error": str(error)[:500],
            "attempts": attempts,
        },
    )


class OrderCreatedConsumer:
    def __init__(
        self,
        *,
        consumer: EventConsumer,
        process: Callable[[IncomingMessage], object] = process_order_created_message,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.consumer = consumer
        self.process = process
        self.sleep = sleep
        self.running = True

    def stop(self, *_: object) -> None:
        """Finish the message in hand, commit it, then leave (SIGTERM, SIGINT)."""
        self.running = False

    def run(self) -> None:
        try:
            while self.running:
                for message in self.consumer.poll(timeout_seconds=1.0, max_records=50):
                    if not self.handle(message):
                        break  # rewound: poll again from the message that failed
                    if not self.running:
                        break
        finally:
            self.consumer.close()

    def handle(self, message: IncomingMessage) -> bool:
        """Process one message to a committed end; False if it must be delivered again."""
        CONSUMED.labels(message.topic).inc()
        attempts = 0
        transient_failures = 0
        while True:
            attempts += 1
            try:
                self.process(message)
                break
            except PoisonMessage as error:
                return self._dead_letter(message, error, attempts)
            except INFRASTRUCTURE_ERRORS as error:
                attempts -= 1  # the database, not the message: no attempt is burned
                transient_failures += 1
                if not self._wait_out_transient(message, error, transient_failures):
                    return False
            except Exception as error:
                if attempts >= settings.CONSUMER_MAX_ATTEMPTS:
                    return self._dead_letter(message, error, attempts)
                logger.warning(
                    "processing failed, will retry",
                    extra={"event": "resilience", "offset": message.offset, "attempt": attempts, "error": repr(error)},
                )
                self.sleep(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1))
        self._after_database_commit()
        self.consumer.commit(message)
        return True

    def _wait_out_transient(self, message: IncomingMessage, error: BaseException, failures: int) -> bool:
        TRANSIENT_RETRIES.inc()
        delay = min(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (failures - 1), MAX_TRANSIENT_BACKOFF_SECONDS)
        logger.warning(
            "infrastructure unavailable, retrying without committing",
            extra={"event": "resilience", "offset": message.offset, "error": repr(error), "retry_in": delay},
        )
        close_old_connections()
        self.sleep(delay)
        if not self.running:
            self.consumer.rewind(message)  # shutting down: leave it for the next member, uncommitted
            return False
        return True

    def _dead_letter(self, message: IncomingMessage, error: BaseException, attempts: int) -> bool:
        try:
            dead_letter(message, error, group=self.consumer.group_id, attempts=attempts)
        except (DeadLetterUnavailable, *INFRASTRUCTURE_ERRORS) as failure:
            # Nowhere safe to put it yet: deliver it again rather than lose it.
            logger.warning("dead letter not stored, will retry", extra={"event": "resilience", "error": repr(failure)})
            close_old_connections()
            self.sleep(settings.CONSUMER_RETRY_BACKOFF_SECONDS)
            self.consumer.rewind(message)
            return False
        self.consumer.commit(message)
        return True

    @staticmethod
    def _after_database_commit() -> None:
        if settings.CONSUMER_CRASH_AFTER_DB_COMMIT:  # fault injection for drills and tests
            logger.warning("fault injection: dying between database commit and offset commit")
            os.kill(os.getpid(), signal.SIGKILL)


def consume_orders_forever() -> None:
    consumer = EventConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=settings.ORDERS_CONSUMER_GROUP,
        topics=[ORDERS_CREATED],
        max_poll_interval_seconds=MAX_POLL_INTERVAL_SECONDS,
    )
    loop = OrderCreatedConsumer(consumer=consumer)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    logger.info("order consumer started", extra={"group": settings.ORDERS_CONSUMER_GROUP})
    loop.run()
    logger.info("order consumer stopped")
