"""The resilience overview: one snapshot of every mechanism's state, for a person on call.

Each figure is read by one small function over the reads of
`ecommerce/platform_state.py` (the same reads `/metrics` exports), each bounded to about
a second, and a figure whose source is down (PostgreSQL, Redis, Kafka) comes back as
`Unavailable` instead of failing the page: the page is most needed exactly
when something is down. Each figure's shape is in `ecommerce/overview_figures.py`. Each figure carries the admin changelist URL that
explains it, filtered to the rows it counts, where the admin's actions
(outbox requeue, dead-letter replay and resolve) fix them. The admin page
(`ecommerce/admin.py`) only renders the snapshot.
"""
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deadletters.models import DeadLetter
from ecommerce.overview_figures import (
    Activity,
    ActivitySeries,
    BreakerState,
    ConsumerLag,
    DeadLettersUnresolved,
    DeadLetterTopic,
    OutboxBacklog,
    OutboxFailed,
    PartitionLag,
    PeriodicJob,
    Snapshot,
    StuckOrders,
    StuckStatus,
    Unavailable,
)
from ecommerce.platform_state import (
    beat_started_at,
    breaker_statuses,
    consumer_positions,
    dead_letters_unresolved_by_topic,
    job_last_successes,
    orders_payment_in_doubt_count,
    orders_stuck_counts,
    outbox_oldest_pending_at,
    outbox_unpublished_counts,
)
from orders.models import Order
from outbox.models import OutboxEvent, OutboxStatus

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What "about a second" means for one figure: a dead dependency costs the page
# this long, not a request timeout. Redis reads are bounded tighter by the
# breaker store's and the job record's own socket timeout (REDIS_SOCKET_TIMEOUT_SECONDS).
READ_TIMEOUT_SECONDS = 1.0
# A job whose last success is older than this many intervals has missed at least
# two runs in a row: one late run is jitter, two is a stopped beat or worker.
STALE_AFTER_INTERVALS = 3
ACTIVITY_MINUTES = 60


def _changelist(model: type[models.Model], **filters: Any) -> str:
    """The admin changelist URL of `model`, filtered with the admin's own query parameters."""
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def _query_value(moment: datetime) -> str:
    """A datetime as the changelist's query string takes it: ISO 8601 with its offset."""
    return moment.astimezone(dt_timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _bounded_queries() -> Iterator[None]:
    """Run the block's queries in a transaction whose statements give up after READ_TIMEOUT_SECONDS."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(READ_TIMEOUT_SECONDS * 1000)}")
        yield


def outbox_backlog() -> OutboxBacklog:
    """Count PENDING outbox rows and find the oldest one's creation time."""
    with _bounded_queries():
        count = outbox_unpublished_counts()[OutboxStatus.PENDING]
        oldest = outbox_oldest_pending_at()
    return OutboxBacklog(pending=count, oldest_pending_at=oldest, url=_changelist(OutboxEvent, status__exact="PENDING"))


def outbox_failed() -> OutboxFailed:
    """Count the outbox rows given up on: FAILED (waiting for the requeue job) and REFUSED (for an operator)."""
    with _bounded_queries():
        counts = outbox_unpublished_counts()
    return OutboxFailed(
        failed=counts[OutboxStatus.FAILED],
        url=_changelist(OutboxEvent, status__exact="FAILED"),
        refused=counts[OutboxStatus.REFUSED],
        refused_url=_changelist(OutboxEvent, status__exact="REFUSED"),
    )


def _breaker_explained_by(name: str) -> str:
    """Where a breaker's effect shows: the rows it holds back or the orders it failed."""
    if name == "kafkaPublisher":
        return _changelist(OutboxEvent, status__exact="PENDING")
    return _changelist(Order, payment_status__exact="FAILED")


def _from_unix(moment: float | None) -> datetime | None:
    return datetime.fromtimestamp(moment, tz=dt_timezone.utc) if moment else None


def breaker_states() -> list[BreakerState]:
    """Read every breaker's shared state, and since when, from Redis."""
    return [
        BreakerState(
            name=breaker.name,
            state=breaker.state.value,
            changed_at=_from_unix(breaker.changed_at),
            url=_breaker_explained_by(breaker.name),
        )
        for breaker in breaker_statuses()
    ]


def dead_letters_unresolved() -> DeadLettersUnresolved:
    """Count unresolved dead letters by original topic."""
    with _bounded_queries():
        counts = dead_letters_unresolved_by_topic()
    return DeadLettersUnresolved(
        topics=[
            DeadLetterTopic(
                topic=topic,
                unresolved=count,
                url=_changelist(DeadLetter, original_topic__exact=topic, resolved_at__isempty="1"),
            )
            for topic, count in counts.items()
        ],
        url=_changelist(DeadLetter, resolved_at__isempty="1"),
    )


def consumer_lag() -> ConsumerLag:
    """Read the order consumer group's lag on each partition of `orders.created` from the broker."""
    positions = consumer_positions(timeout_seconds=READ_TIMEOUT_SECONDS)
    return ConsumerLag(
        group=positions.group,
        topic=positions.topic,
        partitions=[PartitionLag(partition, position.lag) for partition, position in positions.partitions.items()],
        # What lag means for a customer: orders still waiting for the consumer.
        url=_changelist(Order, status__exact="PENDING"),
    )


def orders_stuck(*, now: datetime) -> StuckOrders:
    """Count orders left PENDING or PROCESSING for longer than the reconciliation threshold, and payments in doubt."""
    threshold = settings.ORDER_RECONCILE_AFTER_SECONDS
    cutoff = (now - timedelta(seconds=threshold)).replace(microsecond=0)
    with _bounded_queries():
        counts = orders_stuck_counts(cutoff=cutoff)
        in_doubt = orders_payment_in_doubt_count()
    return StuckOrders(
        threshold_seconds=threshold,
        cutoff=cutoff,
        statuses=[
            StuckStatus(
                status=status,
                count=count,
                url=_changelist(Order, status__exact=status, updated_at__lt=_query_value(cutoff)),
            )
            for status, count in counts.items()
        ],
        in_doubt=in_doubt,
        in_doubt_url=_changelist(Order, payment_in_doubt="yes"),
    )


def periodic_jobs(*, now: datetime) -> list[PeriodicJob]:
    """List each installed periodic job with its last success.

    The last success is the record a worker keeps when the task succeeds (the
    one `/metrics` exports), not beat's `last_run_at`, which is when beat sent
    the task: a job whose worker is down or whose task fails looks late here.
    A job is counted from when beat started if it has not succeeded since: it
    is "not yet due" during its first interval and late only after missing
    runs of this start, so an hourly purge right after a start is not late.
    """
    with _bounded_queries():
        tasks = list(PeriodicTask.objects.select_related("interval").order_by("name"))
    successes = job_last_successes()
    started_at = _from_unix(beat_started_at())
    jobs = []
    for task in tasks:
        every = int(task.interval.schedule.run_every.total_seconds()) if task.interval else None
        last_success_at = _from_unix(successes.get(task.task))
        succeeded_since_start = last_success_at is not None and (started_at is None or last_success_at >= started_at)
        counted_from = last_success_at if succeeded_since_start else started_at
        not_yet_due = bool(
            task.enabled
            and every is not None
            and not succeeded_since_start
            and started_at is not None
            and now - started_at < timedelta(seconds=every)
        )
        stale = bool(task.enabled and every is not None and not not_yet_due) and (
            counted_from is None or now - counted_from > timedelta(seconds=STALE_AFTER_INTERVALS * every)
        )
        jobs.append(
            PeriodicJob(
                name=task.name,
                task=task.task,
                enabled=task.enabled,
                every_seconds=every,
                last_success_at=last_success_at,
                stale=stale,
                not_yet_due=not_yet_due,
                url=_changelist(PeriodicTask, task__exact=task.task),
            )
        )
    return jobs


def _per_minute(queryset: models.QuerySet, field_name: str, since: datetime) -> list[int]:
    counts = dict(
        queryset.filter(**{f"{field_name}__gte": since})
        .annotate(minute=TruncMinute(field_name))
        .values_list("minute")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return [counts.get(since + timedelta(minutes=index), 0) for index in range(ACTIVITY_MINUTES)]


def activity(*, now: datetime) -> Activity:
    """Count published events, checkouts (orders created) and dead letters in each minute of the last hour."""
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=ACTIVITY_MINUTES - 1)
    with _bounded_queries():
        published = _per_minute(OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED), "published_at", since)
        checkouts = _per_minute(Order.objects.all(), "created_at", since)
        dead_letters = _per_minute(DeadLetter.objects.all(), "created_at", since)
    return Activity(
        since=since,
        series=[
            ActivitySeries(
                "Events published",
                published,
                _changelist(OutboxEvent, status__exact="PUBLISHED", published_at__gte=_query_value(since)),
            ),
            ActivitySeries("Checkouts", checkouts, _changelist(Order, created_at__gte=_query_value(since))),
            ActivitySeries("Dead letters", dead_letters, _changelist(DeadLetter, created_at__gte=_query_value(since))),
        ],
    )


def _figure(name: str, read: Callable[[], T]) -> T | Unavailable:
    try:
        return read()
    except Exception as error:  # any failure of one source must leave the other figures readable
        logger.warning("overview figure unavailable", extra={"figure": name, "error": repr(error)})
        return Unavailable(reason=f"{type(error).__name__}: {error}"[:300])


def overview_snapshot(*, now: datetime | None = None) -> Snapshot:
    """Read every figure of the resilience overview, each on its own and within its bound."""
    now = now or timezone.now()
    return Snapshot(
        taken_at=now,
        outbox_backlog=_figure("outbox_backlog", outbox_backlog),
        outbox_failed=_figure("outbox_failed", outbox_failed),
        breakers=_figure("breakers", breaker_states),
        dead_letters=_figure("dead_letters", dead_letters_unresolved),
        consumer_lag=_figure("consumer_lag", consumer_lag),
        stuck_orders=_figure("stuck_orders", lambda: orders_stuck(now=now)),
        periodic_jobs=_figure("periodic_jobs", lambda: periodic_jobs(now=now)),
        activity=_figure("activity", lambda: activity(now=now)),
    )
