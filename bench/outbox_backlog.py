"""Outbox backlog bench (issue 16, items 4 and 5): prints figures, asserts nothing.

    OUTBOX_BENCH_DATABASE=ecommerce_backlog OUTBOX_BENCH_REDIS_DB=12 \\
    .venv/bin/python bench/outbox_backlog.py [--orders 20000] [--events 5] [--rate 15] [--warm-seconds 20]

Like bench/outbox_bench.py (whose isolation it shares: a database, a Redis
database and a tansu broker of its own, never a running platform's), in one run:

1. normal: checkouts at --rate per second through the real checkout service,
   each commit waking the platform's Celery worker (prefork, 2 processes);
   checkout latency is the `checkout_create` call, timed in the drivers;
2. drain: --warm-seconds of that traffic, then --orders x --events PENDING
   rows written into the outbox on a scratch topic in one transaction (an
   hour's broker outage, there at once: a relay run that stays for the
   checkouts' nudges takes it from its commit on), and the worker's two
   processes woken while the checkouts go on: drain rate from that commit
   (until the topic holds every row), checkout p99 during the drain, the
   worker's CPU per 1,000 rows, the outbox's dead tuples that a VACUUM right
   after the drain cannot remove; then the topic is
   read back and every order's events checked in order;
3. held: the same as 2, with a REPEATABLE READ transaction held open on the
   database from before the warm-up until the drain ends (it read a row, so
   its snapshot pins the xmin horizon: vacuum can remove nothing newer).
"""
import argparse
import multiprocessing
import os
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OUTBOX_BENCH_DATABASE", "ecommerce_backlog_bench")
from bench import outbox_bench  # noqa: E402  (isolates the environment before Django reads it)
from bench.stats import percentile  # noqa: E402

DRIVERS = 3


def worker_cpu_seconds(worker_pid: int) -> dict[int, float]:
    """User + system CPU seconds of the worker and each child (the prefork processes), live ones only."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid == worker_pid or parent == worker_pid:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks
            # The producer's I/O thread apart: a process's other threads, keyed by the negative pid.
            try:
                main = (entry / "task" / entry.name / "stat").read_text().rsplit(")", 1)[1].split()
                seconds[-pid] = seconds[pid] - (int(main[11]) + int(main[12])) / ticks
            except OSError:
                pass
    return seconds


def machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def prepare_checkouts(count: int) -> list[str]:
    from django.utils import timezone

    from checkout.models import Cart, CartItem

    products = outbox_bench.bench_catalog()
    expires = timezone.now() + timezone.timedelta(hours=2)
    sessions = [f"backlog-{uuid.uuid4().hex}" for _ in range(count)]
    carts = Cart.objects.bulk_create([Cart(session_id=s, expires_at=expires) for s in sessions])
    CartItem.objects.bulk_create(
        [CartItem(cart=c, product=products[i % 20], quantity=1, price_snapshot=Decimal("9.99")) for i, c in enumerate(carts)]
    )
    return sessions


def _drive(sessions: list[str], offset: int, rate: float, started: float, results) -> None:
    """Run every DRIVERS-th checkout at its planned time; report (start, latency ms) of each."""
    from django.db import connection

    from checkout.services import checkout_create
    from orders.services import CustomerInfo, ShippingAddress

    customer = CustomerInfo(
        name="Bench", email="bench@example.com", phone="+15551234567",
        shipping_address=ShippingAddress(street="1 Way", city="City", state="ST", postal_code="1", country="GB"),
    )  # fmt: skip
    timings = []
    for position, session in enumerate(sessions):
        planned = started + (position * DRIVERS + offset) / rate
        delay = planned - time.time()
        if delay > 0:
            time.sleep(delay)
        begun = time.time()
        checkout_create(session_id=session, customer=customer, correlation_id=session)
        timings.append((begun, (time.time() - begun) * 1000))
    connection.close()
    results.put(timings)


class Checkouts:
    """Open-loop checkouts at `rate` for `seconds`, in DRIVERS forked processes."""

    def __init__(self, rate: float, seconds: float) -> None:
        from django.db import connection

        sessions = prepare_checkouts(int(rate * seconds))
        connection.close()  # not shared with the forks
        context = multiprocessing.get_context("fork")
        self.results = context.Queue()
        self.started = time.time() + 0.5
        self.drivers = [
            context.Process(target=_drive, args=(sessions[n::DRIVERS], n, rate, self.started, self.results))
            for n in range(DRIVERS)
        ]
        for driver in self.drivers:
            driver.start()

    def timings(self) -> list[tuple[float, float]]:
        collected = [item for _ in self.drivers for item in self.results.get()]
        for driver in self.drivers:
            driver.join()
        return collected


def p99_between(timings: list[tuple[float, float]], start: float, end: float) -> tuple[float, int]:
    window = [latency for begun, latency in timings if start <= begun <= end]
    return (percentile(window, 0.99) if window else float("nan")), len(window)


def backlog_insert(topic: str, orders: int, events: int) -> None:
    """`orders` x `events` PENDING rows, written as an outage leaves them: orders interleaved, each in its order.

    One transaction: the whole backlog becomes visible at once, at its commit.
    """
    from django.db import transaction

    from outbox.models import OutboxEvent

    chunk, batch = 300, []
    with transaction.atomic():
        for first in range(0, orders, chunk):
            ids = [str(uuid.uuid4()) for _ in range(min(chunk, orders - first))]
            for sequence in range(events):
                for index, order in enumerate(ids):
                    event_id = uuid.uuid4()
                    batch.append(
                        OutboxEvent(
                            event_id=event_id, aggregate_type="order", aggregate_id=order, topic=topic, key=order,
                            event_type="ORDER_CREATED", payload=outbox_bench.sample_payload(first + index),
                            headers={"event_id": str(event_id), "event_type": "ORDER_CREATED", "bench_sequence": sequence},
                        )
                    )
            if len(batch) >= 5000:
                OutboxEvent.objects.bulk_create(batch)
                batch = []
        OutboxEvent.objects.bulk_create(batch)


def pending_from(low: int, last_id: int) -> int | None:
    """The lowest backlog id still PENDING, searched from `low` up (None when all are out).

    Tansu's end offsets count batches, not records, so the topic cannot say
    when the drain is over. The search starts where the last one found a row,
    so polling never walks the dead index entries below it again (a full test
    every 50 ms, a sequential scan under a held snapshot, slowed the drain it timed).
    """
    from django.db import connection

    from outbox.models import OutboxEvent

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(id) FROM {OutboxEvent._meta.db_table} WHERE status = 'PENDING' AND id >= %s AND id <= %s",
            [low, last_id],
        )
        return cursor.fetchone()[0]


def read_back(bootstrap: list[str], topic: str, expected: int, events: int) -> str:
    """Read the topic from the start; check every order's events arrived complete and in order."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    last: dict[bytes, int] = {}
    read, out_of_order, duplicates = 0, 0, 0
    deadline = time.monotonic() + 120
    while read < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                read += 1
                sequence = int(dict(record.headers)["bench_sequence"])
                previous = last.get(record.key, -1)
                if sequence == previous:
                    duplicates += 1
                elif sequence != previous + 1:
                    out_of_order += 1
                last[record.key] = max(sequence, previous)
    consumer.close()
    incomplete = sum(1 for value in last.values() if value != events - 1)
    verdict = "IN ORDER" if not out_of_order and not incomplete and read >= expected else "NOT IN ORDER"
    return (
        f"{verdict}: read {read} records of {len(last)} orders; {out_of_order} out of order, "
        f"{incomplete} orders incomplete, {duplicates} duplicates"
    )


def drain_run(arguments, worker_pid: int, *, hold: bool) -> dict:
    """Warm-up traffic, then the backlog drained under the same traffic; with or without a held snapshot."""
    import psycopg2
    from django.conf import settings
    from django.db import connection

    from messaging.contract.events import TopicSpec
    from messaging.kafka.admin import topics_ensure
    from outbox.models import OutboxEvent, OutboxStatus
    from outbox.services import outbox_vacuum
    from outbox.tasks import relay

    outbox_bench.outbox_reset()
    bootstrap = settings.KAFKA_BOOTSTRAP_SERVERS
    topic = f"bench.backlog.{uuid.uuid4().hex[:8]}"
    topics_ensure(bootstrap_servers=bootstrap, topics=[TopicSpec(topic, 3)])
    rows = arguments.orders * arguments.events
    holder = None
    if hold:
        db = settings.DATABASES["default"]
        holder = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432)
        holder.set_session(isolation_level="REPEATABLE READ")
        with holder.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orders_order")  # takes the snapshot; holds no lock on the outbox
    try:
        Checkouts(arguments.rate, arguments.warm_seconds).timings()
        connection.close()
        checkouts = Checkouts(arguments.rate, arguments.drain_load_seconds)
        time.sleep(1.0)
        cpu_before, (busy_before, all_before) = worker_cpu_seconds(worker_pid), machine_busy()
        # Timed from the commit that makes the whole backlog visible at once.
        backlog_insert(topic, arguments.orders, arguments.events)
        started = time.time()
        backlog_ids = OutboxEvent.objects.filter(topic=topic).order_by("id").values_list("id", flat=True)
        low, last_id = backlog_ids.first(), backlog_ids.last()
        for _ in range(2):  # the worker's two processes, as a wake-up and the beat sweep would start them
            relay.apply_async()
        while low is not None and time.time() - started < 600:
            time.sleep(0.1)
            low = pending_from(low, last_id)
        ended = time.time()
        cpu_after = worker_cpu_seconds(worker_pid)
        children = [pid for pid in cpu_after if pid > 0 and pid != worker_pid]
        by_process = sorted(cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in children)
        threads = sum(cpu_after.get(-pid, 0.0) - cpu_before.get(-pid, 0.0) for pid in children)
        busy_after, all_after = machine_busy()
        timings = checkouts.timings()
        # What the `outbox.vacuum` job (every minute) would leave, the snapshot still held.
        outbox_vacuum()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relname = %s", [OutboxEvent._meta.db_table]
            )
            dead, live = cursor.fetchone()
    finally:
        if holder is not None:
            holder.close()
    unpublished = OutboxEvent.objects.filter(topic=topic).exclude(status=OutboxStatus.PUBLISHED).count()
    p99, count = p99_between(timings, started, ended)
    return {
        "rate": rows / (ended - started), "seconds": ended - started, "p99": p99, "checkouts": count,
        "cpu_per_1000": sum(by_process) / rows * 1000 * 1000, "by_process": by_process,
        "threads_share": threads / max(sum(by_process), 1e-9), "machine_busy": (busy_after - busy_before) / max(all_after - all_before, 1),
        "dead": dead, "live": live, "unpublished": unpublished,
        "order": read_back(bootstrap, topic, rows, arguments.events),
    }  # fmt: skip


def report(label: str, figures: dict, normal_p99: float) -> None:
    print(
        f"{label:<26}: {figures['rate']:8.0f} rows/s ({figures['seconds']:.1f} s), checkout p99 {figures['p99']:.0f} ms "
        f"over {figures['checkouts']} ({figures['p99'] / normal_p99:.2f}x normal), worker CPU "
        f"{figures['cpu_per_1000']:.0f} ms/1,000 rows (s per process: "
        f"{', '.join(f'{value:.1f}' for value in figures['by_process'])}; "
        f"{figures['threads_share']:.0%} in threads other than the main one), machine {figures['machine_busy']:.0%} busy"
    )
    print(
        f"{'':<26}  outbox after VACUUM (snapshot still held, if any): dead tuples {figures['dead']}, "
        f"live {figures['live']}; unpublished {figures['unpublished']}"
    )
    print(f"{'':<26}  {figures['order']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5, help="events per order")
    parser.add_argument("--rate", type=float, default=15, help="checkouts per second throughout")
    parser.add_argument("--normal-seconds", type=float, default=20)
    parser.add_argument("--warm-seconds", type=float, default=20, help="traffic before each drain (the snapshot's age)")
    parser.add_argument("--drain-load-seconds", type=float, default=40, help="checkout traffic from the drain's start")
    parser.add_argument("--skip-calibration", action="store_true")
    arguments = parser.parse_args()

    from tests.support import DisposableBroker

    broker = DisposableBroker()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    broker.start()
    worker = None
    try:
        import django

        django.setup()
        outbox_bench.ensure_database()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if not arguments.skip_calibration:
            from bench.calibration import calibration_measure

            print(calibration_measure().line(), flush=True)
        worker = outbox_bench.start_worker()
        outbox_bench.outbox_reset()
        checkouts = Checkouts(arguments.rate, arguments.normal_seconds)
        normal_p99, count = p99_between(checkouts.timings(), 0, float("inf"))
        rows = arguments.orders * arguments.events
        print(f"backlog {rows} rows ({arguments.orders} orders x {arguments.events}); checkouts at {arguments.rate:g}/s")
        print(f"{'normal (no backlog)':<26}: checkout p99 {normal_p99:.0f} ms over {count}", flush=True)
        without = drain_run(arguments, worker.pid, hold=False)
        report("drain", without, normal_p99)
        held = drain_run(arguments, worker.pid, hold=True)
        report("drain, snapshot held", held, normal_p99)
        print(
            f"held / not held            : drain {held['rate'] / without['rate']:.2f}x (goal >= 0.9), "
            f"checkout p99 {held['p99'] / without['p99']:.2f}x (goal <= 1.2)"
        )
    finally:
        if worker is not None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
        from messaging.kafka.producer import event_producer_reset

        event_producer_reset()
        broker.kill()


if __name__ == "__main__":
    main()
