"""Dead-lettering never kills the consumer: a row the database refuses for good still moves the offset on."""
import threading

import pytest
from django.db import connections
from prometheus_client import REGISTRY

from deadletters.models import DeadLetter
from deadletters.services import DeadLetterUnavailable, PendingDeadLetter, dead_letter_deliver
from messaging.contract.events import TopicSpec, dead_letter_topic
from messaging.kafka.admin import topics_ensure
from messaging.kafka.consumer import EventConsumer, IncomingMessage
from messaging.kafka.producer import event_producer_reset
from orders.consumer import OrderCreatedConsumer
from orders.processing import PoisonMessage
from tests.support import committed_offsets, produce, read_topic, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Kafka allows topic names up to 249 characters; the table keeps 200: a row
# PostgreSQL refuses for good (DataError), whatever the retries.
LONG_TOPIC = "orders.created." + "x" * 200


def _permanent_failures() -> float:
    return REGISTRY.get_sample_value("dead_letter_store_failures_total", {"kind": "permanent"}) or 0.0


def _poison(_message: IncomingMessage) -> None:
    raise PoisonMessage("never processable")


def test_a_refused_row_is_counted_and_the_offset_moves_on_once_the_message_is_on_the_dlq_topic(broker):
    topics_ensure(bootstrap_servers=[broker.bootstrap], topics=[TopicSpec(LONG_TOPIC, 1), TopicSpec(dead_letter_topic(LONG_TOPIC), 1)])
    produce(broker.bootstrap, LONG_TOPIC, [(0, b"k", b"\x00poison", [("event_id", b"e-1")])])
    before = _permanent_failures()
    consumer = EventConsumer(bootstrap_servers=[broker.bootstrap], group_id="store-failure", topics=[LONG_TOPIC], max_poll_interval_seconds=30)
    loop = OrderCreatedConsumer(consumer=consumer, process=_poison)

    def run() -> None:
        try:
            loop.run()
        finally:
            connections.close_all()  # the thread's own connection, or the test database cannot be dropped

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        wait_for(
            lambda: committed_offsets(broker.bootstrap, "store-failure", LONG_TOPIC).get(0) == 1,
            timeout=60,
            what="the offset to move on past the message",
        )
    finally:
        loop.stop()
        runner.join(timeout=30)

    assert not runner.is_alive()
    assert not DeadLetter.objects.exists()
    assert _permanent_failures() - before == 1
    [record] = read_topic(broker.bootstrap, dead_letter_topic(LONG_TOPIC))
    assert (record.key, record.value) == (b"k", b"\x00poison")


def test_a_dead_letter_the_broker_cannot_take_yet_is_retried_not_dropped(broker):
    message = IncomingMessage(
        topic=LONG_TOPIC, partition=0, offset=0, timestamp=None, key=b"k", value=b"\x00", headers=(("event_id", b"e"),)
    )
    pending = PendingDeadLetter(message=message, error=PoisonMessage("bad"), attempts=1, group="g")
    broker.kill()  # the .dlq topic cannot take it (and this row the table would refuse anyway)

    with pytest.raises(DeadLetterUnavailable):
        dead_letter_deliver(pending=pending)

    assert not pending.published
    assert not DeadLetter.objects.exists()


@pytest.mark.kafka
def test_a_different_message_at_a_stored_offset_is_kept_with_its_own_bytes(settings):
    # Both .dlq publishes are refused (over the message limit): the table is the only safe place.
    settings.KAFKA_MAX_REQUEST_BYTES = 100
    event_producer_reset()
    first = IncomingMessage(
        topic="orders.created", partition=0, offset=7, timestamp=None, key=b"k", value=b"\x00first" * 20, headers=()
    )
    # The broker came back empty: offset 7 names another message now.
    second = IncomingMessage(
        topic="orders.created", partition=0, offset=7, timestamp=None, key=b"k", value=b"\x00second" * 20, headers=()
    )

    for incoming in (first, second, first):  # the last one: a redelivery after a crash
        pending = PendingDeadLetter(message=incoming, error=PoisonMessage("bad"), attempts=1, group="g")
        dead_letter_deliver(pending=pending)
        assert pending.publish_refused and not pending.published

    stored = sorted(bytes(value) for value in DeadLetter.objects.values_list("value", flat=True))
    assert stored == sorted([first.value, second.value])
