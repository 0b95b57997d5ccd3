"""The order-management consumer of `orders.created`: the poll loop.

Processing is `orders.processing.process_order_created_message`; this module
decides what happens around it, in three small pieces that a parallel loop
can reuse as they are:

* `message_decide` runs the processing with its retries and says what became
  of the message: done, dead-letter it, or deliver it again later;
* `OrderCreatedConsumer.handle` carries that decision out: commits the offset
  only after the message's database work committed (or once its dead letter
  is safe), or rewinds so the message comes again;
* `OrderCreatedConsumer.run` is the loop: poll, handle, and ride out the
  broker going away.

Nothing that goes wrong with the broker stops the loop. A lost connection, a
broker that comes back empty (topics re-created, offsets gone), a lost group
membership or a failed commit are transient: the loop backs off, reconnects
when need be, rejoins and goes on; work whose offset was not committed is
delivered again and absorbed by the processed-events table. SIGTERM finishes
the message in hand, commits and leaves the group.
"""
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from prometheus_client import Counter, Gauge

from deadletters.services import DeadLetterUnavailable, PendingDeadLetter, dead_letter_deliver
from ecommerce.kafka.client import BrokerUnavailable, EventConsumer, IncomingMessage, topics_check, topics_mismatch_log
from ecommerce.kafka.topics import ORDERS_CREATED, TOPICS
from orders.processing import PoisonMessage, process_order_created_message

logger = logging.getLogger(__name__)

CONSUMED = Counter("orders_consumer_consumed", "Messages taken from Kafka by the order consumer.", ["topic"])
DEAD_LETTERED = Counter("orders_consumer_dead_lettered", "Messages sent to a dead-letter topic.", ["topic", "reason"])
TRANSIENT_RETRIES = Counter("orders_consumer_transient_retries", "Messages retried after an infrastructure error.")
BROKER_ERRORS = Counter(
    "orders_consumer_broker_errors",
    "Broker failures the order consumer rode out (it backed off, reconnected or rejoined, and went on).",
    ["kind"],
)
# "max": with several consumer processes, the scrape shows the freshest
# heartbeat; a stale value means no consumer loop is turning at all.
HEARTBEAT = Gauge(
    "orders_consumer_heartbeat_timestamp_seconds",
    "Unix time of the order consumer loop's latest iteration.",
    multiprocess_mode="max",
)
BROKER_ERROR_KINDS = ("connection", "commit_failed", "rebalance", "topic_missing")
DEAD_LETTER_REASONS = ("poison", "processing-error")
# Exported at zero from the start, so an alert fires on the first event.
for _kind in BROKER_ERROR_KINDS:
    BROKER_ERRORS.labels(_kind)
for _reason in DEAD_LETTER_REASONS:
    DEAD_LETTERED.labels(ORDERS_CREATED, _reason)

INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)
# The longest a transient retry waits before trying again.
MAX_TRANSIENT_BACKOFF_SECONDS = 30.0
# The longest the loop waits for the broker between reconnects: short enough
# that a broker back after an outage is used again within seconds.
MAX_BROKER_BACKOFF_SECONDS = 5.0
# Longer than the slowest message: three 5 s payment attempts with backoff, twice over.
MAX_POLL_INTERVAL_SECONDS = 120.0

MessageId = tuple[str, int, int]


def message_id(message: IncomingMessage) -> MessageId:
    return (message.topic, message.partition, message.offset)


class Decision(str, Enum):
    DONE = "done"  # processed (or already processed): commit
    DEAD_LETTER = "dead_letter"  # can never be processed: dead-letter, then commit
    RETRY_LATER = "retry_later"  # infrastructure down: deliver again, do not commit


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    error: BaseException | None = None
    attempts: int = 0


def message_decide(
    message: IncomingMessage,
    *,
    process: Callable[[IncomingMessage], object],
    sleep: Callable[[float], None],
    keep_going: Callable[[], bool],
) -> Verdict:
    """Process one message with its retries and say what became of it.

    A poison message is dead-lettered at once; a database outage is waited
    out (no attempt is burned) until `keep_going()` says stop; any other
    error is tried `CONSUMER_MAX_ATTEMPTS` times with backoff.
    """
    attempts = 0
    transient_failures = 0
    while True:
        attempts += 1
        try:
            process(message)
            return Verdict(Decision.DONE, attempts=attempts)
        except PoisonMessage as error:
            return Verdict(Decision.DEAD_LETTER, error, attempts)
        except INFRASTRUCTURE_ERRORS as error:
            attempts -= 1  # the database, not the message: no attempt is burned
            transient_failures += 1
            TRANSIENT_RETRIES.inc()
            delay = min(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (transient_failures - 1), MAX_TRANSIENT_BACKOFF_SECONDS)
            logger.warning(
                "infrastructure unavailable, retrying without committing",
                extra={"event": "resilience", "offset": message.offset, "error": repr(error), "retry_in": delay},
            )
            close_old_connections()
            sleep(delay)
            if not keep_going():
                return Verdict(Decision.RETRY_LATER, error, attempts)
        except Exception as error:
            if attempts >= settings.CONSUMER_MAX_ATTEMPTS:
                return Verdict(Decision.DEAD_LETTER, error, attempts)
            logger.warning(
                "processing failed, will retry",
                extra={"event": "resilience", "offset": message.offset, "attempt": attempts, "error": repr(error)},
            )
            sleep(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (attempts - 1))


class OrderCreatedConsumer:
    def __init__(
        self,
        *,
        consumer: EventConsumer,
        process: Callable[[IncomingMessage], object] = process_order_created_message,
        sleep: Callable[[float], None] = time.sleep,
        check_topics: Callable[[], None] = lambda: None,
    ) -> None:
        self.consumer = consumer
        self.process = process
        self.sleep = sleep
        self.check_topics = check_topics
        self.running = True
        # Messages on their way to the dead letters that could not be made
        # safe yet: on redelivery they go straight back there, neither
        # processed again nor (once on the .dlq topic) published twice.
        self.dead_letters: dict[MessageId, PendingDeadLetter] = {}
        self.broker_failures = 0

    def stop(self, *_: object) -> None:
        """Finish the message in hand, commit it, then leave (SIGTERM, SIGINT)."""
        self.running = False

    def run(self) -> None:
        self.check_topics()
        try:
            while self.running:
                HEARTBEAT.set(time.time())
                try:
                    self.poll_once()
                    self.broker_failures = 0
                except BrokerUnavailable as error:
                    self.ride_out(error)
        finally:
            self.consumer.close()

    def poll_once(self) -> None:
        """Poll one batch and handle its messages in order, until one must come again."""
        for message in self.consumer.poll(timeout_seconds=1.0, max_records=50):
            HEARTBEAT.set(time.time())
            if not self.handle(message):
                break  # rewound: poll again from the message that must come again
            if not self.running:
                break

    def ride_out(self, error: BrokerUnavailable) -> None:
        """Count and log a broker failure, back off, and reconnect when the client itself is suspect."""
        self.broker_failures += 1
        BROKER_ERRORS.labels(error.kind).inc()
        # Offsets seen before the failure may name other messages now (a
        # broker that came back empty): start the dead-letter memory afresh.
        self.dead_letters.clear()
        delay = min(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (self.broker_failures - 1), MAX_BROKER_BACKOFF_SECONDS)
        logger.warning(
            "broker unavailable, backing off",
            extra={"event": "resilience", "kind": error.kind, "error": repr(error.error), "retry_in": delay, "failures": self.broker_failures},
        )
        self.sleep(delay)
        if not self.running:
            return
        # A lost membership or a failed commit is repaired by the next poll
        # (it rejoins); a lost connection, or failures that persist, by a new client.
        if error.kind == "connection" or self.broker_failures > 1:
            try:
                self.consumer.reconnect()
            except BrokerUnavailable as again:
                BROKER_ERRORS.labels(again.kind).inc()
                logger.warning("broker still unavailable", extra={"event": "resilience", "kind": again.kind, "error": repr(again.error)})
                return
            logger.info("consumer reconnected", extra={"event": "resilience", "group": self.consumer.group_id})
            self.check_topics()

    def handle(self, message: IncomingMessage) -> bool:
        """Process one message to a committed end; False if it must be delivered again."""
        pending = self.dead_letters.pop(message_id(message), None)
        if pending is None:
            CONSUMED.labels(message.topic).inc()
            verdict = message_decide(message, process=self.process, sleep=self.sleep, keep_going=lambda: self.running)
            if verdict.decision == Decision.RETRY_LATER:
                self.consumer.rewind(message)  # shutting down: leave it for the next member, uncommitted
                return False
            if verdict.decision == Decision.DEAD_LETTER:
                pending = PendingDeadLetter(
                    message=message, error=verdict.error, attempts=verdict.attempts, group=self.consumer.group_id
                )
        if pending is not None:
            return self.dead_letter(pending)
        self._after_database_commit()
        self.consumer.commit(message)
        return True

    def dead_letter(self, pending: PendingDeadLetter) -> bool:
        """Make the message safe among the dead letters, then commit; False (rewound) if that must wait."""
        message = pending.message
        try:
            dead_letter_deliver(pending=pending)
        except DeadLetterUnavailable as failure:
            # Nowhere safe to put it yet: back off and deliver it again rather than lose it.
            pending.retries += 1
            delay = min(settings.CONSUMER_RETRY_BACKOFF_SECONDS * 2 ** (pending.retries - 1), MAX_TRANSIENT_BACKOFF_SECONDS)
            logger.warning(
                "dead letter not stored, will retry",
                extra={"event": "resilience", "offset": message.offset, "error": repr(failure), "retry_in": delay},
            )
            self.dead_letters[message_id(message)] = pending
            close_old_connections()
            self.sleep(delay)
            self.consumer.rewind(message)
            return False
        reason = "poison" if isinstance(pending.error, PoisonMessage) else "processing-error"
        DEAD_LETTERED.labels(message.topic, reason).inc()
        logger.error(
            "message dead-lettered",
            extra={
                "event": "resilience",
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "exception_class": type(pending.error).__name__,
                "error": str(pending.error)[:500],
                "attempts": pending.attempts,
            },
        )
        self.consumer.commit(message)
        return True

    @staticmethod
    def _after_database_commit() -> None:
        if settings.CONSUMER_CRASH_AFTER_DB_COMMIT:  # fault injection for drills and tests
            logger.warning("fault injection: dying between database commit and offset commit")
            os.kill(os.getpid(), signal.SIGKILL)


def consumer_topics_check() -> None:
    """Report (log and count) a consumed topic that is missing or has the wrong partition count."""
    consumed = [spec for spec in TOPICS if spec.name == ORDERS_CREATED]
    try:
        mismatches = topics_check(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, topics=consumed, timeout_seconds=5.0)
    except Exception as error:  # the broker is down: the loop will ride that out and check again
        logger.warning("could not check the topics", extra={"event": "resilience", "error": repr(error)})
        return
    topics_mismatch_log(mismatches)
    for mismatch in mismatches:
        if mismatch.actual == 0:
            BROKER_ERRORS.labels("topic_missing").inc()


def consume_orders_forever() -> None:
    consumer = EventConsumer(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=settings.ORDERS_CONSUMER_GROUP,
        topics=[ORDERS_CREATED],
        max_poll_interval_seconds=MAX_POLL_INTERVAL_SECONDS,
    )
    loop = OrderCreatedConsumer(consumer=consumer, check_topics=consumer_topics_check)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    logger.info("order consumer started", extra={"group": settings.ORDERS_CONSUMER_GROUP})
    loop.run()
    logger.info("order consumer stopped")
