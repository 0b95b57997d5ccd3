"""The producer's sender thread stays idle once a topic created after it started has been sent to."""
import time

from messaging.contract.events import TopicSpec
from messaging.kafka.admin import topics_ensure
from messaging.kafka.producer import OutgoingMessage, SendStatus, event_producer_send


def _send(topic: str, count: int = 50) -> set[SendStatus]:
    messages = [OutgoingMessage(topic, f"key-{index % 10}".encode(), b"x" * 200, ()) for index in range(count)]
    return {result.status for result in event_producer_send(messages)}


def test_a_topic_created_after_the_producer_started_leaves_its_thread_idle(broker):
    topics_ensure(bootstrap_servers=[broker.bootstrap], topics=[TopicSpec("early", 3)])
    assert _send("early") == {SendStatus.ACKED}  # the producer starts, "early" in its bootstrap metadata
    topics_ensure(bootstrap_servers=[broker.bootstrap], topics=[TopicSpec("late", 3)])
    assert _send("late") == {SendStatus.ACKED}

    # kafka-python 3.0.12 narrowed the metadata to "late" alone, lost the
    # leaders of "early"'s partitions and asked for a metadata update on every
    # pass of its sender thread: a whole core, with nothing to send.
    spent, slept = time.process_time(), time.monotonic()
    time.sleep(2.0)
    spent, slept = time.process_time() - spent, time.monotonic() - slept
    assert spent < 0.25 * slept, f"the idle producer used {spent:.2f} s of CPU in {slept:.2f} s"
    assert _send("early") == {SendStatus.ACKED}
