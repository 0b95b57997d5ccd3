"""Measure a cart add's and a checkout's own cost in-process: SQL statements and CPU time, optionally a profile.

    DJANGO_SETTINGS_MODULE=ecommerce.settings.local [DJANGO_DEBUG=false] \\
        .venv/bin/python bench/checkout_profile.py [--checkouts 200] [--profile out.html]

Each checkout goes through the whole request path (middleware, DRF, the
idempotency record, the service, the response) with Django's test client,
after a cart add of its own. Nothing is kept: every checkout runs inside a
transaction that is rolled back, so the database's data, the outbox and the
broker's topics are untouched (a running platform on the same database sees
nothing). Because of that outer transaction, checkout's own `atomic()`
blocks become savepoints: the statement count includes those SAVEPOINT and
RELEASE statements, as the pinned test in tests/checkout does.

Printed for the cart add and the checkout, each: statements per request
(from CaptureQueriesContext, which records with DEBUG on or off), the CPU
time of this process per request
(`time.process_time`: the web side's Python, not PostgreSQL's), median and
mean over the run after a warm-up, and the Python function calls of one
request (cProfile), which unlike CPU time does not move with the
machine's other load. DEBUG on (the run command's settings)
also records every statement in `connection.queries`, which costs CPU.
"""
import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from checkout.models import Product  # noqa: E402

CUSTOMER = {
    "name": "Profile Customer",
    "email": "profile@example.com",
    "phone": "+15551234567",
    "shippingAddress": {"street": "1 Profile Way", "city": "London", "state": "LDN", "postalCode": "N1 1AA", "country": "GB"},
}


class Rollback(Exception):
    """Raised to roll a checkout back after it is measured."""


def _measured(client: Client, calls: cProfile.Profile | None, *args, **kwargs) -> tuple[Any, int, float, float]:
    """POST through the client; return (response, statements, CPU seconds, wall seconds) of that request."""
    with CaptureQueriesContext(connection) as queries:
        cpu, wall = time.process_time(), time.perf_counter()
        if calls is not None:
            calls.enable()
        response = client.post(*args, content_type="application/json", **kwargs)
        if calls is not None:
            calls.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return response, len(queries.captured_queries), cpu, wall


def one_checkout(
    client: Client, product_id: str, calls: cProfile.Profile | None = None, add_calls: cProfile.Profile | None = None
) -> tuple[tuple[int, float, float], tuple[int, float, float]]:
    """Add to a fresh cart and check out; return (statements, CPU seconds, wall seconds) of each request, the add's first.

    With `calls` (`add_calls`), that profiler records the checkout (cart add) request's function calls.
    """
    cart = f"profile-{uuid.uuid4().hex}"
    try:
        with transaction.atomic():
            added, *add = _measured(client, add_calls, f"/api/v1/carts/{cart}/items", {"productId": product_id, "quantity": 1})
            assert added.status_code == 200, added.content
            answer, *checkout = _measured(
                client, calls, "/api/v1/checkout", {"sessionId": cart, "customerInfo": CUSTOMER},
                headers={"Idempotency-Key": f"profile-{cart}"},
            )  # fmt: skip
            assert answer.status_code == 201, answer.content
            raise Rollback
    except Rollback:
        pass
    return tuple(add), tuple(checkout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkouts", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profile", type=Path, help="write a pyinstrument HTML profile of the measured checkouts here")
    parser.add_argument("--show-queries", action="store_true", help="print the statements of one checkout")
    arguments = parser.parse_args()

    product = Product.objects.filter(is_active=True, inventory_quantity__gt=0).order_by("sku").first()
    if product is None:
        raise SystemExit("no product in stock: seed the database first (`manage.py seed_demo`)")
    client = Client()
    for _ in range(arguments.warmup):
        one_checkout(client, str(product.id))
    if arguments.show_queries:
        with CaptureQueriesContext(connection) as queries:
            one_checkout(client, str(product.id))
        for query in queries.captured_queries:
            print(query["sql"][:200])

    profiler = None
    if arguments.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
    samples = [one_checkout(client, str(product.id)) for _ in range(arguments.checkouts)]
    if profiler is not None:
        profiler.stop()
        arguments.profile.write_text(profiler.output_html())
        print(profiler.output_text(unicode=True, color=False))

    # CPU time on a shared machine (a VM whose other tenants come and go) moves
    # by a fifth between runs; the number of Python calls a checkout makes does
    # not, so it is the figure that compares two versions of the code.
    calls, add_calls = cProfile.Profile(), cProfile.Profile()
    for _ in range(50):
        one_checkout(client, str(product.id), calls, add_calls)

    print(f"settings {settings.SETTINGS_MODULE} DEBUG={settings.DEBUG}; {len(samples)} carts added to and checked out")
    for name, index, profile in (("cart add", 0, add_calls), ("checkout", 1, calls)):
        counts = sorted({sample[index][0] for sample in samples})
        cpu = [sample[index][1] * 1000 for sample in samples]
        wall = [sample[index][2] * 1000 for sample in samples]
        print(
            f"  {name}: statements {counts}; CPU ms median {statistics.median(cpu):.2f} mean {statistics.mean(cpu):.2f}; "
            f"wall ms median {statistics.median(wall):.2f}; Python calls {pstats.Stats(profile).total_calls / 50:,.0f}"
        )


if __name__ == "__main__":
    main()
