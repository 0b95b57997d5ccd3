"""The consumer's Kafka client against a real broker: it joins, and reads from its commits after a rebalance.

The test polls as the consumer loop does when busy or starved of CPU, with a
gap between polls (`GAP_SECONDS`): kafka-python 3.0.12 lost a group join that
finished in such a gap (`messaging.kafka.consumer._JoinKeepingCoordinator`).
"""
import subprocess
import sys

from messaging.contract.events import ORDERS_CREATED, PAYMENTS_COMPLETED
from messaging.kafka.consumer import EventConsumer
from tests.support import produce, wait_for

GROUP = "rebalance-kept"
GAP_SECONDS = 0.1
# A member of its own process, as every consumer is: kafka-python's, polling back to back.
JOINER = """
import sys
from kafka import KafkaConsumer
bootstrap, group, topic = sys.argv[1:]
consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False, allow_auto_create_topics=False)
consumer.subscribe([topic])
while True:
    consumer.poll(timeout_ms=1000)
"""


def test_a_partition_given_back_by_a_rebalance_is_read_again_from_its_committed_offset(broker):
    produce(broker.bootstrap, ORDERS_CREATED, [(0, b"order", b"%d" % n, []) for n in range(5)])
    consumer = EventConsumer(bootstrap_servers=[broker.bootstrap], group_id=GROUP, topics=[ORDERS_CREATED], max_poll_interval_seconds=60)
    revocations = []
    consumer.on_revoked = lambda partitions, lost: revocations.append((sorted(partitions), lost))
    joiner = None
    try:
        first = []

        def delivered() -> bool:
            first.extend(consumer.poll(timeout_seconds=0.2, max_records=10))
            return len(first) >= 5

        wait_for(delivered, timeout=60, interval=GAP_SECONDS, what="the five messages")
        assert [message.offset for message in first] == [0, 1, 2, 3, 4]
        # Two finished; the owner gives up the other three at the revocation, so they must come again.
        consumer.commit_positions({(ORDERS_CREATED, 0): 2})

        # A member of the same group that reads another topic: its joining makes the
        # group rebalance, and every partition of ORDERS_CREATED comes back to `consumer`.
        joiner = subprocess.Popen(
            [sys.executable, "-c", JOINER, broker.bootstrap, GROUP, PAYMENTS_COMPLETED], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        again = []

        def delivered_again() -> bool:
            again.extend(consumer.poll(timeout_seconds=0.2, max_records=10))
            return len(again) >= 3

        wait_for(delivered_again, timeout=60, interval=GAP_SECONDS, what="the uncommitted messages delivered again after the rebalance")
        assert [message.offset for message in again][:3] == [2, 3, 4]
        assert (sorted((ORDERS_CREATED, partition) for partition in range(3)), False) in revocations
    finally:
        if joiner is not None:
            joiner.kill()
            joiner.wait(timeout=10)
        consumer.close()
