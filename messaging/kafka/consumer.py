"""The event consumer: kafka-python's consumer behind a small interface (poll,
pause and resume, commit in order, rebalance log), its broker errors classified."""
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)

from messaging.kafka.connection import NoAutoCreateClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


# Per (topic, partition), the next offset to read: what a commit records.
Positions = Mapping[tuple[str, int], int]
# Called with the partitions taken from this member and whether they were
# lost (membership gone: their offsets can no longer be committed).
RevokedHook = Callable[[list[tuple[str, int]], bool], None]


class _AssignmentLog(ConsumerRebalanceListener):
    """Log which partitions this member holds, tell the owner of in-flight work when they go, and of new assignments.

    kafka-python 3 calls these methods on its IO thread, inside the caller's
    `poll()` or `close()`: nothing here may block on the broker (a blocking
    commit raises "Cannot block on net.run() from the IO thread itself"), so
    the hooks must only hand work back, commit without waiting, or set a flag.
    """

    def __init__(self, group_id: str, on_revoked: RevokedHook | None, on_assigned: Callable[[], None]) -> None:
        self.group_id = group_id
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    def on_partitions_revoked(self, revoked) -> None:
        logger.info("partitions revoked", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in revoked)})
        self._tell(revoked, lost=False)

    def on_partitions_lost(self, lost) -> None:
        logger.info("partitions lost", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in lost)})
        self._tell(lost, lost=True)

    def on_partitions_assigned(self, assigned) -> None:
        logger.info("partitions assigned", extra={"group": self.group_id, "partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in assigned)})
        self.on_assigned()

    def _tell(self, partitions, *, lost: bool) -> None:
        if self.on_revoked is None or not partitions:
            return
        try:
            self.on_revoked([(tp.topic, tp.partition) for tp in partitions], lost)
        except Exception:  # raised from here it would fail the rebalance itself; the work is re-delivered anyway
            logger.exception("revoked-partitions hook failed", extra={"event": "resilience", "group": self.group_id})


class _JoinKeepingCoordinator(ConsumerCoordinator):
    """kafka-python's group coordinator, completing a join that finished between two polls.

    kafka-python 3.0.12 (and its main branch, December 2026) runs JoinGroup
    and SyncGroup as one task on its IO thread, which `poll()` awaits for at
    most its own timeout. A task that finishes while no poll awaits it is lost
    in one of two ways, both seen against tansu (whose joins take 5 s):

    * the next poll takes it for a stale one, sends a new JoinGroup and drops
      the assignment it brought; a member that leaves a gap between polls
      (processing, a commit, a starved CPU) can miss every answer and never
      get a partition (60 s without one, polling 0.2 s with 0.1 s between);
    * when the join was asked for by a metadata change (the leader rejoins
      once a subscribed topic's partitions change, as when a broker comes back
      empty), the leader's own assignment takes the change in, nothing asks
      for a join any more, and the finished task is never completed: the
      member keeps no partition, sends no heartbeat and is dropped from the
      group, while its polls return nothing and raise nothing.

    Here a finished join task always counts as a join to complete, and one
    that succeeded hands its assignment to that completion instead of a new
    JoinGroup; the rest is the library's own path. Drop this once the library
    completes a finished join task instead of replacing or forgetting it.
    """

    _unclaimed_assignment: bytes | None = None

    def need_rejoin(self):
        finished = self._join_task
        return (finished is not None and finished.is_done) or super().need_rejoin()

    async def join_group_async(self, timeout_ms=None):
        finished = self._join_task
        if finished is not None and finished.succeeded():
            self._unclaimed_assignment = finished.value
        return await super().join_group_async(timeout_ms)

    async def _do_join_and_sync_async(self):
        unclaimed, self._unclaimed_assignment = self._unclaimed_assignment, None
        if unclaimed is not None:
            return unclaimed
        return await super()._do_join_and_sync_async()


class _GroupConsumer(KafkaConsumer):
    """kafka-python's consumer with `_JoinKeepingCoordinator` (it builds its coordinator itself, with no option to pass one)."""

    def __init__(self, **configs) -> None:
        super().__init__(**configs)
        self._coordinator.__class__ = _JoinKeepingCoordinator


class BrokerUnavailable(Exception):
    """The consumer lost the broker or its group membership: back off, reconnect, go on.

    `kind` is one of `connection`, `commit_failed`, `rebalance`, `topic_missing`.
    """

    def __init__(self, kind: str, error: BaseException) -> None:
        super().__init__(f"{kind}: {error!r}")
        self.kind = kind
        self.error = error


def _broker_error_kind(error: BaseException) -> str:
    if isinstance(error, CommitFailedError):
        return "commit_failed"
    if isinstance(error, (RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError, IllegalStateError)):
        return "rebalance"  # the partition moved to another member, or this member was forgotten
    if isinstance(error, UnknownTopicOrPartitionError):
        return "topic_missing"
    return "connection"


# Bounds the blocking calls of the consumer, whose default (request_timeout_ms,
# 305 s) would freeze the loop for five minutes when the broker goes away.
CONSUMER_CALL_TIMEOUT_SECONDS = 10.0


class EventConsumer:
    """A consumer-group member that commits only what the caller says is done.

    The caller commits positions (per partition, the next offset to read),
    pauses fetching while it has no room for more, and hears of revoked
    partitions through `on_revoked`; after every rebalance each partition is
    read again from its committed offset (`poll`). Every broker failure surfaces as
    `BrokerUnavailable`; `reconnect()` drops the kafka-python consumer and
    builds a new one (which rejoins the group and resumes from the committed
    offsets).
    """

    def __init__(
        self,
        *,
        bootstrap_servers: Sequence[str],
        group_id: str,
        topics: Sequence[str],
        max_poll_interval_seconds: float,
    ) -> None:
        self.group_id = group_id
        self.bootstrap_servers = list(bootstrap_servers)
        self.topics = list(topics)
        self.max_poll_interval_seconds = max_poll_interval_seconds
        # Set by the owner of the in-flight work before the first poll:
        # `on_revoked(partitions, lost)`, run on kafka-python's IO thread (see `_AssignmentLog`).
        self.on_revoked: RevokedHook | None = None
        # Connected on first use, so a broker down at start is ridden out like any later outage.
        self._consumer: KafkaConsumer | None = None
        # Set when the next poll must read every partition again from its
        # committed offset: by an assignment (on the IO thread) or by `rewind()`.
        self._rewind = threading.Event()

    def _connect(self) -> KafkaConsumer:
        consumer = _GroupConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            client_id=f"{self.group_id}-{os.getpid()}",
            enable_auto_commit=False,
            # A broker that came back empty has lost the committed offsets:
            # start from the beginning, the processed-events table absorbs repeats.
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            kafka_client=NoAutoCreateClient,
            # A member that stops polling for this long is presumed dead and its
            # partitions go to the others; it must exceed the slowest message
            # (three 5 s payment attempts with backoff).
            max_poll_interval_ms=int(self.max_poll_interval_seconds * 1000),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            request_timeout_ms=int(CONSUMER_CALL_TIMEOUT_SECONDS * 1000) + 5_000,
            reconnect_backoff_max_ms=5_000,
        )
        consumer.subscribe(self.topics, listener=_AssignmentLog(self.group_id, self.on_revoked, self._rewind.set))
        return consumer

    def reconnect(self) -> None:
        """Close the current client (if any) and connect a new one; raise BrokerUnavailable if it cannot."""
        self._close_quietly(timeout_seconds=1.0)  # the broker is likely gone: do not wait to leave the group
        try:
            self._consumer = self._connect()
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error
        self._rewind.clear()  # a new client starts from the committed offsets

    def poll(self, *, timeout_seconds: float, max_records: int) -> list[IncomingMessage]:
        """Fetch the next messages; after a rebalance or `rewind()`, nothing, and every partition read again from its commit.

        kafka-python 3 keeps the fetch position of a partition that a
        rebalance takes away and gives back (the Java client's eager protocol
        starts it again from the committed offset): the messages after the
        commit that the owner gave up at the revocation (`on_revoked`) would
        never come again, and a broker that came back empty would have its
        first messages skipped. So once a poll completed an assignment, what
        it fetched is dropped and every assigned partition goes back to its
        committed offset (the beginning if none); the processed-events table
        absorbs what comes twice.
        """
        client = self._client()
        try:
            batches = client.poll(timeout_ms=int(timeout_seconds * 1000), max_records=max_records)
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error
        if self._rewind.is_set():
            self._rewind.clear()
            try:
                self._rewind_to_committed(client)
            except BrokerUnavailable:
                self._rewind.set()  # the next poll tries again
                raise
            return []
        messages = []
        for records in batches.values():
            for record in records:
                messages.append(
                    IncomingMessage(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        timestamp=record.timestamp,
                        key=record.key,
                        value=record.value,
                        headers=tuple((name, value or b"") for name, value in (record.headers or [])),
                    )
                )
        return sorted(messages, key=lambda message: (message.topic, message.partition, message.offset))

    def commit_positions(self, positions: Positions, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS) -> None:
        """Commit the next offset to read per partition; wait for the broker, at most `timeout_seconds`."""
        if not positions:
            return
        try:
            self._client().commit(_offsets(positions), timeout_ms=int(timeout_seconds * 1000))
        except (KafkaError, OSError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error

    def commit_positions_nowait(self, positions: Positions) -> None:
        """Send a commit without waiting for it: the one commit a rebalance hook (IO thread) may make.

        A commit that fails is logged; its messages are delivered again to
        the partition's next owner, where the processed-events table absorbs them.
        """
        if not positions or self._consumer is None:
            return

        def done(offsets, response) -> None:
            if isinstance(response, BaseException):
                logger.warning("commit on revocation failed", extra={"event": "resilience", "group": self.group_id, "error": repr(response)})

        try:
            self._consumer.commit_async(_offsets(positions), callback=done)
        except (KafkaError, OSError) as error:
            logger.warning("commit on revocation failed", extra={"event": "resilience", "group": self.group_id, "error": repr(error)})

    def rewind(self) -> None:
        """Have the next poll read every assigned partition again from its committed offset, and return nothing.

        For a caller that gave up the messages it had fetched and not
        finished: without this the client would go on after them.
        """
        self._rewind.set()

    @staticmethod
    def _rewind_to_committed(client: KafkaConsumer) -> None:
        """Seek every assigned partition to its committed offset (the beginning if none)."""
        timeout_ms = int(CONSUMER_CALL_TIMEOUT_SECONDS * 1000)
        try:
            for partition in client.assignment():
                committed = client.committed(partition, timeout_ms=timeout_ms)
                if committed is None or committed < 0:
                    client.seek_to_beginning(partition)
                else:
                    client.seek(partition, committed)
        except (KafkaError, OSError, ValueError) as error:
            raise BrokerUnavailable(_broker_error_kind(error), error) from error

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; `poll()` keeps the membership alive and returns nothing.

        Call it on every pass while paused: partitions assigned by a
        rebalance arrive unpaused.
        """
        client = self._client()
        assigned = client.assignment()
        if assigned:
            client.pause(*assigned)

    def resume_all(self) -> None:
        """Fetch again from every paused partition."""
        client = self._client()
        paused = client.paused()
        if paused:
            client.resume(*paused)

    def close(self, *, timeout_seconds: float = CONSUMER_CALL_TIMEOUT_SECONDS) -> None:
        """Leave the group at once, so its partitions move to the other members now."""
        self._close_quietly(timeout_seconds=timeout_seconds)

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self.reconnect()
        return self._consumer

    def _close_quietly(self, *, timeout_seconds: float) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(autocommit=False, timeout_ms=int(timeout_seconds * 1000))
        except Exception:  # closing against a dead broker may complain; the client is gone either way
            logger.debug("consumer close failed", exc_info=True)


def _offsets(positions: Positions) -> dict[TopicPartition, OffsetAndMetadata]:
    return {TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1) for (topic, partition), offset in positions.items()}
