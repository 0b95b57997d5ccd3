"""Key-ordered parallel processing of consumed messages, with contiguous offset commits.

Why this module is ours: no Python Kafka client (kafka-python, confluent-kafka,
aiokafka) processes the messages of one partition in parallel while keeping
each key's messages in order and committing only the finished prefix of the
partition (Confluent's Parallel Consumer does, for Java only). Without it a
consumer handles one message at a time, so a partition moves at one payment
call per message: about three orders a second at 300 ms per call.

The poll loop stays the only caller of Kafka; this module never touches a
client. What the loop does with it:

* `submit(message)` for each polled message. `process(message)` then runs on a
  bounded thread pool, never at the same time as an earlier message of the
  same key (topic, partition, key), which it waits for: per-key FIFO. Messages
  of different keys run in parallel; messages without a key are ordered by
  their partition, as a one-at-a-time consumer would.
* `committable()` gives, per partition, the offset to commit: the lowest
  offset still unfinished, or one past the highest submitted when all are
  finished. A slow message at N holds the commit at N however many after it
  finish, so a crash re-delivers only from N (the processed-events table
  absorbs what was finished after it).
* `full()` says the bound of in-flight messages is reached: the loop pauses
  fetching its partitions and keeps polling (a poll with every partition
  paused returns nothing and keeps the group membership alive), then resumes
  once `full()` is false. `submit` never blocks, so one poll's records may
  overshoot the bound; poll with `max_records=capacity()` to avoid it.
* `process` returns a `Disposition`. DONE and DEAD_LETTERED finish the
  message. RETRY keeps it unfinished, holding its partition's commit and its
  key, and runs it again after `retry_backoff(attempt)` seconds, until it
  finishes or the executor stops taking it (revoke, drain); then it is left
  uncommitted for the next delivery. An exception escaping `process` is
  logged and counts as RETRY: a message is never skipped by accident.
* `revoke(partitions)` from the rebalance listener: the partitions' messages
  not started yet are dropped, those running are waited for (up to a
  timeout, which is 0 on kafka-python's IO thread), and their final
  positions are returned for the loop to commit before giving them up.
* `drain(timeout)` on shutdown: no new work starts, running messages finish,
  then the loop commits `committable()` and closes.

Threads, not asyncio: the work is blocking I/O (the payment call, Django ORM
transactions) and the ORM is synchronous. Each pool thread holds its own
database connection, so the pool size is also a connection budget.
"""
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, NamedTuple, Protocol, TypeVar

from resilience.backoff import backoff_seconds

logger = logging.getLogger(__name__)


class KeyedMessage(Protocol):
    """What the executor reads of a message (`messaging.kafka.consumer.IncomingMessage` fits)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...


M = TypeVar("M", bound=KeyedMessage)


class TopicPartitionId(NamedTuple):
    topic: str
    partition: int


class Disposition(str, Enum):
    """What became of a consumed message: its one fate, from the consumer's decision to the executor's commit."""

    DONE = "done"  # applied (or recognised as already applied): commit may pass it
    DEAD_LETTERED = "dead_lettered"  # safely stored as a dead letter: commit may pass it
    RETRY = "retry"  # not finished: hold the commit and the key, run it again


FINISHED = frozenset({Disposition.DONE, Disposition.DEAD_LETTERED})


def default_retry_backoff(attempt: int) -> float:
    """Wait about 1, 2, 4 … seconds, at most 30, before running a RETRY message again."""
    return backoff_seconds(attempt, initial_seconds=1.0, max_seconds=30.0)


@dataclass(eq=False)
class _Partition:
    """One partition's offsets: what is unfinished, what was submitted, what was committed."""

    unfinished: set[int] = field(default_factory=set)
    highest: int = -1
    committed: int | None = None
    running: int = 0
    revoked: bool = False

    def position(self) -> int | None:
        """Return the next offset to commit, or None if nothing was submitted."""
        if self.highest < 0:
            return None
        return min(self.unfinished) if self.unfinished else self.highest + 1


@dataclass(eq=False)
class _Entry(Generic[M]):
    message: M
    partition: _Partition
    order_key: Hashable


class OrderedExecutor(Generic[M]):
    """Run messages in parallel, in order per key, and track the offsets safe to commit."""

    def __init__(
        self,
        *,
        process: Callable[[M], Disposition],
        max_in_flight: int,
        retry_backoff: Callable[[int], float] = default_retry_backoff,
        on_settled: Callable[[M, Disposition | None], None] | None = None,
        thread_name_prefix: str = "ordered",
    ) -> None:
        """`on_settled(message, disposition)` is called from the pool thread once a
        message leaves the pool: its final disposition, or None when it was
        abandoned unfinished (revoked or draining)."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._process = process
        self._retry_backoff = retry_backoff
        self._on_settled = on_settled
        self.max_in_flight = max_in_flight
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix=thread_name_prefix)
        # One lock for all state: every critical section is a few dict and set
        # operations, never the work itself.
        self._lock = threading.Condition()
        self._partitions: dict[TopicPartitionId, _Partition] = {}
        # Per order key, the messages submitted and not settled; the head is running.
        self._keys: dict[Hashable, deque[_Entry[M]]] = {}
        self._in_flight = 0
        self._running = 0
        self._closing = False

    # --- What the poll loop calls ------------------------------------------

    def submit(self, message: M) -> bool:
        """Take a polled message; False if it was already submitted (a redelivery) and is ignored.

        Raise RuntimeError after `drain()`: a loop that drains has stopped polling.
        """
        with self._lock:
            if self._closing:
                raise RuntimeError("the executor is draining; it takes no more messages")
            partition_id = TopicPartitionId(message.topic, message.partition)
            partition = self._partitions.get(partition_id)
            if partition is None:
                partition = self._partitions[partition_id] = _Partition()
            if message.offset <= partition.highest:
                return False  # a seek or broker retry re-delivered it; the first delivery is tracked
            partition.highest = message.offset
            partition.unfinished.add(message.offset)
            order_key = (message.topic, message.partition, message.key)
            queue = self._keys.setdefault(order_key, deque())
            entry = _Entry(message, partition, order_key)
            queue.append(entry)
            self._in_flight += 1
            if len(queue) == 1:
                self._start(entry)
            return True

    def in_flight(self) -> int:
        """Count the messages submitted and not settled yet (running or waiting for their key)."""
        with self._lock:
            return self._in_flight

    def capacity(self) -> int:
        """Return how many more messages fit under the bound (0 when full)."""
        with self._lock:
            return max(self.max_in_flight - self._in_flight, 0)

    def full(self) -> bool:
        """True while the loop should keep its partitions paused."""
        return self.capacity() == 0

    def wait_for_room(self, timeout_seconds: float) -> bool:
        """Wait until a message leaves a full pool (at most `timeout_seconds`); True if there is room.

        The poll loop waits here rather than in a paused poll's timeout: a
        slot left idle that long capped payments near 40/s (bench/capacity.py).
        """
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight < self.max_in_flight or self._closing, timeout=timeout_seconds)

    def partitions(self) -> list[TopicPartitionId]:
        """Return the partitions with tracked messages (to revoke them all when the client is replaced)."""
        with self._lock:
            return list(self._partitions)

    def committable(self) -> dict[TopicPartitionId, int]:
        """Return the offsets to commit: per partition, where it moved since `mark_committed`."""
        with self._lock:
            positions = {}
            for partition_id, partition in self._partitions.items():
                position = partition.position()
                if position is not None and position != partition.committed:
                    positions[partition_id] = position
            return positions

    def mark_committed(self, positions: dict[TopicPartitionId, int]) -> None:
        """Record offsets the broker accepted, so `committable()` leaves them out until they move."""
        with self._lock:
            for partition_id, position in positions.items():
                partition = self._partitions.get(partition_id)
                if partition is not None:
                    partition.committed = position

    def revoke(self, partitions: Iterable[TopicPartitionId], *, timeout_seconds: float) -> dict[TopicPartitionId, int]:
        """Give partitions up: drop their waiting messages, wait for the running ones, forget them.

        Return the final positions to commit (every partition that had
        messages, committed already or not). A message still running after
        the timeout is left to finish unobserved; its partition's position
        stays below it, so the next owner gets it again (the processed-events
        table and the provider's idempotency key make that harmless).

        kafka-python 3 calls rebalance listeners on its IO thread, where a
        blocking call (a synchronous commit, a long wait) fails or stalls the
        heartbeats: from such a listener pass `timeout_seconds=0` and commit
        the positions with the client's non-blocking commit.
        """
        with self._lock:
            revoked = {}
            for partition_id in partitions:
                partition = self._partitions.get(TopicPartitionId(*partition_id))
                if partition is not None:
                    partition.revoked = True
                    revoked[TopicPartitionId(*partition_id)] = partition
            self._drop_waiting(lambda entry: entry.partition.revoked)
            self._lock.notify_all()  # wakes RETRY messages of these partitions to give up
            self._lock.wait_for(lambda: all(p.running == 0 for p in revoked.values()), timeout=timeout_seconds)
            positions = {}
            for partition_id, partition in revoked.items():
                position = partition.position()
                if position is not None:
                    positions[partition_id] = position
                del self._partitions[partition_id]
            return positions

    def drain(self, *, timeout_seconds: float) -> bool:
        """Stop taking work and wait for the running messages; True if all finished in time.

        Messages still waiting behind their key are not started: they stay
        unfinished (so uncommitted) and are delivered again after a restart,
        which keeps shutdown within the time of the slowest running message.
        """
        with self._lock:
            self._closing = True
            self._drop_waiting(lambda entry: True)
            self._lock.notify_all()
            return self._lock.wait_for(lambda: self._running == 0, timeout=timeout_seconds)

    def close(self, *, timeout_seconds: float) -> bool:
        """Drain, then release the pool's threads; True if nothing was left running."""
        drained = self.drain(timeout_seconds=timeout_seconds)
        self._pool.shutdown(wait=drained, cancel_futures=True)
        return drained

    # --- Inside ---------------------------------------------------------------

    def _start(self, entry: _Entry[M]) -> None:
        """Run the head of a key's queue on the pool (the lock is held)."""
        entry.partition.running += 1
        self._running += 1
        self._pool.submit(self._run, entry)

    def _stopped(self, entry: _Entry[M]) -> bool:
        return self._closing or entry.partition.revoked

    def _run(self, entry: _Entry[M]) -> None:
        disposition: Disposition | None = None
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    outcome = self._process(entry.message)
                except Exception:
                    message = entry.message
                    where = {"topic": message.topic, "partition": message.partition, "offset": message.offset}
                    logger.exception("message processing raised; it will run again", extra={"event": "resilience", **where})
                    outcome = Disposition.RETRY
                if outcome in FINISHED:
                    disposition = outcome
                    break
                with self._lock:
                    if self._lock.wait_for(lambda: self._stopped(entry), timeout=self._retry_backoff(attempt)):
                        break  # revoked or draining: leave it for the next delivery
        finally:
            self._settle(entry, disposition)
        if self._on_settled is not None:
            try:
                self._on_settled(entry.message, disposition)
            except Exception:  # a metrics callback must never stop the pool thread's bookkeeping
                logger.exception("on_settled callback failed")

    def _settle(self, entry: _Entry[M], disposition: Disposition | None) -> None:
        """Record the head's end and start its key's next message (or drop the key's rest)."""
        with self._lock:
            partition = entry.partition
            partition.running -= 1
            self._running -= 1
            self._in_flight -= 1
            if disposition in FINISHED:
                partition.unfinished.discard(entry.message.offset)
            queue = self._keys[entry.order_key]
            queue.popleft()
            # Abandoned unfinished, its later messages of the same delivery must
            # not overtake it; nor does anything start once revoked or draining.
            # What is dropped stays unfinished, so it is never committed.
            while queue and ((disposition is None and queue[0].partition is partition) or self._stopped(queue[0])):
                queue.popleft()
                self._in_flight -= 1
            if queue:
                self._start(queue[0])
            else:
                del self._keys[entry.order_key]
            self._lock.notify_all()

    def _drop_waiting(self, drop: Callable[[_Entry[M]], bool]) -> None:
        """Forget waiting (not started) messages that `drop` selects; they stay unfinished (the lock is held)."""
        for order_key, queue in list(self._keys.items()):
            head, waiting = queue[0], list(queue)[1:]
            kept = [entry for entry in waiting if not drop(entry)]
            self._in_flight -= len(waiting) - len(kept)
            self._keys[order_key] = deque([head, *kept])
