"""`/metrics`: Prometheus text with django-prometheus, our counters and the gauges read at scrape time.

The scrape reads the database on a thread of its own (bounded in time), which
sees only committed rows: tests that write rows the gauges read are
transactional.
"""
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

# The modules declaring counters the alerts read, as the processes that count them load them.
import orders.consumer  # noqa: F401
import payments.gateway  # noqa: F401
from celery_app import app as celery_app
from checkout.cart_cache import cart_cache_get, cart_cache_reset_for_tests
from checkout.idempotency import idempotency_records_expired_delete
from checkout.models import IdempotencyRecord
from checkout.tasks import cart_cleanup
from ecommerce.platform_state import outbox_unpublished_counts
from outbox.models import OutboxEvent, OutboxStatus
from resilience.policies import breaker_for, breakers_reset
from tests.ops.states import dead_letter
from tests.support import free_port, outbox_test_event, wait_for

pytestmark = pytest.mark.django_db


@celery_app.task(name="tests.always_fails")
def always_fails() -> None:
    raise RuntimeError("this task fails on purpose")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def event(aggregate_id: str) -> OutboxEvent:
    return outbox_test_event(aggregate_id)


def outbox_rows(samples: Samples) -> dict[str, float]:
    return {sample[0][1]: value for (name, sample), value in samples.items() if name == "outbox_rows"}


class TestExposition:
    def test_metrics_answers_prometheus_text_with_django_prometheus_series(self, client):
        client.get("/health/live")  # at least one request through the middleware

        text, samples = scrape(client)

        assert "# TYPE django_http_requests_total_by_method_total counter" in text
        assert samples[("django_http_requests_total_by_method_total", (("method", "GET"),))] >= 1

    def test_counters_of_our_own_are_exposed(self, client):
        text, _ = scrape(client)

        assert "# HELP cart_cache_errors_total " in text
        assert "# TYPE cart_cache_errors_total counter" in text
        assert "# HELP idempotency_cleanup_deleted_total " in text
        assert "# TYPE idempotency_cleanup_deleted_total counter" in text


@pytest.mark.django_db(transaction=True)
class TestOutboxGauges:
    def test_rows_not_yet_published_are_counted_by_status(self, client):
        rows = [event(str(uuid.uuid4())) for _ in range(10)]
        OutboxEvent.objects.filter(id__in=[rows[0].id, rows[1].id]).update(status=OutboxStatus.FAILED)
        OutboxEvent.objects.filter(id__in=[rows[2].id, rows[3].id, rows[4].id]).update(
            status=OutboxStatus.PUBLISHED, published_at=timezone.now()
        )
        OutboxEvent.objects.filter(id__in=[row.id for row in rows[5:9]]).update(status=OutboxStatus.REFUSED)

        _, samples = scrape(client)

        assert outbox_rows(samples) == {"PENDING": 1.0, "FAILED": 2.0, "REFUSED": 4.0}

    def test_every_status_is_reported_as_zero_on_an_empty_outbox(self, client):
        _, samples = scrape(client)

        assert outbox_rows(samples) == {"PENDING": 0.0, "FAILED": 0.0, "REFUSED": 0.0}
        assert samples[("outbox_oldest_pending_age_seconds", ())] == 0.0

    def test_the_count_reads_the_backlog_not_the_published_rows(self):
        # A week of published rows stays until purged, and the scrape counts
        # every 15 s: a read that visits them grows with the table.
        template = event("template")  # PENDING, like the one below
        OutboxEvent.objects.bulk_create(
            OutboxEvent(
                event_id=uuid.uuid4(), aggregate_type="order", aggregate_id=str(index), topic=template.topic, key=str(index),
                event_type=template.event_type, payload=template.payload, headers=template.headers,
                status=OutboxStatus.PUBLISHED, published_at=timezone.now(),
            )
            for index in range(5000)
        )
        event("pending")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE outbox_outboxevent")
        read = "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables WHERE relname = %s"

        def rows_read() -> int:
            with connection.cursor() as cursor:
                cursor.execute(read, [OutboxEvent._meta.db_table])
                return cursor.fetchone()[0]

        before = rows_read()
        counts = outbox_unpublished_counts()
        assert counts == {"PENDING": 2, "FAILED": 0, "REFUSED": 0}
        assert rows_read() - before <= 2  # the two PENDING rows (a GROUP BY over the table read 5,002)

    def test_oldest_pending_age_is_the_age_of_the_oldest_pending_row(self, client):
        oldest, newer, published = event("a"), event("b"), event("c")
        OutboxEvent.objects.filter(id=oldest.id).update(created_at=timezone.now() - timedelta(seconds=120))
        # An older row that is no longer PENDING does not count.
        OutboxEvent.objects.filter(id=published.id).update(
            status=OutboxStatus.PUBLISHED, created_at=timezone.now() - timedelta(hours=1), published_at=timezone.now()
        )

        _, samples = scrape(client)

        age = samples[("outbox_oldest_pending_age_seconds", ())]
        assert 120 <= age < 180
        assert OutboxEvent.objects.get(id=newer.id).status == OutboxStatus.PENDING


class TestBreakerGauge:
    def test_kafka_publisher_breaker_reads_zero_closed_and_one_open(self, client):
        _, closed = scrape(client)
        assert closed[("circuit_breaker_state", (("breaker", "kafkaPublisher"),))] == 0.0

        breaker = breaker_for("kafkaPublisher")
        for _ in range(5):
            breaker.record_failure(breaker.acquire())
        breakers_reset()  # the gauge must read the shared state in Redis, not this process's object

        _, opened = scrape(client)
        assert opened[("circuit_breaker_state", (("breaker", "kafkaPublisher"),))] == 1.0
        assert opened[("circuit_breaker_state", (("breaker", "paymentService"),))] == 0.0


class TestCounters:
    def test_cart_cache_errors_count_a_failed_cache_read(self, client, settings):
        _, before = scrape(client)
        key = ("cart_cache_errors_total", (("operation", "get"),))
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
        cart_cache_reset_for_tests()

        assert cart_cache_get("session-metrics") is None

        _, after = scrape(client)
        assert after[key] - before.get(key, 0.0) == 1.0

    def test_idempotency_cleanup_counts_deleted_records(self, client):
        for index in range(3):
            IdempotencyRecord.objects.create(
                key=f"expired-{index}",
                fingerprint="f",
                method="POST",
                path="/api/v1/checkout",
                response_status=201,
                response_body={},
                expires_at=timezone.now() - timedelta(hours=1),
            )
        _, before = scrape(client)
        key = ("idempotency_cleanup_deleted_total", ())

        assert idempotency_records_expired_delete(batch_size=2) == 3

        _, after = scrape(client)
        assert after[key] - before[key] == 3.0
        assert IdempotencyRecord.objects.count() == 0


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class TestBreakerTransitionTime:
    def test_last_change_time_is_the_opening_and_never_changed_reads_zero(self, client):
        _, before = scrape(client)
        assert sample(before, "circuit_breaker_state_changed_timestamp_seconds", breaker="kafkaPublisher") == 0.0

        breaker = breaker_for("kafkaPublisher")
        opened_after = time.time()
        for _ in range(5):
            breaker.record_failure(breaker.acquire())
        breakers_reset()

        _, after = scrape(client)
        changed = sample(after, "circuit_breaker_state_changed_timestamp_seconds", breaker="kafkaPublisher")
        assert opened_after <= changed <= time.time()
        assert sample(after, "circuit_breaker_state", breaker="kafkaPublisher") == 1.0


@pytest.mark.django_db(transaction=True)
class TestDeadLettersUnresolved:
    def test_counts_unresolved_rows_by_original_topic_with_known_topics_at_zero(self, client):
        _, empty = scrape(client)
        assert sample(empty, "dead_letters_unresolved", topic="orders.created") == 0.0
        assert sample(empty, "dead_letters_unresolved", topic="payments.completed") == 0.0

        dead_letter(offset=1)
        dead_letter(offset=2)
        dead_letter(offset=3, resolved=True)

        _, samples = scrape(client)
        assert sample(samples, "dead_letters_unresolved", topic="orders.created") == 2.0
        assert sample(samples, "dead_letters_unresolved", topic="payments.completed") == 0.0


def lag(samples: Samples) -> dict[int, float]:
    return {
        int(dict(labels)["partition"]): value
        for (name, labels), value in samples.items()
        if name == "orders_consumer_lag" and dict(labels)["topic"] == "orders.created"
    }


def scrape_with_kafka(client):
    """A scrape whose Kafka figures arrived: a scrape gives Kafka about a second
    and answers without them when it is late (a busy machine), which the paused
    broker test below covers."""
    scraped = {}

    def kafka_answered() -> bool:
        scraped["samples"] = scrape(client)[1]
        return sample(scraped["samples"], "metrics_source_up", source="kafka") == 1.0

    wait_for(kafka_answered, timeout=30, interval=0.5, what="a scrape with the Kafka figures")
    return scraped["samples"]


class TestConsumerLag:
    def test_lag_is_high_watermark_minus_the_groups_committed_offset(self, client, broker, settings):
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
        try:
            for partition, count in ((0, 4), (1, 2), (2, 0)):
                for _ in range(count):
                    producer.send("orders.created", partition=partition, value=b"{}").get(timeout=10)
        finally:
            producer.close()

        never_committed = scrape_with_kafka(client)
        assert lag(never_committed) == {0: 4.0, 1: 2.0, 2: 0.0}

        committer = KafkaConsumer(
            bootstrap_servers=[broker.bootstrap], group_id=settings.ORDERS_CONSUMER_GROUP, enable_auto_commit=False
        )
        try:
            committer.commit({TopicPartition("orders.created", 0): OffsetAndMetadata(3, "", -1)})
        finally:
            committer.close(autocommit=False)

        committed = scrape_with_kafka(client)
        assert lag(committed) == {0: 1.0, 1: 2.0, 2: 0.0}
        assert sample(committed, "orders_consumer_committed_offset", topic="orders.created", partition="0") == 3.0
        assert sample(committed, "orders_consumer_committed_offset", topic="orders.created", partition="1") == 0.0
        assert sample(committed, "metrics_source_up", source="kafka") == 1.0

    def test_a_paused_broker_gives_a_partial_scrape_within_about_a_second(self, client, broker):
        broker.pause()
        try:
            for _ in range(2):  # the second scrape finds the first read still stuck
                started = time.monotonic()
                _, samples = scrape(client)
                assert time.monotonic() - started < 2.0
                assert lag(samples) == {}
                assert sample(samples, "metrics_source_up", source="kafka") == 0.0
                assert sample(samples, "metrics_source_up", source="database") == 1.0
                assert sample(samples, "outbox_rows", status="PENDING") == 0.0
        finally:
            broker.resume()
        wait_for(lambda: sample(scrape(client)[1], "metrics_source_up", source="kafka") == 1.0, timeout=30, interval=1)


@pytest.fixture
def hung_server():
    """A server that accepts connections and never answers, like a paused process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


class TestHungRedis:
    def test_a_hung_redis_gives_a_partial_scrape_within_about_a_second(self, client, settings, hung_server):
        settings.RESILIENCE_REDIS_URL = f"redis://{hung_server}/0"
        settings.REDIS_URL = f"redis://{hung_server}/0"
        breakers_reset()

        started = time.monotonic()
        _, samples = scrape(client)

        assert time.monotonic() - started < 2.0
        assert sample(samples, "metrics_source_up", source="redis") == 0.0
        assert not [name for name, _ in samples if name.startswith("circuit_breaker_state")]
        assert sample(samples, "metrics_source_up", source="database") == 1.0
        breakers_reset()


class TestPeriodicJobs:
    def test_a_successful_task_records_its_time_and_the_gauge_reads_it(self, client):
        ran_after = time.time()

        result = cart_cleanup.apply()

        assert result.successful()
        _, after = scrape(client)
        at = sample(after, "periodic_job_last_success_timestamp_seconds", job="checkout.cart_cleanup")
        assert ran_after <= at <= time.time()

    def test_a_failed_task_records_nothing(self, client):
        key = ("periodic_job_last_success_timestamp_seconds", (("job", "tests.always_fails"),))

        result = always_fails.apply()

        assert result.failed()
        _, after = scrape(client)
        assert key not in after

    def test_every_scheduled_job_exports_its_interval(self, client):
        _, samples = scrape(client)

        assert sample(samples, "periodic_job_interval_seconds", job="outbox.relay") == settings.OUTBOX_SWEEP_INTERVAL_SECONDS


class TestZeroInitialisedSeries:
    def test_series_the_alerts_read_exist_before_any_event(self, client):
        text, samples = scrape(client)

        for outcome in ("approved", "declined", "transient_error", "circuit_open"):
            assert ("payment_attempts_total", (("outcome", outcome),)) in samples
        for reason in ("poison", "processing-error"):
            assert ("orders_consumer_dead_lettered_total", (("reason", reason), ("topic", "orders.created"))) in samples
        assert ("django_http_responses_total_by_status_total", (("status", "500"),)) in samples
        assert "# TYPE platform_process_restarts_total counter" in text


@pytest.mark.django_db(transaction=True)
class TestHungDatabase:
    def test_a_hung_database_gives_a_partial_scrape_within_about_a_second(self, client, hung_server, monkeypatch):
        _, healthy = scrape(client)
        assert sample(healthy, "metrics_source_up", source="database") == 1.0
        host, port = hung_server.split(":")
        # The scrape's own connection (opened per read, on its reader thread) goes to a server that never answers.
        monkeypatch.setitem(connection.settings_dict, "HOST", host)
        monkeypatch.setitem(connection.settings_dict, "PORT", port)

        for _ in range(2):  # the second scrape finds the first read still stuck
            started = time.monotonic()
            _, samples = scrape(client)
            assert time.monotonic() - started < 2.0
            assert sample(samples, "metrics_source_up", source="database") == 0.0
            assert ("outbox_rows", (("status", "PENDING"),)) not in samples
            assert sample(samples, "metrics_source_up", source="redis") == 1.0

        monkeypatch.undo()
        wait_for(lambda: sample(scrape(client)[1], "metrics_source_up", source="database") == 1.0, timeout=30, interval=1)
