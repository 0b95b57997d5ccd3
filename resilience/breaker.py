"""A circuit breaker whose state every process shares through Redis.

Why our own: the policies of docs/contract.md need a count-based sliding window (10 calls,
at least 5, open at a failure or slow-call rate), a timed open state and
several half-open trial calls shared by all processes. pybreaker, the
maintained Python breaker, counts consecutive failures and lets a single
trial through, so it cannot express these numbers; resilience4j's model is
what this module implements. Retries use tenacity (see `resilience.retry`).

The whole state of a breaker is one small JSON document in Redis, changed only inside an
optimistic WATCH/MULTI transaction (a decision that changes nothing is made on one read).
That makes each decision atomic across processes: when one worker sees the broker fail,
every worker reads OPEN next, and while HALF_OPEN the trial counter caps the trial calls
of all processes together. If Redis itself fails, the breaker carries on with a
per-process state (the same logic over a dict) rather than failing the caller, and logs
that it did.
"""
import copy
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TypeVar

import redis
from prometheus_client import Counter

from resilience.backoff import Jitter, backoff_seconds
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

T = TypeVar("T")


class State(str, Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


STORE_RETRY_SECONDS = 5.0

STATE_VALUE = {State.CLOSED: 0, State.OPEN: 1, State.HALF_OPEN: 2}
_OUTCOME_LABELS = {"OK": "success", "S": "slow", "F": "failure"}

TRANSITIONS = Counter(
    "circuit_breaker_transitions",
    "Circuit breaker state changes.",
    ["breaker", "from_state", "to_state"],
)
CALLS = Counter(
    "circuit_breaker_calls",
    "Calls through a circuit breaker by outcome (success, failure, slow, rejected).",
    ["breaker", "outcome"],
)
FALLBACKS = Counter(
    "circuit_breaker_store_fallbacks",
    "Breaker decisions made on per-process state because Redis was unreachable.",
    ["breaker"],
)


@dataclass(frozen=True)
class BreakerConfig:
    window_size: int = 10
    minimum_calls: int = 5
    failure_rate_threshold: float = 0.5
    open_seconds: float = 30.0
    half_open_calls: int = 3
    # None: slowness is not judged. Otherwise a call at least this long counts
    # as slow, and the breaker opens when the slow share reaches the threshold.
    slow_call_seconds: float | None = None
    slow_call_rate_threshold: float = 1.0
    # A trial reservation whose result never came back (its process died)
    # is given up after this long, so HALF_OPEN cannot wedge.
    half_open_max_seconds: float = 60.0


class CircuitOpenError(Exception):
    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit {name!r} is open; retry in {retry_after:.1f}s")
        self.name = name
        self.retry_after = retry_after


@dataclass
class Permit:
    """Permission for one call; a trial permit reports back to the half-open count."""

    trial: bool
    started: float = field(default_factory=time.monotonic)


def _empty() -> dict[str, Any]:
    return {"state": State.CLOSED.value, "window": [], "opened_at": 0.0, "trials": 0, "trial_results": []}


# --- Pure decisions over a state document ---------------------------------


def decide_acquire(doc: dict[str, Any], config: BreakerConfig, now: float) -> tuple[bool, bool, float]:
    """Mutate `doc` for one call attempt; return (allowed, trial, retry_after)."""
    state = doc["state"]
    if state == State.OPEN.value:
        remaining = doc["opened_at"] + config.open_seconds - now
        if remaining > 0:
            return False, False, remaining
        doc.update(state=State.HALF_OPEN.value, half_open_at=now, trials=0, trial_results=[])
        state = State.HALF_OPEN.value
    if state == State.HALF_OPEN.value:
        if now - doc.get("half_open_at", now) > config.half_open_max_seconds:
            doc.update(half_open_at=now, trials=0, trial_results=[])
        if doc["trials"] >= config.half_open_calls:
            return False, False, 1.0
        doc["trials"] += 1
        return True, True, 0.0
    return True, False, 0.0


def _rates(outcomes: list[str]) -> tuple[float, float]:
    total = len(outcomes)
    failures = sum(1 for outcome in outcomes if outcome == "F")
    slow = sum(1 for outcome in outcomes if outcome == "S")
    return failures / total, slow / total


def _should_open(outcomes: list[str], config: BreakerConfig) -> bool:
    failure_rate, slow_rate = _rates(outcomes)
    if failure_rate >= config.failure_rate_threshold:
        return True
    return config.slow_call_seconds is not None and slow_rate >= config.slow_call_rate_threshold


def _verdict(outcomes: list[str], config: BreakerConfig) -> str:
    """One outcome for a batch sent under one permit, from its rates: "F", "S" or "OK"."""
    failure_rate, slow_rate = _rates(outcomes)
    if failure_rate >= config.failure_rate_threshold:
        return "F"
    if config.slow_call_seconds is not None and slow_rate >= config.slow_call_rate_threshold:
        return "S"
    return "OK"


def _in_proportion(outcomes: list[str], size: int) -> list[str]:
    """`size` outcomes in the batch's proportions, failures and slow calls rounded down.

    Rounded down, their rates stay at or under the batch's own, so a batch
    judged below the thresholds cannot leave a window that is over them.
    """
    total = len(outcomes)
    failures = sum(1 for outcome in outcomes if outcome == "F") * size // total
    slow = sum(1 for outcome in outcomes if outcome == "S") * size // total
    return ["OK"] * (size - failures - slow) + ["S"] * slow + ["F"] * failures


def decide_record(doc: dict[str, Any], config: BreakerConfig, outcomes: list[str], trial: bool, now: float) -> None:
    """Mutate `doc` with call outcomes: "OK", "S" (slow success) or "F" (failure).

    Several outcomes come from one permit when a caller sends a batch, which
    is judged by its rates, never by its last outcomes: a batch as large as
    the window is judged alone at its exact rates and then stands in the
    window as `window_size` outcomes in its proportions (5 failures in 1,000
    rows are 0.5%, not 5 of the last 10); a smaller one enters the window
    outcome by outcome. A half-open trial counts once, as its rates say.
    """
    state = doc["state"]
    if state == State.CLOSED.value:
        if len(outcomes) >= max(config.window_size, config.minimum_calls):
            opens = _should_open(outcomes, config)
            window = _in_proportion(outcomes, config.window_size)
        else:
            window = (doc["window"] + outcomes)[-config.window_size :]
            opens = len(window) >= config.minimum_calls and _should_open(window, config)
        doc["window"] = window
        if opens:
            doc.update(state=State.OPEN.value, opened_at=now, window=[])
    elif state == State.HALF_OPEN.value and trial:
        results = doc["trial_results"] + [_verdict(outcomes, config)]
        doc["trial_results"] = results
        if len(results) >= config.half_open_calls:
            if _should_open(results, config):
                doc.update(state=State.OPEN.value, opened_at=now, trials=0, trial_results=[])
            else:
                doc.update(_empty())
    # A late result while OPEN, or a non-trial result while HALF_OPEN, is ignored.


# --- Where the state document lives ---------------------------------------


class StateStore(Protocol):
    def update(self, name: str, change: Callable[[dict[str, Any]], T]) -> tuple[T, str, str]:
        """Apply `change` atomically; return (its result, state before, state after)."""

    def read(self, name: str) -> dict[str, Any]: ...


class MemoryStore:
    """Per-process state: the fallback, and what tests without Redis use."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(self, name: str, change: Callable[[dict[str, Any]], T]) -> tuple[T, str, str]:
        with self._lock:
            doc = self._docs.setdefault(name, _empty())
            before = doc["state"]
            result = change(doc)
            return result, before, doc["state"]

    def read(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._docs.get(name, _empty()))

    def reset(self, name: str) -> None:
        with self._lock:
            self._docs.pop(name, None)


class RedisStore:
    """Shared state: one JSON document per breaker, changed in WATCH/MULTI transactions; a decision that
    changes nothing (closed, a success among successes) is made on one read, as atomic and much cheaper."""

    KEY_PREFIX = "circuit-breaker:"
    # Lost WATCH races are retried (short jittered waits) this long: giving up would send the caller to its
    # per-process state, which (CLOSED) lets calls past a shared half-open trial cap. Sixteen threads of
    # one consumer asking at once lost 20 races in a row on a busy machine.
    CONTENTION_GIVE_UP_SECONDS = 2.0

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def _key(self, name: str) -> str:
        return self.KEY_PREFIX + name

    def read(self, name: str, via: Any = None) -> dict[str, Any]:
        """The breaker's document, read through `via` (a pipeline in WATCH) or else the client."""
        raw = (self.client if via is None else via).get(self._key(name))
        return json.loads(raw) if raw else _empty()

    def update(self, name: str, change: Callable[[dict[str, Any]], T]) -> tuple[T, str, str]:
        key = self._key(name)
        doc = self.read(name)  # most decisions change nothing: this read makes them (see the class)
        unchanged = copy.deepcopy(doc)
        result = change(doc)
        if doc == unchanged:
            return result, doc["state"], doc["state"]
        give_up_at = time.monotonic() + self.CONTENTION_GIVE_UP_SECONDS
        with self.client.pipeline() as pipe:
            for attempt in itertools.count(1):
                try:
                    pipe.watch(key)
                    doc = self.read(name, via=pipe)
                    before = doc["state"]
                    result = change(doc)
                    pipe.multi()
                    pipe.set(key, json.dumps(doc))
                    pipe.execute()
                    return result, before, doc["state"]
                except redis.WatchError:
                    if time.monotonic() >= give_up_at:
                        break
                    time.sleep(backoff_seconds(attempt, initial_seconds=0.001, max_seconds=0.02, jitter=Jitter.FULL))
        raise redis.RedisError(f"breaker {name}: too much contention on {key}")

    def reset(self, name: str) -> None:
        self.client.delete(self._key(name))


# --- The breaker ----------------------------------------------------------


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        fallback: MemoryStore | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.clock = clock
        self.fallback = fallback or MemoryStore()
        self._using_fallback = False
        # While the shared store is down, decide locally for a while instead
        # of paying a failed round trip on every call.
        self._store_down = Suspension(STORE_RETRY_SECONDS)

    def _update(self, change: Callable[[dict[str, Any]], T]) -> T:
        now = self.clock()

        def change_and_stamp(doc: dict[str, Any]) -> T:
            before = doc["state"]
            result = change(doc)
            if doc["state"] != before:
                # When it changed, for operators ("open since when?"): kept in the shared document.
                doc["changed_at"] = now
            return result

        try:
            if self._store_down.active():
                raise redis.ConnectionError("breaker store recently unreachable")
            result, before, after = self.store.update(self.name, change_and_stamp)
            if self._using_fallback:
                self._using_fallback = False
                logger.warning(
                    "circuit breaker state shared again",
                    extra={"event": "resilience", "breaker": self.name},
                )
        except redis.RedisError as error:
            FALLBACKS.labels(self.name).inc()
            if not self._store_down.active():
                self._store_down.trip()
            if not self._using_fallback:
                self._using_fallback = True
                logger.warning(
                    "circuit breaker store unreachable, using per-process state",
                    extra={"event": "resilience", "breaker": self.name, "error": repr(error)},
                )
            result, before, after = self.fallback.update(self.name, change_and_stamp)
        if before != after:
            TRANSITIONS.labels(self.name, before, after).inc()
            logger.warning(
                "circuit breaker %s: %s -> %s",
                self.name,
                before,
                after,
                extra={"event": "resilience", "breaker": self.name, "from_state": before, "to_state": after},
            )
        return result

    def state(self) -> State:
        if not self._store_down.active():
            try:
                return State(self.store.read(self.name)["state"])
            except redis.RedisError:
                self._store_down.trip()
        return State(self.fallback.read(self.name)["state"])

    def shared_status(self) -> tuple[State, float | None]:
        """Read the shared state and the unix time of its last change (None if never changed).

        Unlike `state()` this never falls back to per-process state: a Redis
        error propagates, so a reader (the metrics scrape) can tell "unknown"
        from "closed".
        """
        doc = self.store.read(self.name)
        return State(doc["state"]), doc.get("changed_at")

    def acquire(self) -> Permit:
        """Reserve a call, or raise CircuitOpenError without calling anything."""
        now = self.clock()
        allowed, trial, retry_after = self._update(lambda doc: decide_acquire(doc, self.config, now))
        if not allowed:
            CALLS.labels(self.name, "rejected").inc()
            raise CircuitOpenError(self.name, retry_after)
        return Permit(trial=trial)

    def _record(self, permit: Permit, outcomes: list[str]) -> None:
        for outcome in set(outcomes):  # one increment per kind: a relay batch is a thousand outcomes
            CALLS.labels(self.name, _OUTCOME_LABELS[outcome]).inc(outcomes.count(outcome))
        now = self.clock()
        self._update(lambda doc: decide_record(doc, self.config, outcomes, permit.trial, now))

    def record_outcomes(self, permit: Permit, *, successes: int, failures: int) -> None:
        """Record a batch sent under one permit; it is judged by its failure rate (see `decide_record`)."""
        if successes or failures:
            self._record(permit, ["OK"] * successes + ["F"] * failures)

    def record_success(self, permit: Permit, duration: float | None = None) -> None:
        elapsed = duration if duration is not None else time.monotonic() - permit.started
        slow = self.config.slow_call_seconds is not None and elapsed >= self.config.slow_call_seconds
        self._record(permit, ["S" if slow else "OK"])

    def record_failure(self, permit: Permit) -> None:
        self._record(permit, ["F"])

    def call(self, function: Callable[..., T], *args: Any, is_failure: Callable[[BaseException], bool] = lambda _: True, **kwargs: Any) -> T:
        """Run `function` through the breaker; exceptions for which `is_failure` is false count as successes."""
        permit = self.acquire()
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            if is_failure(error):
                self.record_failure(permit)
            else:
                self.record_success(permit)
            raise
        self.record_success(permit)
        return result
