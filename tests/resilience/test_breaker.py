"""The shared circuit breaker: the numbers of docs/contract.md, shared across processes through real Redis."""
import multiprocessing
import socket
import threading
import time
import uuid

import pytest
import redis
from django.conf import settings

from resilience.breaker import BreakerConfig, CircuitBreaker, CircuitOpenError, MemoryStore, RedisStore, State

SPEC = BreakerConfig(window_size=10, minimum_calls=5, failure_rate_threshold=0.5, open_seconds=30, half_open_calls=3)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_client):
    return MemoryStore() if request.param == "memory" else RedisStore(redis_client)


def make(store, clock, config=SPEC, name=None) -> CircuitBreaker:
    return CircuitBreaker(name or f"test-{uuid.uuid4().hex}", config, store, clock=clock)


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_success(breaker.acquire())


def test_stays_closed_below_minimum_calls(store):
    breaker = make(store, Clock())
    fail(breaker, 4)
    assert breaker.state() == State.CLOSED


def test_opens_at_half_failures_once_minimum_reached(store):
    breaker = make(store, Clock())
    succeed(breaker, 3)
    fail(breaker, 2)
    assert breaker.state() == State.CLOSED  # 2 of 5 = 40%
    fail(breaker)
    assert breaker.state() == State.OPEN  # 3 of 6 = 50%


def test_window_counts_only_the_last_ten_calls(store):
    breaker = make(store, Clock())
    succeed(breaker, 10)
    fail(breaker, 4)
    assert breaker.state() == State.CLOSED  # 4 of the last 10
    fail(breaker)
    assert breaker.state() == State.OPEN  # 5 of the last 10 (of 15 in all, only 33%)


def test_open_rejects_without_calling_then_half_opens_after_30s(store):
    clock = Clock()
    breaker = make(store, clock)
    fail(breaker, 5)
    calls = []
    with pytest.raises(CircuitOpenError) as raised:
        breaker.call(lambda: calls.append(1))
    assert calls == []
    assert raised.value.retry_after == pytest.approx(30)
    clock.now += 29.9
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    clock.now += 0.2
    permit = breaker.acquire()
    assert permit.trial is True
    assert breaker.state() == State.HALF_OPEN


def test_half_open_allows_three_trials_and_closes_when_they_succeed(store):
    clock = Clock()
    breaker = make(store, clock)
    fail(breaker, 5)
    clock.now += 31
    permits = [breaker.acquire() for _ in range(3)]
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # a fourth concurrent trial is refused
    for permit in permits:
        breaker.record_success(permit)
    assert breaker.state() == State.CLOSED
    succeed(breaker)  # and calls flow again


def test_half_open_reopens_when_trials_fail(store):
    clock = Clock()
    breaker = make(store, clock)
    fail(breaker, 5)
    clock.now += 31
    permits = [breaker.acquire() for _ in range(3)]
    breaker.record_failure(permits[0])
    breaker.record_failure(permits[1])
    breaker.record_success(permits[2])
    assert breaker.state() == State.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_lost_trial_reservations_expire(store):
    clock = Clock()
    breaker = make(store, clock, BreakerConfig(minimum_calls=1, open_seconds=1, half_open_calls=1, half_open_max_seconds=10))
    fail(breaker)
    clock.now += 2
    breaker.acquire()  # this trial's process dies and never reports
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    clock.now += 11
    assert breaker.acquire().trial is True


def test_slow_calls_open_at_their_own_rate(store):
    config = BreakerConfig(minimum_calls=5, slow_call_seconds=5.0, slow_call_rate_threshold=0.6)
    breaker = make(store, Clock(), config)
    for duration in (6, 6, 1, 1, 6):
        breaker.record_success(breaker.acquire(), duration=duration)
    assert breaker.state() == State.OPEN  # 3 slow of 5 = 60%


def test_a_big_batch_is_judged_by_its_failure_rate_not_its_last_outcomes(store):
    breaker = make(store, Clock())
    breaker.record_outcomes(breaker.acquire(), successes=995, failures=5)
    assert breaker.state() == State.CLOSED  # 0.5% of a 1,000-row batch
    breaker.record_outcomes(breaker.acquire(), successes=520, failures=480)
    assert breaker.state() == State.CLOSED  # 48%: below the threshold, however the window rounds it
    breaker.record_outcomes(breaker.acquire(), successes=400, failures=600)
    assert breaker.state() == State.OPEN  # 60%: mostly failing


def test_a_big_batch_at_a_low_rate_leaves_the_window_below_the_threshold(store):
    breaker = make(store, Clock())
    breaker.record_outcomes(breaker.acquire(), successes=940, failures=60)  # 6%
    fail(breaker, 4)
    assert breaker.state() == State.CLOSED  # the batch weighs as 10 calls, none failed: 4 of the last 10
    fail(breaker)
    assert breaker.state() == State.OPEN


def test_a_batch_smaller_than_the_window_counts_each_outcome(store):
    breaker = make(store, Clock())
    breaker.record_outcomes(breaker.acquire(), successes=0, failures=6)
    assert breaker.state() == State.OPEN  # a broker down: the first small batch opens it


def test_half_open_trial_batches_are_judged_by_their_rate(store):
    clock = Clock()
    breaker = make(store, clock)
    fail(breaker, 5)
    clock.now += 31
    for _ in range(3):
        breaker.record_outcomes(breaker.acquire(), successes=9, failures=1)
    assert breaker.state() == State.CLOSED  # one transient failure in ten rows: the broker works

    fail(breaker, 5)
    clock.now += 31
    for _ in range(3):
        breaker.record_outcomes(breaker.acquire(), successes=4, failures=6)
    assert breaker.state() == State.OPEN


def _fail_in_another_process(url: str, name: str, times: int) -> None:
    breaker = CircuitBreaker(name, SPEC, RedisStore(redis.Redis.from_url(url)))
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def test_state_is_shared_between_processes(redis_client):
    name = f"shared-{uuid.uuid4().hex}"
    worker = multiprocessing.get_context("spawn").Process(
        target=_fail_in_another_process, args=(settings.REDIS_URL, name, 5)
    )
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    here = CircuitBreaker(name, SPEC, RedisStore(redis_client))
    assert here.state() == State.OPEN
    with pytest.raises(CircuitOpenError):
        here.acquire()


def _try_trials(url: str, name: str, attempts: int, results) -> None:
    breaker = CircuitBreaker(name, SPEC, RedisStore(redis.Redis.from_url(url)), clock=lambda: 2_000_000.0)
    granted = 0
    for _ in range(attempts):
        try:
            breaker.acquire()
            granted += 1
        except CircuitOpenError:
            pass
    results.put(granted)


def test_half_open_trials_are_capped_across_processes(redis_client):
    name = f"trials-{uuid.uuid4().hex}"
    opener = CircuitBreaker(name, SPEC, RedisStore(redis_client), clock=lambda: 1_000_000.0)
    fail(opener, 5)  # opened at t=1,000,000; the workers' clock is far past 30 s
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_try_trials, args=(settings.REDIS_URL, name, 5, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sum(results.get(timeout=5) for _ in workers) == 3


def test_falls_back_to_process_state_when_redis_is_down():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=dead_port, socket_connect_timeout=0.2)
    breaker = make(RedisStore(dead), Clock())
    succeed(breaker, 2)  # calls still pass
    fail(breaker, 3)
    assert breaker.state() == State.OPEN  # 3 of 5  # and the breaker still protects, per process
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_lost_races_on_the_shared_state_are_waited_out_not_taken_for_an_outage(redis_client):
    """Forty threads changing one breaker's document at once: every change lands, none falls back.

    Giving up after a fixed count of lost WATCH races let a half-open breaker
    pass more trial calls than its cap (the fallback state is CLOSED).
    """
    store, name = RedisStore(redis_client), f"contended-{uuid.uuid4().hex}"
    start, errors = threading.Barrier(40), []

    def bump(doc):
        time.sleep(0.005)  # hold the read-modify-write open so the others' WATCH fires
        doc["trials"] += 1

    def worker():
        start.wait()
        try:
            store.update(name, bump)
        except redis.RedisError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert store.read(name)["trials"] == 40


class CommandLog(redis.Redis):
    """A real Redis client that remembers the commands it sent."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args, **options):
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        self.commands.append("PIPELINE")
        return super().pipeline(transaction, shard_hint)


def test_a_closed_breaker_passing_successes_decides_on_one_read_and_writes_nothing():
    """The common case (closed, a window of successes) costs a GET per decision, not a WATCH transaction.

    Every acquire and every success of every relay batch and payment went
    through WATCH/GET/MULTI/SET/EXEC before; the state it wrote back was the one it read.
    """
    client = CommandLog.from_url(settings.REDIS_URL)
    try:
        breaker = make(RedisStore(client), Clock())
        succeed(breaker, SPEC.window_size)  # the window fills with successes: those are changes
        client.commands.clear()
        succeed(breaker, 5)
        assert client.commands == ["GET"] * 10
        fail(breaker)  # a failure changes the window: it is written, in a transaction
        assert "PIPELINE" in client.commands[10:]
        assert breaker.store.read(breaker.name)["window"][-1] == "F"
    finally:
        client.close()
