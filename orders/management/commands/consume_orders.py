"""`manage.py consume_orders`: one order-management consumer process, from start to exit.

The process's wiring lives here, the consumer's logic in `orders.consumer`:
the Kafka client, the topic check at start, the signals, the exit, and the
drills' crash hook.
"""
import logging
import os
import signal
from collections.abc import Callable

from django.conf import settings
from django.core.management.base import BaseCommand

from core.planted import COMMIT_OFFSET_BEFORE_DATABASE, planted
from messaging.contract.events import ORDERS_CREATED, TOPICS
from messaging.kafka.admin import topics_check, topics_mismatch_log
from messaging.kafka.consumer import CONSUMER_CALL_TIMEOUT_SECONDS, EventConsumer, IncomingMessage, Positions
from orders.consumer import MAX_POLL_INTERVAL_SECONDS, OrderCreatedConsumer
from orders.metrics import BROKER_ERRORS

logger = logging.getLogger(__name__)


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


def crash_after_database_commit(message: IncomingMessage) -> None:
    """Die by SIGKILL between a message's database commit and its offset commit (tests and drills only).

    Wired only when CONSUMER_CRASH_AFTER_DB_COMMIT is set, which the production
    settings refuse (ecommerce/settings/production.py).
    """
    logger.warning("fault injection: dying between database commit and offset commit", extra={"offset": message.offset})
    os.kill(os.getpid(), signal.SIGKILL)


class OffsetFirstConsumer(EventConsumer):
    """A planted defect (core/planted.py, tests only): each polled message's offset is committed before it is processed.

    The loop's own commits (up to the first unfinished message) can then only
    move an offset forward, never back to a message still in hand: a crash
    loses what was in hand instead of delivering it again.
    """

    def __init__(self, **arguments) -> None:
        super().__init__(**arguments)
        self.ahead: dict[tuple[str, int], int] = {}

    def poll(self, *, timeout_seconds: float, max_records: int) -> list[IncomingMessage]:
        messages = super().poll(timeout_seconds=timeout_seconds, max_records=max_records)
        polled = {(message.topic, message.partition): message.offset + 1 for message in messages}
        self.commit_positions(polled)
        return messages

    def _forward(self, positions: Positions) -> dict[tuple[str, int], int]:
        for partition, position in positions.items():
            self.ahead[partition] = max(self.ahead.get(partition, 0), position)
        return {partition: self.ahead[partition] for partition in positions}

    def commit_positions(self, positions: Positions, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS) -> None:
        super().commit_positions(self._forward(positions), timeout_seconds=timeout_seconds)

    def commit_positions_nowait(self, positions: Positions) -> None:
        super().commit_positions_nowait(self._forward(positions))


def consume_orders_forever(*, after_database_commit: Callable[[IncomingMessage], None] = lambda message: None) -> None:
    """Consume `orders.created` until SIGTERM or SIGINT, then leave the group."""
    consumer_class = OffsetFirstConsumer if planted(COMMIT_OFFSET_BEFORE_DATABASE) else EventConsumer
    consumer = consumer_class(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=settings.ORDERS_CONSUMER_GROUP,
        topics=[ORDERS_CREATED],
        max_poll_interval_seconds=MAX_POLL_INTERVAL_SECONDS,
    )
    loop = OrderCreatedConsumer(consumer=consumer, check_topics=consumer_topics_check, after_database_commit=after_database_commit)
    signal.signal(signal.SIGTERM, loop.stop)
    signal.signal(signal.SIGINT, loop.stop)
    logger.info(
        "order consumer started",
        extra={"group": settings.ORDERS_CONSUMER_GROUP, "max_in_flight": loop.executor.max_in_flight},
    )
    loop.run()
    logger.info("order consumer stopped", extra={"drained": loop.drained})
    if not loop.drained:
        # Python would wait at exit for the pool threads still running (past
        # the process manager's patience): leave now. Their transactions roll
        # back with the connections, and their offsets were never committed.
        logging.shutdown()
        os._exit(0)


class Command(BaseCommand):
    help = "Consume orders.created as order management (group order-service-group) until SIGTERM."

    def handle(self, *args, **options) -> None:
        if settings.CONSUMER_CRASH_AFTER_DB_COMMIT:
            consume_orders_forever(after_database_commit=crash_after_database_commit)
        else:
            consume_orders_forever()
