"""Outbox relay benchmark: prints figures, asserts nothing (tests assert behaviour).

    .venv/bin/python bench/outbox_bench.py [--rows 20000] [--rate 100] [--seconds 10]

Needs the local services (`bash scripts/services.sh up`). It never touches a
running platform: it uses a database of its own (`ecommerce_bench` on the
server of DATABASE_URL, created and migrated here; OUTBOX_BENCH_DATABASE names
another), Redis database 9 of the server of REDIS_URL (its Celery queue and
wake-up flag; OUTBOX_BENCH_REDIS_DB names another, so two benches on one
machine keep apart), and a Kafka-protocol
broker of its own (tansu, started on a free port and killed at the end), so
even the OrderCreated events of its checkouts never reach a platform's
`orders.created`. Three measurements, one run:

1. raw: kafka-python alone sends --rows OrderCreated-sized messages (the relay's
   producer settings: acks=all, idempotence, linger 2 ms) — the ceiling;
2. drain: --rows outbox rows are inserted, then drained, first by one relay
   in this process (claim, send, await acks, mark PUBLISHED, one transaction
   per batch), then by the platform's Celery worker (its two processes relay
   concurrently, as in production): the latter is the platform's drain rate;
3. latency: checkouts run at --rate per second for --seconds through the real
   checkout service, each commit waking a real Celery worker; reported is
   created_at → published_at per row (the row is written inside the checkout
   transaction, so this slightly over-states commit → publish).
"""
import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.isolation import bench_url, ensure_database  # noqa: E402
from bench.stats import percentile  # noqa: E402

BENCH_DB = os.environ.get("OUTBOX_BENCH_DATABASE", "ecommerce_bench")
BENCH_REDIS_DB = int(os.environ.get("OUTBOX_BENCH_REDIS_DB", "9"))


os.environ["DATABASE_URL"] = bench_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/", f"/{BENCH_DB}")
# Queue and wake-up flag of the bench's own, away from a running platform's.
os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = bench_url("REDIS_URL", "redis://127.0.0.1:6379/", f"/{BENCH_REDIS_DB}")
# Metric files of this process must not land among a running platform's.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG records every query: not what production runs


def sample_payload(index: int) -> dict:
    return {
        "eventId": str(uuid.uuid4()), "eventType": "ORDER_CREATED", "eventVersion": "1.0",
        "timestamp": "2026-11-25T00:00:00Z", "correlationId": str(uuid.uuid4()), "orderId": str(uuid.uuid4()),
        "orderNumber": f"ORD-20261125-{index:06d}",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+15551234567",
                     "shippingAddress": {"street": "1 Analytical Way", "city": "London", "state": "LDN",
                                         "postalCode": "N1 1AA", "country": "GB"}},
        "items": [{"productId": str(uuid.uuid4()), "productSku": f"SKU-{n}", "productName": "A product",
                   "quantity": 2, "priceSnapshot": "19.99", "subtotal": "39.98"} for n in range(3)],
        "subtotal": "119.94", "cartId": str(uuid.uuid4()),
    }  # fmt: skip


def raw_producer_rate(bootstrap: list[str], topic: str, rows: int) -> float:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    messages = [(str(uuid.uuid4()).encode(), json.dumps(sample_payload(i), separators=(",", ":")).encode()) for i in range(rows)]
    headers = [("event_id", b"x" * 36), ("event_type", b"ORDER_CREATED"), ("correlation_id", b"y" * 36)]
    producer.send(topic, key=b"warm-up", value=b"{}").get(timeout=30)
    started = time.perf_counter()
    futures = [producer.send(topic, key=key, value=value, headers=headers) for key, value in messages]
    producer.flush(timeout=300)
    elapsed = time.perf_counter() - started
    assert all(future.succeeded() for future in futures), "raw producer: some sends failed"
    producer.close()
    return rows / elapsed


def crc32c_implementation() -> str:
    """Say which CRC32C kafka-python checksums record batches with: the `crc32c` package's or its pure-Python one."""
    from kafka.record import util

    return "native (crc32c package)" if util.crc32c_c is not None else "pure Python (crc32c package missing)"


def outbox_reset() -> None:
    """Empty and vacuum the bench's outbox so one measurement does not slow the next."""
    from django.db import connection

    from outbox.models import OutboxEvent
    from outbox.services import outbox_vacuum

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {OutboxEvent._meta.db_table}")
    outbox_vacuum()


def insert_rows(topic: str, rows: int) -> None:
    from outbox.models import OutboxEvent

    outbox_reset()
    batch = []
    for index in range(rows):
        event_id = uuid.uuid4()
        aggregate = str(uuid.uuid4()) if index % 5 == 0 or not batch else batch[-1].aggregate_id
        batch.append(
            OutboxEvent(
                event_id=event_id, aggregate_type="order", aggregate_id=aggregate, topic=topic, key=aggregate,
                event_type="ORDER_CREATED", payload=sample_payload(index),
                headers={"event_id": str(event_id), "event_type": "ORDER_CREATED", "correlation_id": str(uuid.uuid4())},
            )  # fmt: skip
        )
    OutboxEvent.objects.bulk_create(batch, batch_size=2000)


def drain_rate(topic: str, rows: int) -> tuple[float, int]:
    from django.conf import settings

    from outbox.models import OutboxEvent, OutboxStatus
    from outbox.relay import outbox_drain

    insert_rows(topic, rows)
    outbox_drain(batch_size=10, time_budget_seconds=30, max_batches=1)  # warm the producer up
    started = time.perf_counter()
    outbox_drain(batch_size=settings.OUTBOX_BATCH_SIZE, time_budget_seconds=600, max_batches=100_000)
    elapsed = time.perf_counter() - started
    published = OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED).count()
    return (published - 10) / elapsed, published


DRIVERS = 4


def _drive(sessions: list[str], offset: int, stride: int, rate: int, started: float, customer) -> None:
    """Run every `stride`-th checkout of the schedule, each at its planned time."""
    from django.db import connection

    from checkout.services import checkout_create

    for position, session in enumerate(sessions):
        planned = started + (position * stride + offset) / rate
        delay = planned - time.time()
        if delay > 0:
            time.sleep(delay)
        checkout_create(session_id=session, customer=customer, correlation_id=session)
    connection.close()


def start_worker() -> subprocess.Popen:
    """The platform's Celery worker, as scripts/run.sh starts it (prefork, 2 processes)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "2",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, "OUTBOX_TRIGGER_ON_COMMIT": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    time.sleep(6)  # up before any clock starts
    return worker


def worker_drain_rate(topic: str, rows: int) -> float:
    """Fill the outbox, wake the worker's two relay processes, time until every row is published."""
    from outbox.models import OutboxEvent, OutboxStatus
    from outbox.tasks import relay

    insert_rows(topic, rows)
    started = time.perf_counter()
    for _ in range(2):
        relay.apply_async()
    while OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED).exists():
        time.sleep(0.02)
    return rows / (time.perf_counter() - started)


def bench_catalog() -> list:
    """Twenty products with all the stock a bench needs (created once, found after)."""
    from catalog.models import Category, Product

    category, _ = Category.objects.get_or_create(name="Bench")
    # A catalog, not one hot item: checkouts of one product queue on its row lock by design.
    return [
        Product.objects.update_or_create(
            sku=f"BENCH-ITEM-{n:02d}",
            defaults={"name": f"Bench item {n}", "price": Decimal("9.99"), "inventory_quantity": 10_000_000, "category": category},
        )[0]
        for n in range(20)
    ]


def checkout_latency(rate: int, seconds: int) -> dict[str, float]:
    from django.db import connection
    from django.utils import timezone

    from checkout.models import Cart, CartItem
    from checkout.services import checkout_create
    from orders.services import CustomerInfo, ShippingAddress
    from outbox.models import OutboxEvent, OutboxStatus

    outbox_reset()
    products = bench_catalog()
    warm_up = 20
    total = rate * seconds + warm_up
    expires = timezone.now() + timezone.timedelta(hours=1)
    sessions = [f"bench-{uuid.uuid4().hex}" for _ in range(total)]
    carts = Cart.objects.bulk_create([Cart(session_id=s, expires_at=expires) for s in sessions])
    CartItem.objects.bulk_create(
        [
            CartItem(cart=cart, product=products[index % len(products)], quantity=1, price_snapshot=Decimal("9.99"))
            for index, cart in enumerate(carts)
        ]
    )
    customer = CustomerInfo(
        name="Bench", email="bench@example.com", phone="+15551234567",
        shipping_address=ShippingAddress(street="1 Way", city="City", state="ST", postal_code="1", country="GB"),
    )  # fmt: skip

    # A first run creates the worker's producer and connections; steady
    # state is what is measured, so those checkouts are not counted.
    for session in sessions[:warm_up]:
        checkout_create(session_id=session, customer=customer, correlation_id=session)
    deadline = time.monotonic() + 30
    while OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    measured_from = timezone.now()
    sessions = sessions[warm_up:]
    total -= warm_up

    # Several driver processes: one Python process cannot run 100 checkouts/s
    # of service code under the GIL on this machine, and the driver must
    # not be what limits the rate.
    connection.close()
    started = time.time() + 1.0
    drivers = [
        multiprocessing.get_context("fork").Process(
            target=_drive, args=(sessions[n::DRIVERS], n, DRIVERS, rate, started, customer)
        )
        for n in range(DRIVERS)
    ]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join()
    achieved = total / (time.time() - started)
    deadline = time.monotonic() + 60
    while OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    latencies = [
        (published - created).total_seconds() * 1000
        for created, published in OutboxEvent.objects.filter(
            status=OutboxStatus.PUBLISHED, created_at__gte=measured_from
        ).values_list("created_at", "published_at")
    ]
    unpublished = OutboxEvent.objects.exclude(status=OutboxStatus.PUBLISHED).count()
    return {
        "achieved_rate": achieved,
        "count": len(latencies),
        "unpublished": unpublished,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--raw-only", action="store_true", help="measure the raw producer only (e.g. its CRC32C)")
    arguments = parser.parse_args()

    # A broker of the bench's own, started before Django reads KAFKA_BOOTSTRAP_SERVERS.
    from tests.support import DisposableBroker

    broker = DisposableBroker()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    broker.start()
    try:
        bench(arguments)
    finally:
        from messaging.kafka.producer import event_producer_reset

        event_producer_reset()  # closed before its broker goes, so it does not log the loss
        broker.kill()


def bench(arguments: argparse.Namespace) -> None:
    import django

    django.setup()
    ensure_database()
    from django.conf import settings
    from django.core.management import call_command

    from messaging.contract.events import TopicSpec
    from messaging.kafka.admin import topics_ensure

    call_command("migrate", verbosity=0)
    bootstrap = settings.KAFKA_BOOTSTRAP_SERVERS
    run = uuid.uuid4().hex[:8]
    raw_topic, drain_topic = f"bench.raw.{run}", f"bench.drain.{run}"
    topics_ensure(bootstrap_servers=bootstrap, topics=[TopicSpec(raw_topic, 3), TopicSpec(drain_topic, 3)])

    print(f"broker {','.join(bootstrap)} (the bench's own tansu); {arguments.rows} messages of ~{len(json.dumps(sample_payload(0)))} bytes")
    raw = raw_producer_rate(bootstrap, raw_topic, arguments.rows)
    print(f"raw kafka-python producer : {raw:10.0f} msg/s  (CRC32C: {crc32c_implementation()})")
    if arguments.raw_only:
        return
    drain, published = drain_rate(drain_topic, arguments.rows)
    print(f"one relay, in-process     : {drain:10.0f} rows/s  ({drain / raw:.2f} of raw; batch {settings.OUTBOX_BATCH_SIZE})")
    worker = start_worker()
    try:
        platform = worker_drain_rate(drain_topic, arguments.rows)
        print(f"platform drain (worker)   : {platform:10.0f} rows/s  (the Celery worker's 2 relay processes)")
        print(f"drain / raw               : {platform / raw:10.2f}  (goal >= 0.60)")
        latency = checkout_latency(arguments.rate, arguments.seconds)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)
    print(
        f"checkouts at {arguments.rate}/s for {arguments.seconds}s (achieved {latency['achieved_rate']:.0f}/s): "
        f"{latency['count']} published, {latency['unpublished']} not"
    )
    print(
        f"created -> published        : p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms, "
        f"max {latency['max_ms']:.1f} ms  (goal p99 < 50 ms)"
    )


if __name__ == "__main__":
    main()
