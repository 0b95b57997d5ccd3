"""The producer's partitioner puts a key where Kafka's Java client does, with each key's hash computed once."""
import pytest
from kafka.partitioner.default import DefaultPartitioner

from messaging.kafka.connection import KeyHashCachingPartitioner, _key_hash

pytestmark = pytest.mark.unit


class Cluster:
    """The two questions a partitioner asks of kafka-python's cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"orders.created"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions if topic == "orders.created" else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def partition(partitioner, key: bytes | None, partitions: int = 1000, topic: str = "orders.created") -> int:
    return partitioner.partition(topic, key, key, b"{}", b"{}", Cluster(partitions))


# Kafka's own Java partitioner's answers over 1,000 partitions (kafka-python's
# test_partitioner.py takes them from org.apache.kafka.clients.producer.Partitioner).
JAVA = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}


@pytest.mark.parametrize("key, expected", JAVA.items())
def test_a_key_lands_on_the_java_clients_partition(key, expected):
    assert partition(KeyHashCachingPartitioner(), key) == expected
    assert partition(DefaultPartitioner(), key) == expected


def test_every_key_lands_where_the_default_partitioner_puts_it_and_its_hash_is_computed_once():
    _key_hash.cache_clear()
    cached, default = KeyHashCachingPartitioner(), DefaultPartitioner()
    keys = [f"order-{n}".encode() for n in range(500)]
    for partitions in (1, 3, 7):
        assert [partition(cached, key, partitions) for key in keys] == [partition(default, key, partitions) for key in keys]
    info = _key_hash.cache_info()
    assert (info.misses, info.hits) == (500, 1000)


def test_no_key_or_an_unknown_topic_gets_the_default_partitioners_answer():
    assert partition(KeyHashCachingPartitioner(), None, 3) in {0, 1, 2}
    with pytest.raises(ValueError, match="not found"):
        partition(KeyHashCachingPartitioner(), b"a", topic="elsewhere")
