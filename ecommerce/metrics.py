"""`/metrics`: django-prometheus and our counters, plus gauges read at scrape time.

The gauges (outbox backlog, oldest pending row, breaker states) describe
shared state in PostgreSQL and Redis, so they are computed when scraped
rather than kept by any one process. Counters from several processes
(gunicorn workers, Celery) are merged when PROMETHEUS_MULTIPROC_DIR is set.
"""
import logging
import os

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from outbox.models import OutboxEvent, OutboxStatus
from resilience.breaker import STATE_VALUE, State
from resilience.policies import DEFAULT_POLICIES, breaker_for

logger = logging.getLogger(__name__)

# A shed request never reaches django-prometheus' after-middleware, so its
# responses-by-status counter does not see it: this one does (ecommerce/shedding.py).
HTTP_REQUESTS_SHED = Counter("http_requests_shed", "API requests refused with 503 by load shedding.")


class PlatformStateCollector:
    def collect(self):
        try:
            yield from self._outbox()
        except Exception as error:  # a scrape during a database outage still answers
            logger.warning("outbox gauges unavailable", extra={"error": repr(error)})
        yield from self._breakers()

    def _outbox(self):
        rows = GaugeMetricFamily("outbox_rows", "Outbox rows by status (PUBLISHED rows until purged).", labels=["status"])
        counts = dict.fromkeys(OutboxStatus.values, 0)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT status, count(*) FROM {OutboxEvent._meta.db_table} GROUP BY status")
            counts.update(dict(cursor.fetchall()))
        for status, count in counts.items():
            rows.add_metric([status], count)
        yield rows
        oldest = (
            OutboxEvent.objects.filter(status=OutboxStatus.PENDING).order_by("id").values_list("created_at", flat=True).first()
        )
        age = GaugeMetricFamily("outbox_oldest_pending_age_seconds", "Age of the oldest PENDING outbox row (0 when none).")
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age

    def _breakers(self):
        gauge = GaugeMetricFamily(
            "circuit_breaker_state", "Shared breaker state: 0 closed, 1 open, 2 half-open.", labels=["breaker"]
        )
        for name, policy in DEFAULT_POLICIES.items():
            if policy.breaker is None:
                continue
            try:
                state = breaker_for(name).state()
            except Exception:
                state = State.CLOSED
            gauge.add_metric([name], STATE_VALUE[state])
        yield gauge


def metrics(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    shared_state = CollectorRegistry()
    shared_state.register(PlatformStateCollector())
    return HttpResponse(generate_latest(processes) + generate_latest(shared_state), content_type=CONTENT_TYPE_LATEST)
