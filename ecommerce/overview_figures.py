"""What the resilience overview shows: one frozen dataclass per figure, and the snapshot of them all.

`ecommerce/overview.py` reads them; the admin page (`ecommerce/admin.py`) renders them.
"""
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar


@dataclass(frozen=True)
class Unavailable:
    """A figure whose source could not be read within its time bound."""

    reason: str
    unavailable: ClassVar[bool] = True


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    oldest_pending_at: datetime | None
    url: str


@dataclass(frozen=True)
class OutboxFailed:
    failed: int
    url: str
    # Refused for good by the broker: never requeued by the job, only by an operator.
    refused: int = 0
    refused_url: str = ""


@dataclass(frozen=True)
class BreakerState:
    name: str
    state: str  # CLOSED, OPEN or HALF_OPEN
    changed_at: datetime | None  # None: the state document does not say
    url: str


@dataclass(frozen=True)
class DeadLetterTopic:
    topic: str
    unresolved: int
    url: str


@dataclass(frozen=True)
class DeadLettersUnresolved:
    topics: list[DeadLetterTopic]
    url: str

    @property
    def total(self) -> int:
        return sum(topic.unresolved for topic in self.topics)


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    lag: int


@dataclass(frozen=True)
class ConsumerLag:
    group: str
    topic: str
    partitions: list[PartitionLag]
    url: str

    @property
    def total(self) -> int:
        return sum(partition.lag for partition in self.partitions)


@dataclass(frozen=True)
class StuckStatus:
    status: str
    count: int
    url: str


@dataclass(frozen=True)
class StuckOrders:
    threshold_seconds: int
    cutoff: datetime
    statuses: list[StuckStatus]
    # Payments in doubt: the provider's answer was unknown; reconciliation asks it under the same key.
    in_doubt: int
    in_doubt_url: str

    @property
    def total(self) -> int:
        return sum(status.count for status in self.statuses)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str  # the Celery task name, as the job metrics label it
    enabled: bool
    every_seconds: int | None  # None: a crontab or other non-interval schedule
    last_success_at: datetime | None  # None: no success recorded
    stale: bool
    # No success since beat started, and its first interval since then has not passed yet.
    not_yet_due: bool
    url: str


@dataclass(frozen=True)
class ActivitySeries:
    name: str
    per_minute: list[int]
    url: str

    @property
    def total(self) -> int:
        return sum(self.per_minute)


@dataclass(frozen=True)
class Activity:
    since: datetime
    series: list[ActivitySeries]


@dataclass(frozen=True)
class Snapshot:
    taken_at: datetime
    outbox_backlog: OutboxBacklog | Unavailable
    outbox_failed: OutboxFailed | Unavailable
    breakers: list[BreakerState] | Unavailable
    dead_letters: DeadLettersUnresolved | Unavailable
    consumer_lag: ConsumerLag | Unavailable
    stuck_orders: StuckOrders | Unavailable
    periodic_jobs: list[PeriodicJob] | Unavailable
    activity: Activity | Unavailable
