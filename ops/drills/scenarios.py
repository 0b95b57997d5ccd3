"""The drills: what each one injects, for how long by default, and what it must show.

Each fault is a context manager: entering it injects the fault, leaving it
undoes it, whatever happened in between (a paused process gets SIGCONT, a
stopped one is started, the payment switch is reset, the broker path healed).
The runner holds the fault for the scenario's `fault_seconds` inside it; a
fault that is one action (a kill, a restart, a burst) is done on entering.
"""
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from deadletters.models import DeadLetter
from messaging.contract.events import ORDERS_CREATED
from ops.drills import faults
from ops.drills.report import DrillReport, database_retrying
from orders.models import Order

# supervisord's programs in the order a rolling restart takes them: the
# front first, the monitoring last (it is what watches the others).
ROLLING_ORDER = ("web", "worker", "beat", "consumer", "flower", "events", "prometheus", "alertmanager")
# Long enough for the outbox's oldest row to pass 60 s and stay there a minute (OutboxBacklogStale).
BROKER_PAUSE_SECONDS = 180.0
# How long the consumer is held back before the broker is lost (broker-loss).
UNCONSUMED_SECONDS = 5.0
# A consumer held down this long fires OrderConsumerLagging (2 minutes without progress, for 1 minute).
CONSUMER_LAG_ALERT_SECONDS = 190.0
# Past the payment client's read time-out (the paymentService policy's 5 s): the answer comes after it gave up.
LATE_ANSWER_SECONDS = 6.0


@dataclass
class Context:
    site: faults.Site
    supervisor: faults.Supervisor
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    facts: dict = field(default_factory=dict)  # what a fault noted for its scenario's check


Fault = Callable[[Context, float], AbstractContextManager[None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    fault: Fault
    fault_seconds: float = 0.0
    # About how long injecting and undoing takes (a restart, a reconnect): the
    # load runs past it by default, so new orders show the recovery.
    action_seconds: float = 10.0
    # A breaker (a resilience policy's name) the fault is expected to open:
    # it may still be open when the fault is undone, so the load runs on for
    # its open time as well before new orders can show the recovery.
    opens_breaker: str | None = None
    # Each tuple: at least one of these alerts must fire during the drill.
    required_alerts: tuple[tuple[str, ...], ...] = ()
    # The same, for a fault held at least `held_need_seconds` (the alert's own delay).
    held_alerts: tuple[tuple[str, ...], ...] = ()
    held_need_seconds: float = 0.0
    # Alerts that, having fired, must resolve once the fault is undone (bounded wait).
    resolve_alerts: tuple[str, ...] = ()
    check: Callable[[Context, DrillReport], None] | None = None


@contextmanager
def _broker_pause(context: Context, seconds: float) -> Iterator[None]:
    with faults.paused(faults.tansu_pid(context.site), what="tansu"):
        yield


@contextmanager
def _broker_loss(context: Context, seconds: float) -> Iterator[None]:
    # The consumer is held back a few seconds first, so the broker dies with
    # events published but not consumed: orders only reconciliation brings back.
    with faults.paused(context.supervisor.pid("consumer"), what="consumer"):
        time.sleep(UNCONSUMED_SECONDS)
        faults.broker_lose(context.site)
    yield


@contextmanager
def _broker_latency(context: Context, seconds: float) -> Iterator[None]:
    with faults.broker_path_slowed(context.site, delay_seconds=0.5, loss=0.1):
        yield


def _killer(program: str) -> Fault:
    @contextmanager
    def fault(context: Context, seconds: float) -> Iterator[None]:
        try:
            context.supervisor.kill(program)
            if seconds > 0:
                # Held down (after the kill the supervisor restarted it at once).
                context.supervisor.rpc.stopProcess(program, True)
            yield
        finally:
            context.supervisor.ensure_running(program)
            context.supervisor.wait_running(program)

    return fault


@contextmanager
def _rolling_restart(context: Context, seconds: float) -> Iterator[None]:
    present = {process["name"] for process in context.supervisor.processes()}
    try:
        for program in ROLLING_ORDER:
            if program in present:
                context.supervisor.restart(program)
                time.sleep(2)  # one after another, as an operator would
        yield
    finally:
        for program in ROLLING_ORDER:
            if program in present:
                context.supervisor.ensure_running(program)


@contextmanager
def _redis_pause(context: Context, seconds: float) -> Iterator[None]:
    with faults.paused(faults.redis_pid(context.site), what="redis-server"):
        yield


@contextmanager
def _postgres_restart(context: Context, seconds: float) -> Iterator[None]:
    faults.postgres_restart(context.site.database_url)
    yield


@contextmanager
def _payment_slow(context: Context, seconds: float) -> Iterator[None]:
    # Over the payment call's 5 s time limit: every attempt times out.
    with faults.payment_faulty("--latency", "6"):
        yield


@contextmanager
def _payment_failing(context: Context, seconds: float) -> Iterator[None]:
    # Half the charges hang (no answer, no charge) until the client's time limit.
    with faults.payment_faulty("--hang-rate", "0.5"):
        yield


@contextmanager
def _payment_ambiguous(context: Context, seconds: float) -> Iterator[None]:
    # Each charge taken either way: a third answer after the client gave up
    # (past the read time-out, the policy's 5 s), a third reset the connection
    # instead of answering. Neither outcome may be recorded as a decline.
    with faults.payment_faulty(
        "--late-answer-rate", "0.33", "--late-answer-seconds", str(LATE_ANSWER_SECONDS), "--reset-after-charge-rate", "0.33"
    ):
        yield


def _ambiguous_check(context: Context, report: DrillReport) -> None:
    """The fault made payment outcomes unknown, or the drill proved nothing (the ledger and stock are the report's)."""
    orders = Order.objects.filter(created_at__gte=datetime.fromtimestamp(report.started_at, tz=UTC))
    retried = database_retrying(lambda: orders.filter(payment__attempt_count__gt=1).count())
    resolved = database_retrying(lambda: orders.filter(reconcile_attempts__gt=0).count())
    report.notes.append(
        f"payments in doubt: {retried} orders paid after the gateway retried an unknown answer, "
        f"{resolved} settled by reconciliation from the provider's word"
    )
    if not (retried or resolved):
        report.violations.append("no payment outcome was unknown: the fault did not bite")


@contextmanager
def _poison_burst(context: Context, seconds: float) -> Iterator[None]:
    messages = faults.poison_messages(context.nonce)
    context.facts["consumer_pid"] = context.supervisor.pid("consumer")
    context.facts["poison"] = messages
    faults.poison_produce(context.site, topic=ORDERS_CREATED, messages=messages)
    yield


def _poison_check(context: Context, report: DrillReport) -> None:
    """Each poison message dead-lettered exactly once, by a consumer that went on (not restarted)."""
    messages = context.facts.get("poison", [])
    counts: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while True:
        counts = {
            kind: database_retrying(lambda value=value: DeadLetter.objects.filter(original_topic=ORDERS_CREATED, value=value).count())
            for kind, _, value in messages
        }
        if all(count >= 1 for count in counts.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    report.notes.append("dead letters: " + ", ".join(f"{kind} {count}" for kind, count in counts.items()))
    wrong = {kind: count for kind, count in counts.items() if count != 1}
    if wrong:
        report.violations.append(f"poison messages not dead-lettered exactly once: {wrong}")
    pid = context.supervisor.info("consumer")["pid"]
    if pid != context.facts.get("consumer_pid"):
        report.violations.append(f"the consumer was restarted (pid {context.facts.get('consumer_pid')} -> {pid}): it did not go on")


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "broker-pause",
            "SIGSTOP the broker, SIGCONT it after the fault",
            _broker_pause,
            fault_seconds=BROKER_PAUSE_SECONDS,
            held_alerts=(("OutboxBacklogStale", "CircuitBreakerOpen"),),
            held_need_seconds=150.0,
            resolve_alerts=("OutboxBacklogStale", "CircuitBreakerOpen"),
        ),
        Scenario(
            "broker-loss",
            "SIGKILL the broker (its consumer held back 5 s) and start it again empty, with its topics; reconciliation re-drives the lost orders",
            _broker_loss,
            action_seconds=20.0,
        ),
        Scenario(
            "broker-latency",
            "500 ms added and 10% of chunks lost (one retransmission timeout) on every broker connection",
            _broker_latency,
            fault_seconds=60.0,
        ),
        Scenario(
            "worker-kill",
            "SIGKILL the Celery worker; the supervisor restarts it",
            _killer("worker"),
            required_alerts=(("ProcessRestarting",),),
        ),
        Scenario(
            "consumer-kill",
            "SIGKILL the order consumer; the supervisor restarts it (held down for the fault's seconds, if any)",
            _killer("consumer"),
            required_alerts=(("ProcessRestarting",),),
            held_alerts=(("OrderConsumerLagging",),),
            held_need_seconds=CONSUMER_LAG_ALERT_SECONDS,
        ),
        Scenario(
            "rolling-restart",
            "restart every supervised process one after another through supervisord",
            _rolling_restart,
            action_seconds=90.0,
        ),
        Scenario("redis-pause", "SIGSTOP the platform's Redis, SIGCONT it after the fault", _redis_pause, fault_seconds=60.0),
        Scenario("postgres-restart", "restart the PostgreSQL cluster behind DATABASE_URL", _postgres_restart),
        Scenario(
            "payment-slow",
            "the provider answers in 6 s (over the 5 s limit) until `payment_faults --reset`",
            _payment_slow,
            fault_seconds=60.0,
            opens_breaker="paymentService",
        ),
        Scenario(
            "payment-failing",
            "half the charges hang until the client's time limit (no charge) until `payment_faults --reset`",
            _payment_failing,
            fault_seconds=60.0,
            opens_breaker="paymentService",
        ),
        Scenario(
            "payment-ambiguous",
            "a third of the charges answer after the client's time limit, a third reset the connection after charging, "
            "until `payment_faults --reset`; the ledger must match the orders",
            _payment_ambiguous,
            fault_seconds=60.0,
            opens_breaker="paymentService",
            check=_ambiguous_check,
        ),
        Scenario(
            "poison-burst",
            "undecodable messages on orders.created: NUL bytes, invalid UTF-8, Confluent wire format, not JSON",
            _poison_burst,
            required_alerts=(("DeadLettersArriving",),),
            check=_poison_check,
        ),
    )
}
