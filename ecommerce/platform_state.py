"""The platform's state figures, read from where they live: one home for both readers.

`/metrics` (`ecommerce/metrics.py`) turns them into scrape-time gauges and the
admin's resilience overview (`ecommerce/overview.py`) into figures with admin
links. Each function here is a plain read of one figure, returning plain values
or dataclasses; bounding it in time, and what a dead source means, is the
reader's business (the scrape runs each dependency on a thread of its own, the
overview bounds each statement), so both keep their own bounds over the same
reads.

Dependencies run one way: this module reads the apps' models, the Kafka
boundary, the breakers and Celery's job-success record; the two readers import
it, and nothing here imports them.
"""
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count

from celery_app import beat_started_at, job_last_successes
from deadletters.models import DeadLetter
from messaging.contract.events import ORDERS_CREATED
from messaging.kafka.monitoring import PartitionPosition, consumer_group_positions
from orders.models import UNSETTLED_STATUSES, Order
from outbox.models import OutboxEvent, OutboxStatus
from resilience.breaker import State
from resilience.policies import DEFAULT_POLICIES, breaker_for

__all__ = [
    "BreakerStatus",
    "beat_started_at",
    "ConsumerPositions",
    "breaker_statuses",
    "consumer_positions",
    "dead_letters_unresolved_by_topic",
    "job_last_successes",
    "orders_flagged_count",
    "orders_stuck_counts",
    "outbox_oldest_pending_at",
    "outbox_unpublished_counts",
]


@dataclass(frozen=True)
class BreakerStatus:
    name: str
    state: State
    changed_at: float | None  # unix time of the last transition; None when the document does not say


@dataclass(frozen=True)
class ConsumerPositions:
    group: str
    topic: str
    partitions: dict[int, PartitionPosition]


# What the outbox still owes: PUBLISHED rows stay until purged (a week by
# default, tens of millions of rows at a few hundred orders a minute), so a
# read that visits them grows with the table and runs at every scrape.
UNPUBLISHED_STATUSES = tuple(status for status in OutboxStatus.values if status != OutboxStatus.PUBLISHED)


def outbox_unpublished_counts() -> dict[str, int]:
    """Count outbox rows in each status other than PUBLISHED (0 when none), without visiting published rows.

    `status IN (...)` is an index range on (status, created_at): the read is
    as long as the backlog, not the table (README, "Cost per order").
    """
    counts = dict.fromkeys(UNPUBLISHED_STATUSES, 0)
    counts.update(
        OutboxEvent.objects.filter(status__in=UNPUBLISHED_STATUSES).values_list("status").annotate(count=Count("id")).order_by()
    )
    return counts


def outbox_oldest_pending_at() -> datetime | None:
    """Return when the oldest PENDING outbox row was created (None when there is none)."""
    return (
        OutboxEvent.objects.filter(status=OutboxStatus.PENDING).order_by("id").values_list("created_at", flat=True).first()
    )


def dead_letters_unresolved_by_topic() -> dict[str, int]:
    """Count unresolved dead letters by original topic, in topic order; topics with none are absent."""
    return dict(
        DeadLetter.objects.filter(resolved_at__isnull=True)
        .values_list("original_topic")
        .annotate(count=Count("id"))
        .order_by("original_topic")
    )


def orders_stuck_counts(*, cutoff: datetime) -> dict[str, int]:
    """Count orders in each of UNSETTLED_STATUSES whose last change is older than `cutoff` (0 when none)."""
    counts = dict.fromkeys(UNSETTLED_STATUSES, 0)
    counts.update(
        Order.objects.filter(status__in=UNSETTLED_STATUSES, updated_at__lt=cutoff)
        .values_list("status")
        .annotate(count=Count("id"))
        .order_by()
    )
    return counts


def orders_payment_in_doubt_count() -> int:
    """Count orders whose payment outcome is unknown until reconciliation has the provider's word."""
    return Order.objects.filter(payment_unknown_since__isnull=False).count()


def orders_flagged_count() -> int:
    """Count orders reconciliation flagged for a human (until unflagged)."""
    return Order.objects.filter(flagged_at__isnull=False).count()


def breaker_statuses() -> list[BreakerStatus]:
    """Read every breaker's shared state and last transition time from Redis.

    Read from the shared store itself, never `CircuitBreaker.state()`, which
    falls back to this process's own state when Redis is down: a breaker open
    everywhere else would read CLOSED. A Redis error propagates, so a reader can
    tell "unknown" from "closed".
    """
    statuses = []
    for name, policy in DEFAULT_POLICIES.items():
        if policy.breaker is None:
            continue
        state, changed_at = breaker_for(name).shared_status()
        statuses.append(BreakerStatus(name=name, state=state, changed_at=changed_at))
    return statuses


def consumer_positions(*, timeout_seconds: float) -> ConsumerPositions:
    """Read the order consumer group's committed offset and high watermark on each partition of `orders.created`.

    Raise ConnectionError when the broker does not answer within about `timeout_seconds`.
    """
    group = settings.ORDERS_CONSUMER_GROUP
    partitions = consumer_group_positions(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        group_id=group,
        topic=ORDERS_CREATED,
        timeout_seconds=timeout_seconds,
    )
    return ConsumerPositions(group=group, topic=ORDERS_CREATED, partitions=dict(sorted(partitions.items())))
