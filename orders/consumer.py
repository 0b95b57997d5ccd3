"""The order-management consumer of `orders.created`: the poll loop and what runs around each message.

Processing is `orders.processing.process_order_created_message`; this module
decides what happens around it:

* `message_process` runs the processing once and says what becomes of the
  message (a `messaging.kafka.ordered.Disposition`, the one name of a message's fate);
* `OrderCreatedConsumer.settle` carries that out on a pool thread of the
  key-ordered executor (`messaging.kafka.ordered`): it answers DONE once the
  message's database work committed, DEAD_LETTERED once its dead letter is
  safe, RETRY when it must run again later;
* `OrderCreatedConsumer.run` is the loop, the only caller of Kafka: poll,
  submit, commit what the executor says is finished, pause fetching while the
  pool is full, and ride out the broker going away.

Retry levels, one per kind of failure:

* an unknown payment answer: retried inside `payments.gateway` (the
  `paymentService` policy, same key) and nowhere else; when it gives up the
  order stays in doubt for reconciliation, and the message is done;
* a processing error (an order not there yet): the executor runs the message
  again (RETRY) after the one backoff, up to `CONSUMER_MAX_ATTEMPTS` tries in
  all, then it is dead-lettered;
* a database outage, or dead letters that cannot be stored yet: RETRY with
  the same backoff, without spending a try, for as long as it lasts;
* the broker: the loop backs off and reconnects (`ride_out`).

A message waiting for its retry keeps its key and its partition's commit, so
nothing overtakes it.

Many orders are paid at once (up to CONSUMER_MAX_IN_FLIGHT per process), but
never two messages of one order: its events keep their order. The offset
committed for a partition is the lowest one not finished yet, so a crash
re-delivers only unfinished work, and the processed-events table absorbs what
had finished after it.

Nothing that goes wrong with the broker stops the loop. A lost connection, a
broker that comes back empty (topics re-created, offsets gone), a lost group
membership or a failed commit are transient: the loop backs off, reconnects
when need be, rejoins and goes on; work whose offset was not committed is
delivered again and absorbed by the processed-events table. SIGTERM stops
polling, waits a bounded time for the messages in hand, commits and leaves
the group.
"""
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from core.db import ThreadConnections
from deadletters.services import DeadLetterMemory, DeadLetterUnavailable, PendingDeadLetter, dead_letter_deliver
from messaging.kafka.consumer import CONSUMER_CALL_TIMEOUT_SECONDS, BrokerUnavailable, EventConsumer, IncomingMessage
from messaging.kafka.ordered import Disposition, OrderedExecutor
from orders.metrics import BROKER_ERRORS, CONSUMED, DEAD_LETTERED, HEARTBEAT, IN_FLIGHT, TRANSIENT_RETRIES
from orders.processing import PoisonMessage, process_order_created_message
from resilience.backoff import backoff_seconds

logger = logging.getLogger(__name__)

INFRASTRUCTURE_ERRORS = (OperationalError, InterfaceError)
# The longest a message waits before it runs again after a transient failure.
MAX_TRANSIENT_BACKOFF_SECONDS = 30.0
# The longest the loop waits for the broker between reconnects: short enough
# that a broker back after an outage is used again within seconds.
MAX_BROKER_BACKOFF_SECONDS = 5.0
# The loop polls at least every IDLE_POLL_SECONDS whatever the payments do,
# so only a blocked commit (CONSUMER_CALL_TIMEOUT_SECONDS) delays a poll;
# the interval stays generous for a machine starved of CPU.
MAX_POLL_INTERVAL_SECONDS = 120.0
# Poll timeouts: while work is in flight the loop comes back quickly to
# commit what finished and to take more; idle, it waits for messages.
BUSY_POLL_SECONDS = 0.1
IDLE_POLL_SECONDS = 1.0
# At most one offset commit per this interval (each is a broker round trip).
COMMIT_INTERVAL_SECONDS = 0.2
PAUSE_LOG_SECONDS = 5.0
# The pool threads' database connections are closed after this long without work.
IDLE_CONNECTIONS_CLOSE_SECONDS = 10.0
# Graceful shutdown must fit the process manager's grace period before its
# SIGKILL: supervisord waits 10 s (ops/supervisor), compose 30 s. Messages
# still running after the drain are left uncommitted (delivered again later);
# then one bounded commit, then leave.
SHUTDOWN_DRAIN_SECONDS = 3.0
SHUTDOWN_COMMIT_SECONDS = 1.0
SHUTDOWN_LEAVE_SECONDS = 0.5

MessageId = tuple[str, int, int]


def message_id(message: IncomingMessage) -> MessageId:
    return (message.topic, message.partition, message.offset)


def message_process(
    message: IncomingMessage, *, process: Callable[[IncomingMessage], object], attempt: int
) -> tuple[Disposition, BaseException | None]:
    """Process the message once (try number `attempt` of its processing) and say what becomes of it.

    DONE: processed. DEAD_LETTERED, with the error: a poison message, or a
    processing error on the last try; the caller makes it so. RETRY, with the
    error: a processing error with tries left, or a database outage (the
    database's fault, not the message's: the caller spends no try on it).
    """
    try:
        process(message)
        return Disposition.DONE, None
    except PoisonMessage as error:
        return Disposition.DEAD_LETTERED, error
    except INFRASTRUCTURE_ERRORS as error:
        TRANSIENT_RETRIES.inc()
        logger.warning(
            "infrastructure unavailable, retrying without committing",
            extra={"event": "resilience", "partition": message.partition, "offset": message.offset, "error": repr(error)},
        )
        close_old_connections()
        return Disposition.RETRY, error
    except Exception as error:
        if attempt >= settings.CONSUMER_MAX_ATTEMPTS:
            return Disposition.DEAD_LETTERED, error
        logger.warning(
            "processing failed, will retry",
            extra={"event": "resilience", "offset": message.offset, "attempt": attempt, "error": repr(error)},
        )
        return Disposition.RETRY, error


def retry_backoff(attempt: int) -> float:
    """Wait before a message runs again: the one backoff from CONSUMER_RETRY_BACKOFF_SECONDS, capped."""
    return backoff_seconds(
        attempt, initial_seconds=settings.CONSUMER_RETRY_BACKOFF_SECONDS, max_seconds=MAX_TRANSIENT_BACKOFF_SECONDS
    )


class OrderCreatedConsumer:
    def __init__(
        self,
        *,
        consumer: EventConsumer,
        process: Callable[[IncomingMessage], object] = process_order_created_message,
        check_topics: Callable[[], None] = lambda: None,
        max_in_flight: int | None = None,
        after_database_commit: Callable[[IncomingMessage], None] = lambda message: None,
    ) -> None:
        """`after_database_commit(message)` runs once a message's database work committed, before its offset commit."""
        self.consumer = consumer
        self.process = process
        self.check_topics = check_topics
        self.after_database_commit = after_database_commit
        self.running = True
        # Set by stop(): cuts the broker backoff short (the executor's drain ends the retry waits).
        self._stopping = threading.Event()
        self.executor: OrderedExecutor[IncomingMessage] = OrderedExecutor(
            process=self.settle,
            max_in_flight=max_in_flight or settings.CONSUMER_MAX_IN_FLIGHT,
            retry_backoff=retry_backoff,
            on_settled=self._forget,
            thread_name_prefix="orders-consumer",
        )
        # Revocations reach the executor from kafka-python's IO thread.
        consumer.on_revoked = self.partitions_revoked
        self.dead_letters = DeadLetterMemory()  # messages whose dead letter is not safe yet
        # Tries of each message's processing so far, while it is in the pool.
        self._tries: dict[MessageId, int] = {}
        self._memory_lock = threading.Lock()
        self._connections = ThreadConnections()
        self._idle_since: float | None = None
        self._committed_at = 0.0
        self._paused_logged, self._paused_logged_at = False, 0.0
        self.broker_failures = 0
        # False after a shutdown that left messages running on the pool.
        self.drained = True

    def stop(self, *_: object) -> None:
        """Stop polling, let the messages in hand finish (bounded), commit, leave (SIGTERM, SIGINT)."""
        self.running = False
        self._stopping.set()

    # --- The poll loop (the only thread that calls Kafka) -------------------

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
            self.shutdown()

    def poll_once(self) -> None:
        """Take as many messages as the pool has room for, hand them over, commit what finished."""
        # Every pass: partitions assigned by a rebalance arrive unpaused.
        full = self.executor.full()
        if full:
            self.consumer.pause_all()
            full = not self.executor.wait_for_room(BUSY_POLL_SECONDS)
        if not full:
            self.consumer.resume_all()
        # A slow provider flips between full and not every few passes: say
        # where fetching stands at most every PAUSE_LOG_SECONDS, not each flip.
        if full != self._paused_logged and time.monotonic() - self._paused_logged_at >= PAUSE_LOG_SECONDS:
            self._paused_logged, self._paused_logged_at = full, time.monotonic()
            logger.info("fetching paused" if full else "fetching resumed", extra={"in_flight": self.executor.in_flight()})
        busy = self.executor.in_flight() > 0
        messages = self.consumer.poll(  # still full: a poll that waits for nothing, for the group's callbacks
            timeout_seconds=0.0 if full else BUSY_POLL_SECONDS if busy else IDLE_POLL_SECONDS,
            max_records=max(self.executor.capacity(), 1),
        )
        for message in messages:
            CONSUMED.labels(message.topic).inc()
            if not self.executor.submit(message):
                # This loop never seeks, so an offset seen before means the
                # client's position was reset (a broker that lost its data):
                # what the executor knows of the partition names other
                # messages now. Start it afresh; running ones finish unobserved.
                logger.warning(
                    "partition went back to an earlier offset, tracking it afresh",
                    extra={"event": "resilience", "partition": message.partition, "offset": message.offset},
                )
                self.executor.revoke([(message.topic, message.partition)], timeout_seconds=0)
                self._forget_partition(message.topic, message.partition)
                self.executor.submit(message)
        in_flight = self.executor.in_flight()
        IN_FLIGHT.set(in_flight)
        self.commit_finished()
        self._close_idle_connections(in_flight)

    def commit_finished(self, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS, now: bool = False) -> None:
        """Commit, per partition, up to the first unfinished message, if it moved (at most every COMMIT_INTERVAL_SECONDS)."""
        if not now and time.monotonic() - self._committed_at < COMMIT_INTERVAL_SECONDS:
            return
        positions = self.executor.committable()
        if not positions:
            return
        self.consumer.commit_positions(positions, timeout_seconds=timeout_seconds)
        self.executor.mark_committed(positions)
        self._committed_at = time.monotonic()

    def partitions_revoked(self, partitions: list[tuple[str, int]], lost: bool) -> None:
        """Give revoked partitions up: their waiting messages are dropped, their finished prefix committed.

        Runs on kafka-python's IO thread, which may not block: no waiting for
        running messages (they finish unobserved, their offsets stay
        uncommitted and the next owner runs them again, harmlessly) and a
        commit that does not wait. Lost partitions are no longer ours to commit.
        """
        positions = self.executor.revoke(partitions, timeout_seconds=0)
        if lost:
            # The client rejoins by itself; the broker failure behind it is still counted and logged.
            BROKER_ERRORS.labels("rebalance").inc()
            logger.warning(
                "group membership lost, partitions given up uncommitted",
                extra={"event": "resilience", "kind": "rebalance", "partitions": sorted(f"{t}-{p}" for t, p in partitions)},
            )
            return
        self.consumer.commit_positions_nowait(positions)

    def ride_out(self, error: BrokerUnavailable) -> None:
        """Count and log a broker failure, back off, and reconnect when the client itself is suspect."""
        self.broker_failures += 1
        BROKER_ERRORS.labels(error.kind).inc()
        # Offsets seen before the failure may name other messages now (a
        # broker that came back empty): forget the partitions' in-flight state
        # without committing any of it (running messages finish unobserved and
        # uncommitted), fetch again from the committed offsets, and start the
        # dead-letter memory afresh.
        self.executor.revoke(self.executor.partitions(), timeout_seconds=0)
        self.consumer.rewind()
        self.dead_letters.clear()
        with self._memory_lock:
            self._tries.clear()
        delay = backoff_seconds(
            self.broker_failures, initial_seconds=settings.CONSUMER_RETRY_BACKOFF_SECONDS, max_seconds=MAX_BROKER_BACKOFF_SECONDS
        )
        logger.warning(
            "broker unavailable, backing off",
            extra={"event": "resilience", "kind": error.kind, "error": repr(error.error), "retry_in": delay, "failures": self.broker_failures},
        )
        self._stopping.wait(delay)
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

    def shutdown(self) -> None:
        """Wait (bounded) for the messages in hand, commit what finished, leave the group."""
        self.drained = self.executor.close(timeout_seconds=SHUTDOWN_DRAIN_SECONDS)
        IN_FLIGHT.set(0)
        if not self.drained:
            logger.warning(
                "messages still running at shutdown are left uncommitted, to be delivered again",
                extra={"event": "resilience", "in_flight": self.executor.in_flight()},
            )
        try:
            self.commit_finished(timeout_seconds=SHUTDOWN_COMMIT_SECONDS, now=True)
        except BrokerUnavailable as error:
            logger.warning("final commit failed; finished messages will be delivered again", extra={"event": "resilience", "error": repr(error.error)})
        self.consumer.close(timeout_seconds=SHUTDOWN_LEAVE_SECONDS)
        if self.drained:
            self._connections.close_all()

    def _close_idle_connections(self, in_flight: int) -> None:
        """Close the pool threads' database connections once no work ran for a while."""
        if in_flight:
            self._idle_since = None
            return
        idle_since = self._idle_since = self._idle_since or time.monotonic()
        # Nothing runs on the pool now, and nothing starts before this loop submits again.
        if time.monotonic() - idle_since >= IDLE_CONNECTIONS_CLOSE_SECONDS:
            self._connections.close_all()

    # --- One message, on a pool thread ---------------------------------------

    def settle(self, message: IncomingMessage) -> Disposition:
        """Process one message to an end the executor can act on: DONE, DEAD_LETTERED or RETRY."""
        close_old_connections()  # past DATABASE_CONN_MAX_AGE or broken: this thread gets a fresh one
        self._connections.hold()
        try:
            key = message_id(message)
            pending = self.dead_letters.take(message)
            with self._memory_lock:
                attempt = self._tries.get(key, 0) + 1
            if pending is None:
                disposition, error = message_process(message, process=self.process, attempt=attempt)
                if disposition == Disposition.RETRY and not isinstance(error, INFRASTRUCTURE_ERRORS):
                    with self._memory_lock:
                        self._tries[key] = attempt
                if disposition == Disposition.RETRY:
                    return disposition
                if disposition == Disposition.DEAD_LETTERED:
                    pending = PendingDeadLetter(message=message, error=error, attempts=attempt, group=self.consumer.group_id)
            if pending is not None:
                return self.dead_letter(pending)
            self.after_database_commit(message)
            return Disposition.DONE
        finally:
            close_old_connections()

    def _forget(self, message: IncomingMessage, disposition: Disposition | None) -> None:
        """Drop what was kept of a message for its retries once it leaves the pool (finished or given up)."""
        with self._memory_lock:
            self._tries.pop(message_id(message), None)

    def _forget_partition(self, topic: str, partition: int) -> None:
        """Forget the dead letters and tries kept for a partition whose offsets name other messages now."""
        self.dead_letters.forget_partition(topic, partition)
        with self._memory_lock:
            self._tries = {key: tries for key, tries in self._tries.items() if key[:2] != (topic, partition)}

    def dead_letter(self, pending: PendingDeadLetter) -> Disposition:
        """Make the message safe among the dead letters; RETRY if that must wait."""
        message = pending.message
        try:
            dead_letter_deliver(pending=pending)
        except DeadLetterUnavailable as failure:
            # Nowhere safe to put it yet: run it again later rather than lose it.
            pending.retries += 1
            logger.warning(
                "dead letter not stored, will retry",
                extra={"event": "resilience", "offset": message.offset, "error": repr(failure), "retries": pending.retries},
            )
            self.dead_letters.remember(pending)
            close_old_connections()
            return Disposition.RETRY
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
        return Disposition.DEAD_LETTERED
