"""Payment audit benchmark: one audit run against 200,000 and against 2,000,000 provider charges, side by side.

    .venv/bin/python bench/payment_audit.py [--sizes 200000,2000000] [--new 1000] [--refunds 10]

Prints figures, asserts only that each run did its work (tests assert
behaviour). For each size, a fake provider of the bench's own
(`python -m ops.payment_provider`, a fresh sqlite store on a free port) is
seeded with that many succeeded charges (`POST /_seed`): the history the
audit has already been through. The whole ledger is then read once, page
after page, as the audit did on every run before (it listed every charge of
the last 72 hours) and as `payments_ledger_check` does; the watermark is put
on its last charge. Then the steady state between two beat runs: --new
orders are charged through the platform's own gateway (`payment_charge`,
over HTTP), all PAID but --refunds CANCELLED ones whose charges the audit
must give back. Timed: one audit run (`payment_charges_audit`, no grace
period), then one with nothing new; --rounds times.

It never touches a running platform: a database of its own
(`ecommerce_bench_audit` on the server of DATABASE_URL, created and
migrated here), Redis database 13 (`--redis-db`) of the server of REDIS_URL
(the paymentService breaker), and its own provider processes, stopped at the end.
The machine's calibration (bench/calibration.py: a fixed Python loop, pgbench, load) is
printed before and after.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.isolation import bench_url, ensure_database
from bench.calibration import calibration_measure

BENCH_DB = "ecommerce_bench_audit"
# The paymentService breaker's Redis database: one no test run or other bench on this machine uses.
BENCH_REDIS_DB = 13
# /_seed requests of this many charges each: every one a bounded request.
SEED_CHUNK = 250_000
# Charges made at once (the consumer pays 16 orders at a time per process).
CHARGE_THREADS = 8



def isolate(redis_db: int) -> None:
    """Point Django at the bench's own database and Redis database (before django.setup)."""
    os.environ["DATABASE_URL"] = bench_url("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/", f"/{BENCH_DB}")
    os.environ["REDIS_URL"] = os.environ["CELERY_BROKER_URL"] = bench_url("REDIS_URL", "redis://127.0.0.1:6379/", f"/{redis_db}")
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # metric files of this process stay away from a platform's
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("DJANGO_DEBUG", "false")  # DEBUG records every query: not what production runs


@dataclass
class Figures:
    size: int
    seed_seconds: float
    full_read_seconds: float
    full_read_charges: int
    audit_seconds: list[float]  # one a round
    audit_pages: int
    audit_charges: int
    audit_refunded: int
    idle_seconds: list[float]


def seed(provider, size: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < size:
        chunk = min(SEED_CHUNK, size - done)
        provider.http.post("/_seed", json={"count": chunk, "amount": 1000}, timeout=600).raise_for_status()
        done += chunk
    return time.perf_counter() - started


def read_everything() -> tuple[float, int, str]:
    """Page through the whole ledger as a full pass does; return its seconds, charges and last charge id."""
    from orders.ledger import provider_charges

    started = time.perf_counter()
    count, last = 0, ""
    for charge in provider_charges():
        count += 1
        last = charge.id
    return time.perf_counter() - started, count, last


def steady_state(new: int, refunds: int) -> None:
    """--new orders charged since the last audit run, --refunds of them CANCELLED meanwhile."""
    from decimal import Decimal

    from orders.models import Order
    from payments.gateway import ChargeOutcome, payment_charge

    run = uuid.uuid4().hex[:6].upper()
    orders = [
        Order(
            order_number=f"ORD-BENCH{run}-{index:06d}", customer_name="Ada Lovelace", customer_email="ada@example.com",
            customer_phone="+15551234567", shipping_address={"country": "GB"}, subtotal=Decimal("19.99"),
            status="CANCELLED" if index < refunds else "PAID",
        )
        for index in range(new)
    ]
    Order.objects.bulk_create(orders, batch_size=1000)

    def pay(order: Order) -> None:
        result = payment_charge(idempotency_key=str(order.id), amount=order.subtotal)
        if result.outcome != ChargeOutcome.APPROVED:
            raise SystemExit(f"bench: a charge was not approved ({result})")

    with ThreadPoolExecutor(CHARGE_THREADS) as pool:
        list(pool.map(pay, orders))


def measure(size: int, arguments: argparse.Namespace, store_dir: Path) -> Figures:
    from django.conf import settings
    from django.db import connection

    from orders.audit import AUDIT, payment_charges_audit
    from orders.models import Order, PaymentAuditWatermark, PaymentTransaction
    from outbox.models import OutboxEvent
    from payments.client import payment_client_reset
    from tests.payment_provider import PaymentProvider

    provider = PaymentProvider(store=store_dir / f"ledger-{size}.sqlite3").start()
    try:
        settings.PAYMENT_PROVIDER_URL = provider.url
        payment_client_reset()
        with connection.cursor() as cursor:  # each size starts from no orders, as the provider starts from no charges
            for model in (PaymentTransaction, OutboxEvent, Order):
                cursor.execute(f"TRUNCATE {model._meta.db_table} CASCADE")
        print(f"[{size:,}] seeding the provider ...", flush=True)
        seed_seconds = seed(provider, size)
        print(f"[{size:,}] seeded in {seed_seconds:.1f} s; reading the whole ledger once ...", flush=True)
        full_seconds, full_charges, last = read_everything()
        PaymentAuditWatermark.objects.update_or_create(name=AUDIT, defaults={"charge_id": last})
        rules = {"grace_seconds": 0, "unsettled_wait_seconds": 3600, "max_attempts": 3, "backoff_base_seconds": 60,
                 "time_budget_seconds": 600}  # fmt: skip
        audit_seconds, idle_seconds = [], []
        for _ in range(arguments.rounds):
            steady_state(arguments.new, arguments.refunds)
            started = time.perf_counter()
            report = payment_charges_audit(**rules)
            audit_seconds.append(time.perf_counter() - started)
            if (report.charges, report.refunded, report.stopped) != (arguments.new, arguments.refunds, None):
                raise SystemExit(f"bench: the audit run did not do its work: {report}")
            started = time.perf_counter()
            payment_charges_audit(**rules)
            idle_seconds.append(time.perf_counter() - started)
        return Figures(
            size=size, seed_seconds=seed_seconds, full_read_seconds=full_seconds, full_read_charges=full_charges,
            audit_seconds=audit_seconds, audit_pages=report.pages, audit_charges=report.charges,
            audit_refunded=report.refunded, idle_seconds=idle_seconds,
        )  # fmt: skip
    finally:
        provider.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,2000000", help="provider charges before the run, comma-separated")
    parser.add_argument("--new", type=int, default=1000, help="charges made since the last audit run")
    parser.add_argument("--refunds", type=int, default=10, help="of them, charges of CANCELLED orders to give back")
    parser.add_argument("--rounds", type=int, default=3, help="new charges and audit runs per size")
    parser.add_argument("--redis-db", type=int, default=BENCH_REDIS_DB, help="the Redis database of the bench's breaker")
    arguments = parser.parse_args()
    isolate(arguments.redis_db)
    sizes = [int(size) for size in arguments.sizes.split(",")]

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(calibration_measure().line(), flush=True)
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as store_dir:
        for size in sizes:
            figures.append(measure(size, arguments, Path(store_dir)))
    print(calibration_measure().line())
    print(
        f"\none audit run after {arguments.new:,} new charges ({arguments.refunds} to refund), pages of 500; "
        f"median (min-max) of {arguments.rounds} rounds:"
    )
    print("| provider charges | audit run | pages | refunded | run with nothing new | whole ledger read (old audit) | seed |")
    print("|---|---|---|---|---|---|---|")
    for f in figures:
        print(
            f"| {f.size:,} + {arguments.new:,} | {_spread(f.audit_seconds)} | {f.audit_pages} | {f.audit_refunded} "
            f"| {_spread(f.idle_seconds)} | {f.full_read_seconds:.1f} s ({f.full_read_charges:,} charges) | {f.seed_seconds:.1f} s |"
        )
    if len(figures) > 1:
        first, last = figures[0], figures[-1]
        ratio = statistics.median(last.audit_seconds) / statistics.median(first.audit_seconds)
        print(
            f"\n{last.size / first.size:.0f}x the history: audit run {ratio:.2f}x, "
            f"whole ledger read {last.full_read_seconds / first.full_read_seconds:.1f}x"
        )


def _spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds) * 1000:.0f} ms ({min(seconds) * 1000:.0f}-{max(seconds) * 1000:.0f})"

if __name__ == "__main__":
    main()
