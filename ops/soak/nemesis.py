"""The nemesis: which faults a soak may inject, the schedule the seed draws, and the thread that applies it.

Every single-fault drill's fault is here, as that drill injects it
(`ops.drills.scenarios`: the payment provider's slow, hanging and ambiguous
answers among them), and the faults no drill had (`ops.drills.faults`): a
web worker SIGKILLed, the postmaster SIGKILLed (a crash, not a restart),
Redis losing its data, the consumer or the relay cut from the broker while
the rest still reach it, a transaction held open for minutes, a relay frozen
while it holds row locks, the provider answering 502/503, the provider's
process SIGKILLed.

The schedule is a pure function of the seed, the kinds in play and the
window (`schedule_draw`): a fault starts every `gap` seconds (10-60 by
default), its kind drawn among those whose resources are free then, held for
a time drawn from its kind's range. Two faults of one resource never overlap
(there is one broker to pause, one payment switch to set); faults of
different resources do, which is the point. The same seed, kinds and window
give the same schedule, fault for fault: rerunning a seed replays it.

A kind the platform cannot take (a PostgreSQL cluster shared with other
databases cannot be crashed, a broker without the proxy cannot be cut) is
left out before drawing and the history says why.
"""
import logging
import random
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

import psycopg2
from django.conf import settings

from ops.drills import faults
from ops.drills.scenarios import SCENARIOS, Context
from ops.soak.history import FaultRecord, History, spans_overlapping

logger = logging.getLogger(__name__)

Inject = Callable[[Context, float], AbstractContextManager[None]]
# Returns why the kind cannot run on this platform, or None.
Probe = Callable[[faults.Site], str | None]

# By default a fault starts every 10-60 s (the pace).
DEFAULT_GAP_SECONDS = (10.0, 60.0)
PROVIDER_PROGRAM = "payment_provider"


@dataclass(frozen=True)
class FaultKind:
    name: str
    summary: str
    inject: Inject
    resources: frozenset[str]
    # The range its hold is drawn from (seconds); (0, 0): an action (a kill, a flush).
    hold: tuple[float, float] = (0.0, 0.0)
    # About how long injecting and undoing take (a restart): part of the fault's span.
    action_seconds: float = 5.0
    # Left to the platform after it heals before the same resources are faulted again.
    recovery_seconds: float = 10.0
    probe: Probe | None = None


@dataclass(frozen=True)
class ScheduledFault:
    at: float  # seconds after the run's start
    kind: str
    seconds: float  # held for

    def span(self, kind: FaultKind) -> tuple[float, float]:
        return self.at, self.at + self.seconds + kind.action_seconds


# --- the new faults, as context managers like the drills' ----------------------------------


@contextmanager
def _web_kill(context: Context, seconds: float) -> Iterator[None]:
    context.facts["pid"] = faults.web_worker_kill(context.supervisor)
    yield


@contextmanager
def _postgres_crash(context: Context, seconds: float) -> Iterator[None]:
    with faults.postgres_crashed(context.site):
        time.sleep(seconds)  # down this long before it is started again
    yield


@contextmanager
def _redis_flush(context: Context, seconds: float) -> Iterator[None]:
    context.facts["flushed"] = faults.redis_data_lose([settings.REDIS_URL, settings.RESILIENCE_REDIS_URL])
    yield


def _cut(prefix: Callable[[], str]) -> Inject:
    @contextmanager
    def fault(context: Context, seconds: float) -> Iterator[None]:
        context.facts["client_prefix"] = prefix()
        with faults.broker_path_clients(context.site, cut=(prefix(),)):
            yield

    return fault


@contextmanager
def _held_transaction(context: Context, seconds: float) -> Iterator[None]:
    with faults.transaction_held_open(context.site.database_url):
        yield


@contextmanager
def _relay_frozen(context: Context, seconds: float) -> Iterator[None]:
    with faults.relay_frozen(context.site, context.supervisor) as pid:
        context.facts["pid"] = pid
        yield


@contextmanager
def _payment_errors(context: Context, seconds: float) -> Iterator[None]:
    # Half the charges and refunds answered 502/503 by the provider's edge, nothing charged.
    with faults.payment_faulty("--error-rate", "0.5"):
        yield


@contextmanager
def _provider_kill(context: Context, seconds: float) -> Iterator[None]:
    # Its ledger is on disk: charges survive; the faults set on it do not.
    context.facts["pid"] = context.supervisor.pid(PROVIDER_PROGRAM)
    context.supervisor.kill(PROVIDER_PROGRAM)
    yield


@contextmanager
def _poison_burst(context: Context, seconds: float) -> Iterator[None]:
    with SCENARIOS["poison-burst"].fault(context, seconds):
        context.facts["poison"] = [[kind, key.hex(), value.hex()] for kind, key, value in context.facts.pop("poison")]
        context.facts.pop("consumer_pid", None)
        yield


# --- what each kind needs of the platform ---------------------------------------------------------


def _needs_proxy(site: faults.Site) -> str | None:
    try:
        faults.proxy_pid(site)
    except faults.DrillError as error:
        return f"no broker proxy in the broker's path: {error}"
    return None


def _needs_broker_pid(site: faults.Site) -> str | None:
    try:
        faults.tansu_pid(site)
    except faults.DrillError as error:
        return str(error)
    return None


def _needs_broker_restartable(site: faults.Site) -> str | None:
    # broker-loss starts the broker again with scripts/services.sh, as the run command started it.
    return _needs_broker_pid(site) or (None if (site.root / "scripts" / "services.sh").exists() else "no scripts/services.sh")


def _needs_own_postgres(site: faults.Site) -> str | None:
    try:
        faults.service_sole_user_check(database_url=site.database_url)
        faults.postmaster_info(site.database_url)
    except (faults.DrillError, OSError) as error:
        return str(error)
    except psycopg2.Error as error:  # a schedule can be drawn before the platform's database exists
        return f"cannot ask PostgreSQL at DATABASE_URL: {str(error).strip()}"
    return None


def _redis_databases() -> set[int]:
    urls = (settings.REDIS_URL, settings.RESILIENCE_REDIS_URL, settings.CELERY_BROKER_URL)
    return {int(urlparse(url).path.lstrip("/") or 0) for url in urls}


def _needs_own_redis(site: faults.Site) -> str | None:
    try:
        faults.service_sole_user_check(redis_url=site.redis_url, redis_databases=_redis_databases())
        faults.redis_pid(site)
    except faults.DrillError as error:
        return str(error)
    return None


def _needs_provider_program(site: faults.Site) -> str | None:
    try:
        faults.Supervisor(site.run_dir / "supervisor.sock").pid(PROVIDER_PROGRAM)
    except (faults.DrillError, OSError, xmlrpc.client.Fault) as error:
        return f"no {PROVIDER_PROGRAM} program running under supervisord: {error}"
    return None


def _drill(name: str) -> Inject:
    return SCENARIOS[name].fault


FAULT_KINDS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        # Every single-fault drill's fault, injected as the drill injects it.
        FaultKind("broker-pause", "SIGSTOP the broker", _drill("broker-pause"), frozenset({"broker"}), hold=(10, 90), probe=_needs_broker_pid),
        FaultKind(
            "broker-loss", "the broker SIGKILLed and started again empty (its consumer held back 5 s first)", _drill("broker-loss"),
            frozenset({"broker", "consumer"}), action_seconds=25, recovery_seconds=20, probe=_needs_broker_restartable,
        ),
        FaultKind("broker-latency", "500 ms and 10% loss on every broker connection", _drill("broker-latency"), frozenset({"broker-path"}),
                  hold=(20, 60), probe=_needs_proxy),
        FaultKind("worker-kill", "SIGKILL the Celery worker", _drill("worker-kill"), frozenset({"worker"}), action_seconds=10),
        FaultKind("consumer-kill", "SIGKILL the order consumer", _drill("consumer-kill"), frozenset({"consumer"}), action_seconds=10),
        FaultKind("rolling-restart", "every supervised program restarted in turn", _drill("rolling-restart"),
                  frozenset({"web", "worker", "consumer", "beat"}), action_seconds=60, recovery_seconds=20),
        FaultKind("redis-pause", "SIGSTOP Redis", _drill("redis-pause"), frozenset({"redis"}), hold=(5, 45), probe=_needs_own_redis),
        FaultKind("postgres-restart", "restart the PostgreSQL cluster", _drill("postgres-restart"), frozenset({"postgres"}),
                  action_seconds=15, recovery_seconds=20, probe=_needs_own_postgres),
        FaultKind("payment-slow", "the provider answers in 6 s (over the 5 s limit)", _drill("payment-slow"), frozenset({"payment-switch"}),
                  hold=(10, 60)),
        FaultKind("payment-failing", "half the charges hang (nothing charged)", _drill("payment-failing"), frozenset({"payment-switch"}),
                  hold=(10, 60)),
        FaultKind("payment-ambiguous", "a third of the charges answered late, a third reset after charging", _drill("payment-ambiguous"),
                  frozenset({"payment-switch"}), hold=(10, 60)),
        FaultKind("poison-burst", "undecodable messages on orders.created", _poison_burst, frozenset({"poison"})),
        # The faults no drill had.
        FaultKind("web-kill", "SIGKILL one gunicorn worker", _web_kill, frozenset({"web"})),
        FaultKind("postgres-crash", "SIGKILL the postmaster, start it again after the hold", _postgres_crash, frozenset({"postgres"}),
                  hold=(0, 10), action_seconds=15, recovery_seconds=20, probe=_needs_own_postgres),
        FaultKind("redis-flush", "Redis loses the platform's data (FLUSHDB: breakers, throttles, flags, fault switch)", _redis_flush,
                  frozenset({"redis"})),
        FaultKind("consumer-cut", "the order consumer cut from the broker (others still reach it)",
                  _cut(lambda: settings.ORDERS_CONSUMER_GROUP), frozenset({"broker-path"}), hold=(10, 90), probe=_needs_proxy),
        FaultKind("relay-cut", "the relay (every producer) cut from the broker (the consumer still reaches it)",
                  _cut(lambda: faults.PRODUCER_CLIENT_PREFIX), frozenset({"broker-path"}), hold=(10, 90), probe=_needs_proxy),
        FaultKind("held-transaction", "a transaction held open (xmin horizon: vacuum reclaims nothing newer)", _held_transaction,
                  frozenset({"held-transaction"}), hold=(60, 240)),
        FaultKind("relay-frozen", "a relay SIGSTOPped while it holds outbox row locks", _relay_frozen, frozenset({"worker", "broker-path"}),
                  hold=(10, 60), action_seconds=10, probe=_needs_proxy),
        FaultKind("payment-errors", "half the provider's answers 502/503 (nothing charged)", _payment_errors, frozenset({"payment-switch"}),
                  hold=(10, 60)),
        FaultKind("provider-kill", "SIGKILL the payment provider's process (supervisord starts it again)", _provider_kill,
                  frozenset({"payment-provider"}), action_seconds=10, probe=_needs_provider_program),
    )
}  # fmt: skip


def kinds_available(site: faults.Site, names: Sequence[str]) -> tuple[list[FaultKind], dict[str, str]]:
    """The kinds among `names` this platform can take, and why each other one is left out."""
    available, excluded = [], {}
    for name in names:
        kind = FAULT_KINDS[name]
        reason = kind.probe(site) if kind.probe is not None else None
        if reason:
            excluded[name] = reason
        else:
            available.append(kind)
    return available, excluded


def schedule_draw(
    *,
    seed: int,
    kinds: Sequence[FaultKind],
    window: tuple[float, float],
    gap: tuple[float, float] = DEFAULT_GAP_SECONDS,
    max_hold_seconds: float | None = None,
) -> list[ScheduledFault]:
    """Draw the schedule: a fault every `gap` seconds within `window` (seconds after the start), all healed by its end.

    Deterministic: the same arguments give the same schedule (kinds are taken
    in name order, whatever order they come in).
    """
    rng = random.Random(seed)
    ordered = sorted(kinds, key=lambda kind: kind.name)
    start, end = window
    free_at: dict[str, float] = {}
    schedule: list[ScheduledFault] = []
    at = start
    while True:
        at = round(at + rng.uniform(*gap), 1)
        if at >= end:
            return schedule
        candidates = [kind for kind in ordered if all(free_at.get(resource, 0.0) <= at for resource in kind.resources)]
        if not candidates:
            continue
        kind = rng.choice(candidates)
        low, high = kind.hold
        if max_hold_seconds is not None:
            high = min(high, max_hold_seconds)
            low = min(low, high)
        seconds = round(rng.uniform(low, high), 1) if high > 0 else 0.0
        if at + seconds + kind.action_seconds > end:
            continue  # it would still hold in the quiet period
        scheduled = ScheduledFault(at=at, kind=kind.name, seconds=seconds)
        schedule.append(scheduled)
        for resource in kind.resources:
            free_at[resource] = scheduled.span(kind)[1] + kind.recovery_seconds


def schedule_overlapping(schedule: Sequence[ScheduledFault]) -> int:
    """How many of the scheduled faults overlap at least one other."""
    return spans_overlapping([entry.span(FAULT_KINDS[entry.kind]) for entry in schedule])


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


class Nemesis:
    """Apply a schedule from `origin` (unix time): each fault on a thread of its own, undone whatever happens."""

    def __init__(self, *, schedule: Sequence[ScheduledFault], context: Callable[[], Context], history: History, origin: float) -> None:
        self.schedule = list(schedule)
        self.context = context
        self.history = history
        self.origin = origin
        self.active: dict[int, str] = {}
        self.done = 0
        self.failed = 0
        self.last_healed_at: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._dispatcher = threading.Thread(target=self._dispatch, name="nemesis", daemon=True)

    def start(self) -> None:
        self._dispatcher.start()

    def stop(self) -> None:
        """Start no more faults and heal the ones holding now (each undoes itself on its way out)."""
        self._stop.set()

    def join(self, timeout_seconds: float) -> bool:
        """Wait for every fault to be done and undone; False if some were still running at the deadline."""
        deadline = time.monotonic() + timeout_seconds
        self._dispatcher.join(max(deadline - time.monotonic(), 0))
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0))
        return not self._dispatcher.is_alive() and not any(thread.is_alive() for thread in self._threads)

    def active_names(self) -> list[str]:
        with self._lock:
            return sorted(self.active.values())

    def _dispatch(self) -> None:
        for index, entry in enumerate(self.schedule):
            if self._stop.wait(max(self.origin + entry.at - time.time(), 0)):
                return
            thread = threading.Thread(target=self._apply, args=(index, entry), name=f"fault-{entry.kind}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _apply(self, index: int, entry: ScheduledFault) -> None:
        kind = FAULT_KINDS[entry.kind]
        context = self.context()
        started_at, healed_at, error, entered = time.time(), None, "", False
        with self._lock:
            self.active[index] = entry.kind
        try:
            with kind.inject(context, entry.seconds):
                entered = True
                self._stop.wait(entry.seconds)
            healed_at = time.time()
        except Exception as failure:  # noqa: BLE001 - recorded in the history; the fault undid itself on the way out
            error = f"{type(failure).__name__}: {failure}"
            healed_at = time.time()
            logger.warning("fault %s failed: %s", entry.kind, error)
        finally:
            with self._lock:
                self.active.pop(index, None)
                self.done += 1
                self.failed += bool(error)
                self.last_healed_at = max(self.last_healed_at or 0.0, healed_at or time.time())
        record = FaultRecord(
            name=entry.kind, planned_at=entry.at, planned_seconds=entry.seconds, started_at=started_at, healed_at=healed_at,
            injected=entered, error=error, facts=_jsonable(context.facts),
        )  # fmt: skip
        self.history.record(record)
