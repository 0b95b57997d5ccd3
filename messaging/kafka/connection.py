"""How every Kafka client of ours connects: the network client with topic
auto-creation really off, the producer's partitioner, the admin client, and
the broker ping. Imports kafka-python and nothing of ours."""
import functools
import logging
import socket
from collections.abc import Sequence

from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient
from kafka.partitioner.default import DefaultPartitioner, murmur2

logger = logging.getLogger(__name__)


class NoAutoCreateClient(KafkaNetClient):
    """kafka-python's network client, with topic auto-creation really off.

    kafka-python 3.0.12 accepts `allow_auto_create_topics=False` but its
    connection manager builds the cluster metadata without it, so the metadata
    requests for a subscribed or produced-to topic still ask the broker to
    create it (seen: tansu made `orders.created` with 4 partitions). Passed in
    through the public `kafka_client` option until the library hands it on.
    """

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        self.cluster.config["allow_auto_create_topics"] = False


class ProducerClient(NoAutoCreateClient):
    """The producer's network client: its metadata always covers every topic.

    kafka-python 3.0.12's producer tracks only the topics it had to look up,
    and a topic already in the bootstrap's metadata is never looked up. The
    first send to a topic created later (a scratch topic, a topic made again
    after a broker lost it) narrows the metadata to that topic alone. The
    earlier topics' partitions then have no known leader, and the sender
    thread asks for a metadata update on every pass, which never brings them
    back: a core spent for good, idle or not (seen at 100% of one in a relay
    process, and reproduced by a producer sending to one topic, then another
    created after it started). Asking for every topic's metadata keeps them
    known; the platform has a handful of topics.
    """

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        self.cluster.need_all_topic_metadata = True


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


class KeyHashCachingPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner, each key's hash computed once.

    The partition is the Java client's (murmur2 of the key, made positive,
    modulo the partition count), so a key lands where any Kafka client puts
    it; only the hash is remembered. kafka-python's murmur2 is pure Python:
    267 of 1,653 py-spy samples of a relay draining a backlog (README,
    "What the relay spends"), and an order's events, sent in one batch, share
    their key. A cache of the library's own function rather than another
    package's C murmur2: nothing new to install, and the same answer by
    construction.
    """

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if not partitions:  # no key (a random partition), or a topic not known: the default's answer
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        ordered = sorted(partitions)
        return ordered[_key_hash(serialized_key) % len(ordered)]


def admin_client(bootstrap_servers: Sequence[str], timeout_seconds: float) -> KafkaAdminClient:
    timeout_ms = int(timeout_seconds * 1000)
    return KafkaAdminClient(
        bootstrap_servers=list(bootstrap_servers),
        client_id="ecommerce-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def broker_ping(*, bootstrap_servers: Sequence[str], timeout_seconds: float) -> None:
    """Raise if no bootstrap server accepts a connection and answers a metadata call.

    A TCP connect first keeps the common failure (nothing listening) fast and
    free of kafka-python's reconnect loop; a paused broker accepts connections
    but never answers, which the bounded metadata call then catches.
    """
    last_error: Exception | None = None
    for server in bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_seconds):
                break
        except OSError as error:
            last_error = error
    else:
        raise ConnectionError(f"no Kafka bootstrap server reachable: {last_error}")
    try:
        admin = admin_client(bootstrap_servers, timeout_seconds)
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    try:
        admin.list_topics()
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        admin.close()
