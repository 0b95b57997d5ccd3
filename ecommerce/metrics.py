"""`/metrics`: django-prometheus and our counters, plus gauges read at scrape time.

The gauges (outbox backlog, breaker states, dead letters, consumer lag,
periodic jobs) describe shared state in PostgreSQL, Redis and Kafka, so they
are computed when scraped rather than kept by any one process; the reads
themselves live in `ecommerce/platform_state.py`, shared with the admin's
resilience overview. Counters from
several processes (gunicorn workers, Celery, the consumer, the supervisor's
event listener) are merged when PROMETHEUS_MULTIPROC_DIR is set.

A scrape never waits long on a dead dependency: each dependency's reads run
on a thread of its own and are waited for at most SCRAPE_READ_SECONDS, so a
dead PostgreSQL, Redis or Kafka gives a partial scrape (its gauges missing,
`metrics_source_up{source}` at 0), never a hang or a 500. A bound inside each
client is not enough: a paused server accepts the request and never answers,
and neither libpq nor kafka-python bound every call they make.
"""
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_prometheus.middleware import Metrics as DjangoMetrics
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ecommerce.platform_state import (
    breaker_statuses,
    consumer_positions,
    dead_letters_unresolved_by_topic,
    job_last_successes,
    orders_flagged_count,
    orders_payment_in_doubt_count,
    orders_stuck_counts,
    outbox_oldest_pending_at,
    outbox_unpublished_counts,
)
from ecommerce.schedules import schedules
from messaging.contract.events import DLQ_SUFFIX, TOPICS
from resilience.breaker import STATE_VALUE

logger = logging.getLogger(__name__)

SCRAPE_READ_SECONDS = 1.0

# Written by the supervisor's event listener (ecommerce/management/commands/supervisor_events.py).
PROCESS_RESTARTS = Counter(
    "platform_process_restarts",
    "Platform processes restarted by the supervisor after they died (exited unexpectedly or failed to start).",
    ["process"],
)

# ApiServerErrors reads these: exported at zero so the first 5xx is an increase, not a new series.
for _status in ("500", "502", "503", "504"):
    DjangoMetrics.get_instance().responses_by_status.labels(_status)


class _DependencyReader:
    """One thread per dependency: a hung read holds back only the reads of its own dependency."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"metrics-{name}")
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def submit(self, read: Callable[[], list[Metric]]) -> Future | None:
        """Start `read`, or return None while an earlier read is still stuck (no queue builds up)."""
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return None
            self._pending = self._executor.submit(read)
            return self._pending


def _database_metrics() -> list[Metric]:
    # This thread's own connection, opened for the read and closed after it, so
    # no connection outlives a scrape (nor holds the test database open).
    close_old_connections()
    try:
        return [*_outbox(), _dead_letters_unresolved(), *_orders()]
    finally:
        connection.close()


def _outbox() -> list[Metric]:
    rows = GaugeMetricFamily(
        "outbox_rows", "Outbox rows not yet published, by status (published ones: outbox_published_total).", labels=["status"]
    )
    for status, count in outbox_unpublished_counts().items():
        rows.add_metric([status], count)
    oldest = outbox_oldest_pending_at()
    age = GaugeMetricFamily(
        "outbox_oldest_pending_age_seconds", "Age of the oldest PENDING outbox row in seconds (0 when none)."
    )
    age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
    return [rows, age]


def _dead_letters_unresolved() -> Metric:
    gauge = GaugeMetricFamily(
        "dead_letters_unresolved", "Stored dead letters not yet resolved, by original topic.", labels=["topic"]
    )
    # Every consumed topic is exported, at zero when clean, so the first dead letter is an increase.
    counts = {spec.name: 0 for spec in TOPICS if not spec.name.endswith(DLQ_SUFFIX)}
    counts.update(dead_letters_unresolved_by_topic())
    for topic, count in sorted(counts.items()):
        gauge.add_metric([topic], count)
    return gauge


def _orders() -> list[Metric]:
    cutoff = timezone.now() - timedelta(seconds=settings.ORDER_RECONCILE_AFTER_SECONDS)
    stuck = GaugeMetricFamily(
        "orders_stuck",
        "Orders PENDING or PROCESSING for longer than ORDER_RECONCILE_AFTER_SECONDS, by status.",
        labels=["status"],
    )
    for status, count in orders_stuck_counts(cutoff=cutoff).items():
        stuck.add_metric([status], count)
    gauge = GaugeMetricFamily("orders_flagged", "Orders reconciliation flagged for a human (until unflagged).")
    gauge.add_metric([], orders_flagged_count())
    in_doubt = GaugeMetricFamily(
        "orders_payment_in_doubt", "Orders whose payment outcome is unknown until the provider is asked again."
    )
    in_doubt.add_metric([], orders_payment_in_doubt_count())
    return [stuck, gauge, in_doubt]


def _redis_metrics() -> list[Metric]:
    state = GaugeMetricFamily(
        "circuit_breaker_state", "Shared breaker state: 0 closed, 1 open, 2 half-open.", labels=["breaker"]
    )
    changed = GaugeMetricFamily(
        "circuit_breaker_state_changed_timestamp_seconds",
        "Unix time of the breaker's last state change (0 when it never changed).",
        labels=["breaker"],
    )
    for breaker in breaker_statuses():
        state.add_metric([breaker.name], STATE_VALUE[breaker.state])
        changed.add_metric([breaker.name], breaker.changed_at or 0.0)
    jobs = GaugeMetricFamily(
        "periodic_job_last_success_timestamp_seconds",
        "Unix time of the last successful run of each Celery task (job = task name).",
        labels=["job"],
    )
    for job, at in sorted(job_last_successes().items()):
        jobs.add_metric([job], at)
    return [state, changed, jobs]


def _kafka_metrics() -> list[Metric]:
    lag = GaugeMetricFamily(
        "orders_consumer_lag",
        "Messages of the order consumer group not yet committed: high watermark minus committed offset.",
        labels=["topic", "partition"],
    )
    committed = GaugeMetricFamily(
        "orders_consumer_committed_offset",
        "The order consumer group's committed offset (0 when never committed); it stands still when the group makes no progress.",
        labels=["topic", "partition"],
    )
    positions = consumer_positions(timeout_seconds=SCRAPE_READ_SECONDS)
    for partition, position in positions.partitions.items():
        lag.add_metric([positions.topic, str(partition)], position.lag)
        committed.add_metric([positions.topic, str(partition)], position.committed)
    return [lag, committed]


def _job_intervals() -> Metric:
    gauge = GaugeMetricFamily(
        "periodic_job_interval_seconds",
        "How often beat runs each periodic job, in seconds (job = task name); PeriodicJobStale compares against it.",
        labels=["job"],
    )
    intervals: dict[str, int] = {}
    for schedule in schedules():
        intervals[schedule.task] = min(schedule.every_seconds, intervals.get(schedule.task, schedule.every_seconds))
    for job, seconds in sorted(intervals.items()):
        gauge.add_metric([job], seconds)
    return gauge


_READERS = {
    "database": (_DependencyReader("database"), _database_metrics),
    "redis": (_DependencyReader("redis"), _redis_metrics),
    "kafka": (_DependencyReader("kafka"), _kafka_metrics),
}


class PlatformStateCollector:
    """Read every dependency in parallel, each bounded, and yield what arrived in time."""

    def collect(self) -> Iterator[Metric]:
        deadline = time.monotonic() + SCRAPE_READ_SECONDS
        started = {source: reader.submit(read) for source, (reader, read) in _READERS.items()}
        up = GaugeMetricFamily(
            "metrics_source_up", "1 when the scrape read this dependency's gauges in time, else 0.", labels=["source"]
        )
        for source, future in started.items():
            families = self._result(source, future, deadline)
            up.add_metric([source], 0 if families is None else 1)
            yield from families or []
        yield up
        yield _job_intervals()

    @staticmethod
    def _result(source: str, future: Future | None, deadline: float) -> list[Metric] | None:
        if future is None:
            logger.warning("metrics: %s still unanswered since an earlier scrape", source, extra={"source": source})
            return None
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            logger.warning("metrics: %s did not answer in time", source, extra={"source": source})
        except Exception as error:  # a scrape during an outage still answers, with what it has
            logger.warning("metrics: %s unavailable", source, extra={"source": source, "error": repr(error)})
        return None


class ProcessFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's multiprocess collector, minus the files still being created.

    A process creates its metrics file empty and only then sizes it; a scrape
    in between (a process just restarted, say after a SIGKILL) made the whole
    collection fail on the empty file's missing header. Such a file holds no
    sample yet, so leaving it out loses nothing.
    """

    def collect(self) -> Iterator[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) > 0:
                    files.append(path)
            except OSError:
                continue  # removed since the glob (a dead process's live gauge)
        return self.merge(files, accumulate=True)


def metrics(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        ProcessFilesCollector(processes)
    else:
        processes = REGISTRY
    shared_state = CollectorRegistry()
    shared_state.register(PlatformStateCollector())
    return HttpResponse(generate_latest(processes) + generate_latest(shared_state), content_type=CONTENT_TYPE_LATEST)
