"""`/metrics`: Prometheus text with django-prometheus, our counters and the gauges read at scrape time."""
import uuid
from datetime import timedelta

import pytest

from tests.support import outbox_test_event
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from checkout.cart_cache import cart_cache_get, cart_cache_reset_for_tests
from checkout.idempotency import idempotency_records_expired_delete
from checkout.models import IdempotencyRecord
from outbox.models import OutboxEvent, OutboxStatus
from resilience.policies import breaker_for, breakers_reset
from tests.support import free_port

pytestmark = pytest.mark.django_db

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
    return {status: samples[("outbox_rows", (("status", status),))] for status in OutboxStatus.values}


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


class TestOutboxGauges:
    def test_rows_by_status_equal_the_table(self, client):
        rows = [event(str(uuid.uuid4())) for _ in range(6)]
        OutboxEvent.objects.filter(id__in=[rows[0].id, rows[1].id]).update(status=OutboxStatus.FAILED)
        OutboxEvent.objects.filter(id__in=[rows[2].id, rows[3].id, rows[4].id]).update(
            status=OutboxStatus.PUBLISHED, published_at=timezone.now()
        )

        _, samples = scrape(client)

        assert outbox_rows(samples) == {"PENDING": 1.0, "FAILED": 2.0, "PUBLISHED": 3.0}

    def test_every_status_is_reported_as_zero_on_an_empty_outbox(self, client):
        _, samples = scrape(client)

        assert outbox_rows(samples) == {"PENDING": 0.0, "FAILED": 0.0, "PUBLISHED": 0.0}
        assert samples[("outbox_oldest_pending_age_seconds", ())] == 0.0

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
