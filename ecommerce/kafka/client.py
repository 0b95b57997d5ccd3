"""The one module that imports kafka-python.

Everything else in the project talks to Kafka through these functions, so the
client library, its configuration and its error types stay in one place.
"""
import logging
import socket
from collections.abc import Iterable, Sequence

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ecommerce.kafka.topics import TOPICS, TopicSpec

logger = logging.getLogger(__name__)


def _admin(bootstrap_servers: Sequence[str], timeout_seconds: float) -> KafkaAdminClient:
    timeout_ms = int(timeout_seconds * 1000)
    return KafkaAdminClient(
        bootstrap_servers=list(bootstrap_servers),
        client_id="ecommerce-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def topics_ensure(
    *, bootstrap_servers: Sequence[str], topics: Iterable[TopicSpec] = TOPICS, timeout_seconds: float = 10.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = _admin(bootstrap_servers, timeout_seconds)
    try:
        existing = set(admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        created: list[str] = []
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1)])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
        return created
    finally:
        admin.close()


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
        admin = _admin(bootstrap_servers, timeout_seconds)
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    try:
        admin.list_topics()
    except KafkaError as error:
        raise ConnectionError(f"Kafka did not answer: {error!r}") from error
    finally:
        admin.close()
