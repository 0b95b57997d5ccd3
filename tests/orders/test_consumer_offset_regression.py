"""A broker that came back empty reuses offsets: the consumer never takes a new message for an old one.

The regression itself (the client's position reset under the loop, without
any error the loop could see) happens with a real broker only when a restart
falls between two polls, so `ReplayedPartition` delivers it on cue: it is the
Kafka client's interface (poll, commit, pause) over a scripted partition. The
dead letters around it are real: the `.dlq` publish through the real producer
to a broker that is not there, then to a real one (the test's own), and the real table.
"""
import threading
import time
from collections import deque

import pytest
from django.db import connections

from deadletters.models import DeadLetter
from messaging.kafka.consumer import IncomingMessage
from messaging.kafka.producer import event_producer_reset
from orders.consumer import OrderCreatedConsumer
from orders.processing import PoisonMessage
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

TOPIC = "orders.created"


class ReplayedPartition:
    """The consumer client's interface over messages the test hands it, one poll at a time."""

    group_id = "offset-regression"

    def __init__(self) -> None:
        self.on_revoked = None
        self.batches: deque[list[IncomingMessage]] = deque()
        self.commits: list[dict] = []

    def poll(self, *, timeout_seconds: float, max_records: int) -> list[IncomingMessage]:
        if self.batches:
            return self.batches.popleft()
        time.sleep(min(timeout_seconds, 0.05))
        return []

    def commit_positions(self, positions, *, timeout_seconds: float = 0) -> None:
        self.commits.append(dict(positions))

    def commit_positions_nowait(self, positions) -> None:
        self.commits.append(dict(positions))

    def pause_all(self) -> None:
        pass

    def resume_all(self) -> None:
        pass

    def rewind(self) -> None:
        pass

    def close(self, *, timeout_seconds: float = 0) -> None:
        pass


def message(offset: int, value: bytes) -> IncomingMessage:
    return IncomingMessage(
        topic=TOPIC, partition=0, offset=offset, timestamp=None, key=b"order-1", value=value, headers=(("id", value),)
    )


def test_a_new_message_at_a_reused_offset_is_processed_not_dead_lettered_as_the_old_one(settings, broker):
    settings.CONSUMER_RETRY_BACKOFF_SECONDS = 0.05
    settings.RESILIENCE_POLICIES = {"kafkaPublisher": {"timeout_seconds": 0.5}}
    live_broker = settings.KAFKA_BOOTSTRAP_SERVERS  # the test's own broker
    processed: list[bytes] = []

    def process(incoming: IncomingMessage) -> None:
        if incoming.value.startswith(b"\x00"):
            raise PoisonMessage("never processable")
        processed.append(incoming.value)

    client = ReplayedPartition()
    loop = OrderCreatedConsumer(consumer=client, process=process, max_in_flight=4)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                loop.poll_once()
        finally:
            connections.close_all()

    # Given: a poison message at offset 0 whose dead letter cannot be made safe
    # (no broker for its .dlq topic): it waits in the consumer's memory.
    settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{free_port()}"]
    event_producer_reset()
    client.batches.append([message(0, b"\x00poison")])
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(loop.dead_letters) == 1, timeout=30, what="the dead letter to wait in memory")

        # When: the broker comes back empty and a new, good message takes offset 0
        settings.KAFKA_BOOTSTRAP_SERVERS = live_broker
        event_producer_reset()
        client.batches.append([message(0, b"good")])

        # Then: the new message is processed, once, and nothing is dead-lettered in its place
        wait_for(lambda: processed == [b"good"], timeout=30, what="the new message to be processed")
        wait_for(lambda: {(TOPIC, 0): 1} in client.commits, timeout=10, what="offset 1 committed")
    finally:
        stop.set()
        runner.join(timeout=30)
        loop.shutdown()
    assert not runner.is_alive()
    assert processed == [b"good"]
    # The old message may have reached the dead letters on its own (it was
    # running when its partition was reset, and may finish); the new one never.
    assert {bytes(value) for value in DeadLetter.objects.values_list("value", flat=True)} <= {b"\x00poison"}
    assert len(loop.dead_letters) == 0
