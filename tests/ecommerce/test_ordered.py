"""The key-ordered parallel executor on its own: real threads, fake messages, no services."""
import random
import threading
import time
from collections import defaultdict

import pytest

from messaging.kafka.consumer import IncomingMessage
from messaging.kafka.ordered import Disposition, OrderedExecutor, TopicPartitionId
from tests.support import wait_for
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit

TOPIC = "orders.created"
P0 = TopicPartitionId(TOPIC, 0)


def message(offset: int, key: str | None, partition: int = 0) -> IncomingMessage:
    return IncomingMessage(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=None,
        key=key.encode() if key is not None else None,
        value=b"{}",
        headers=(),
    )


@pytest.fixture
def executors():
    """Executors made by a test, always closed (their threads released) afterwards."""
    made: list[OrderedExecutor] = []

    def make(**options) -> OrderedExecutor:
        options.setdefault("retry_backoff", lambda attempt: 0.01)
        executor = OrderedExecutor(**options)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close(timeout_seconds=5)


def test_each_key_runs_in_order_and_alone_while_keys_run_in_parallel(executors):
    started: dict[bytes, list[int]] = defaultdict(list)
    active: set[bytes] = set()
    overlaps: list[bytes] = []
    guard = threading.Lock()
    running = 0
    most_running = 0

    def process(msg: IncomingMessage) -> Disposition:
        nonlocal running, most_running
        with guard:
            if msg.key in active:
                overlaps.append(msg.key)
            active.add(msg.key)
            started[msg.key].append(msg.offset)
            running += 1
            most_running = max(most_running, running)
        time.sleep(random.uniform(0, 0.003))
        with guard:
            active.discard(msg.key)
            running -= 1
        return Disposition.DONE

    executor = executors(process=process, max_in_flight=16)
    rng = random.Random(7)
    submitted: dict[bytes, list[int]] = defaultdict(list)
    next_offset = {0: 0, 1: 0, 2: 0}
    for _ in range(1500):
        key = f"order-{rng.randrange(40)}"
        partition = hash(key) % 3  # a key always lands on one partition, as with Kafka's partitioner
        offset = next_offset[partition]
        next_offset[partition] += 1
        assert executor.submit(message(offset, key, partition))
        submitted[key.encode()].append(offset)

    wait_for(lambda: executor.in_flight() == 0, timeout=30, interval=0.01, what="every message to settle")
    assert overlaps == []
    assert dict(started) == dict(submitted)
    assert most_running > 1
    assert executor.committable() == {
        TopicPartitionId(TOPIC, partition): count for partition, count in next_offset.items() if count
    }


def test_a_slow_message_holds_its_partitions_commit_while_later_ones_finish(executors):
    slow = 10
    release = threading.Event()
    finished: set[int] = set()
    guard = threading.Lock()

    def process(msg: IncomingMessage) -> Disposition:
        if msg.offset == slow:
            release.wait(timeout=10)
        with guard:
            finished.add(msg.offset)
        return Disposition.DONE

    executor = executors(process=process, max_in_flight=8)
    for offset in range(slow + 51):  # N = 10, then N+1 … N+50, each its own order
        executor.submit(message(offset, f"order-{offset}"))

    wait_for(lambda: len(finished) == slow + 50, timeout=10, interval=0.01, what="all but the slow message")
    assert slow not in finished
    assert executor.committable() == {P0: slow}

    release.set()
    wait_for(lambda: executor.in_flight() == 0, timeout=10, interval=0.01, what="the slow message")
    assert executor.committable() == {P0: slow + 51}


def test_committable_lists_a_partition_again_only_once_it_moves(executors):
    executor = executors(process=lambda msg: Disposition.DONE, max_in_flight=2)
    executor.submit(message(0, "a"))
    wait_for(lambda: executor.in_flight() == 0, timeout=5, interval=0.01, what="offset 0")
    executor.mark_committed(executor.committable())

    assert executor.committable() == {}
    executor.submit(message(1, "a"))
    wait_for(lambda: executor.in_flight() == 0, timeout=5, interval=0.01, what="offset 1")
    assert executor.committable() == {P0: 2}


def test_a_crash_after_finishing_before_committing_redelivers_and_the_duplicate_is_absorbed(executors):
    """A crash loses uncommitted offsets, never work: the processed-events table counts the copies."""
    applied: set[int] = set()  # stands for the processed-events table
    duplicates = 0
    guard = threading.Lock()
    crashed = threading.Event()
    stuck = 70

    def process(msg: IncomingMessage) -> Disposition:
        nonlocal duplicates
        if msg.offset == stuck and not crashed.is_set():
            crashed.wait(timeout=10)  # dies (below) before its database commit
        if crashed.is_set() and threading.current_thread().name.startswith("before"):
            return Disposition.RETRY  # the dying process never commits this one
        with guard:
            if msg.offset in applied:
                duplicates += 1
            else:
                applied.add(msg.offset)
        return Disposition.DONE

    messages = [message(offset, f"order-{offset % 10}") for offset in range(100)]
    before = executors(process=process, max_in_flight=8, thread_name_prefix="before")
    for msg in messages:
        before.submit(msg)
    # 80 and 90 share the stuck message's key and wait for it; the rest finish.
    wait_for(lambda: before.in_flight() == 3, timeout=10, interval=0.01, what="everything but key 0's tail")
    assert len(applied) == 97
    committed = before.committable()[P0]
    assert committed == stuck

    crashed.set()  # the process dies: no further commit
    before.close(timeout_seconds=5)

    after = executors(process=process, max_in_flight=8, thread_name_prefix="after")
    for msg in messages[committed:]:
        after.submit(msg)
    wait_for(lambda: after.in_flight() == 0, timeout=10, interval=0.01, what="the redelivery")

    assert applied == set(range(100))
    assert duplicates == 100 - committed - 3  # redelivered and finished before: 71…99 but 80, 90
    assert after.committable() == {P0: 100}


def test_full_pauses_fetching_and_the_loop_keeps_polling_until_it_resumes(executors):
    """A poll loop over a fake consumer: pause when full, poll on while paused, resume when room."""

    class FakeConsumer:
        def __init__(self, messages: list[IncomingMessage]) -> None:
            self.pending = list(messages)
            self.paused = False
            self.pauses = self.resumes = self.polls_while_paused = 0

        def poll(self, max_records: int) -> list[IncomingMessage]:
            if self.paused:
                self.polls_while_paused += 1  # what keeps the group membership alive
                time.sleep(0.002)
                return []
            batch, self.pending = self.pending[:max_records], self.pending[max_records:]
            return batch

        def pause(self) -> None:
            self.paused, self.pauses = True, self.pauses + 1

        def resume(self) -> None:
            self.paused, self.resumes = False, self.resumes + 1

    running = 0
    most_running = 0
    guard = threading.Lock()

    def slow_provider(msg: IncomingMessage) -> Disposition:
        nonlocal running, most_running
        with guard:
            running += 1
            most_running = max(most_running, running)
        time.sleep(0.02)
        with guard:
            running -= 1
        return Disposition.DONE

    bound = 4
    executor = executors(process=slow_provider, max_in_flight=bound)
    consumer = FakeConsumer(
        [message(offset, f"order-{offset}", partition) for partition in (0, 1) for offset in range(40)]
    )
    most_in_flight = 0
    committed: dict[TopicPartitionId, int] = {}
    deadline = time.monotonic() + 20
    while (consumer.pending or executor.in_flight()) and time.monotonic() < deadline:
        if executor.full() and not consumer.paused:
            consumer.pause()
        elif not executor.full() and consumer.paused:
            consumer.resume()
        for msg in consumer.poll(max_records=max(executor.capacity(), 1)):
            executor.submit(msg)
        most_in_flight = max(most_in_flight, executor.in_flight())
        positions = executor.committable()
        committed.update(positions)
        executor.mark_committed(positions)
    committed.update(executor.committable())  # the last commit, as the loop makes when it stops

    assert consumer.pending == [] and executor.in_flight() == 0
    assert consumer.pauses >= 1 and consumer.resumes >= 1
    assert consumer.polls_while_paused >= 1
    assert most_in_flight <= bound and most_running <= bound
    assert committed == {TopicPartitionId(TOPIC, 0): 40, TopicPartitionId(TOPIC, 1): 40}


def test_a_message_to_retry_holds_its_key_and_its_partitions_commit_until_it_finishes(executors):
    order: list[int] = []
    tries = defaultdict(int)
    guard = threading.Lock()

    def process(msg: IncomingMessage) -> Disposition:
        with guard:
            tries[msg.offset] += 1
            attempt = tries[msg.offset]
        if msg.offset == 1 and attempt == 1:
            raise ConnectionError("database down")  # an escaped error is retried, not skipped
        if msg.offset == 1 and attempt < 4:
            return Disposition.RETRY
        with guard:
            order.append(msg.offset)
        return Disposition.DONE

    executor = executors(process=process, max_in_flight=4, retry_backoff=lambda attempt: 0.05)
    for offset, key in enumerate(["a", "b", "c", "b", "d"]):
        executor.submit(message(offset, key))

    wait_for(lambda: executor.in_flight() == 2, timeout=5, interval=0.005, what="the other keys")
    assert sorted(order) == [0, 2, 4]  # b's second message waits for its first
    assert executor.committable() == {P0: 1}
    wait_for(lambda: executor.in_flight() == 0, timeout=5, interval=0.01, what="the retried message")
    assert tries[1] == 4
    assert order.index(1) < order.index(3)
    assert executor.committable() == {P0: 5}


def test_revoke_drops_waiting_work_waits_for_running_work_and_returns_the_final_position(executors):
    release = threading.Event()
    ran: list[tuple[int, int]] = []
    guard = threading.Lock()

    def process(msg: IncomingMessage) -> Disposition:
        if (msg.partition, msg.offset) == (0, 0):
            release.wait(timeout=10)
        with guard:
            ran.append((msg.partition, msg.offset))
        return Disposition.DONE

    executor = executors(process=process, max_in_flight=8)
    executor.submit(message(0, "a", partition=0))  # slow
    executor.submit(message(1, "a", partition=0))  # waits behind it: dropped by the revoke
    executor.submit(message(2, "b", partition=0))
    executor.submit(message(0, "c", partition=1))
    wait_for(lambda: len(ran) == 2, timeout=5, interval=0.005, what="the fast messages")

    threading.Timer(0.1, release.set).start()
    positions = executor.revoke([P0], timeout_seconds=5)

    assert positions == {P0: 1}  # 0 finished during the revoke; 1 never ran, so the next owner starts there
    assert (0, 1) not in ran
    assert executor.committable() == {TopicPartitionId(TOPIC, 1): 1}
    # Assigned again later: the partition is tracked afresh from the committed offset.
    executor.submit(message(1, "a", partition=0))
    wait_for(lambda: executor.in_flight() == 0, timeout=5, interval=0.01, what="the re-delivered message")
    assert (0, 1) in ran
    assert executor.committable()[P0] == 2


def test_revoke_gives_up_a_message_being_retried_without_committing_it(executors):
    settled: list[Disposition | None] = []
    executor = executors(
        process=lambda msg: Disposition.RETRY,
        max_in_flight=2,
        retry_backoff=lambda attempt: 30,
        on_settled=lambda msg, disposition: settled.append(disposition),
    )
    executor.submit(message(0, "a"))
    time.sleep(0.05)

    started = time.monotonic()
    positions = executor.revoke([P0], timeout_seconds=5)

    assert time.monotonic() - started < 2  # the 30 s backoff was interrupted
    assert positions == {P0: 0}
    wait_for(lambda: settled == [None], timeout=5, interval=0.01, what="the abandoned message to settle")


def test_shutdown_under_load_commits_only_finished_work_and_loses_nothing(executors):
    applied: set[tuple[int, int]] = set()
    guard = threading.Lock()

    def process(msg: IncomingMessage) -> Disposition:
        time.sleep(random.uniform(0, 0.004))
        with guard:
            applied.add((msg.partition, msg.offset))
        return Disposition.DONE

    messages = [message(offset, f"order-{offset % 25}", partition) for partition in range(3) for offset in range(150)]
    random.Random(3).shuffle(messages)
    messages.sort(key=lambda msg: (msg.offset, msg.partition))  # interleaved partitions, offsets ascending
    executor = executors(process=process, max_in_flight=16)
    for msg in messages:
        executor.submit(msg)
    time.sleep(0.02)  # under load: most messages still in flight

    assert executor.drain(timeout_seconds=10)
    positions = executor.committable()
    with pytest.raises(RuntimeError):
        executor.submit(message(999, "late"))

    # Everything below a committed position was applied: a restart skips only finished work.
    for partition_id, position in positions.items():
        assert {(partition_id.partition, offset) for offset in range(position)} <= applied
    assert sum(positions.values()) < len(messages)  # the drain cut in under load, so this checks something
    # A restart from the committed positions applies the rest: nothing is lost.
    restarted = executors(process=process, max_in_flight=16)
    for msg in messages:
        if msg.offset >= positions.get(TopicPartitionId(TOPIC, msg.partition), 0):
            restarted.submit(msg)
    wait_for(lambda: restarted.in_flight() == 0, timeout=20, interval=0.01, what="the restarted executor")
    assert applied == {(msg.partition, msg.offset) for msg in messages}


def test_a_redelivered_offset_is_ignored_and_a_zero_bound_is_refused(executors):
    executor = executors(process=lambda msg: Disposition.DONE, max_in_flight=1)

    assert executor.submit(message(0, "a"))
    assert not executor.submit(message(0, "a"))
    with pytest.raises(ValueError):
        OrderedExecutor(process=lambda msg: Disposition.DONE, max_in_flight=0)


def test_a_full_pool_says_so_the_moment_a_message_leaves_it(executors):
    """The poll loop waits on this instead of a paused poll's timeout: no payment slot stands idle for it."""
    release = threading.Event()
    executor = executors(process=lambda msg: (release.wait(10), Disposition.DONE)[1], max_in_flight=2)
    executor.submit(message(0, "a"))
    executor.submit(message(1, "b"))
    assert executor.full()
    assert not executor.wait_for_room(0.05)  # nothing left: it waits its timeout out

    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    assert executor.wait_for_room(30)
    assert time.monotonic() - started < 10  # woken by the message leaving, not by the timeout
    assert not executor.full()
